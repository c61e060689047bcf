/*
 * workpool.c - worker threads for synchronous I/O (see workpool.h).
 *
 * Request records are kept on a free list after use, so the pool grows to
 * the peak queue depth once and allocates nothing after that.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "workpool.h"

struct work {
	struct work *next;
	enum vc_work_op op;
	struct vc_image *img;
	const void *buf;
	size_t len;
	off_t off;
	bool sync;
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

static void
wp_run(struct work *w)
{
	const void *data = NULL;
	ssize_t n;

	switch (w->op) {
	case VC_WORK_CALL:
		w->fn(w->arg);
		return;
	case VC_WORK_READ:
		n = io_read(w->img, w->len, w->off, &data);
		break;
	case VC_WORK_WRITE:
		n = io_write(w->img, w->buf, w->len, w->off, w->sync);
		break;
	default:
		n = io_fsync(w->img, w->sync);
		break;
	}
	/* data lives in this thread's buffer: the callback copies it out. */
	w->done(w->arg, n, data);
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
workpool_submit(enum vc_work_op op, struct vc_image *img, const void *buf,
    size_t len, off_t off, bool sync, vc_io_done done, void *arg)
{
	struct work *w = wp_get();

	if (w == NULL)
		return -EAGAIN;
	*w = (struct work){
		.op = op, .img = img, .buf = buf, .len = len, .off = off,
		.sync = sync, .done = done, .arg = arg,
	};
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
