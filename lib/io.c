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

ssize_t
io_read(struct vc_image *img, size_t len, off_t off, const void **data)
{
	struct vc_work_io rq = io_req_read(img, len, off);

	return workpool_run(&rq, data);
}

ssize_t
io_write(struct vc_image *img, const void *buf, size_t len, off_t off,
    bool dsync)
{
	struct vc_work_io rq = io_req_write(img, buf, len, off, dsync);
	const void *data;

	if (len > VC_IO_MAX)
		return -EINVAL;	/* the kernel never sends more than max_write */
	if (dsync)
		stats_count(&img->stats.fua_writes, 1);
	return workpool_run(&rq, &data);
}

int
io_fsync(struct vc_image *img, bool datasync)
{
	struct vc_work_io rq = io_req_fsync(img, datasync);
	const void *data;

	/*
	 * A mode that drops flushes (unsafe) keeps dropping them and returns
	 * 0 even if an error was latched: it promises no durability, so a
	 * flush has nothing to report. Nothing latches there anyway (its
	 * flushes never reach the store, and it has no durable size changes).
	 */
	if (!img->policy->flush_forwarded) {
		stats_count(&img->stats.flush_ignored, 1);
		return 0;
	}
	return (int)workpool_run(&rq, &data);
}

int
io_truncate(struct vc_image *img, off_t size)
{
	return backing_truncate(img, size, img->policy->write_durable);
}

int
io_fallocate(struct vc_image *img, int mode, off_t off, off_t len)
{
	uint64_t start = stats_begin(&img->stats);
	int r = backing_fallocate(img, mode, off, len,
	    img->policy->write_durable);

	/* Discards are hole punches; zeroing and allocating count as fallocate. */
	stats_end(&img->stats, (mode & FALLOC_FL_PUNCH_HOLE) ?
	    VC_STAT_DISCARD : VC_STAT_FALLOCATE, r < 0 ? r : (ssize_t)len,
	    start);
	return r;
}

off_t
io_lseek(struct vc_image *img, off_t off, int whence)
{
	return backing_lseek(img, off, whence);
}

ssize_t
io_copy_range(struct vc_image *in, off_t off_in, struct vc_image *out,
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
		ssize_t n = io_read(in, want, off_in + (off_t)done, &data);

		if (n <= 0) {
			if (n < 0 && done == 0) {
				free(chunk);
				return n;
			}
			break;
		}
		memcpy(chunk, data, (size_t)n);
		n = io_write(out, chunk, (size_t)n, off_out + (off_t)done, false);
		if (n < 0) {
			free(chunk);
			return done > 0 ? (ssize_t)done : n;
		}
		done += (size_t)n;
	}
	free(chunk);
	return (ssize_t)done;
}

/* Hand the request to a pool worker; if the pool cannot take it, fail it
 * rather than wait (the caller must not block). */
static void
io_to_pool(const struct vc_work_io *rq, vc_io_done done, void *arg)
{
	if (workpool_submit(rq, done, arg) < 0)
		done(arg, -ENOMEM, NULL);
}

void
io_submit_read(struct vc_image *img, size_t len, off_t off, vc_io_done done,
    void *arg)
{
	bool offload = workpool_should_offload();
	struct vc_work_io rq;
	const void *data = NULL;
	ssize_t n;

	if (len > VC_IO_MAX)
		len = VC_IO_MAX;
	/*
	 * A buffered read the page cache can serve whole is answered here:
	 * the ring or a pool worker would only add a hop.
	 */
	if ((img->uring != NULL || offload) && !img->policy->o_direct) {
		uint64_t start = stats_start();

		if (backing_read_cached(img, len, off, &data, &n)) {
			stats_done(&img->stats, VC_STAT_READ, n, start);
			done(arg, n, data);
			return;
		}
	}
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
	struct vc_work_io rq = io_req_write(img, buf, len, off, dsync);

	/* What the client asked for, whether or not the mode honours it. */
	if (dsync)
		stats_count(&img->stats.fua_writes, 1);
	if (len <= VC_IO_MAX && img->uring != NULL &&
	    uring_write(img->uring, img, buf, len, off, rq.rwf, done, arg) == 0)
		return;
	if (len > VC_IO_MAX) {
		done(arg, -EINVAL, NULL);	/* never more than max_write */
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
	struct vc_work_io rq = io_req_fsync(img, datasync);

	if (!img->policy->flush_forwarded) {	/* unsafe: see io_fsync() */
		stats_count(&img->stats.flush_ignored, 1);
		done(arg, 0, NULL);
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
	if (workpool_should_offload())
		io_to_pool(&rq, done, arg);
	else
		workpool_do(&rq, done, arg);
}
