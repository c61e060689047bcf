/*
 * placement.c - pin a FUSE ring queue thread to its own CPU while its
 * callers wait on each request, and free it while they keep a queue (why:
 * placement.h).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "placement.h"

#define WINDOW_NS	(20 * 1000 * 1000)	/* judge the load this often */
#define WINDOW_MIN	16	/* ... once it holds this many requests */
#define CALM_WINDOWS	5	/* overlap-free windows before coming back */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
place_set(struct vc_place *p, bool unpin)
{
	int r;

	r = pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t),
	    unpin ? &p->all : &p->own);
	if (r != 0)
		return -r;
	p->unpinned = unpin;
	return 0;
}

int
place_init(struct vc_place *p, unsigned cpu)
{
	cpu_set_t allowed;
	int r;

	memset(p, 0, sizeof(*p));
	p->cpu = cpu;
	r = pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed);
	if (r == EINVAL)	/* more CPUs than a cpu_set_t holds: leave it */
		return 0;
	if (r != 0)
		return -r;
	if (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed) ||
	    CPU_COUNT(&allowed) < 2)
		return 0;
	CPU_SET(cpu, &p->own);
	p->all = allowed;
	r = place_set(p, false);
	if (r < 0)
		return r;
	p->on = true;
	p->window_end = now_ns() + WINDOW_NS;
	return 0;
}

void
place_note(struct vc_place *p, unsigned reqs, unsigned overlapped)
{
	bool busy;
	uint64_t now;
	int r;

	if (!p->on)
		return;
	p->reqs += reqs;
	p->overlapped += overlapped;
	if (p->reqs < WINDOW_MIN)
		return;
	now = now_ns();
	if (now < p->window_end)
		return;
	/* A quarter of the requests overlapping is a caller with a queue. */
	busy = p->overlapped * 4 >= p->reqs;
	if (busy)
		p->calm = 0;
	else if (p->calm < CALM_WINDOWS)
		p->calm++;
	p->reqs = p->overlapped = 0;
	p->window_end = now + WINDOW_NS;
	if (busy == p->unpinned || (!busy && p->calm < CALM_WINDOWS))
		return;
	r = place_set(p, busy);
	if (r < 0) {
		/* The CPUs allowed may have changed under us (cpuset):
		 * leave the thread where the kernel lets it run. */
		log_warnc(r, "FUSE queue %u: cannot move between CPUs; it "
		    "stays where it is", p->cpu);
		p->on = false;
		return;
	}
	log_debug("FUSE queue %u: %s", p->cpu, busy ?
	    "callers keep a queue: the scheduler places its thread" :
	    "callers wait on each request: serving from its own CPU");
}
