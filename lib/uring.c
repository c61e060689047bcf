/*
 * uring.c - the io_uring engine (see uring.h).
 *
 * Every request context has one owner at a time: the submitting worker
 * until io_uring_submit() returns, then the completion thread, which
 * frees it in uring_finish() and nowhere else. A synchronous waiter
 * (buffered write) owns its context again once its semaphore is posted.
 */
#include <errno.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>

#include "io_priv.h"
#include "log.h"
#include "uring.h"

struct uring_req {
	struct uring_req *next_free;	/* on u->ctx_free while unused */
	struct vc_uring *u;
	struct vc_image *img;
	int op;				/* VC_OP_* */
	char *buf;			/* pool buffer, or NULL */
	const char *src;		/* payload of a buffered write */
	off_t off;			/* start of the submitted range */
	size_t len, done;		/* submitted length and progress */
	size_t head, want;		/* read: bytes to skip, at most to deliver */
	int rwf;
	bool datasync;
	bool gated;			/* holds img->sizelock shared */
	bool waiter;			/* a worker waits on sem */
	sem_t sem;
	ssize_t result;			/* for the waiter */
	vc_io_done cb;
	void *arg;
};

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
		sem_init(&req->sem, 0, 0);
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

/* Prepare and submit the rest of req. Returns 0 or -errno (not submitted). */
static int
uring_submit(struct uring_req *req)
{
	struct vc_uring *u = req->u;
	struct io_uring_sqe *sqe;
	int r;

	pthread_mutex_lock(&u->sq_lock);
	sqe = io_uring_get_sqe(&u->ring);
	if (sqe == NULL) {
		io_uring_submit(&u->ring);	/* make room */
		sqe = io_uring_get_sqe(&u->ring);
	}
	if (sqe == NULL) {
		pthread_mutex_unlock(&u->sq_lock);
		return -EBUSY;
	}
	/*
	 * The descriptor is read under fdlock and resolved by the kernel
	 * during submit, so a later swap cannot pull it from under us.
	 */
	pthread_rwlock_rdlock(&req->img->fdlock);
	switch (req->op) {
	case VC_OP_READ:
		io_uring_prep_read(sqe, req->img->fd, req->buf + req->done,
		    (unsigned)(req->len - req->done), req->off + req->done);
		break;
	case VC_OP_WRITE:
		io_uring_prep_write(sqe, req->img->fd,
		    (req->buf ? req->buf : req->src) + req->done,
		    (unsigned)(req->len - req->done), req->off + req->done);
		sqe->rw_flags = req->rwf;
		break;
	default:
		io_uring_prep_fsync(sqe, req->img->fd,
		    req->datasync ? IORING_FSYNC_DATASYNC : 0);
		break;
	}
	io_uring_sqe_set_data(sqe, req);
	r = io_uring_submit(&u->ring);
	pthread_rwlock_unlock(&req->img->fdlock);
	pthread_mutex_unlock(&u->sq_lock);
	return r < 0 ? r : 0;
}

/* The one place a request ends. */
static void
uring_finish(struct uring_req *req, ssize_t res)
{
	struct vc_uring *u = req->u;
	struct vc_image *img = req->img;
	const void *data = NULL;

	if (req->gated)
		gate_release_shared(&img->sizelock);
	if (res >= 0 && req->op == VC_OP_READ) {
		res = req->done > req->head ? (ssize_t)(req->done - req->head) : 0;
		if (res > (ssize_t)req->want)
			res = (ssize_t)req->want;
		data = req->buf + req->head;
	} else if (res >= 0 && req->op == VC_OP_WRITE) {
		res = (ssize_t)req->want;
	}
	if (req->op == VC_OP_WRITE)
		io_inflight_leave(img);
	io_account(img, req->op, res);
	if (req->waiter) {
		req->result = res;
		sem_post(&req->sem);	/* the waiter owns req from here */
		return;
	}
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
	if (res == -EAGAIN || res == -EINTR) {
		res = uring_submit(req);
		if (res < 0)
			uring_finish(req, res);
		return;
	}
	if (res < 0) {
		uring_finish(req, res);
		return;
	}
	switch (req->op) {
	case VC_OP_READ:
		req->done += (size_t)res;
		if (res == 0 || req->done >= req->len) {	/* EOF or all */
			uring_finish(req, 0);
			return;
		}
		break;
	case VC_OP_WRITE:
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
		uring_finish(req, 0);
		return;
	}
	res = uring_submit(req);		/* the short remainder */
	if (res < 0)
		uring_finish(req, res);
}

static void *
uring_main(void *arg)
{
	struct vc_uring *u = arg;

	for (;;) {
		struct io_uring_cqe *cqe;
		struct uring_req *req;
		int r = io_uring_wait_cqe(&u->ring, &cqe);
		int res;

		if (r == -EINTR)
			continue;
		if (r < 0) {
			log_warnc(r, "io_uring_wait_cqe");
			continue;
		}
		req = io_uring_cqe_get_data(cqe);
		res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		if (req == NULL)
			break;		/* the stop NOP from uring_exit() */
		uring_complete(req, res);
	}
	return NULL;
}

int
uring_init(struct vc_uring *u)
{
	int r;

	memset(u, 0, sizeof(*u));
	r = io_uring_queue_init(VC_URING_ENTRIES, &u->ring, 0);
	if (r < 0)
		return r;
	r = bufpool_init(&u->pool, VC_IO_MAX + 2 * VC_IO_MAXALIGN,
	    VC_URING_BUFFERS, VC_IO_MAXALIGN);
	if (r < 0) {
		io_uring_queue_exit(&u->ring);
		return r;
	}
	pthread_mutex_init(&u->sq_lock, NULL);
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->idle, NULL);
	r = pthread_create(&u->cq_thread, NULL, uring_main, u);
	if (r != 0) {
		bufpool_exit(&u->pool);
		io_uring_queue_exit(&u->ring);
		return -r;
	}
	return 0;
}

void
uring_exit(struct vc_uring *u)
{
	struct io_uring_sqe *sqe;
	struct uring_req *req;

	pthread_mutex_lock(&u->lock);
	u->stopping = true;
	while (u->inflight > 0)
		pthread_cond_wait(&u->idle, &u->lock);
	pthread_mutex_unlock(&u->lock);

	pthread_mutex_lock(&u->sq_lock);
	sqe = io_uring_get_sqe(&u->ring);
	if (sqe != NULL) {
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, NULL);
		io_uring_submit(&u->ring);
	}
	pthread_mutex_unlock(&u->sq_lock);
	if (sqe != NULL)
		pthread_join(u->cq_thread, NULL);
	else
		pthread_cancel(u->cq_thread);

	while ((req = u->ctx_free) != NULL) {
		u->ctx_free = req->next_free;
		sem_destroy(&req->sem);
		free(req);
	}
	bufpool_exit(&u->pool);
	io_uring_queue_exit(&u->ring);
	pthread_cond_destroy(&u->idle);
	pthread_mutex_destroy(&u->lock);
	pthread_mutex_destroy(&u->sq_lock);
}

/* Start req; on failure to submit, it ends here with the error. */
static void
uring_start(struct uring_req *req)
{
	int r = uring_submit(req);

	if (r < 0)
		uring_complete(req, r == -EAGAIN ? -EIO : r);
}

static struct uring_req *
uring_new(struct vc_uring *u, struct vc_image *img, int op, vc_io_done cb,
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
	req->waiter = false;
	req->cb = cb;
	req->arg = arg;
	return req;
}

int
uring_read(struct vc_uring *u, struct vc_image *img, size_t len, off_t off,
    vc_io_done done, void *arg)
{
	struct uring_req *req;
	off_t start = off, end = off + (off_t)len;

	if (img->policy->o_direct) {
		start = io_align_down(off, img->dio_align);
		end = io_align_up(end, img->dio_align);
	}
	req = uring_new(u, img, VC_OP_READ, done, arg);
	if (req == NULL)
		return -EAGAIN;
	req->len = (size_t)(end - start);
	req->buf = bufpool_get(&u->pool, req->len);
	if (req->buf == NULL) {
		uring_req_put(u, req);
		return -EAGAIN;
	}
	req->off = start;
	req->head = (size_t)(off - start);
	req->want = len;
	if (img->policy->o_direct) {
		gate_shared(&img->sizelock);
		req->gated = true;
	}
	uring_start(req);
	return 0;
}

int
uring_write(struct vc_uring *u, struct vc_image *img, const void *buf,
    size_t len, off_t off, int rwf, vc_io_done done, void *arg)
{
	struct uring_req *req;
	ssize_t res;

	if (img->policy->o_direct &&
	    (io_align_down(off, img->dio_align) != off ||
	    io_align_down((off_t)len, img->dio_align) != (off_t)len))
		return -EAGAIN;		/* read-modify-write: the sync path */
	req = uring_new(u, img, VC_OP_WRITE, done, arg);
	if (req == NULL)
		return -EAGAIN;
	req->off = off;
	req->len = req->want = len;
	req->rwf = rwf;
	if (img->policy->o_direct) {
		/* The one copy an O_DIRECT write needs: into aligned memory. */
		req->buf = bufpool_get(&u->pool, len);
		if (req->buf == NULL) {
			uring_req_put(u, req);
			return -EAGAIN;
		}
		memcpy(req->buf, buf, len);
		gate_shared(&img->sizelock);
		req->gated = true;
		io_inflight_enter(img);
		uring_start(req);
		return 0;
	}
	/* Buffered: wait here, so the payload needs no copy (see uring.h). */
	req->src = buf;
	req->waiter = true;
	io_inflight_enter(img);
	uring_start(req);
	while (sem_wait(&req->sem) == -1 && errno == EINTR)
		;
	res = req->result;
	uring_req_put(u, req);
	done(arg, res, NULL);
	return 0;
}

int
uring_fsync(struct vc_uring *u, struct vc_image *img, bool datasync,
    vc_io_done done, void *arg)
{
	struct uring_req *req = uring_new(u, img, VC_OP_FSYNC, done, arg);

	if (req == NULL)
		return -EAGAIN;
	req->datasync = datasync;
	uring_start(req);
	return 0;
}
