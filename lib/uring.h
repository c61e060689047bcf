/*
 * uring.h - the io_uring engine (aio=native and aio=io_uring).
 *
 * One ring shared by all worker threads, submissions under a mutex, and
 * one completion thread that finishes each request and calls its done
 * callback, which sends the FUSE reply. Workers never wait on the disk
 * for reads, O_DIRECT writes and flushes. Buffered writes are submitted
 * and waited for in the worker: their payload lives in libfuse's receive
 * buffer, and waiting costs a page-cache copy, while going asynchronous
 * would cost a copy of every byte.
 */
#ifndef VC_URING_H
#define VC_URING_H

#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>

#include "bufpool.h"
#include "image.h"
#include "io.h"

#define VC_URING_ENTRIES	256
#define VC_URING_BUFFERS	128	/* per size class */

struct vc_uring {
	struct io_uring ring;
	pthread_mutex_t sq_lock;	/* serialises SQE prep and submit */
	pthread_t cq_thread;
	pthread_mutex_t lock;
	pthread_cond_t idle;		/* signalled when inflight drops to 0 */
	unsigned inflight;		/* protected by lock */
	bool stopping;			/* protected by lock */
	struct vc_bufpool pool;
	void *ctx_free;			/* request contexts for reuse; protected by lock */
};

/* Set up the ring and its completion thread. Returns 0 or -errno
 * (the caller then runs every image with aio=threads and says so). */
int uring_init(struct vc_uring *u);
/* Wait for requests in flight, then stop the thread and free the ring. */
void uring_exit(struct vc_uring *u);

/*
 * Submit. Return 0 when the request was taken (done will be called exactly
 * once), or -EAGAIN when the engine cannot take it now (no buffer, or an
 * unaligned O_DIRECT write that needs read-modify-write): the caller then
 * uses the synchronous path.
 */
int uring_read(struct vc_uring *u, struct vc_image *img, size_t len, off_t off,
    vc_io_done done, void *arg);
int uring_write(struct vc_uring *u, struct vc_image *img, const void *buf,
    size_t len, off_t off, int rwf, vc_io_done done, void *arg);
int uring_fsync(struct vc_uring *u, struct vc_image *img, bool datasync,
    vc_io_done done, void *arg);

#endif
