/*
 * gate.c - shared/exclusive lock releasable from any thread (gate.h).
 */
#include "gate.h"

void
gate_init(struct vc_gate *g)
{
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->shared = 0;
	g->exclusive = false;
	g->waiting_excl = 0;
}

void
gate_destroy(struct vc_gate *g)
{
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
}

void
gate_shared(struct vc_gate *g)
{
	pthread_mutex_lock(&g->lock);
	while (g->exclusive || g->waiting_excl > 0)
		pthread_cond_wait(&g->cond, &g->lock);
	g->shared++;
	pthread_mutex_unlock(&g->lock);
}

bool
gate_try_shared(struct vc_gate *g)
{
	bool ok;

	pthread_mutex_lock(&g->lock);
	ok = !g->exclusive && g->waiting_excl == 0;
	if (ok)
		g->shared++;
	pthread_mutex_unlock(&g->lock);
	return ok;
}

void
gate_exclusive(struct vc_gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->waiting_excl++;
	while (g->exclusive || g->shared > 0)
		pthread_cond_wait(&g->cond, &g->lock);
	g->waiting_excl--;
	g->exclusive = true;
	pthread_mutex_unlock(&g->lock);
}

void
gate_release_shared(struct vc_gate *g)
{
	pthread_mutex_lock(&g->lock);
	if (--g->shared == 0)
		pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

void
gate_release_exclusive(struct vc_gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->exclusive = false;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}
