/*
 * workpool.c - worker threads for synchronous I/O (see workpool.h).
 *
 * Request records are kept on a free list after use, so the pool grows to
 * the peak queue depth once and allocates nothing after that.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "backing.h"
#include "log.h"
#include "workpool.h"

struct work {
	struct work *next;
	enum vc_work_op op;
	struct vc_work_io io;
	vc_io_done done;
	void (*fn)(void *);
	void *arg;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct work *head, *tail, *free;	/* under lock */
	bool running, stopping;			/* under lock */
	pthread_t *threads;
	unsigned nthreads;
} P = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

static __thread bool (*wp_busy)(void);

void
workpool_set_nonblocking(bool (*busy)(void))
{
	wp_busy = busy;
}

bool
workpool_should_offload(void)
{
	return wp_busy != NULL && wp_busy();
}

bool
workpool_nonblocking(void)
{
	return wp_busy != NULL;
}

ssize_t
workpool_run(const struct vc_work_io *io, const void **data)
{
	struct vc_image *img = io->img;
	ssize_t n;

	*data = NULL;
	switch (io->op) {
	case VC_WORK_READ:
		n = backing_read(img, io->len, io->off, data);
		backing_account(img, VC_OP_READ, n);
		break;
	case VC_WORK_WRITE:
		backing_inflight_enter(img);
		n = backing_write(img, io->buf, io->len, io->off, io->rwf,
		    io->durable);
		backing_inflight_leave(img);
		backing_account(img, VC_OP_WRITE, n);
		break;
	default:
		n = backing_flush(img, io->datasync);
		backing_account(img, VC_OP_FSYNC, n);
		break;
	}
	return n;
}

void
workpool_do(const struct vc_work_io *io, vc_io_done done, void *arg)
{
	const void *data;
	ssize_t n = workpool_run(io, &data);

	/* data lives in this thread's buffer: the callback copies it out. */
	done(arg, n, data);
}

static void
wp_run(struct work *w)
{
	if (w->op == VC_WORK_CALL)
		w->fn(w->arg);
	else
		workpool_do(&w->io, w->done, w->arg);
}

static void *
wp_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&P.lock);
	for (;;) {
		struct work *w = P.head;

		if (w == NULL) {
			if (P.stopping)
				break;
			pthread_cond_wait(&P.cond, &P.lock);
			continue;
		}
		P.head = w->next;
		if (P.head == NULL)
			P.tail = NULL;
		pthread_mutex_unlock(&P.lock);
		wp_run(w);
		pthread_mutex_lock(&P.lock);
		w->next = P.free;
		P.free = w;
	}
	pthread_mutex_unlock(&P.lock);
	return NULL;
}

int
workpool_start(unsigned n)
{
	int r = 0;

	P.threads = calloc(n, sizeof(*P.threads));
	if (P.threads == NULL)
		return -ENOMEM;
	for (P.nthreads = 0; P.nthreads < n; P.nthreads++) {
		r = pthread_create(&P.threads[P.nthreads], NULL, wp_main, NULL);
		if (r != 0)
			break;
		pthread_setname_np(P.threads[P.nthreads], "vcpool");
	}
	if (P.nthreads == 0) {
		free(P.threads);
		P.threads = NULL;
		return -r;
	}
	pthread_mutex_lock(&P.lock);
	P.running = true;
	P.stopping = false;
	pthread_mutex_unlock(&P.lock);
	return 0;
}

void
workpool_stop(void)
{
	struct work *w;

	pthread_mutex_lock(&P.lock);
	P.stopping = true;
	pthread_cond_broadcast(&P.cond);
	pthread_mutex_unlock(&P.lock);
	for (unsigned i = 0; i < P.nthreads; i++)
		pthread_join(P.threads[i], NULL);
	free(P.threads);
	P.threads = NULL;
	P.nthreads = 0;
	pthread_mutex_lock(&P.lock);
	P.running = false;
	while ((w = P.free) != NULL) {
		P.free = w->next;
		free(w);
	}
	pthread_mutex_unlock(&P.lock);
}

/* Queue w, or give it back and return -EAGAIN when the pool is stopped. */
static int
wp_queue(struct work *w)
{
	pthread_mutex_lock(&P.lock);
	if (!P.running || P.stopping) {
		pthread_mutex_unlock(&P.lock);
		free(w);
		return -EAGAIN;
	}
	w->next = NULL;
	if (P.tail != NULL)
		P.tail->next = w;
	else
		P.head = w;
	P.tail = w;
	pthread_cond_signal(&P.cond);
	pthread_mutex_unlock(&P.lock);
	return 0;
}

static struct work *
wp_get(void)
{
	struct work *w;

	pthread_mutex_lock(&P.lock);
	w = P.running && !P.stopping ? P.free : NULL;
	if (w != NULL)
		P.free = w->next;
	pthread_mutex_unlock(&P.lock);
	return w != NULL ? w : malloc(sizeof(*w));
}

int
workpool_submit(const struct vc_work_io *io, vc_io_done done, void *arg)
{
	struct work *w = wp_get();

	if (w == NULL)
		return -EAGAIN;
	*w = (struct work){ .op = io->op, .io = *io, .done = done, .arg = arg };
	return wp_queue(w);
}

int
workpool_call(void (*fn)(void *), void *arg)
{
	struct work *w = wp_get();

	if (w == NULL)
		return -EAGAIN;
	*w = (struct work){ .op = VC_WORK_CALL, .fn = fn, .arg = arg };
	return wp_queue(w);
}
