/*
 * uring.c - the io_uring engine (see uring.h).
 *
 * Every request context has one owner at a time: the submitting worker
 * until uring_handoff(), then the engine thread, which frees it in
 * uring_finish() and nowhere else.
 *
 * A prepared SQE names the backing descriptor by number, and the kernel
 * looks the number up only when it consumes the SQE. So a request holds
 * its image's fdlock for reading from the moment it takes an SQE until
 * the kernel has consumed that SQE: a descriptor swap (image_upgrade, the
 * coming live mode switch) waits for it, and no SQE can reach a number
 * that was closed and reused. A submit that fails (-EBUSY, -EAGAIN,
 * -ENOMEM) leaves SQEs queued: their locks stay held, and the ring's
 * thread, which keeps looping, submits them again later; the swapper only
 * waits. Each lock is released in the thread that took it (the ring's).
 *
 * Registered files would be the other way: the SQE then names a slot of
 * the ring's own file table, which keeps its own reference to the file.
 * They were not chosen because every ring (the engine's and one per FUSE
 * queue thread) would need a slot for every open image, and a
 * SINGLE_ISSUER ring accepts io_uring_register only from its submitter
 * thread: each open, swap and close would have to be passed to every ring
 * thread and waited for, a protocol of its own with its own deadlocks
 * (a queue thread may be the one that runs the open). Holding the lock
 * until the kernel has the SQE needs no system call and no messages, and
 * what it costs is only that a swapper waits while a submit keeps failing.
 */
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "backing.h"
#include "fault.h"
#include "log.h"
#include "uring.h"

struct uring_req {
	struct uring_req *next_free;	/* on u->ctx_free while unused */
	struct vc_uring *u;
	struct vc_image *img;
	enum vc_stat_op op;		/* READ, WRITE or FLUSH */
	char *buf;			/* pool buffer, or NULL */
	const char *src;		/* write: the caller's aligned payload, used
					 * in place (no pool buffer) */
	off_t off;			/* start of the submitted range */
	size_t len, done;		/* submitted length and progress */
	size_t head, want;		/* read: bytes to skip, at most to deliver */
	int rwf;
	bool datasync;
	bool gated;			/* holds img->sizelock shared */
	bool held;			/* holds img->fdlock for reading: its SQE
					 * is not known to be consumed yet */
	unsigned sq_end;		/* the SQ tail just past its SQE */
	bool claimed;			/* write: holds claim in img->rmw */
	struct vc_range claim;
	uint64_t start;			/* stats_begin when taken */
	vc_io_done cb;
	void *arg;
	struct vc_uring_local *rc;	/* the ring it goes through */
};

/* The engine thread's own ring context (there is one engine per daemon). */
static struct vc_uring_local uring_engine_rc;
/* A thread that drives a ring of its own (FUSE queue threads) sets this:
 * its requests then skip the engine thread. */
static __thread struct vc_uring_local *uring_tls;

static struct uring_req *
uring_req_get(struct vc_uring *u)
{
	struct uring_req *req;

	pthread_mutex_lock(&u->lock);
	req = u->ctx_free;
	if (req != NULL)
		u->ctx_free = req->next_free;
	u->inflight++;
	pthread_mutex_unlock(&u->lock);
	if (req == NULL) {
		/* Grows to the peak queue depth once, then is reused. */
		req = calloc(1, sizeof(*req));
		if (req == NULL) {
			pthread_mutex_lock(&u->lock);
			if (--u->inflight == 0)
				pthread_cond_broadcast(&u->idle);
			pthread_mutex_unlock(&u->lock);
			return NULL;
		}
	}
	req->u = u;
	return req;
}

static void
uring_req_put(struct vc_uring *u, struct uring_req *req)
{
	pthread_mutex_lock(&u->lock);
	req->next_free = u->ctx_free;
	u->ctx_free = req;
	if (--u->inflight == 0)
		pthread_cond_broadcast(&u->idle);
	pthread_mutex_unlock(&u->lock);
}

/*
 * Submit what is queued on ring; its thread only. The test fault hook can
 * make it fail without entering the kernel: the SQEs then stay queued, as
 * after a real -EBUSY. Returns what io_uring_submit returns.
 */
static int
uring_submit(struct io_uring *ring, bool wait)
{
	int r = fault_hit(VC_FAULT_URING_SUBMIT);

	if (r < 0)
		return r;
	do {
		r = wait ? io_uring_submit_and_wait(ring, 1) :
		    io_uring_submit(ring);
	} while (r == -EINTR);
	return r;
}

/* Whether the kernel has consumed req's SQE (it consumes them in order). */
static bool
uring_consumed(const struct uring_req *req)
{
	unsigned pending = io_uring_sq_ready(req->rc->ring);
	unsigned head = req->rc->ring->sq.sqe_tail - pending;

	return (int)(head - req->sq_end) >= 0;
}

/* Release req's fdlock and take it off its ring's batch. */
static void
uring_unhold(struct uring_req *req)
{
	struct vc_uring_local *rc = req->rc;

	for (unsigned i = 0; i < rc->nbatch; i++) {
		if (rc->batch[i] != req)
			continue;
		memmove(&rc->batch[i], &rc->batch[i + 1],
		    (rc->nbatch - i - 1) * sizeof(rc->batch[0]));
		rc->nbatch--;
		break;
	}
	req->held = false;
	pthread_rwlock_unlock(&req->img->fdlock);
}

/*
 * Prepare the rest of req on the ring; its ring's thread only. The backing
 * descriptor is read under fdlock, taken before the SQE and held until
 * the kernel has consumed it (see the top of this file). Returns 0 or
 * -EBUSY when the ring is full even after a submit.
 */
static int
uring_prep(struct uring_req *req)
{
	struct io_uring *ring = req->rc->ring;
	struct io_uring_sqe *sqe;

	pthread_rwlock_rdlock(&req->img->fdlock);
	sqe = io_uring_get_sqe(ring);
	if (sqe == NULL) {
		/* Make room. A failed submit frees none, and the batch's
		 * locks stay held until their SQEs are consumed. */
		uring_submit(ring, false);
		uring_local_flushed(req->rc);
		sqe = io_uring_get_sqe(ring);
		if (sqe == NULL) {
			pthread_rwlock_unlock(&req->img->fdlock);
			return -EBUSY;
		}
	}
	req->held = true;
	req->sq_end = ring->sq.sqe_tail;
	switch (req->op) {
	case VC_STAT_READ:
		io_uring_prep_read(sqe, req->img->fd, req->buf + req->done,
		    (unsigned)(req->len - req->done), req->off + req->done);
		break;
	case VC_STAT_WRITE:
		io_uring_prep_write(sqe, req->img->fd,
		    (req->src != NULL ? req->src : req->buf) + req->done,
		    (unsigned)(req->len - req->done), req->off + req->done);
		sqe->rw_flags = req->rwf;
		break;
	default:
		io_uring_prep_fsync(sqe, req->img->fd,
		    req->datasync ? IORING_FSYNC_DATASYNC : 0);
		break;
	}
	io_uring_sqe_set_data(sqe, (void *)((uintptr_t)req | req->rc->tag));
	/* Submitted at the end of this batch; unlocked once consumed. */
	req->next_free = NULL;
	return 0;
}

static void uring_resubmit(struct uring_req *req);

/* Hand req to the engine thread (any thread), or put it on the calling
 * thread's own ring. */
static void
uring_handoff(struct uring_req *req)
{
	struct vc_uring *u = req->u;
	bool kick;

	if (uring_tls != NULL) {
		req->rc = uring_tls;
		req->rc->inflight++;
		uring_resubmit(req);
		return;
	}
	req->rc = &uring_engine_rc;

	req->next_free = NULL;
	pthread_mutex_lock(&u->lock);
	if (u->queue_tail != NULL)
		((struct uring_req *)u->queue_tail)->next_free = req;
	else
		u->queue = req;
	u->queue_tail = req;
	/* Only a sleeping engine needs the system call. */
	kick = u->sleeping && !u->kicked;
	if (kick)
		u->kicked = true;
	pthread_mutex_unlock(&u->lock);
	if (kick)
		eventfd_write(u->efd, 1);
}

/* The one place a request ends. */
static void
uring_finish(struct uring_req *req, ssize_t res)
{
	struct vc_uring *u = req->u;
	struct vc_image *img = req->img;
	const void *data = NULL;

	if (req->claimed)
		rangelock_unlock(&img->rmw, &req->claim);
	if (req->gated)
		gate_release_shared(&img->sizelock);
	if (res >= 0 && req->op == VC_STAT_READ) {
		res = req->done > req->head ? (ssize_t)(req->done - req->head) : 0;
		if (res > (ssize_t)req->want)
			res = (ssize_t)req->want;
		data = req->buf + req->head;
	} else if (res >= 0 && req->op == VC_STAT_WRITE) {
		res = (ssize_t)req->want;
	}
	if (req->rc->tag != 0)
		req->rc->inflight--;	/* its own thread finishes it */
	/* The last touch of img: the reply may let its last release free it. */
	stats_end(&img->stats, req->op, res, req->start);
	gate_release_shared(&img->iogate);	/* entered by io.c */
	req->cb(req->arg, res, data);
	if (req->buf != NULL)
		bufpool_put(&u->pool, req->buf, req->len);
	req->buf = NULL;
	uring_req_put(u, req);
}

/* One completion: retry, continue a short transfer, or finish. */
static void
uring_complete(struct uring_req *req, int res)
{
	/*
	 * A completion means the SQE was consumed, possibly by a submit that
	 * was not followed by uring_local_flushed() (a make-room submit):
	 * release the lock here, before req can finish and be reused.
	 */
	if (req->held)
		uring_unhold(req);
	if (res == -EAGAIN || res == -EINTR) {
		uring_resubmit(req);
		return;
	}
	if (req->op == VC_STAT_FLUSH) {
		int f = fault_hit(VC_FAULT_FSYNC);	/* as if the store failed */

		/* The latch of backing_flush(), for flushes through the ring. */
		uring_finish(req, backing_latch(req->img, f < 0 ? f :
		    res < 0 ? res : 0));
		return;
	}
	if (res < 0) {
		uring_finish(req, res);
		return;
	}
	switch (req->op) {
	case VC_STAT_READ:
		req->done += (size_t)res;
		if (res == 0 || req->done >= req->len) {	/* EOF or all */
			uring_finish(req, 0);
			return;
		}
		break;
	case VC_STAT_WRITE:
		if (res == 0) {			/* no progress: never spin */
			uring_finish(req, -EIO);
			return;
		}
		req->done += (size_t)res;
		if (req->done >= req->len) {
			uring_finish(req, 0);
			return;
		}
		break;
	default:
		break;				/* FSYNC: handled above */
	}
	uring_resubmit(req);			/* the short remainder */
}

/*
 * The rest of req done here, with plain system calls, when the ring has
 * no room for it: the store's own result reaches the client, never the
 * ring's -EBUSY. Rare, and this thread blocks only for the one request.
 */
static void
uring_sync(struct uring_req *req)
{
	struct vc_image *img = req->img;
	ssize_t r;

	pthread_rwlock_rdlock(&img->fdlock);
	switch (req->op) {
	case VC_STAT_READ:
		r = backing_pread_full(img->fd, req->buf + req->done,
		    req->len - req->done, req->off + (off_t)req->done);
		break;
	case VC_STAT_WRITE:
		r = backing_pwrite_full(img->fd, (req->src != NULL ?
		    req->src : req->buf) + req->done, req->len - req->done,
		    req->off + (off_t)req->done, req->rwf);
		break;
	default:
		r = backing_latch(img, backing_sync(img->fd, req->datasync));
		break;
	}
	pthread_rwlock_unlock(&img->fdlock);
	if (r > 0)
		req->done += (size_t)r;
	uring_finish(req, r < 0 ? r : 0);
}

/* Prepare req again (its ring's thread), remembering it for the unlock
 * after submit. */
static void
uring_resubmit(struct uring_req *req)
{
	struct vc_uring_local *rc = req->rc;

	if (rc->nbatch == VC_URING_BATCH || uring_prep(req) < 0) {
		uring_sync(req);	/* a full ring is no error of the store */
		return;
	}
	rc->batch[rc->nbatch++] = req;
	/*
	 * A local ring's thread goes on to dispatch other requests, which may
	 * want an image's fdlock for writing (image_upgrade, run in the pool):
	 * submit now, so the read lock is normally gone when this returns. If
	 * the submit fails, the lock stays until the SQE is consumed by a
	 * later submit of the thread's loop (or by its completion); the
	 * thread never waits for the write lock itself (fr_busy() keeps such
	 * requests off a thread with I/O in flight).
	 */
	if (rc->tag != 0) {
		uring_submit(rc->ring, false);
		uring_local_flushed(rc);
	}
}

void
uring_local_flushed(struct vc_uring_local *rc)
{
	unsigned n = 0;

	/* The batch is in SQ order: release the prefix the kernel consumed. */
	while (n < rc->nbatch && uring_consumed(rc->batch[n])) {
		struct uring_req *req = rc->batch[n++];

		req->held = false;
		pthread_rwlock_unlock(&req->img->fdlock);
	}
	if (n == 0)
		return;
	memmove(&rc->batch[0], &rc->batch[n],
	    (rc->nbatch - n) * sizeof(rc->batch[0]));
	rc->nbatch -= n;
}

void
uring_local_set(struct vc_uring_local *rc)
{
	uring_tls = rc;
}

void
uring_local_complete(void *data, int res)
{
	uring_complete((struct uring_req *)((uintptr_t)data & ~(uintptr_t)1), res);
}

/*
 * Submit what was prepared and release the fdlocks of what the kernel
 * took. When the submit failed and SQEs are left, wait a moment before
 * the caller loops again: the same submit at once would fail the same way.
 */
static void
uring_flush(struct vc_uring *u, bool wait)
{
	int r = uring_submit(&u->ring, wait);

	if (r < 0 && r != -ETIME && r != -EBUSY) {
		static unsigned warned;

		if (warned++ < 10)
			log_warnc(r, "io_uring_submit");
	}
	uring_local_flushed(&uring_engine_rc);
	if (r < 0 && r != -ETIME && io_uring_sq_ready(&u->ring) > 0 &&
	    io_uring_cq_ready(&u->ring) == 0)
		poll(NULL, 0, 1);
}

/* Arm (again) the multishot poll on the wake-up eventfd. */
static void
uring_arm_efd(struct vc_uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (sqe == NULL) {
		uring_submit(&u->ring, false);
		uring_local_flushed(&uring_engine_rc);
		sqe = io_uring_get_sqe(&u->ring);
	}
	if (sqe == NULL)
		return;
	io_uring_prep_poll_multishot(sqe, u->efd, POLLIN);
	io_uring_sqe_set_data(sqe, &u->efd);
}

static void
uring_main(struct vc_uring *u)
{
	bool stop = false;

	uring_arm_efd(u);
	while (!stop) {
		struct io_uring_cqe *cqe;
		struct uring_req *q;
		unsigned head, seen = 0;
		bool wait;

		pthread_mutex_lock(&u->lock);
		q = u->queue;
		u->queue = u->queue_tail = NULL;
		/* Sleep only with nothing to do; workers kick us then. */
		wait = q == NULL && io_uring_cq_ready(&u->ring) == 0;
		u->sleeping = wait;
		if (!wait)
			u->kicked = false;
		stop = u->stopping && u->inflight == 0 && q == NULL;
		pthread_mutex_unlock(&u->lock);
		if (stop)
			break;

		while (q != NULL) {
			struct uring_req *next = q->next_free;

			uring_resubmit(q);
			q = next;
		}
		uring_flush(u, wait);
		if (wait) {
			pthread_mutex_lock(&u->lock);
			u->sleeping = false;
			u->kicked = false;
			pthread_mutex_unlock(&u->lock);
		}

		io_uring_for_each_cqe(&u->ring, head, cqe) {
			void *data = io_uring_cqe_get_data(cqe);
			int res = cqe->res;
			unsigned flags = cqe->flags;

			seen++;
			if (data == &u->efd) {
				eventfd_t v;

				eventfd_read(u->efd, &v);
				if (!(flags & IORING_CQE_F_MORE))
					uring_arm_efd(u);
				continue;
			}
			if (data != NULL)
				uring_complete(data, res);
		}
		io_uring_cq_advance(&u->ring, seen);
	}
}

/*
 * Create the ring in the engine thread itself: with SINGLE_ISSUER the
 * creating task is the only one allowed to submit. Returns 0 or -errno.
 */
static int
uring_setup(struct vc_uring *u)
{
	struct io_uring_params p;
	int r;

	/* 6.1+: completions run only when the engine thread asks for them. */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	r = io_uring_queue_init_params(VC_URING_ENTRIES, &u->ring, &p);
	if (r == -EINVAL) {
		memset(&p, 0, sizeof(p));
		r = io_uring_queue_init_params(VC_URING_ENTRIES, &u->ring, &p);
	}
	if (r == 0)
		log_debug("io_uring engine: %s", (p.flags & IORING_SETUP_DEFER_TASKRUN) ?
		    "single issuer, deferred task work" : "plain ring (older kernel)");
	return r;
}

static void *
uring_thread(void *arg)
{
	struct vc_uring *u = arg;
	int r = uring_setup(u);

	uring_engine_rc.ring = &u->ring;
	uring_engine_rc.tag = 0;
	pthread_mutex_lock(&u->lock);
	u->setup_result = r;
	u->setup_done = true;
	pthread_cond_broadcast(&u->idle);
	pthread_mutex_unlock(&u->lock);
	if (r < 0)
		return NULL;
	uring_main(u);
	io_uring_queue_exit(&u->ring);
	return NULL;
}

int
uring_init(struct vc_uring *u)
{
	int r;

	memset(u, 0, sizeof(*u));
	u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u->efd == -1)
		return -errno;
	r = bufpool_init(&u->pool, VC_IO_MAX + 2 * VC_IO_MAXALIGN,
	    VC_URING_BUFFERS, VC_IO_MAXALIGN);
	if (r < 0) {
		close(u->efd);
		return r;
	}
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->idle, NULL);
	r = pthread_create(&u->thread, NULL, uring_thread, u);
	if (r == 0) {
		pthread_setname_np(u->thread, "vcuring");
		pthread_mutex_lock(&u->lock);
		while (!u->setup_done)
			pthread_cond_wait(&u->idle, &u->lock);
		r = u->setup_result;
		pthread_mutex_unlock(&u->lock);
		if (r < 0)
			pthread_join(u->thread, NULL);
	} else {
		r = -r;
	}
	if (r < 0) {
		pthread_cond_destroy(&u->idle);
		pthread_mutex_destroy(&u->lock);
		bufpool_exit(&u->pool);
		close(u->efd);
	}
	return r;
}

void
uring_exit(struct vc_uring *u)
{
	struct uring_req *req;

	pthread_mutex_lock(&u->lock);
	u->stopping = true;
	while (u->inflight > 0)
		pthread_cond_wait(&u->idle, &u->lock);
	pthread_mutex_unlock(&u->lock);
	eventfd_write(u->efd, 1);	/* the engine sees stopping and leaves */
	pthread_join(u->thread, NULL);

	while ((req = u->ctx_free) != NULL) {
		u->ctx_free = req->next_free;
		free(req);
	}
	bufpool_exit(&u->pool);
	close(u->efd);
	pthread_cond_destroy(&u->idle);
	pthread_mutex_destroy(&u->lock);
}

static struct uring_req *
uring_new(struct vc_uring *u, struct vc_image *img, enum vc_stat_op op,
    vc_io_done cb,
    void *arg)
{
	struct uring_req *req = uring_req_get(u);

	if (req == NULL)
		return NULL;
	req->img = img;
	req->op = op;
	req->buf = NULL;
	req->src = NULL;
	req->off = 0;
	req->len = req->done = req->head = req->want = 0;
	req->rwf = 0;
	req->datasync = false;
	req->gated = false;
	req->held = false;
	req->claimed = false;
	req->cb = cb;
	req->arg = arg;
	return req;
}

/*
 * Take img's size gate shared for a request. A thread with its own ring
 * does not wait for it (false): the holder it would wait for may need a
 * completion that only this thread reaps.
 */
static bool
uring_gate(struct vc_image *img)
{
	if (uring_tls != NULL)
		return gate_try_shared(&img->sizelock);
	gate_shared(&img->sizelock);
	return true;
}

int
uring_read(struct vc_uring *u, struct vc_image *img, size_t len, off_t off,
    vc_io_done done, void *arg)
{
	struct uring_req *req;
	off_t start = off, end = off + (off_t)len;

	if (img->policy->o_direct) {
		start = backing_align_down(off, img->dio_align);
		end = backing_align_up(end, img->dio_align);
	}
	if (img->policy->o_direct && !uring_gate(img))
		return -EAGAIN;
	req = uring_new(u, img, VC_STAT_READ, done, arg);
	if (req == NULL)
		goto fail;
	req->len = (size_t)(end - start);
	req->buf = bufpool_get(&u->pool, req->len);
	if (req->buf == NULL) {
		uring_req_put(u, req);
		goto fail;
	}
	req->off = start;
	req->head = (size_t)(off - start);
	req->want = len;
	req->gated = img->policy->o_direct;
	if (start != off || end != off + (off_t)len)
		stats_count(&img->stats.bounced, 1);
	req->start = stats_begin(&img->stats);
	uring_handoff(req);	/* the engine thread owns req from here */
	return 0;
fail:
	if (img->policy->o_direct)
		gate_release_shared(&img->sizelock);
	return -EAGAIN;
}

int
uring_write(struct vc_uring *u, struct vc_image *img, const void *buf,
    size_t len, off_t off, int rwf, vc_io_done done, void *arg)
{
	struct uring_req *req;

	/* Buffered writes, and O_DIRECT ones needing read-modify-write,
	 * take the synchronous path. */
	if (!img->policy->o_direct ||
	    backing_align_down(off, img->dio_align) != off ||
	    backing_align_down((off_t)len, img->dio_align) != (off_t)len)
		return -EAGAIN;
	if (!uring_gate(img))
		return -EAGAIN;
	req = uring_new(u, img, VC_STAT_WRITE, done, arg);
	if (req == NULL)
		goto fail;
	/*
	 * An edge rewrite inside the range must not run under it (rangelock.h).
	 * As for the gate, a thread with its own ring does not wait: the edge
	 * rewrite's turn may come after a completion only this thread reaps.
	 */
	if (uring_tls != NULL) {
		if (!rangelock_trylock_aligned(&img->rmw, &req->claim, off,
		    off + (off_t)len)) {
			uring_req_put(u, req);
			goto fail;
		}
	} else {
		rangelock_lock(&img->rmw, &req->claim, off, off + (off_t)len,
		    -1, -1);
	}
	req->claimed = true;
	req->off = off;
	req->len = req->want = len;
	req->rwf = rwf;
	if (uring_tls != NULL &&
	    ((uintptr_t)buf & (img->dio_mem_align - 1)) == 0) {
		/* A FUSE ring entry's payload is page aligned and stays
		 * until the reply: write it in place. */
		req->src = buf;
	} else {
		/* The one copy an O_DIRECT write needs: into aligned memory
		 * (libfuse's receive buffer is reused once we return). */
		req->buf = bufpool_get(&u->pool, len);
		if (req->buf == NULL) {
			rangelock_unlock(&img->rmw, &req->claim);
			uring_req_put(u, req);
			goto fail;
		}
		memcpy(req->buf, buf, len);
	}
	req->gated = true;
	req->start = stats_begin(&img->stats);
	uring_handoff(req);	/* the engine thread owns req from here */
	return 0;
fail:
	gate_release_shared(&img->sizelock);
	return -EAGAIN;
}

int
uring_fsync(struct vc_uring *u, struct vc_image *img, bool datasync,
    vc_io_done done, void *arg)
{
	struct uring_req *req = uring_new(u, img, VC_STAT_FLUSH, done, arg);

	if (req == NULL)
		return -EAGAIN;
	req->datasync = datasync;
	req->start = stats_begin(&img->stats);
	uring_handoff(req);	/* the engine thread owns req from here */
	return 0;
}
