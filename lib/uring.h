/*
 * uring.h - the io_uring engine (aio=native and aio=io_uring).
 *
 * One ring, owned by one engine thread that alone submits and reaps
 * (IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN where the kernel has them).
 * Worker threads hand requests over through a queue and go back to the
 * kernel for the next FUSE request; the engine thread prepares them in
 * batches, and finishes each completion by calling its done callback,
 * which sends the FUSE reply. With one issuer, I/O completions run in
 * the thread that waits for them, instead of waking a worker out of its
 * read of /dev/fuse first. Buffered writes stay in the worker (see
 * io_submit_write()); O_DIRECT writes are copied once into an aligned
 * pool buffer, which they need anyway.
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
#define VC_URING_BATCH		(VC_URING_ENTRIES * 2)
#define VC_URING_BUFFERS	128	/* per size class */

struct vc_uring {
	struct io_uring ring;		/* used by the engine thread only */
	pthread_t thread;
	int efd;			/* eventfd: wakes the engine thread */
	pthread_mutex_t lock;
	pthread_cond_t idle;		/* signalled when inflight drops to 0 */
	unsigned inflight;		/* protected by lock */
	bool stopping;			/* protected by lock */
	bool sleeping;			/* engine waits in the kernel; protected by lock */
	bool kicked;			/* efd written since it slept; protected by lock */
	void *queue, *queue_tail;	/* handed-over requests; protected by lock */
	void *ctx_free;			/* request contexts for reuse; protected by lock */
	struct vc_bufpool pool;
	int setup_result;		/* protected by lock */
	bool setup_done;		/* protected by lock */
};

/*
 * A ring that a thread other than the engine drives (the FUSE queue
 * threads): requests made in that thread are prepared on it directly,
 * without a hop through the engine thread. Its CQEs whose user data has
 * bit 0 (tag 1) set are the engine's: pass them to uring_local_complete().
 * After each submit, uring_local_flushed() releases the descriptors held
 * for the prepared requests whose SQEs the kernel consumed; the others
 * stay held until a later submit takes them. Such a thread promises that a write's payload
 * stays valid until its done callback: an aligned one is written in place.
 */
struct vc_uring_local {
	struct io_uring *ring;
	uintptr_t tag;			/* or-ed into the user data */
	void *batch[VC_URING_BATCH];	/* prepared, fdlock held */
	unsigned nbatch;
	unsigned inflight;		/* requests on this ring not finished */
};

void uring_local_set(struct vc_uring_local *rc);
void uring_local_flushed(struct vc_uring_local *rc);
void uring_local_complete(void *data, int res);

/* Set up the ring and its completion thread. Returns 0 or -errno
 * (the caller then runs every image with aio=threads and says so). */
int uring_init(struct vc_uring *u);
/* Wait for requests in flight, then stop the thread and free the ring. */
void uring_exit(struct vc_uring *u);

/*
 * Submit. The caller has entered img (img->iogate shared, io.h). Return 0
 * when the request was taken: the engine then leaves img when it finishes
 * the request, and calls done exactly once, after that. Or -EAGAIN when the
 * engine does not take it (no buffer, a buffered write, or an unaligned
 * O_DIRECT write that needs read-modify-write): the caller, still in img,
 * then uses the synchronous path.
 */
int uring_read(struct vc_uring *u, struct vc_image *img, size_t len, off_t off,
    vc_io_done done, void *arg);
int uring_write(struct vc_uring *u, struct vc_image *img, const void *buf,
    size_t len, off_t off, int rwf, vc_io_done done, void *arg);
int uring_fsync(struct vc_uring *u, struct vc_image *img, bool datasync,
    vc_io_done done, void *arg);

#endif
