/*
 * io.h - data I/O on an open image, with its cache mode applied.
 *
 * Every function takes the image's backing descriptor under fdlock, so a
 * descriptor swap never races with I/O, and counts what it did in
 * img->stats. All return bytes transferred or 0 on success, or -errno as
 * the backing store gave it.
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
 * in the submitting thread (aio=threads) or in the io_uring completion
 * thread.
 */
typedef void (*vc_io_done)(void *arg, ssize_t res, const void *data);

/* Submit through the image's engine, falling back to the synchronous path. */
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

/*
 * Q-STUB (the design's interface; P's versions replace the minimal ones
 * at merge). Make the image's data durable now, whatever its mode (even
 * unsafe): fdatasync on its backing descriptor. Returns 0 or -errno
 * (latched errors included).
 */
int io_flush_now(struct vc_image *img);
/* io_flush_now, then evict the image's pages from the host page cache
 * (POSIX_FADV_DONTNEED on its descriptor). */
int io_drop_cache(struct vc_image *img);

/* Size changes and allocation through the image's descriptor. */
int io_truncate(struct vc_image *img, off_t size);
int io_fallocate(struct vc_image *img, int mode, off_t off, off_t len);

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
