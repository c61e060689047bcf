/*
 * workpool.h - the threads engine: synchronous I/O with the backing
 * primitives, in the calling thread or in worker threads for callers that
 * must not block (the FUSE io_uring queue threads, which serve many
 * requests each). Like QEMU's thread pool: the caller queues the request
 * and goes on; a worker does the preadv, pwritev or fsync and calls the
 * done callback. The pool also runs whole calls (workpool_call), such as
 * FUSE requests that may wait.
 */
#ifndef VC_WORKPOOL_H
#define VC_WORKPOOL_H

#include <stdbool.h>

#include "io.h"

/* Start n workers. Returns 0 or -errno. */
int workpool_start(unsigned n);
/* Finish the queued requests and stop the workers. */
void workpool_stop(void);

/*
 * Mark the calling thread as one that serves many requests: while busy()
 * says it has other work (other requests taken, or I/O of its own in
 * flight), its synchronous requests go to the pool. Otherwise it does them
 * itself: nobody waits behind it, it holds no lock its own I/O could need,
 * and the hop to a worker and back would only add two wake-ups to the
 * request (make bench, row 5). NULL clears the mark.
 */
void workpool_set_nonblocking(bool (*busy)(void));
/* True in a thread so marked (even when it is not busy now). */
bool workpool_nonblocking(void);
/* True when the caller must not wait: send the request to the pool, and
 * if the pool cannot take it, fail the request (ENOMEM) rather than wait. */
bool workpool_should_offload(void);

enum vc_work_op { VC_WORK_READ, VC_WORK_WRITE, VC_WORK_FSYNC, VC_WORK_CALL };

/*
 * One request of the threads engine, with the policy already applied by
 * io.c: the engine only does it (backing.h) and finishes it.
 */
struct vc_work_io {
	enum vc_work_op op;		/* READ, WRITE or FSYNC */
	struct vc_image *img;
	const void *buf;		/* write: the payload */
	size_t len;
	off_t off;
	int rwf;			/* write: pwritev2 flags (RWF_DSYNC) */
	bool durable;			/* write: the mode makes writes durable */
	bool datasync;			/* fsync: fdatasync rather than fsync */
};

/*
 * Do io now in the calling thread and count it. Returns its result; for
 * a read, *data points into the calling thread's buffer, valid until its
 * next request.
 */
ssize_t workpool_run(const struct vc_work_io *io, const void **data);
/* Do io now in the calling thread, then finish it: leave the image (the
 * caller entered it, io.h) and call done(arg, ...). */
void workpool_do(const struct vc_work_io *io, vc_io_done done, void *arg);

/* Queue io (its image entered): a worker does what workpool_do does.
 * Returns 0, or -EAGAIN
 * when the pool is not running or out of memory (the caller then does it
 * itself, or fails it). */
int workpool_submit(const struct vc_work_io *io, vc_io_done done, void *arg);

/* Queue fn(arg) (VC_WORK_CALL). Returns 0 or -EAGAIN as above. */
int workpool_call(void (*fn)(void *), void *arg);

#endif
