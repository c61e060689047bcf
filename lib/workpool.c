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
	uint64_t start;			/* stats_begin at submission */
	vc_io_done done;
	void (*fn)(void *);
	void *arg;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct work *head, *tail, *free;	/* I/O requests; under lock */
	struct work *chead, *ctail;		/* calls; under lock */
	unsigned ncalls, calls_max;		/* calls running, at most; under lock */
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

/* The op a request is counted as. */
static enum vc_stat_op
wp_stat_op(enum vc_work_op op)
{
	return op == VC_WORK_READ ? VC_STAT_READ :
	    op == VC_WORK_WRITE ? VC_STAT_WRITE : VC_STAT_FLUSH;
}

/* Do io with the backing primitives. */
static ssize_t
wp_exec(const struct vc_work_io *io, const void **data)
{
	*data = NULL;
	switch (io->op) {
	case VC_WORK_READ:
		return backing_read(io->img, io->len, io->off, data);
	case VC_WORK_WRITE:
		return backing_write(io->img, io->buf, io->len, io->off, io->rwf,
		    io->durable);
	default:
		return backing_flush(io->img, io->datasync);
	}
}

/*
 * The end of a request: count it, leave the image (io.c entered it at
 * submission), then reply. Nothing may touch the image after done: the
 * reply lets the client close it, and its last release frees it.
 */
static void
wp_finish(const struct vc_work_io *io, ssize_t n, uint64_t start,
    const void *data, vc_io_done done, void *arg)
{
	stats_end(&io->img->stats, wp_stat_op(io->op), n, start);
	gate_release_shared(&io->img->iogate);
	/* data lives in this thread's buffer: the callback copies it out. */
	done(arg, n, data);
}

ssize_t
workpool_run(const struct vc_work_io *io, const void **data)
{
	uint64_t start = stats_begin(&io->img->stats);
	ssize_t n = wp_exec(io, data);

	stats_end(&io->img->stats, wp_stat_op(io->op), n, start);
	return n;
}

void
workpool_do(const struct vc_work_io *io, vc_io_done done, void *arg)
{
	uint64_t start = stats_begin(&io->img->stats);
	const void *data;
	ssize_t n = wp_exec(io, &data);

	wp_finish(io, n, start, data, done, arg);
}

static void
wp_run(struct work *w)
{
	const void *data;
	ssize_t n;

	if (w->op == VC_WORK_CALL) {
		w->fn(w->arg);
		return;
	}
	n = wp_exec(&w->io, &data);
	wp_finish(&w->io, n, w->start, data, w->done, w->arg);
}

/*
 * The next request for a worker, or NULL. I/O requests come first, and
 * calls (whole FUSE requests, which may wait: for an image quiesced by
 * io_quiesce, say) never take the last worker: a request that entered an
 * image before the quiesce and waits in the queue must still run, or the
 * quiesce would wait for it forever while every worker waits for the
 * quiesce.
 */
static struct work *
wp_next(void)
{
	struct work *w = P.head;

	if (w != NULL) {
		P.head = w->next;
		if (P.head == NULL)
			P.tail = NULL;
		return w;
	}
	w = P.chead;
	if (w == NULL || P.ncalls >= P.calls_max)
		return NULL;
	P.chead = w->next;
	if (P.chead == NULL)
		P.ctail = NULL;
	P.ncalls++;
	return w;
}

static void *
wp_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&P.lock);
	for (;;) {
		struct work *w = wp_next();

		if (w == NULL) {
			if (P.stopping && P.head == NULL && P.chead == NULL)
				break;
			pthread_cond_wait(&P.cond, &P.lock);
			continue;
		}
		pthread_mutex_unlock(&P.lock);
		wp_run(w);
		pthread_mutex_lock(&P.lock);
		if (w->op == VC_WORK_CALL) {
			P.ncalls--;
			if (P.chead != NULL)	/* one that waited for the limit */
				pthread_cond_signal(&P.cond);
		}
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
	/* One worker stays for I/O (see wp_next); a pool of one cannot. */
	P.calls_max = P.nthreads > 1 ? P.nthreads - 1 : 1;
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
	if (w->op == VC_WORK_CALL) {
		if (P.ctail != NULL)
			P.ctail->next = w;
		else
			P.chead = w;
		P.ctail = w;
	} else {
		if (P.tail != NULL)
			P.tail->next = w;
		else
			P.head = w;
		P.tail = w;
	}
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
	int r;

	if (w == NULL)
		return -EAGAIN;
	*w = (struct work){ .op = io->op, .io = *io, .done = done, .arg = arg };
	w->start = stats_begin(&io->img->stats);
	r = wp_queue(w);
	if (r < 0)	/* not taken: the caller counts it where it goes */
		stats_abort(&io->img->stats);
	return r;
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
