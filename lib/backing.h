/*
 * backing.h - the bottom of the I/O path: primitives on an image's
 * backing descriptor.
 *
 * The path is a straight line: io.c (the cache mode's policy) hands a
 * request to an engine (workpool.c for aio=threads, uring.c for
 * aio=native and io_uring), and the engines do it with these. Nothing
 * here calls back up: no engine, no policy decision beyond how the
 * descriptor was opened (O_DIRECT or not, img->policy->o_direct).
 *
 * Each function that takes an image and no descriptor takes the image's
 * backing descriptor under fdlock itself, and the caller must have entered
 * the image (io.h: img->iogate held shared), so that img->fd, img->policy
 * and the alignments stay put. All return bytes or 0, or -errno as the
 * backing store gave it. Not for use outside lib/.
 */
#ifndef VC_BACKING_H
#define VC_BACKING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "image.h"

static inline off_t
backing_align_down(off_t v, unsigned a)
{
	return v & ~((off_t)a - 1);
}

static inline off_t
backing_align_up(off_t v, unsigned a)
{
	return (v + a - 1) & ~((off_t)a - 1);
}

/* Whether [off, off + len) needs widening to img's O_DIRECT alignment. */
static inline bool
backing_unaligned(const struct vc_image *img, size_t len, off_t off)
{
	return backing_align_down(off, img->dio_align) != off ||
	    backing_align_down((off_t)len, img->dio_align) != (off_t)len;
}

/* The calling thread's aligned bounce buffer (VC_IO_BUF_SIZE), made at
 * its first use; NULL when out of memory. */
void *backing_buf(void);

/* Probe the O_DIRECT alignment of a descriptor (io_probe_dio_align). */
void backing_probe_dio_align(int fd, unsigned *align, unsigned *mem_align);

/* Take and give back img's backing descriptor (fdlock held for reading). */
int backing_fd_get(struct vc_image *img);
void backing_fd_put(struct vc_image *img);

/* Full positioned read (short only at end of file) and write (rwf for
 * pwritev2: RWF_DSYNC or 0) on a descriptor. */
ssize_t backing_pread_full(int fd, void *buf, size_t len, off_t off);
ssize_t backing_pwrite_full(int fd, const void *buf, size_t len, off_t off,
    int rwf);

/*
 * Read len bytes at off (at most VC_IO_MAX). *data points into the calling
 * thread's bounce buffer, valid until its next backing call. O_DIRECT
 * reads are widened to aligned bounds under the size gate.
 */
ssize_t backing_read(struct vc_image *img, size_t len, off_t off,
    const void **data);
/*
 * Read from the page cache only (RWF_NOWAIT), for buffered images. True,
 * with *n and *data set, when it served the whole request or reached end
 * of file; false when the caller must do a real read.
 */
bool backing_read_cached(struct vc_image *img, size_t len, off_t off,
    const void **data, ssize_t *n);
/*
 * Write len bytes at off (at most VC_IO_MAX) with pwritev2 flags rwf.
 * durable: the mode makes every write durable, so a size change an
 * O_DIRECT tail write makes is synced too. O_DIRECT writes go through
 * the bounce buffer, with unaligned edge blocks read-modify-written
 * under the image's range lock.
 */
ssize_t backing_write(struct vc_image *img, const void *buf, size_t len,
    off_t off, int rwf, bool durable);
/* A guest flush forwarded: sync the descriptor (with the fault hook) and
 * latch a failure (backing_latch). */
int backing_flush(struct vc_image *img, bool datasync);

/* Evict the descriptor's pages from the host page cache (clean ones:
 * the caller synced first). */
int backing_drop_cache(struct vc_image *img);

/*
 * The result of a backing sync that covers guest data (a guest flush, or
 * the fdatasync that makes a durable mode's size change durable): a
 * failure r < 0 is latched in img->wb_err if it is the first. Returns the
 * latched error if there is one, else r.
 */
int backing_latch(struct vc_image *img, int r);
/* fdatasync or fsync of a descriptor, through the test fault hook. */
int backing_sync(int fd, bool datasync);

/* Size and allocation changes under the size gate held for writing;
 * durable: synced (and a failure latched) as the mode's writes are. */
int backing_truncate(struct vc_image *img, off_t size, bool durable);
int backing_fallocate(struct vc_image *img, int mode, off_t off, off_t len,
    bool durable);
off_t backing_lseek(struct vc_image *img, off_t off, int whence);
/* copy_file_range between two buffered images; durable as above for out. */
ssize_t backing_copy_range(struct vc_image *in, off_t off_in,
    struct vc_image *out, off_t off_out, size_t len, bool durable);

#endif
