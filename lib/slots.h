/*
 * slots.h - a table of numbered slots whose numbers the kernel keeps.
 *
 * FUSE node IDs and handles are numbers the kernel holds on to; a new
 * daemon taking over the connection (takeover.c) must answer the same
 * numbers. So they are slot numbers, not pointers: the table is a chunked
 * array whose chunks never move and are freed only at exit, so a lookup
 * takes no lock. Freed numbers go on a free list and are given out again.
 * Numbers 0 and 1 are never given out (0 is no handle, 1 is FUSE's root).
 */
#ifndef VC_SLOTS_H
#define VC_SLOTS_H

#include <pthread.h>
#include <stdint.h>
#include <stddef.h>

#define VC_SLOTS_CHUNK_SHIFT	12
#define VC_SLOTS_CHUNK		(1u << VC_SLOTS_CHUNK_SHIFT)
#define VC_SLOTS_NCHUNKS	16384		/* 64 Mi slots */
#define VC_SLOTS_MAX		((uint64_t)VC_SLOTS_CHUNK * VC_SLOTS_NCHUNKS)
#define VC_SLOTS_FIRST		2

struct vc_slots {
	pthread_mutex_t lock;		/* allocation and the free list */
	void **chunks[VC_SLOTS_NCHUNKS];	/* written once under lock, read
					 * with acquire loads */
	uint64_t next;			/* first number never given out; lock */
	uint64_t *free;			/* freed numbers; lock */
	size_t nfree, capfree;		/* lock */
	uint64_t used;			/* slots holding a pointer; lock */
	/*
	 * After slots_seal(): the empty numbers of [scan, sealed) are free
	 * too, found by a scan when the list is empty, so that a high
	 * handed-over number costs no list of every number below it; lock.
	 */
	uint64_t scan, sealed;
};

void slots_init(struct vc_slots *s);
void slots_exit(struct vc_slots *s);

/* A free number holding p. Returns it, or 0 when out of memory or numbers. */
uint64_t slots_alloc(struct vc_slots *s, void *p);

/* Put p at number n (a handed-over one): before any slots_alloc(), then
 * slots_seal(). Returns 0, -EINVAL (out of range), -EEXIST or -ENOMEM. */
int slots_install(struct vc_slots *s, uint64_t n, void *p);
/* After the installs: every number below the highest one installed that
 * holds nothing is free (given out lowest first, found lazily). Returns 0. */
int slots_seal(struct vc_slots *s);

/* Empty slot n; its number may be given out again. */
void slots_free(struct vc_slots *s, uint64_t n);

/* What slot n holds, or NULL. No lock: n must be live (the kernel's). */
static inline void *
slots_get(const struct vc_slots *s, uint64_t n)
{
	void **chunk;

	if (n >= VC_SLOTS_MAX)
		return NULL;
	chunk = __atomic_load_n(&s->chunks[n >> VC_SLOTS_CHUNK_SHIFT],
	    __ATOMIC_ACQUIRE);
	if (chunk == NULL)
		return NULL;
	return __atomic_load_n(&chunk[n & (VC_SLOTS_CHUNK - 1)],
	    __ATOMIC_ACQUIRE);
}

/* Call fn for each slot holding a pointer, in number order, under the lock
 * (fn must not call back into s). Stops at the first fn < 0 and returns it. */
int slots_each(struct vc_slots *s, int (*fn)(uint64_t n, void *p, void *arg),
    void *arg);

#endif
