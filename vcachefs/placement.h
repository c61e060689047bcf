/*
 * placement.h - where a FUSE ring queue thread runs.
 *
 * The kernel queues a ring request on the queue of the CPU its caller runs
 * on. A caller at queue depth 1 sleeps until the reply, so the cheapest
 * place to answer it is that same CPU: the wake-ups stay local, and on a
 * virtual machine a wake-up of another, idle vCPU costs tens of
 * microseconds (measured on 2 vCPUs: a 4 KiB page-cache read took 10 us
 * there and 46 us from the other CPU). A caller with many requests in
 * flight keeps its own CPU busy submitting them, and a queue thread held
 * there only competes with it; left to the scheduler it finds a CPU with
 * room, and the one that takes the disk's interrupts. (Holding it off its
 * own CPU instead was measured too: random reads gained 10 %, but O_DIRECT
 * writes lost a third, their completions waking it across CPUs.)
 *
 * So each queue thread starts pinned to its own CPU and watches its
 * requests: when they overlap (several arrive together, or one arrives
 * while another is still being served) it lets the scheduler place it, and
 * it comes back after about 100 ms without overlap. The CPUs it may use
 * are the ones the daemon had at start.
 */
#ifndef VC_PLACEMENT_H
#define VC_PLACEMENT_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

struct vc_place {
	bool on;		/* false: the thread stays where it was started */
	bool unpinned;	/* left to the scheduler now */
	unsigned cpu;
	cpu_set_t own, all;
	uint64_t window_end;	/* ns, CLOCK_MONOTONIC_COARSE (tick-coarse) */
	unsigned reqs, overlapped;	/* in this window */
	unsigned calm;		/* windows in a row without overlap */
};

/* Pin the calling thread to cpu. Placement stays off (and the thread where
 * it is) when cpu is not one it may run on, or it has no other: 0 then too.
 * -errno only if the affinity calls themselves fail. */
int place_init(struct vc_place *p, unsigned cpu);
/* Account a batch: reqs requests, overlapped of them alongside another.
 * At the end of a window, pin or unpin the thread as its load asks. */
void place_note(struct vc_place *p, unsigned reqs, unsigned overlapped);

#endif
