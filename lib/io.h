/*
 * io.h - data I/O on an open image, with its cache mode applied.
 *
 * The policy layer of the I/O path (io.c): it applies the mode and hands
 * each request to an engine (workpool.h, uring.h), which does it with the
 * backing primitives (backing.h) and finishes it with the done callback.
 *
 * Every request enters its image (img->iogate, shared) before it reads
 * the image's descriptor, policy or engine, and leaves it when its engine
 * has finished it; io_quiesce() waits for all of them to leave. Every
 * function takes the backing descriptor under fdlock, so a descriptor
 * swap never races with I/O, and counts what it did in img->stats. All
 * return bytes transferred or 0 on success, or -errno as the backing
 * store gave it.
 */
#ifndef VC_IO_H
#define VC_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "image.h"

/* Largest request the kernel sends (max_write, max_pages). */
#define VC_IO_MAX		(1u << 20)
/* Largest O_DIRECT alignment we bounce for; larger ones are refused at open. */
#define VC_IO_MAXALIGN		(64u << 10)
/* Each thread that does O_DIRECT I/O keeps one bounce buffer this large. */
#define VC_IO_BUF_SIZE		(VC_IO_MAX + 2 * VC_IO_MAXALIGN)

/*
 * The end of a submitted request: res is bytes or -errno; for a read,
 * data holds the bytes, valid only during the call. Called exactly once,
 * in the submitting thread (aio=threads), a pool worker or the io_uring
 * completion thread, after the request has left its image: it must not
 * touch the image (the reply may let its last release free it).
 */
typedef void (*vc_io_done)(void *arg, ssize_t res, const void *data);

/*
 * Submit through the image's engine, falling back to the synchronous path.
 * A thread that must not block (a FUSE ring queue thread) never waits
 * for a quiesced image: its request is parked and submitted again from
 * the pool by io_resume(). Other threads wait.
 */
void io_submit_read(struct vc_image *img, size_t len, off_t off,
    vc_io_done done, void *arg);
void io_submit_write(struct vc_image *img, const void *buf, size_t len,
    off_t off, bool dsync, vc_io_done done, void *arg);
void io_submit_fsync(struct vc_image *img, bool datasync, vc_io_done done,
    void *arg);

/*
 * Read len bytes at off. *data is set to the bytes read, which live in a
 * buffer owned by the calling thread and valid until its next io_ call.
 * Returns the count (short at end of file) or -errno.
 */
ssize_t io_read(struct vc_image *img, size_t len, off_t off, const void **data);

/*
 * Write len bytes at off. dsync: the client asked for this write to be
 * durable (O_DSYNC/RWF_DSYNC in the FUSE write flags). Returns len or -errno.
 */
ssize_t io_write(struct vc_image *img, const void *buf, size_t len, off_t off,
    bool dsync);

/* A guest flush (FUSE FSYNC). Dropped, and counted, where the mode says so. */
int io_fsync(struct vc_image *img, bool datasync);

/* Size changes and allocation through the image's descriptor. */
int io_truncate(struct vc_image *img, off_t size);
int io_fallocate(struct vc_image *img, int mode, off_t off, off_t len);

/*
 * Make the image's data durable now, whatever its mode (even unsafe):
 * fdatasync on its backing descriptor. Returns 0 or -errno (a latched
 * writeback error included). Not counted as a guest flush.
 */
int io_flush_now(struct vc_image *img);
/* io_flush_now, then evict the image's pages from the host page cache
 * (POSIX_FADV_DONTNEED on its descriptor). Returns 0 or -errno. */
int io_drop_cache(struct vc_image *img);

/*
 * Stop new I/O of img and wait until every request of it in flight on any
 * engine has been finished by its engine (it has left the image; its done
 * callback, which only replies, may still be on its way). Until
 * io_resume(), the caller may change img->fd, fd_writable, policy, conf,
 * aio, uring, dio_align and dio_mem_align. New requests wait or are
 * parked meanwhile; other images go on. Quiesce one image at a time (a
 * copy between two images enters both). Returns 0.
 */
int io_quiesce(struct vc_image *img);
/* Let img's I/O go on, parked requests first. */
void io_resume(struct vc_image *img);

/* Probe the O_DIRECT alignment of a descriptor: statx where the kernel
 * reports it, else a safe default. Sets *align and *mem_align. */
void io_probe_dio_align(int fd, unsigned *align, unsigned *mem_align);


/* SEEK_DATA/SEEK_HOLE (and the others) on the backing file. */
off_t io_lseek(struct vc_image *img, off_t off, int whence);

/*
 * Copy len bytes between images. Buffered pairs use copy_file_range(2)
 * (reflinks where the filesystem can); an O_DIRECT side is copied through
 * io_read/io_write so its mode still holds. Returns bytes copied or -errno.
 */
ssize_t io_copy_range(struct vc_image *in, off_t off_in, struct vc_image *out,
    off_t off_out, size_t len);
#endif
