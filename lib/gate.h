/*
 * gate.h - a shared/exclusive lock that any thread may release.
 *
 * pthread rwlocks must be released by the thread that took them; an
 * asynchronous request takes the gate when submitted and releases it in
 * the completion thread, so it needs this instead.
 */
#ifndef VC_GATE_H
#define VC_GATE_H

#include <pthread.h>
#include <stdbool.h>

struct vc_gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned shared;	/* holders in shared mode; protected by lock */
	bool exclusive;		/* protected by lock */
	unsigned waiting_excl;	/* writers waiting: new readers queue behind them */
};

void gate_init(struct vc_gate *g);
void gate_destroy(struct vc_gate *g);
void gate_shared(struct vc_gate *g);
/* Shared without waiting: false when it would wait (an exclusive holder
 * or waiter), for threads that must not block. */
bool gate_try_shared(struct vc_gate *g);
void gate_exclusive(struct vc_gate *g);
/* Release whichever mode the caller's request holds. */
void gate_release_shared(struct vc_gate *g);
void gate_release_exclusive(struct vc_gate *g);

#endif
