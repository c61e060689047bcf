/*
 * backing.c - primitives on an image's backing descriptor (backing.h).
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

#include "backing.h"
#include "fault.h"
#include "io.h"
#include "log.h"

#define BACKING_DEFAULT_ALIGN 4096u

static pthread_key_t backing_buf_key;
static pthread_once_t backing_buf_once = PTHREAD_ONCE_INIT;

static void
backing_buf_free(void *p)
{
	free(p);
}

static void
backing_buf_key_init(void)
{
	if (pthread_key_create(&backing_buf_key, backing_buf_free) != 0)
		fatalx("pthread_key_create failed");
}

void *
backing_buf(void)
{
	void *p;

	pthread_once(&backing_buf_once, backing_buf_key_init);
	p = pthread_getspecific(backing_buf_key);
	if (p != NULL)
		return p;
	if (posix_memalign(&p, VC_IO_MAXALIGN, VC_IO_BUF_SIZE) != 0)
		return NULL;
	pthread_setspecific(backing_buf_key, p);
	return p;
}

void
backing_probe_dio_align(int fd, unsigned *align, unsigned *mem_align)
{
	struct statx stx;

	*align = BACKING_DEFAULT_ALIGN;
	*mem_align = BACKING_DEFAULT_ALIGN;
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

int
backing_fd_get(struct vc_image *img)
{
	pthread_rwlock_rdlock(&img->fdlock);
	return img->fd;
}

void
backing_fd_put(struct vc_image *img)
{
	pthread_rwlock_unlock(&img->fdlock);
}

ssize_t
backing_pread_full(int fd, void *buf, size_t len, off_t off)
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

ssize_t
backing_pwrite_full(int fd, const void *buf, size_t len, off_t off, int rwf)
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
backing_latch(struct vc_image *img, int r)
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

int
backing_sync(int fd, bool datasync)
{
	int r = fault_hit(VC_FAULT_FSYNC);

	if (r == 0 && (datasync ? fdatasync(fd) : fsync(fd)) == -1)
		r = -errno;
	return r;
}

/* A durable mode's sync after a size change: its failure is latched, as
 * the data it should have made durable may be gone; returns 0 or -errno. */
static int
backing_sync_meta(struct vc_image *img, int fd)
{
	int r = backing_sync(fd, true);

	if (r < 0)
		backing_latch(img, r);
	return r;
}

ssize_t
backing_read(struct vc_image *img, size_t len, off_t off, const void **data)
{
	char *buf = backing_buf();
	ssize_t n;
	int fd;

	if (buf == NULL)
		return -ENOMEM;
	if (len > VC_IO_MAX)
		len = VC_IO_MAX;
	fd = backing_fd_get(img);
	if (!img->policy->o_direct) {
		n = backing_pread_full(fd, buf, len, off);
		*data = buf;
	} else {
		unsigned a = img->dio_align;
		off_t start = backing_align_down(off, a);
		off_t end = backing_align_up(off + (off_t)len, a);
		size_t head = (size_t)(off - start);

		if (start != off || end != off + (off_t)len)
			stats_count(&img->stats.bounced, 1);
		gate_shared(&img->sizelock);
		n = backing_pread_full(fd, buf, (size_t)(end - start), start);
		gate_release_shared(&img->sizelock);
		if (n >= 0) {
			n = n > (ssize_t)head ? n - (ssize_t)head : 0;
			if (n > (ssize_t)len)
				n = (ssize_t)len;
		}
		*data = buf + head;
	}
	backing_fd_put(img);
	return n;
}

bool
backing_read_cached(struct vc_image *img, size_t len, off_t off,
    const void **data, ssize_t *n)
{
	char *buf = backing_buf();
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct stat st;
	int fd;

	if (buf == NULL)
		return false;
	fd = backing_fd_get(img);
	*n = preadv2(fd, &iov, 1, off, RWF_NOWAIT);
	/* A short count may be end of file, or pages not cached: ask. */
	if (*n >= 0 && (size_t)*n < len &&
	    (fstat(fd, &st) == -1 || off + *n < st.st_size))
		*n = -1;
	backing_fd_put(img);
	if (*n < 0)
		return false;
	*data = buf;
	return true;
}

/* Fill one aligned block of buf from the file, zeroes past end of file. */
static int
backing_fill_block(int fd, char *blk, unsigned a, off_t boff)
{
	ssize_t n = backing_pread_full(fd, blk, a, boff);

	if (n < 0)
		return (int)n;
	memset(blk + n, 0, a - (size_t)n);
	return 0;
}

static void
backing_gate_release(struct vc_image *img, bool exclusive)
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
backing_write_direct(struct vc_image *img, int fd, const void *src,
    size_t len, off_t off, int rwf, bool durable)
{
	unsigned a = img->dio_align;
	off_t start = backing_align_down(off, a);
	off_t end = backing_align_up(off + (off_t)len, a);
	off_t last = end - a;
	bool head_rmw = start != off;
	bool tail_rmw = end != off + (off_t)len;
	bool extend = false, extend_locked = false;
	struct vc_range claim;
	off_t oldsize = 0;
	char *buf = backing_buf();
	ssize_t n;
	int err = 0;

	if (buf == NULL)
		return -ENOMEM;
	if (head_rmw || tail_rmw)
		stats_count(&img->stats.bounced, 1);
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
			backing_gate_release(img, extend_locked);
			return err;
		}
	}

	/* Its edge blocks and its range, in one step (rangelock.h). */
	rangelock_lock(&img->rmw, &claim, start, end, head_rmw ? start : -1,
	    tail_rmw && !(head_rmw && last == start) ? last : -1);

	if (head_rmw)
		err = backing_fill_block(fd, buf, a, start);
	if (err == 0 && tail_rmw && !(head_rmw && last == start))
		err = backing_fill_block(fd, buf + (last - start), a, last);
	if (err == 0) {
		memcpy(buf + (off - start), src, len);
		n = backing_pwrite_full(fd, buf, (size_t)(end - start), start,
		    rwf);
		if (n < 0)
			err = (int)n;
	}
	if (err == 0 && extend) {
		off_t want = off + (off_t)len > oldsize ? off + (off_t)len : oldsize;

		if (ftruncate(fd, want) == -1)
			err = -errno;
		else if (rwf & RWF_DSYNC || durable)
			err = backing_sync_meta(img, fd);	/* the new size too */
	}

	rangelock_unlock(&img->rmw, &claim);
	backing_gate_release(img, extend_locked);
	return err < 0 ? err : (ssize_t)len;
}

ssize_t
backing_write(struct vc_image *img, const void *buf, size_t len, off_t off,
    int rwf, bool durable)
{
	ssize_t n;
	int fd;

	if (len > VC_IO_MAX)
		return -EINVAL;	/* the kernel never sends more than max_write */
	fd = backing_fd_get(img);
	if (img->policy->o_direct)
		n = backing_write_direct(img, fd, buf, len, off, rwf, durable);
	else
		n = backing_pwrite_full(fd, buf, len, off, rwf);
	backing_fd_put(img);
	return n;
}

int
backing_flush(struct vc_image *img, bool datasync)
{
	int fd = backing_fd_get(img);
	/* Synced even when an error is latched: what can still reach the
	 * store does, but the flush reports the error all the same. */
	int r = backing_latch(img, backing_sync(fd, datasync));

	backing_fd_put(img);
	return r;
}

int
backing_drop_cache(struct vc_image *img)
{
	int fd = backing_fd_get(img);
	int r = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);

	backing_fd_put(img);
	return -r;	/* posix_fadvise returns the error number itself */
}

/* Size and allocation changes: durable at once where writes are. */
static int
backing_meta_done(struct vc_image *img, int fd, bool durable)
{
	return durable ? backing_sync_meta(img, fd) : 0;
}

int
backing_truncate(struct vc_image *img, off_t size, bool durable)
{
	int fd, r = 0;

	fd = backing_fd_get(img);
	gate_exclusive(&img->sizelock);
	if (ftruncate(fd, size) == -1)
		r = -errno;
	else
		r = backing_meta_done(img, fd, durable);
	gate_release_exclusive(&img->sizelock);
	backing_fd_put(img);
	return r;
}

int
backing_fallocate(struct vc_image *img, int mode, off_t off, off_t len,
    bool durable)
{
	int fd, r = 0;

	fd = backing_fd_get(img);
	gate_exclusive(&img->sizelock);
	if (fallocate(fd, mode, off, len) == -1)
		r = -errno;
	else
		r = backing_meta_done(img, fd, durable);
	gate_release_exclusive(&img->sizelock);
	backing_fd_put(img);
	return r;
}

off_t
backing_lseek(struct vc_image *img, off_t off, int whence)
{
	off_t r;
	int fd;

	fd = backing_fd_get(img);
	r = lseek(fd, off, whence);
	if (r == -1)
		r = -errno;
	backing_fd_put(img);
	return r;
}

ssize_t
backing_copy_range(struct vc_image *in, off_t off_in, struct vc_image *out,
    off_t off_out, size_t len, bool durable)
{
	int fdin, fdout;
	ssize_t n;

	fdin = backing_fd_get(in);
	fdout = backing_fd_get(out);
	n = copy_file_range(fdin, &off_in, fdout, &off_out, len, 0);
	if (n == -1)
		n = -errno;
	else if (durable) {
		int r = backing_sync_meta(out, fdout);

		if (r < 0)
			n = r;
	}
	backing_fd_put(out);
	backing_fd_put(in);
	return n;
}
