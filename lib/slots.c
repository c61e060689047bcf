/*
 * slots.c - numbered slots for FUSE node IDs and handles (see slots.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "slots.h"

void
slots_init(struct vc_slots *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->next = VC_SLOTS_FIRST;
}

void
slots_exit(struct vc_slots *s)
{
	for (size_t i = 0; i < VC_SLOTS_NCHUNKS; i++) {
		free(s->chunks[i]);
		s->chunks[i] = NULL;
	}
	free(s->free);
	s->free = NULL;
	s->nfree = s->capfree = 0;
	pthread_mutex_destroy(&s->lock);
}

/* The slot of number n, its chunk allocated if need be. Called with lock held. */
static void **
slots_cell_locked(struct vc_slots *s, uint64_t n)
{
	void **chunk = s->chunks[n >> VC_SLOTS_CHUNK_SHIFT];

	if (chunk == NULL) {
		chunk = calloc(VC_SLOTS_CHUNK, sizeof(*chunk));
		if (chunk == NULL)
			return NULL;
		__atomic_store_n(&s->chunks[n >> VC_SLOTS_CHUNK_SHIFT], chunk,
		    __ATOMIC_RELEASE);
	}
	return &chunk[n & (VC_SLOTS_CHUNK - 1)];
}

static int
slots_push_free_locked(struct vc_slots *s, uint64_t n)
{
	if (s->nfree == s->capfree) {
		size_t cap = s->capfree ? s->capfree * 2 : 256;
		uint64_t *f = realloc(s->free, cap * sizeof(*f));

		if (f == NULL)
			return -ENOMEM;
		s->free = f;
		s->capfree = cap;
	}
	s->free[s->nfree++] = n;
	return 0;
}

/* The lowest empty number of [scan, sealed) into *n; false when none is
 * left. Each number is looked at once over all calls. Lock held. */
static bool
slots_scan_locked(struct vc_slots *s, uint64_t *n)
{
	while (s->scan < s->sealed) {
		void **chunk = s->chunks[s->scan >> VC_SLOTS_CHUNK_SHIFT];

		if (chunk == NULL || chunk[s->scan & (VC_SLOTS_CHUNK - 1)] == NULL) {
			*n = s->scan;
			return true;
		}
		s->scan++;
	}
	return false;
}

uint64_t
slots_alloc(struct vc_slots *s, void *p)
{
	void **cell;
	uint64_t n;

	pthread_mutex_lock(&s->lock);
	if (s->nfree > 0) {
		n = s->free[--s->nfree];
	} else if (slots_scan_locked(s, &n)) {
		/* n is the lowest empty number of the sealed range */
	} else if (s->next < VC_SLOTS_MAX) {
		n = s->next;
	} else {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	cell = slots_cell_locked(s, n);
	if (cell == NULL) {
		if (n >= s->scan && n < s->sealed)
			;	/* the scan finds it again */
		else if (n != s->next)
			s->nfree++;	/* it is still on the list */
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (n >= s->scan && n < s->sealed)
		s->scan = n + 1;
	if (n == s->next)
		s->next++;
	__atomic_store_n(cell, p, __ATOMIC_RELEASE);
	s->used++;
	pthread_mutex_unlock(&s->lock);
	return n;
}

int
slots_install(struct vc_slots *s, uint64_t n, void *p)
{
	void **cell;
	int r = 0;

	if (n < VC_SLOTS_FIRST || n >= VC_SLOTS_MAX || p == NULL)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	cell = slots_cell_locked(s, n);
	if (cell == NULL)
		r = -ENOMEM;
	else if (*cell != NULL)
		r = -EEXIST;
	else {
		__atomic_store_n(cell, p, __ATOMIC_RELEASE);
		s->used++;
		if (n >= s->next)
			s->next = n + 1;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

int
slots_seal(struct vc_slots *s)
{
	pthread_mutex_lock(&s->lock);
	s->scan = VC_SLOTS_FIRST;
	s->sealed = s->next;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void
slots_free(struct vc_slots *s, uint64_t n)
{
	void **chunk;

	if (n < VC_SLOTS_FIRST || n >= VC_SLOTS_MAX)
		return;
	pthread_mutex_lock(&s->lock);
	chunk = s->chunks[n >> VC_SLOTS_CHUNK_SHIFT];
	if (chunk != NULL && chunk[n & (VC_SLOTS_CHUNK - 1)] != NULL) {
		__atomic_store_n(&chunk[n & (VC_SLOTS_CHUNK - 1)], NULL,
		    __ATOMIC_RELEASE);
		s->used--;
		/* Without room on the list the number is only lost, never
		 * reused twice; one the scan has still to reach it finds. */
		if (n < s->scan || n >= s->sealed)
			(void)slots_push_free_locked(s, n);
	}
	pthread_mutex_unlock(&s->lock);
}

int
slots_each(struct vc_slots *s, int (*fn)(uint64_t n, void *p, void *arg),
    void *arg)
{
	int r = 0;

	pthread_mutex_lock(&s->lock);
	for (uint64_t n = VC_SLOTS_FIRST; r >= 0 && n < s->next; n++) {
		void **chunk = s->chunks[n >> VC_SLOTS_CHUNK_SHIFT];
		void *p;

		if (chunk == NULL) {
			n |= VC_SLOTS_CHUNK - 1;	/* skip the chunk */
			continue;
		}
		p = chunk[n & (VC_SLOTS_CHUNK - 1)];
		if (p != NULL)
			r = fn(n, p, arg);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}
