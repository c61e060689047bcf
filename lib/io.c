/*
 * io.c - data I/O on an open image with its cache mode applied (io.h).
 *
 * The policy layer of a straight path: FUSE op (vcachefs/ops.c) -> here
 * (what the mode asks for: which flags a write gets, whether a flush is
 * forwarded, which engine takes a request and in which thread) -> an
 * engine (workpool.c for aio=threads and for requests that must leave the
 * calling thread, uring.c for aio=native and io_uring) -> the backing
 * primitives (backing.c) -> the done callback, which replies. Nothing
 * below calls back into this file.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "io.h"
#include "log.h"
#include "uring.h"
#include "workpool.h"

void
io_probe_dio_align(int fd, unsigned *align, unsigned *mem_align)
{
	backing_probe_dio_align(fd, align, mem_align);
}

/* Which rwf flags a client write gets: its O_DSYNC unless the mode drops syncs. */
static int
io_write_rwf(const struct vc_image *img, bool dsync)
{
	if (dsync && img->policy->honour_dsync && !img->policy->write_durable)
		return RWF_DSYNC;
	return 0;
}

static struct vc_work_io
io_req_read(struct vc_image *img, size_t len, off_t off)
{
	return (struct vc_work_io){ .op = VC_WORK_READ, .img = img,
	    .len = len, .off = off };
}

static struct vc_work_io
io_req_write(struct vc_image *img, const void *buf, size_t len, off_t off,
    bool dsync)
{
	return (struct vc_work_io){ .op = VC_WORK_WRITE, .img = img,
	    .buf = buf, .len = len, .off = off, .rwf = io_write_rwf(img, dsync),
	    .durable = img->policy->write_durable };
}

static struct vc_work_io
io_req_fsync(struct vc_image *img, bool datasync)
{
	return (struct vc_work_io){ .op = VC_WORK_FSYNC, .img = img,
	    .datasync = datasync };
}

/* Enter img for a synchronous call (it may wait for io_resume). */
static void
io_enter(struct vc_image *img)
{
	gate_shared(&img->iogate);
}

static void
io_leave(struct vc_image *img)
{
	gate_release_shared(&img->iogate);
}

/* Finish a request that never reached an engine: leave, then reply. */
static void
io_reply(struct vc_image *img, vc_io_done done, void *arg, ssize_t res,
    const void *data)
{
	io_leave(img);
	done(arg, res, data);
}

/*
 * Requests that a thread which must not block submitted while their image
 * was quiesced: io_resume submits them again. Only ever used while some
 * image is quiesced, so one list and one lock for all images do.
 */
struct io_parked {
	struct io_parked *next;
	enum vc_work_op op;
	struct vc_image *img;
	const void *buf;
	size_t len;
	off_t off;
	bool sync;			/* write: dsync; fsync: datasync */
	vc_io_done done;
	void *arg;
};

static pthread_mutex_t io_park_lock = PTHREAD_MUTEX_INITIALIZER;
static struct io_parked *io_parked;	/* oldest first; under io_park_lock */

/*
 * Enter img for a submitted request. A thread that must not block (a FUSE
 * ring queue thread: the requests it would stall include other images')
 * does not wait for a quiesced image: it parks the request and returns
 * false; the request is then io_resume's (or already answered ENOMEM).
 */
static bool
io_enter_submit(enum vc_work_op op, struct vc_image *img, const void *buf,
    size_t len, off_t off, bool sync, vc_io_done done, void *arg)
{
	struct io_parked *p, **pp;

	if (!workpool_nonblocking()) {
		io_enter(img);
		return true;
	}
	if (gate_try_shared(&img->iogate))
		return true;
	p = malloc(sizeof(*p));
	if (p == NULL) {
		done(arg, -ENOMEM, NULL);
		return false;
	}
	*p = (struct io_parked){ .op = op, .img = img, .buf = buf, .len = len,
	    .off = off, .sync = sync, .done = done, .arg = arg };
	pthread_mutex_lock(&io_park_lock);
	/* Again under the lock: io_resume opens the gate before it takes
	 * the list, so either this gets in or io_resume finds the request. */
	if (gate_try_shared(&img->iogate)) {
		pthread_mutex_unlock(&io_park_lock);
		free(p);
		return true;
	}
	for (pp = &io_parked; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = p;
	pthread_mutex_unlock(&io_park_lock);
	return false;
}

/* A parked request, submitted again (in a pool worker, which may wait). */
static void
io_unpark(void *arg)
{
	struct io_parked *p = arg;

	switch (p->op) {
	case VC_WORK_READ:
		io_submit_read(p->img, p->len, p->off, p->done, p->arg);
		break;
	case VC_WORK_WRITE:
		io_submit_write(p->img, p->buf, p->len, p->off, p->sync,
		    p->done, p->arg);
		break;
	default:
		io_submit_fsync(p->img, p->sync, p->done, p->arg);
		break;
	}
	free(p);
}

/* Held from io_quiesce() to io_resume(), by the quiescing thread. */
static pthread_mutex_t io_quiesce_one = PTHREAD_MUTEX_INITIALIZER;

int
io_quiesce(struct vc_image *img)
{
	/*
	 * One image at a time, mount-wide: a copy between two images enters
	 * both, so two quiesces at once (a reload's, an overlay's first open,
	 * an upgrade) could each wait for a copy that waits for the other.
	 */
	pthread_mutex_lock(&io_quiesce_one);
	gate_exclusive(&img->iogate);
	return 0;
}

void
io_resume(struct vc_image *img)
{
	struct io_parked *mine = NULL, **tail = &mine, **pp, *p;

	gate_release_exclusive(&img->iogate);
	pthread_mutex_unlock(&io_quiesce_one);
	pthread_mutex_lock(&io_park_lock);
	for (pp = &io_parked; (p = *pp) != NULL;) {
		if (p->img != img) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		p->next = NULL;
		*tail = p;
		tail = &p->next;
	}
	pthread_mutex_unlock(&io_park_lock);
	while ((p = mine) != NULL) {
		mine = p->next;
		/* Not in the caller's thread if the pool can take it: the
		 * caller is the control or reload thread. */
		if (workpool_call(io_unpark, p) < 0)
			io_unpark(p);
	}
}

/* The synchronous calls, for a caller that has entered the image. */
static ssize_t
io_read_entered(struct vc_image *img, size_t len, off_t off,
    const void **data)
{
	struct vc_work_io rq = io_req_read(img, len, off);

	return workpool_run(&rq, data);
}

static ssize_t
io_write_entered(struct vc_image *img, const void *buf, size_t len,
    off_t off, bool dsync)
{
	struct vc_work_io rq = io_req_write(img, buf, len, off, dsync);
	const void *data;

	if (len > VC_IO_MAX)
		return -EINVAL;	/* the kernel never sends more than max_write */
	if (dsync)
		stats_count(&img->stats.fua_writes, 1);
	return workpool_run(&rq, &data);
}

ssize_t
io_read(struct vc_image *img, size_t len, off_t off, const void **data)
{
	ssize_t n;

	io_enter(img);
	n = io_read_entered(img, len, off, data);
	io_leave(img);
	return n;
}

ssize_t
io_write(struct vc_image *img, const void *buf, size_t len, off_t off,
    bool dsync)
{
	ssize_t n;

	io_enter(img);
	n = io_write_entered(img, buf, len, off, dsync);
	io_leave(img);
	return n;
}

int
io_fsync(struct vc_image *img, bool datasync)
{
	struct vc_work_io rq;
	const void *data;
	int r = 0;

	io_enter(img);
	/*
	 * A mode that drops flushes (unsafe) keeps dropping them and returns
	 * 0 even if an error was latched: it promises no durability, so a
	 * flush has nothing to report. Nothing latches there anyway (its
	 * flushes never reach the store, and it has no durable size changes).
	 */
	if (!img->policy->flush_forwarded) {
		stats_count(&img->stats.flush_ignored, 1);
	} else {
		rq = io_req_fsync(img, datasync);
		r = (int)workpool_run(&rq, &data);
	}
	io_leave(img);
	return r;
}

int
io_flush_now(struct vc_image *img)
{
	int r;

	io_enter(img);
	r = backing_flush(img, true);
	io_leave(img);
	return r;
}

int
io_drop_cache(struct vc_image *img)
{
	int r;

	io_enter(img);
	r = backing_flush(img, true);
	/* Only clean pages can go: evict after the flush, not instead. */
	if (r == 0)
		r = backing_drop_cache(img);
	io_leave(img);
	return r;
}

int
io_truncate(struct vc_image *img, off_t size)
{
	int r;

	io_enter(img);
	r = backing_truncate(img, size, img->policy->write_durable);
	io_leave(img);
	return r;
}

int
io_fallocate(struct vc_image *img, int mode, off_t off, off_t len)
{
	uint64_t start;
	int r;

	io_enter(img);
	start = stats_begin(&img->stats);
	r = backing_fallocate(img, mode, off, len, img->policy->write_durable);
	/* Discards are hole punches; zeroing and allocating count as fallocate. */
	stats_end(&img->stats, (mode & FALLOC_FL_PUNCH_HOLE) ?
	    VC_STAT_DISCARD : VC_STAT_FALLOCATE, r < 0 ? r : (ssize_t)len,
	    start);
	io_leave(img);
	return r;
}

off_t
io_lseek(struct vc_image *img, off_t off, int whence)
{
	off_t r;

	io_enter(img);
	r = backing_lseek(img, off, whence);
	io_leave(img);
	return r;
}

static ssize_t
io_copy_entered(struct vc_image *in, off_t off_in, struct vc_image *out,
    off_t off_out, size_t len)
{
	size_t done = 0;

	if (!in->policy->o_direct && !out->policy->o_direct) {
		uint64_t start = stats_start();
		ssize_t n = backing_copy_range(in, off_in, out, off_out, len,
		    out->policy->write_durable);

		stats_done(&in->stats, VC_STAT_READ, n, start);
		stats_done(&out->stats, VC_STAT_WRITE, n, start);
		return n;
	}
	/* The read lands in this thread's buffer, so copy it out first. */
	char *chunk = malloc(VC_IO_MAX);

	if (chunk == NULL)
		return -ENOMEM;
	while (done < len) {
		size_t want = len - done < VC_IO_MAX ? len - done : VC_IO_MAX;
		const void *data;
		ssize_t n = io_read_entered(in, want, off_in + (off_t)done,
		    &data);

		if (n <= 0) {
			if (n < 0 && done == 0) {
				free(chunk);
				return n;
			}
			break;
		}
		memcpy(chunk, data, (size_t)n);
		n = io_write_entered(out, chunk, (size_t)n,
		    off_out + (off_t)done, false);
		if (n < 0) {
			free(chunk);
			return done > 0 ? (ssize_t)done : n;
		}
		done += (size_t)n;
	}
	free(chunk);
	return (ssize_t)done;
}

ssize_t
io_copy_range(struct vc_image *in, off_t off_in, struct vc_image *out,
    off_t off_out, size_t len)
{
	ssize_t n;

	io_enter(in);
	if (out != in)
		io_enter(out);
	n = io_copy_entered(in, off_in, out, off_out, len);
	if (out != in)
		io_leave(out);
	io_leave(in);
	return n;
}

/* Hand the request to a pool worker; if the pool cannot take it, fail it
 * rather than wait (the caller must not block). */
static void
io_to_pool(const struct vc_work_io *rq, vc_io_done done, void *arg)
{
	if (workpool_submit(rq, done, arg) < 0)
		io_reply(rq->img, done, arg, -ENOMEM, NULL);
}

void
io_submit_read(struct vc_image *img, size_t len, off_t off, vc_io_done done,
    void *arg)
{
	bool offload;
	struct vc_work_io rq;
	const void *data = NULL;
	ssize_t n;

	if (len > VC_IO_MAX)
		len = VC_IO_MAX;
	if (!io_enter_submit(VC_WORK_READ, img, NULL, len, off, false, done,
	    arg))
		return;
	offload = workpool_should_offload();
	/*
	 * A buffered read the page cache can serve whole is answered here:
	 * the ring or a pool worker would only add a hop.
	 */
	if ((img->uring != NULL || offload) && !img->policy->o_direct) {
		uint64_t start = stats_start();

		if (backing_read_cached(img, len, off, &data, &n)) {
			stats_done(&img->stats, VC_STAT_READ, n, start);
			io_reply(img, done, arg, n, data);
			return;
		}
	}
	/* From here on the engine finishes the request (and leaves img). */
	if (img->uring != NULL && uring_read(img->uring, img, len, off, done,
	    arg) == 0)
		return;
	rq = io_req_read(img, len, off);
	if (offload)
		io_to_pool(&rq, done, arg);
	else
		workpool_do(&rq, done, arg);
}

/*
 * Buffered writes are done in the calling thread, whatever the engine:
 * their payload lives in the request buffer, so the thread must wait for
 * them or copy them, and waiting through the ring costs two more thread
 * hops than writing to the page cache directly (measured: make bench).
 * A thread that must not block still sends writes that wait for the disk
 * (O_DIRECT, or made durable before the reply) to the pool.
 */
void
io_submit_write(struct vc_image *img, const void *buf, size_t len, off_t off,
    bool dsync, vc_io_done done, void *arg)
{
	struct vc_work_io rq;

	if (!io_enter_submit(VC_WORK_WRITE, img, buf, len, off, dsync, done,
	    arg))
		return;
	rq = io_req_write(img, buf, len, off, dsync);
	/* What the client asked for, whether or not the mode honours it. */
	if (dsync)
		stats_count(&img->stats.fua_writes, 1);
	if (len <= VC_IO_MAX && img->uring != NULL &&
	    uring_write(img->uring, img, buf, len, off, rq.rwf, done, arg) == 0)
		return;
	if (len > VC_IO_MAX) {
		/* the kernel never sends more than max_write */
		io_reply(img, done, arg, -EINVAL, NULL);
		return;
	}
	if (workpool_should_offload() && (img->policy->o_direct || rq.rwf != 0 ||
	    img->policy->write_durable))
		io_to_pool(&rq, done, arg);
	else
		workpool_do(&rq, done, arg);
}

void
io_submit_fsync(struct vc_image *img, bool datasync, vc_io_done done,
    void *arg)
{
	struct vc_work_io rq;

	if (!io_enter_submit(VC_WORK_FSYNC, img, NULL, 0, 0, datasync, done,
	    arg))
		return;
	if (!img->policy->flush_forwarded) {	/* unsafe: see io_fsync() */
		stats_count(&img->stats.flush_ignored, 1);
		io_reply(img, done, arg, 0, NULL);
		return;
	}
	/*
	 * aio=io_uring flushes through the ring (IORING_OP_FSYNC). aio=native
	 * flushes in a worker, as QEMU's native AIO flushes in its thread
	 * pool: a flush cannot run without blocking, so the ring would only
	 * add hops through the engine and an io-wq thread.
	 */
	if (img->uring != NULL && img->aio == VC_AIO_IO_URING &&
	    uring_fsync(img->uring, img, datasync, done, arg) == 0)
		return;
	rq = io_req_fsync(img, datasync);
	if (workpool_should_offload())
		io_to_pool(&rq, done, arg);
	else
		workpool_do(&rq, done, arg);
}
