/*
 * rangelock.h - which O_DIRECT writes to one image may run at once.
 *
 * A write whose ends are not block aligned read-modify-writes its edge
 * blocks: it reads them, merges its bytes in and writes its whole padded
 * range back. Any other write to an edge block in between would be undone
 * in part, and the block would hold neither write. The rule is the one a
 * native file keeps per aligned block: each block ends as one of the
 * writes' contents. So two writes conflict when an edge block of one lies
 * in the other's range; aligned writes (no edge blocks) never conflict
 * with each other.
 *
 * A writer takes everything it needs in one step, under one mutex, and
 * holds nothing while it waits: no deadlock, whatever the number of
 * writers. The entry is the caller's storage (on its stack, or in an
 * asynchronous request), so there is no table to run out of. Any thread
 * may release an entry, as io_uring completions need.
 */
#ifndef VC_RANGELOCK_H
#define VC_RANGELOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

/* One write's claim; owned by the lock from lock until unlock. */
struct vc_range {
	struct vc_range *prev, *next;
	off_t start, end;	/* the aligned range written, [start, end) */
	off_t edge[2];		/* offsets of the edge blocks rewritten, -1: none */
	bool held;
};

struct vc_rangelock {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vc_range *edged;		/* writes with edge blocks, held or waiting */
	struct vc_range *aligned;	/* aligned writes, all held */
	unsigned waiting;		/* threads in cond_wait */
};

void rangelock_init(struct vc_rangelock *rl);
void rangelock_destroy(struct vc_rangelock *rl);

/*
 * Claim [start, end) (aligned) for a write that rewrites the edge blocks
 * at head and tail (-1 for none; both -1 for an aligned write), waiting
 * until no conflicting write holds its claim.
 */
void rangelock_lock(struct vc_rangelock *rl, struct vc_range *r, off_t start,
    off_t end, off_t head, off_t tail);
/* The same for an aligned write, without waiting: false if it would wait. */
bool rangelock_trylock_aligned(struct vc_rangelock *rl, struct vc_range *r,
    off_t start, off_t end);
/* Give the claim up; any thread may. */
void rangelock_unlock(struct vc_rangelock *rl, struct vc_range *r);

#endif
