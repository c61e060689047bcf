/*
 * io.c - data I/O on an open image with its cache mode applied (io.h).
 *
 * Buffered modes forward each request as one positioned read or write.
 * O_DIRECT modes need offset, length and buffer aligned to the backing
 * store's DIO alignment, while the kernel hands us requests at any offset
 * and libfuse hands us write payloads at unaligned addresses. So requests
 * go through a per-thread aligned bounce buffer: reads are widened to
 * aligned bounds and the reply points into the buffer (no extra copy),
 * writes are copied once into the buffer and unaligned edge blocks are
 * read-modify-written, excluding other writes to those blocks
 * (rangelock.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fault.h"
#include "io.h"
#include "io_priv.h"
#include "uring.h"
#include "workpool.h"
#include "log.h"

#define IO_BUF_SIZE	VC_IO_BUF_SIZE
#define IO_DEFAULT_ALIGN 4096u

static pthread_key_t io_buf_key;
static pthread_once_t io_buf_once = PTHREAD_ONCE_INIT;

static void
io_buf_free(void *p)
{
	free(p);
}

static void
io_buf_key_init(void)
{
	if (pthread_key_create(&io_buf_key, io_buf_free) != 0)
		fatalx("pthread_key_create failed");
}

/* The calling thread's bounce buffer, made at its first request. */
static void *
io_buf(void)
{
	void *p;

	pthread_once(&io_buf_once, io_buf_key_init);
	p = pthread_getspecific(io_buf_key);
	if (p != NULL)
		return p;
	if (posix_memalign(&p, VC_IO_MAXALIGN, IO_BUF_SIZE) != 0)
		return NULL;
	pthread_setspecific(io_buf_key, p);
	return p;
}


void
io_probe_dio_align(int fd, unsigned *align, unsigned *mem_align)
{
	struct statx stx;

	*align = IO_DEFAULT_ALIGN;
	*mem_align = IO_DEFAULT_ALIGN;
#ifdef STATX_DIOALIGN
	/* Linux 6.1+ reports it for filesystems that know; 0 means "unknown". */
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align != 0) {
		*align = stx.stx_dio_offset_align;
		*mem_align = stx.stx_dio_mem_align ? stx.stx_dio_mem_align : 1;
		return;
	}
#else
	(void)stx;
#endif
	/* No answer from the kernel: 4096 satisfies every common device. */
	(void)fd;
}

/* Full positioned read: retries short counts until EOF. */
static ssize_t
io_pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, off + done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Full positioned write; rwf is passed to pwritev2 (RWF_DSYNC or 0). */
static ssize_t
io_pwrite_full(int fd, const void *buf, size_t len, off_t off, int rwf)
{
	size_t done = 0;

	while (done < len) {
		struct iovec iov = {
			.iov_base = (char *)buf + done, .iov_len = len - done
		};
		ssize_t n = pwritev2(fd, &iov, 1, off + done, rwf);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;	/* no progress: never spin */
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int
io_wb_result(struct vc_image *img, int r)
{
	int first = 0;

	if (r < 0 && __atomic_compare_exchange_n(&img->wb_err, &first, r,
	    false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		log_warnc(r, "%s: backing sync failed; every flush of the image "
		    "fails from now on, until it is closed", img->relpath);
		return r;
	}
	first = __atomic_load_n(&img->wb_err, __ATOMIC_ACQUIRE);
	return first != 0 ? first : r;
}

/* fdatasync or fsync of a backing descriptor (with the test fault hook):
 * 0 or -errno. */
static int
io_sync_fd(int fd, bool datasync)
{
	int r = fault_hit(VC_FAULT_FSYNC);

	if (r == 0 && (datasync ? fdatasync(fd) : fsync(fd)) == -1)
		r = -errno;
	return r;
}

/* A durable mode's sync after a size change: its failure is latched, as
 * the data it should have made durable may be gone; returns 0 or -errno. */
static int
io_sync_meta(struct vc_image *img, int fd)
{
	int r = io_sync_fd(fd, true);

	if (r < 0)
		io_wb_result(img, r);
	return r;
}

static void
io_fd_get(struct vc_image *img, int *fd)
{
	pthread_rwlock_rdlock(&img->fdlock);
	*fd = img->fd;
}

static void
io_fd_put(struct vc_image *img)
{
	pthread_rwlock_unlock(&img->fdlock);
}

ssize_t
io_read(struct vc_image *img, size_t len, off_t off, const void **data)
{
	char *buf = io_buf();
	ssize_t n;
	int fd;

	if (buf == NULL)
		return -ENOMEM;
	if (len > VC_IO_MAX)
		len = VC_IO_MAX;
	io_fd_get(img, &fd);
	if (!img->policy->o_direct) {
		n = io_pread_full(fd, buf, len, off);
		*data = buf;
	} else {
		unsigned a = img->dio_align;
		off_t start = io_align_down(off, a);
		off_t end = io_align_up(off + (off_t)len, a);
		size_t head = (size_t)(off - start);

		gate_shared(&img->sizelock);
		n = io_pread_full(fd, buf, (size_t)(end - start), start);
		gate_release_shared(&img->sizelock);
		if (n >= 0) {
			n = n > (ssize_t)head ? n - (ssize_t)head : 0;
			if (n > (ssize_t)len)
				n = (ssize_t)len;
		}
		*data = buf + head;
	}
	io_fd_put(img);
	io_account(img, VC_OP_READ, n);
	return n;
}

/* Fill one aligned block of buf from the file, zeroes past end of file. */
static int
io_fill_block(int fd, char *blk, unsigned a, off_t boff)
{
	ssize_t n = io_pread_full(fd, blk, a, boff);

	if (n < 0)
		return (int)n;
	memset(blk + n, 0, a - (size_t)n);
	return 0;
}

static void
io_gate_release(struct vc_image *img, bool exclusive)
{
	if (exclusive)
		gate_release_exclusive(&img->sizelock);
	else
		gate_release_shared(&img->sizelock);
}

/*
 * O_DIRECT write through the bounce buffer. Edge blocks that the request
 * covers only in part are read first; the write claims its range and
 * those blocks meanwhile, so that no other write to them runs in between.
 * If the padded tail reaches past end of file, the file is cut back to
 * max(old size, off + len) under sizelock held for writing.
 */
static ssize_t
io_write_direct(struct vc_image *img, int fd, const void *src, size_t len,
    off_t off, int rwf)
{
	unsigned a = img->dio_align;
	off_t start = io_align_down(off, a);
	off_t end = io_align_up(off + (off_t)len, a);
	off_t last = end - a;
	bool head_rmw = start != off;
	bool tail_rmw = end != off + (off_t)len;
	bool extend = false, extend_locked = false;
	struct vc_range claim;
	off_t oldsize = 0;
	char *buf = io_buf();
	ssize_t n;
	int err = 0;

	if (buf == NULL)
		return -ENOMEM;
	/*
	 * Size only shrinks under sizelock held for writing, so a tail that
	 * lies inside the file under the read lock stays inside. Otherwise
	 * the padded tail passes EOF: take the lock for writing and look again.
	 */
	gate_shared(&img->sizelock);
	if (tail_rmw) {
		struct stat st;

		if (fstat(fd, &st) == -1)
			err = -errno;
		else if (end > st.st_size) {
			gate_release_shared(&img->sizelock);
			gate_exclusive(&img->sizelock);
			extend_locked = true;
			if (fstat(fd, &st) == -1)
				err = -errno;
			extend = end > st.st_size;
			oldsize = st.st_size;
		}
		if (err < 0) {
			io_gate_release(img, extend_locked);
			return err;
		}
	}

	/* Its edge blocks and its range, in one step (rangelock.h). */
	rangelock_lock(&img->rmw, &claim, start, end, head_rmw ? start : -1,
	    tail_rmw && !(head_rmw && last == start) ? last : -1);

	if (head_rmw)
		err = io_fill_block(fd, buf, a, start);
	if (err == 0 && tail_rmw && !(head_rmw && last == start))
		err = io_fill_block(fd, buf + (last - start), a, last);
	if (err == 0) {
		memcpy(buf + (off - start), src, len);
		n = io_pwrite_full(fd, buf, (size_t)(end - start), start, rwf);
		if (n < 0)
			err = (int)n;
	}
	if (err == 0 && extend) {
		off_t want = off + (off_t)len > oldsize ? off + (off_t)len : oldsize;

		if (ftruncate(fd, want) == -1)
			err = -errno;
		else if (rwf & RWF_DSYNC || img->policy->write_durable)
			err = io_sync_meta(img, fd);	/* the new size too */
	}

	rangelock_unlock(&img->rmw, &claim);
	io_gate_release(img, extend_locked);
	return err < 0 ? err : (ssize_t)len;
}

void
io_inflight_enter(struct vc_image *img)
{
	uint64_t cur = STAT_ADD(img, writes_inflight, 1);
	uint64_t max = __atomic_load_n(&img->stats.writes_inflight_max,
	    __ATOMIC_RELAXED);

	while (cur > max && !__atomic_compare_exchange_n(
	    &img->stats.writes_inflight_max, &max, cur, true,
	    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void
io_inflight_leave(struct vc_image *img)
{
	STAT_ADD(img, writes_inflight, (uint64_t)-1);
}

void
io_account(struct vc_image *img, int op, ssize_t res)
{
	if (res < 0) {
		STAT_ADD(img, errors, 1);
		return;
	}
	switch (op) {
	case VC_OP_READ:
		STAT_ADD(img, reads, 1);
		STAT_ADD(img, bytes_read, (uint64_t)res);
		break;
	case VC_OP_WRITE:
		STAT_ADD(img, writes, 1);
		STAT_ADD(img, bytes_written, (uint64_t)res);
		break;
	default:
		STAT_ADD(img, fsyncs, 1);
		break;
	}
}

static int io_write_rwf(const struct vc_image *img, bool dsync);

ssize_t
io_write(struct vc_image *img, const void *buf, size_t len, off_t off,
    bool dsync)
{
	int rwf;
	ssize_t n;
	int fd;

	if (len > VC_IO_MAX)
		return -EINVAL;	/* the kernel never sends more than max_write */
	rwf = io_write_rwf(img, dsync);
	io_inflight_enter(img);
	io_fd_get(img, &fd);
	if (img->policy->o_direct)
		n = io_write_direct(img, fd, buf, len, off, rwf);
	else
		n = io_pwrite_full(fd, buf, len, off, rwf);
	io_fd_put(img);
	io_inflight_leave(img);
	io_account(img, VC_OP_WRITE, n);
	return n;
}

int
io_fsync(struct vc_image *img, bool datasync)
{
	int fd, r = 0;

	/*
	 * A mode that drops flushes (unsafe) keeps dropping them and returns
	 * 0 even if an error was latched: it promises no durability, so a
	 * flush has nothing to report. Nothing latches there anyway (its
	 * flushes never reach the store, and it has no durable size changes).
	 */
	if (!img->policy->flush_forwarded) {
		STAT_ADD(img, fsyncs_dropped, 1);
		return 0;
	}
	/* Synced even when an error is latched: what can still reach the
	 * store does, but the flush reports the error all the same. */
	io_fd_get(img, &fd);
	r = io_wb_result(img, io_sync_fd(fd, datasync));
	io_fd_put(img);
	io_account(img, VC_OP_FSYNC, r);
	return r;
}

/* Size and allocation changes: durable at once where writes are. */
static int
io_meta_done(struct vc_image *img, int fd)
{
	return img->policy->write_durable ? io_sync_meta(img, fd) : 0;
}

int
io_truncate(struct vc_image *img, off_t size)
{
	int fd, r = 0;

	io_fd_get(img, &fd);
	gate_exclusive(&img->sizelock);
	if (ftruncate(fd, size) == -1)
		r = -errno;
	else
		r = io_meta_done(img, fd);
	gate_release_exclusive(&img->sizelock);
	io_fd_put(img);
	return r;
}

int
io_fallocate(struct vc_image *img, int mode, off_t off, off_t len)
{
	int fd, r = 0;

	io_fd_get(img, &fd);
	gate_exclusive(&img->sizelock);
	if (fallocate(fd, mode, off, len) == -1)
		r = -errno;
	else
		r = io_meta_done(img, fd);
	gate_release_exclusive(&img->sizelock);
	io_fd_put(img);
	return r;
}

off_t
io_lseek(struct vc_image *img, off_t off, int whence)
{
	off_t r;
	int fd;

	io_fd_get(img, &fd);
	r = lseek(fd, off, whence);
	if (r == -1)
		r = -errno;
	io_fd_put(img);
	return r;
}

ssize_t
io_copy_range(struct vc_image *in, off_t off_in, struct vc_image *out,
    off_t off_out, size_t len)
{
	size_t done = 0;

	if (!in->policy->o_direct && !out->policy->o_direct) {
		int fdin, fdout;
		ssize_t n;

		io_fd_get(in, &fdin);
		io_fd_get(out, &fdout);
		n = copy_file_range(fdin, &off_in, fdout, &off_out, len, 0);
		if (n == -1)
			n = -errno;
		else if (out->policy->write_durable) {
			int r = io_sync_meta(out, fdout);

			if (r < 0)
				n = r;
		}
		io_fd_put(out);
		io_fd_put(in);
		if (n >= 0)
			STAT_ADD(out, bytes_written, (uint64_t)n);
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

/* Which rwf flags a client write gets: its O_DSYNC unless the mode drops syncs. */
static int
io_write_rwf(const struct vc_image *img, bool dsync)
{
	if (dsync && img->policy->honour_dsync && !img->policy->write_durable)
		return RWF_DSYNC;
	return 0;
}

/*
 * Read from the page cache only (RWF_NOWAIT). True, with *n and *data set,
 * when it served the whole request or reached end of file; false when the
 * ring should do it.
 */
static bool
io_read_cached(struct vc_image *img, size_t len, off_t off,
    const void **data, ssize_t *n)
{
	char *buf = io_buf();
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct stat st;
	int fd;

	if (buf == NULL)
		return false;
	io_fd_get(img, &fd);
	*n = preadv2(fd, &iov, 1, off, RWF_NOWAIT);
	/* A short count may be end of file, or pages not cached: ask. */
	if (*n >= 0 && (size_t)*n < len &&
	    (fstat(fd, &st) == -1 || off + *n < st.st_size))
		*n = -1;
	io_fd_put(img);
	if (*n < 0)
		return false;
	*data = buf;
	io_account(img, VC_OP_READ, *n);
	return true;
}

/* Hand the request to a pool worker; if the pool cannot take it, fail it
 * rather than wait (the caller must not block). */
static void
io_to_pool(enum vc_work_op op, struct vc_image *img, const void *buf,
    size_t len, off_t off, bool sync, vc_io_done done, void *arg)
{
	if (workpool_submit(op, img, buf, len, off, sync, done, arg) < 0)
		done(arg, -ENOMEM, NULL);
}

void
io_submit_read(struct vc_image *img, size_t len, off_t off, vc_io_done done,
    void *arg)
{
	bool offload = workpool_should_offload();
	const void *data = NULL;
	ssize_t n;

	if (len > VC_IO_MAX)
		len = VC_IO_MAX;
	/*
	 * A buffered read the page cache can serve whole is answered here:
	 * the ring or a pool worker would only add a hop.
	 */
	if ((img->uring != NULL || offload) && !img->policy->o_direct &&
	    io_read_cached(img, len, off, &data, &n)) {
		done(arg, n, data);
		return;
	}
	if (img->uring != NULL && uring_read(img->uring, img, len, off, done,
	    arg) == 0)
		return;
	if (offload) {
		io_to_pool(VC_WORK_READ, img, NULL, len, off, false, done, arg);
		return;
	}
	n = io_read(img, len, off, &data);
	done(arg, n, data);
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
	int rwf = io_write_rwf(img, dsync);

	if (len <= VC_IO_MAX && img->uring != NULL &&
	    uring_write(img->uring, img, buf, len, off, rwf, done, arg) == 0)
		return;
	if (workpool_should_offload() && (img->policy->o_direct || rwf != 0 ||
	    img->policy->write_durable)) {
		io_to_pool(VC_WORK_WRITE, img, buf, len, off, dsync, done, arg);
		return;
	}
	done(arg, io_write(img, buf, len, off, dsync), NULL);
}

void
io_submit_fsync(struct vc_image *img, bool datasync, vc_io_done done,
    void *arg)
{
	if (!img->policy->flush_forwarded) {	/* unsafe: see io_fsync() */
		STAT_ADD(img, fsyncs_dropped, 1);
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
	if (workpool_should_offload()) {
		io_to_pool(VC_WORK_FSYNC, img, NULL, 0, 0, datasync, done, arg);
		return;
	}
	done(arg, io_fsync(img, datasync), NULL);
}

/*
 * Q-STUB: minimal io_flush_now/io_drop_cache (the design's interface) so
 * the control socket builds and runs before P's versions land; at merge
 * take P's and drop these.
 */
int
io_flush_now(struct vc_image *img)
{
	int fd, r;

	io_fd_get(img, &fd);
	r = io_wb_result(img, io_sync_fd(fd, true));
	io_fd_put(img);
	return r;
}

int
io_drop_cache(struct vc_image *img)
{
	int fd, r = io_flush_now(img);

	if (r < 0)
		return r;
	io_fd_get(img, &fd);
	r = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	io_fd_put(img);
	return -r;
}
