/*
 * rangelock.c - claims of concurrent O_DIRECT writes (rangelock.h).
 *
 * Two lists under one mutex: writes with edge blocks ("edged"), and
 * aligned writes. Every claim is linked while it holds, so whichever of
 * two conflicting writes takes the mutex second sees the first and waits:
 *
 * - An aligned write conflicts only with edged ones. With none linked
 *   (the common case) it links itself and is done: O(1), no scan. That is
 *   safe because an edged write, when it comes, scans the aligned list and
 *   waits for every aligned write in flight that covers one of its edge
 *   blocks.
 * - An edged write links itself at once, still waiting, and then waits
 *   until no held claim conflicts with it. New aligned writes wait behind
 *   a waiting edged claim too, so a stream of aligned writes over a block
 *   cannot starve its read-modify-write.
 *
 * No cycle of waits can form: held claims wait for nothing here, a
 * waiting edged claim waits only for held ones, and an aligned write waits
 * (unlinked) for edged ones. Edged claims ignore each other while waiting
 * (else two of them over one block would wait for each other forever).
 */
#include "rangelock.h"

void
rangelock_init(struct vc_rangelock *rl)
{
	pthread_mutex_init(&rl->lock, NULL);
	pthread_cond_init(&rl->cond, NULL);
	rl->edged = NULL;
	rl->aligned = NULL;
	rl->waiting = 0;
}

void
rangelock_destroy(struct vc_rangelock *rl)
{
	pthread_cond_destroy(&rl->cond);
	pthread_mutex_destroy(&rl->lock);
}

static void
rangelock_link(struct vc_range **head, struct vc_range *r)
{
	r->prev = NULL;
	r->next = *head;
	if (*head != NULL)
		(*head)->prev = r;
	*head = r;
}

static void
rangelock_unlink(struct vc_range **head, struct vc_range *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		*head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
}

/* Whether an edge block of a lies in b's range (blocks and ranges are
 * aligned alike, so containing the block's offset means overlapping it). */
static bool
rangelock_edge_in(const struct vc_range *a, const struct vc_range *b)
{
	for (int i = 0; i < 2; i++)
		if (a->edge[i] >= 0 && a->edge[i] >= b->start &&
		    a->edge[i] < b->end)
			return true;
	return false;
}

static bool
rangelock_conflict(const struct vc_range *a, const struct vc_range *b)
{
	return rangelock_edge_in(a, b) || rangelock_edge_in(b, a);
}

/* An aligned claim may be linked: no edged claim, held or waiting, has an
 * edge block inside it. Called with rl->lock held. */
static bool
rangelock_aligned_free(const struct vc_rangelock *rl, const struct vc_range *r)
{
	for (const struct vc_range *e = rl->edged; e != NULL; e = e->next)
		if (rangelock_edge_in(e, r))
			return false;
	return true;
}

/* An edged claim may hold: no held claim conflicts. Called with rl->lock
 * held. */
static bool
rangelock_edged_free(const struct vc_rangelock *rl, const struct vc_range *r)
{
	for (const struct vc_range *e = rl->edged; e != NULL; e = e->next)
		if (e != r && e->held && rangelock_conflict(e, r))
			return false;
	for (const struct vc_range *a = rl->aligned; a != NULL; a = a->next)
		if (rangelock_edge_in(r, a))
			return false;
	return true;
}

static void
rangelock_set(struct vc_range *r, off_t start, off_t end, off_t head,
    off_t tail)
{
	r->start = start;
	r->end = end;
	r->edge[0] = head;
	r->edge[1] = tail;
	r->held = false;
}

void
rangelock_lock(struct vc_rangelock *rl, struct vc_range *r, off_t start,
    off_t end, off_t head, off_t tail)
{
	rangelock_set(r, start, end, head, tail);
	pthread_mutex_lock(&rl->lock);
	if (head < 0 && tail < 0) {
		while (rl->edged != NULL && !rangelock_aligned_free(rl, r)) {
			rl->waiting++;
			pthread_cond_wait(&rl->cond, &rl->lock);
			rl->waiting--;
		}
		rangelock_link(&rl->aligned, r);
	} else {
		rangelock_link(&rl->edged, r);
		while (!rangelock_edged_free(rl, r)) {
			rl->waiting++;
			pthread_cond_wait(&rl->cond, &rl->lock);
			rl->waiting--;
		}
	}
	r->held = true;
	pthread_mutex_unlock(&rl->lock);
}

bool
rangelock_trylock_aligned(struct vc_rangelock *rl, struct vc_range *r,
    off_t start, off_t end)
{
	bool ok;

	rangelock_set(r, start, end, -1, -1);
	pthread_mutex_lock(&rl->lock);
	ok = rl->edged == NULL || rangelock_aligned_free(rl, r);
	if (ok) {
		rangelock_link(&rl->aligned, r);
		r->held = true;
	}
	pthread_mutex_unlock(&rl->lock);
	return ok;
}

void
rangelock_unlock(struct vc_rangelock *rl, struct vc_range *r)
{
	bool edged = r->edge[0] >= 0 || r->edge[1] >= 0;

	pthread_mutex_lock(&rl->lock);
	rangelock_unlink(edged ? &rl->edged : &rl->aligned, r);
	r->held = false;
	if (rl->waiting > 0)
		pthread_cond_broadcast(&rl->cond);
	pthread_mutex_unlock(&rl->lock);
}
