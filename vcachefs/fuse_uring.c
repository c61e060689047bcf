/*
 * fuse_uring.c - FUSE over io_uring (see fuse_uring.h).
 *
 * Each queue thread owns one io_uring (SQE128, for the command area) and
 * a few ring entries: a header buffer and a payload buffer the kernel
 * fills with one request. Entry states change in the owning thread only;
 * a reply sent from another thread (an I/O completion) is queued to the
 * owner, which submits the commit. Commits made while dispatching go out
 * in the same io_uring_enter() that waits for the next requests.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#include <liburing.h>

#include "fault.h"
#include "fuse_uring.h"
#include "io.h"
#include "log.h"
#include "placement.h"
#include "uring.h"
#include "workpool.h"

/*
 * The kernel ABI (FUSE 7.42, Linux 6.14). Debian 12's headers predate it,
 * so the layouts are spelt out here.
 */
#define FR_CMD_REGISTER		1
#define FR_CMD_COMMIT_AND_FETCH	2
#define FR_HDR_INOUT		128
#define FR_HDR_OPIN		128
#define FR_OVER_IO_URING_FLAGS2	(1u << 9)	/* FUSE_OVER_IO_URING >> 32 */

struct fr_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;		/* the request's unique */
	uint32_t payload_sz;		/* bytes used in the payload buffer */
	uint32_t padding;
	uint64_t reserved;
};

struct fr_req_header {
	char in_out[FR_HDR_INOUT];	/* fuse_in_header, or fuse_out_header */
	char op_in[FR_HDR_OPIN];	/* the opcode's own header */
	struct fr_ent_in_out ent;
};

struct fr_cmd_req {			/* in the SQE's command area */
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

/*
 * An entry's memory: the header the kernel writes, then room to rebuild
 * the request contiguously (in header and op header just before the
 * payload), then the page-aligned payload.
 */
#define FR_PREFIX	4096

enum fr_state { FR_IDLE, FR_KERNEL, FR_USER, FR_DEAD };

struct fr_thread;

struct fr_ent {
	struct fr_thread *t;
	struct fr_req_header *hdr;
	char *payload;
	char *mem;			/* mapping: FR_PREFIX + payload */
	struct iovec iov[2];		/* header and payload, for REGISTER */
	_Atomic uint64_t unique;	/* the request held, 0 when none */
	struct fuse_buf req;		/* the rebuilt request, for the pool */
	enum fr_state state;		/* owner thread only */
	struct fr_ent *next;		/* on t->replied */
};

struct fr_thread {
	unsigned qid;
	pthread_t tid;
	bool started;
	struct io_uring ring;
	struct vc_uring_local local;	/* backing I/O on the same ring */
	int efd;			/* wakes the thread for cross-thread replies */
	struct fr_ent *ents;
	unsigned nents;
	unsigned nkernel, nuser;	/* entries in each state; owner only */
	unsigned seen;			/* CQEs of this batch handled so far */
	struct vc_place place;		/* its CPUs; owner only */
	pthread_mutex_t lock;
	struct fr_ent *replied;		/* answered elsewhere; under lock */
	bool sleeping, kicked;		/* under lock */
	int setup;			/* ring setup result; under G.lock */
	bool setup_done;
};

static struct {
	struct fuse_session *se;
	int devfd;
	size_t payload_sz;
	struct fr_thread *threads;
	unsigned nthreads, nqueues;
	struct fr_ent **all;		/* every entry, for reply lookup */
	unsigned nall;
	_Atomic uint64_t init_unique;	/* the INIT request, seen by fr_read */
	_Atomic bool init_offers_ring;	/* INIT offered FUSE_OVER_IO_URING */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool init_done, stopping;	/* under lock */
	unsigned registered;		/* threads whose entries all registered */
} G = {
	.devfd = -1,
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
};

static __thread struct fr_thread *fr_self;
static __thread struct fr_ent *fr_cur;	/* being dispatched by this thread */

int
fuse_uring_parse_mode(const char *s, enum vc_fuse_uring_mode *mode)
{
	if (strcmp(s, "auto") == 0)
		*mode = VC_FUSE_URING_AUTO;
	else if (strcmp(s, "on") == 0)
		*mode = VC_FUSE_URING_ON;
	else if (strcmp(s, "off") == 0)
		*mode = VC_FUSE_URING_OFF;
	else
		return -EINVAL;
	return 0;
}

int
fuse_uring_available(char *why, size_t whylen)
{
	char c = 0;
	int fd = open(VC_FUSE_URING_PARAM, O_RDONLY | O_CLOEXEC);

	if (fd == -1) {
		snprintf(why, whylen, "this kernel has no FUSE over io_uring "
		    "(Linux 6.14 or later, CONFIG_FUSE_IO_URING)");
		return 0;
	}
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	if (c != 'Y') {
		snprintf(why, whylen, "FUSE over io_uring is off "
		    "(echo Y > %s)", VC_FUSE_URING_PARAM);
		return 0;
	}
	snprintf(why, whylen, "available");
	return 1;
}

/* How many CPUs the kernel may use: it makes one queue for each. */
static unsigned
fr_possible_cpus(void)
{
	char buf[256], *p;
	unsigned n = 0;
	ssize_t len;
	int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		return 0;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return 0;
	buf[len] = '\0';
	/* A list of ranges: "0-3,8-11". */
	for (p = buf; *p != '\0' && *p != '\n';) {
		char *end;
		unsigned long a = strtoul(p, &end, 10), b = a;

		if (end == p)
			return 0;
		if (*end == '-') {
			p = end + 1;
			b = strtoul(p, &end, 10);
			if (end == p || b < a)
				return 0;
		}
		n += (unsigned)(b - a + 1);
		p = *end == ',' ? end + 1 : end;
	}
	return n;
}

static struct fr_ent *
fr_find(uint64_t unique)
{
	/* Most replies are sent while their request is being dispatched. */
	if (fr_cur != NULL && atomic_load_explicit(&fr_cur->unique,
	    memory_order_acquire) == unique)
		return fr_cur;
	for (unsigned i = 0; i < G.nall; i++)
		if (atomic_load_explicit(&G.all[i]->unique,
		    memory_order_acquire) == unique)
			return G.all[i];
	return NULL;
}

/* An SQE for t's ring, submitting what is queued if it is full. */
static struct io_uring_sqe *
fr_sqe(struct fr_thread *t)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);

	if (sqe == NULL) {
		io_uring_submit(&t->ring);
		sqe = io_uring_get_sqe(&t->ring);
	}
	return sqe;
}

/* Queue REGISTER or COMMIT_AND_FETCH for e; owner thread only. */
static void
fr_prep_cmd(struct fr_ent *e, unsigned op, uint64_t commit_id)
{
	struct fr_thread *t = e->t;
	struct io_uring_sqe *sqe = fr_sqe(t);
	struct fr_cmd_req *cr;

	if (sqe == NULL) {		/* cannot happen: the ring has room */
		log_warnx("FUSE ring: no submission entry; entry lost");
		if (e->state == FR_USER)
			t->nuser--;
		e->state = FR_DEAD;
		return;
	}
	memset(sqe, 0, 2 * sizeof(*sqe));	/* SQE128 */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = G.devfd;
	sqe->cmd_op = op;
	if (op == FR_CMD_REGISTER) {
		sqe->addr = (uintptr_t)e->iov;
		sqe->len = 2;
	}
	cr = (struct fr_cmd_req *)sqe->cmd;
	cr->commit_id = commit_id;
	cr->qid = (uint16_t)t->qid;
	io_uring_sqe_set_data(sqe, e);
	if (e->state == FR_USER)
		t->nuser--;
	e->state = FR_KERNEL;
	t->nkernel++;
}

/* The reply is in e: hand it back to the kernel from e's thread. */
static void
fr_commit(struct fr_ent *e)
{
	struct fr_thread *t = e->t;
	bool kick;

	if (fr_self == t) {
		uint64_t id = atomic_exchange(&e->unique, 0);

		fr_prep_cmd(e, FR_CMD_COMMIT_AND_FETCH, id);
		return;
	}
	pthread_mutex_lock(&t->lock);
	e->next = t->replied;
	t->replied = e;
	kick = t->sleeping && !t->kicked;
	if (kick)
		t->kicked = true;
	pthread_mutex_unlock(&t->lock);
	if (kick)
		eventfd_write(t->efd, 1);
}

static ssize_t fr_reply(struct fr_ent *e, const struct iovec *iov, int count);

/* Answer e's request with an error, without libfuse. */
static void
fr_reply_err(struct fr_ent *e, uint64_t unique, int err)
{
	struct fuse_out_header oh = {
		.len = sizeof(oh), .error = -err, .unique = unique,
	};
	struct iovec iov = { .iov_base = &oh, .iov_len = sizeof(oh) };

	fr_reply(e, &iov, 1);
}

/* Copy a reply libfuse composed into e's buffers and commit it. */
static ssize_t
fr_reply(struct fr_ent *e, const struct iovec *iov, int count)
{
	struct fuse_out_header oh;
	size_t total = iov[0].iov_len, off = 0;

	memcpy(&oh, iov[0].iov_base, sizeof(oh));
	for (int i = 1; i < count; i++) {
		total += iov[i].iov_len;
		if (off + iov[i].iov_len > G.payload_sz) {
			/* Larger than any request allows: a bug, not data. */
			log_warnx("FUSE ring: reply of %zu bytes exceeds the "
			    "entry", total);
			oh.error = -EIO;
			off = 0;
			break;
		}
		memcpy(e->payload + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	oh.len = (uint32_t)(sizeof(oh) + off);
	memcpy(e->hdr->in_out, &oh, sizeof(oh));
	e->hdr->ent.payload_sz = (uint32_t)off;
	fr_commit(e);
	return (ssize_t)total;
}

static void
fr_init_done(void)
{
	pthread_mutex_lock(&G.lock);
	G.init_done = true;
	pthread_cond_broadcast(&G.cond);
	pthread_mutex_unlock(&G.lock);
}

/* libfuse's reads of /dev/fuse: watch for INIT, to register after it. */
static ssize_t
fr_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	(void)userdata;
	if (n >= (ssize_t)(sizeof(struct fuse_in_header) +
	    sizeof(struct fuse_init_in)) &&
	    ((struct fuse_in_header *)buf)->opcode == FUSE_INIT) {
		const struct fuse_init_in *in = (const void *)((const char *)buf +
		    sizeof(struct fuse_in_header));

		atomic_store(&G.init_offers_ring, (in->flags & FUSE_INIT_EXT) &&
		    (in->flags2 & FR_OVER_IO_URING_FLAGS2));
		atomic_store(&G.init_unique,
		    ((struct fuse_in_header *)buf)->unique);
	}
	return n;
}

/*
 * Tell the kernel, in libfuse's INIT reply, that we take requests through
 * io_uring: libfuse 3.14 cannot say it (flags2 beyond its 32-bit want).
 * With the flag the kernel holds new requests until every queue has
 * registered, and keeps taking commits even if enable_uring is turned
 * off while mounted.
 */
static void
fr_init_reply(struct iovec *iov, int count)
{
	struct fuse_init_out *out;
	bool ok;

	pthread_mutex_lock(&G.lock);
	ok = G.nthreads > 0 && !G.stopping;
	pthread_mutex_unlock(&G.lock);
	if (!ok || !atomic_load(&G.init_offers_ring) || count < 2 ||
	    iov[1].iov_len < offsetof(struct fuse_init_out, flags2) +
	    sizeof(out->flags2))
		return;
	out = iov[1].iov_base;
	if (((struct fuse_out_header *)iov[0].iov_base)->error != 0)
		return;
	out->flags |= FUSE_INIT_EXT;
	out->flags2 |= FR_OVER_IO_URING_FLAGS2;
}

/* Every reply libfuse sends: into its ring entry, or to /dev/fuse. */
static ssize_t
fr_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *oh = iov[0].iov_base;
	struct fr_ent *e = NULL;
	ssize_t n;

	(void)userdata;
	if (oh->unique != 0)
		e = fr_find(oh->unique);
	if (e != NULL)
		return fr_reply(e, iov, count);
	if (oh->unique != 0 && oh->unique == atomic_load(&G.init_unique))
		fr_init_reply(iov, count);
	n = writev(fd, iov, count);
	/* The kernel takes ring registrations once INIT is answered. */
	if (n >= 0 && oh->unique != 0 && oh->unique == atomic_load(&G.init_unique))
		fr_init_done();
	return n;
}

int
fuse_uring_attach(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.read = fr_read,
		.writev = fr_writev,
	};
	int fd = fuse_session_fd(se);

	if (fuse_session_custom_io(se, &io, fd) != 0)
		return -EIO;
	G.se = se;
	G.devfd = fd;
	return 0;
}

/*
 * For workpool: may the calling queue thread wait for the disk now? Only
 * when the request at hand is all it has: no other request held, no
 * completion waiting behind this one, no I/O of its own on its ring (which
 * may hold an image's size gate that the wait would need).
 */
static bool
fr_busy(void)
{
	struct fr_thread *t = fr_self;

	return t == NULL || t->nuser > 1 || t->local.inflight > 0 ||
	    io_uring_cq_ready(&t->ring) > t->seen;
}

static void
fr_process(void *arg)
{
	struct fr_ent *e = arg;

	fr_cur = e;
	fuse_session_process_buf(G.se, &e->req);
	fr_cur = NULL;
}

/*
 * Rebuild the request as /dev/fuse delivers it (in header, op header,
 * payload) in front of the payload, which stays where the kernel put it,
 * and let libfuse dispatch it. The in header's len gives the op header's
 * size: the kernel sets it for ring requests too.
 */
static void
fr_dispatch(struct fr_ent *e)
{
	struct fuse_in_header in;
	uint32_t psz = e->hdr->ent.payload_sz;
	size_t opsz;
	char *start;

	memcpy(&in, e->hdr->in_out, sizeof(in));
	atomic_store_explicit(&e->unique, in.unique, memory_order_release);
	e->state = FR_USER;
	e->t->nkernel--;
	e->t->nuser++;
	if (psz > G.payload_sz || in.len < sizeof(in) + psz ||
	    in.len - sizeof(in) - psz > FR_HDR_OPIN) {
		log_warnx("FUSE ring: malformed request (opcode %u, len %u, "
		    "payload %u)", in.opcode, in.len, psz);
		fr_reply_err(e, in.unique, EIO);
		return;
	}
	opsz = in.len - sizeof(in) - psz;
	start = e->payload - opsz - sizeof(in);
	memcpy(start, &in, sizeof(in));
	memcpy(start + sizeof(in), e->hdr->op_in, opsz);
	e->req = (struct fuse_buf){ .mem = start, .size = in.len };
	/*
	 * Data requests are served here: they never wait for the disk in this
	 * thread (io.c sends what would wait to the pool). Everything else
	 * may wait (opening probes images, truncate and fallocate wait for
	 * this thread's own I/O to drain), so it runs in the pool.
	 */
	switch (in.opcode) {
	case FUSE_READ:
	case FUSE_WRITE:
	case FUSE_FSYNC:
	case FUSE_FLUSH:
	case FUSE_GETATTR:
	case FUSE_LOOKUP:
	case FUSE_STATFS:
		break;
	default:
		if (workpool_call(fr_process, e) == 0)
			return;
		if (fr_busy()) {	/* waiting here could deadlock */
			fr_reply_err(e, in.unique, ENOMEM);
			return;
		}
		break;
	}
	fr_process(e);
}

/* Arm (again) the multishot poll on the thread's eventfd. */
static void
fr_arm_efd(struct fr_thread *t)
{
	struct io_uring_sqe *sqe = fr_sqe(t);

	if (sqe == NULL)
		return;
	memset(sqe, 0, 2 * sizeof(*sqe));
	io_uring_prep_poll_multishot(sqe, t->efd, POLLIN);
	io_uring_sqe_set_data(sqe, &t->efd);
}

static void
fr_register_all(struct fr_thread *t)
{
	struct io_uring_cqe *cqe;
	unsigned head, failed = 0;
	int err = 0;

	fr_arm_efd(t);
	for (unsigned i = 0; i < t->nents; i++)
		fr_prep_cmd(&t->ents[i], FR_CMD_REGISTER, 0);
	io_uring_submit(&t->ring);
	/* A refused registration completes at once; look without reaping
	 * (fr_loop retires the entries). */
	io_uring_for_each_cqe(&t->ring, head, cqe) {
		if (io_uring_cqe_get_data(cqe) != &t->efd && cqe->res < 0) {
			failed++;
			err = cqe->res;
		}
	}
	if (failed > 0) {
		log_warnc(err, "FUSE over io_uring: queue %u refused %u of its "
		    "entries; requests keep going through /dev/fuse", t->qid,
		    failed);
		return;
	}
	pthread_mutex_lock(&G.lock);
	if (++G.registered == G.nthreads) {
		log_info("FUSE requests go through io_uring: %u queues, %u "
		    "threads, %u entries each", G.nqueues, G.nthreads, t->nents);
	}
	pthread_mutex_unlock(&G.lock);
}

static void
fr_loop(struct fr_thread *t)
{
	for (;;) {
		struct io_uring_cqe *cqe;
		struct fr_ent *e, *replied;
		unsigned head, seen = 0, nreq = 0, nover = 0;
		bool stopping, wait;

		pthread_mutex_lock(&t->lock);
		replied = t->replied;
		t->replied = NULL;
		pthread_mutex_unlock(&t->lock);
		for (e = replied; e != NULL; e = e->next) {
			uint64_t id = atomic_exchange(&e->unique, 0);

			fr_prep_cmd(e, FR_CMD_COMMIT_AND_FETCH, id);
		}

		pthread_mutex_lock(&G.lock);
		stopping = G.stopping;
		pthread_mutex_unlock(&G.lock);
		if ((t->nkernel == 0 || stopping) && t->nuser == 0) {
			io_uring_submit(&t->ring);
			uring_local_flushed(&t->local);
			break;
		}

		pthread_mutex_lock(&t->lock);
		wait = t->replied == NULL && io_uring_cq_ready(&t->ring) == 0;
		t->sleeping = wait;
		if (!wait)
			t->kicked = false;
		pthread_mutex_unlock(&t->lock);
		if (wait) {
			int r;

			do
				r = io_uring_submit_and_wait(&t->ring, 1);
			while (r == -EINTR);
			uring_local_flushed(&t->local);
			pthread_mutex_lock(&t->lock);
			t->sleeping = t->kicked = false;
			pthread_mutex_unlock(&t->lock);
		} else {
			io_uring_submit(&t->ring);
			uring_local_flushed(&t->local);
		}

		io_uring_for_each_cqe(&t->ring, head, cqe) {
			void *data = io_uring_cqe_get_data(cqe);

			t->seen = ++seen;
			if (data == &t->efd) {
				eventfd_t v;

				eventfd_read(t->efd, &v);
				if (!(cqe->flags & IORING_CQE_F_MORE))
					fr_arm_efd(t);
				continue;
			}
			if ((uintptr_t)data & 1) {	/* backing I/O */
				uring_local_complete(data, cqe->res);
				continue;
			}
			e = data;
			if (cqe->res < 0) {
				/* The connection is gone, or the entry was
				 * cancelled: it serves no more. */
				if (e->state == FR_KERNEL)
					t->nkernel--;
				e->state = FR_DEAD;
				continue;
			}
			nreq++;
			nover += t->nuser > 0;	/* another still being served */
			fr_dispatch(e);
		}
		io_uring_cq_advance(&t->ring, seen);
		t->seen = 0;
		if (nreq > 0)	/* requests that came together all overlap */
			place_note(&t->place, nreq, nreq > 1 ? nreq : nover);
	}
}

static int
fr_setup_ring(struct fr_thread *t)
{
	struct io_uring_params p;
	unsigned n = t->nents * 2 + 4;
	int r;

	r = fault_hit(VC_FAULT_RING_SETUP);
	if (r < 0)
		return r;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER |
	    IORING_SETUP_DEFER_TASKRUN;
	r = io_uring_queue_init_params(n, &t->ring, &p);
	if (r == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_SQE128;
		r = io_uring_queue_init_params(n, &t->ring, &p);
	}
	return r;
}

static void *
fr_thread_main(void *arg)
{
	struct fr_thread *t = arg;
	int r;

	fr_self = t;
	r = place_init(&t->place, t->qid);
	if (r < 0)
		log_warnc(r, "FUSE queue %u: cannot choose its CPUs", t->qid);
	r = fr_setup_ring(t);
	pthread_mutex_lock(&G.lock);
	t->setup = r;
	t->setup_done = true;
	pthread_cond_broadcast(&G.cond);
	while (r == 0 && !G.init_done && !G.stopping)
		pthread_cond_wait(&G.cond, &G.lock);
	if (G.stopping)
		r = -ECANCELED;
	pthread_mutex_unlock(&G.lock);
	if (r < 0)
		goto out;
	t->local.ring = &t->ring;
	t->local.tag = 1;
	uring_local_set(&t->local);
	workpool_set_nonblocking(fr_busy);	/* disk waits go to the pool */
	r = fault_hit(VC_FAULT_RING_THREAD);
	if (r < 0) {
		log_warnc(r, "FUSE queue %u: failed before registering", t->qid);
	} else {
		fr_register_all(t);
		fr_loop(t);
	}
	uring_local_set(NULL);
out:
	if (t->setup == 0)
		io_uring_queue_exit(&t->ring);
	return NULL;
}

static void
fr_free(void)
{
	for (unsigned i = 0; i < G.nthreads; i++) {
		struct fr_thread *t = &G.threads[i];

		for (unsigned j = 0; j < t->nents; j++)
			if (t->ents[j].mem != NULL)
				munmap(t->ents[j].mem, FR_PREFIX + G.payload_sz);
		free(t->ents);
		if (t->efd != -1)
			close(t->efd);
		pthread_mutex_destroy(&t->lock);
	}
	free(G.threads);
	free(G.all);
	G.threads = NULL;
	G.all = NULL;
	G.nthreads = G.nall = 0;
}

static int
fr_alloc(unsigned nthreads, unsigned depth)
{
	G.threads = calloc(nthreads, sizeof(*G.threads));
	G.all = calloc((size_t)nthreads * depth, sizeof(*G.all));
	if (G.threads == NULL || G.all == NULL)
		return -ENOMEM;
	G.nthreads = nthreads;
	for (unsigned i = 0; i < nthreads; i++)
		G.threads[i].efd = -1;
	for (unsigned i = 0; i < nthreads; i++) {
		struct fr_thread *t = &G.threads[i];

		t->qid = i % G.nqueues;
		t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		pthread_mutex_init(&t->lock, NULL);
		t->ents = calloc(depth, sizeof(*t->ents));
		if (t->efd == -1 || t->ents == NULL)
			return t->efd == -1 ? -errno : -ENOMEM;
		t->nents = depth;
		for (unsigned j = 0; j < depth; j++) {
			struct fr_ent *e = &t->ents[j];

			/* Touched only as far as requests fill it. */
			e->mem = mmap(NULL, FR_PREFIX + G.payload_sz,
			    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
			if (e->mem == MAP_FAILED) {
				e->mem = NULL;
				return -errno;
			}
			e->t = t;
			e->hdr = (struct fr_req_header *)e->mem;
			e->payload = e->mem + FR_PREFIX;
			e->iov[0] = (struct iovec){ e->hdr, sizeof(*e->hdr) };
			e->iov[1] = (struct iovec){ e->payload, G.payload_sz };
			G.all[G.nall++] = e;
		}
	}
	return 0;
}

int
fuse_uring_start(unsigned depth)
{
	unsigned nthreads;
	long page = sysconf(_SC_PAGESIZE);
	int r = 0;

	if (G.se == NULL)
		return -EINVAL;
	G.nqueues = fr_possible_cpus();
	if (G.nqueues == 0)
		return -ENODEV;
	nthreads = G.nqueues;		/* one thread a queue: see fuse_uring.h */
	/* Each entry holds a 1 MiB payload: on many CPUs, fewer per queue. */
	if (depth * nthreads > VC_FUSE_URING_ENTRIES_MAX)
		depth = VC_FUSE_URING_ENTRIES_MAX / nthreads;
	if (depth < VC_FUSE_URING_DEPTH_MIN)
		depth = VC_FUSE_URING_DEPTH_MIN;
	/* The kernel wants room for its largest request or reply. */
	G.payload_sz = VC_IO_MAX;
	if (page > 0)
		G.payload_sz = (G.payload_sz + (size_t)page - 1) &
		    ~((size_t)page - 1);
	r = fr_alloc(nthreads, depth);
	for (unsigned i = 0; r == 0 && i < G.nthreads; i++) {
		r = -pthread_create(&G.threads[i].tid, NULL, fr_thread_main,
		    &G.threads[i]);
		if (r == 0) {
			char name[16];

			G.threads[i].started = true;
			/* Named for top -H and ps -L: "vcfq" + queue. */
			snprintf(name, sizeof(name), "vcfq%u", i);
			pthread_setname_np(G.threads[i].tid, name);
		}
	}
	/* Wait for every ring: a thread that cannot make one fails start. */
	pthread_mutex_lock(&G.lock);
	for (unsigned i = 0; r == 0 && i < G.nthreads; i++) {
		while (!G.threads[i].setup_done)
			pthread_cond_wait(&G.cond, &G.lock);
		if (G.threads[i].setup < 0)
			r = G.threads[i].setup;
	}
	pthread_mutex_unlock(&G.lock);
	if (r < 0) {
		fuse_uring_stop();
		fuse_uring_free();
	}
	return r;
}

void
fuse_uring_stop(void)
{
	pthread_mutex_lock(&G.lock);
	G.stopping = true;
	pthread_cond_broadcast(&G.cond);
	pthread_mutex_unlock(&G.lock);
	for (unsigned i = 0; i < G.nthreads; i++) {
		struct fr_thread *t = &G.threads[i];

		if (!t->started)
			continue;
		eventfd_write(t->efd, 1);
		pthread_join(t->tid, NULL);
		t->started = false;
	}
}

void
fuse_uring_free(void)
{
	fr_free();
}
