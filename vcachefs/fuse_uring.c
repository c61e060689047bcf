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
#include <sys/mount.h>
#include <sys/uio.h>
#include <time.h>
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

/* Attempts at registering one entry; a refused REGISTER is tried again
 * after a short pause (the kernel's -ENOMEM and -EAGAIN can pass). */
#define FR_REGISTER_TRIES	3
#define FR_REGISTER_PAUSE_MS	20
/* A queue number no kernel has: a REGISTER naming it is refused, which
 * sends the kernel back to /dev/fuse (fuse_uring_cmd: fc->io_uring = 0). */
#define FR_BAD_QID		0xffff
#define FUSECTL_DIR		"/sys/fs/fuse/connections"

enum fr_state { FR_IDLE, FR_KERNEL, FR_USER, FR_DEAD };

/* A queue thread's registration, as the INIT thread sees it (G.lock). */
enum fr_phase {
	FR_PH_WAIT,		/* not registering yet */
	FR_PH_SUBMIT,		/* sending its REGISTERs */
	FR_PH_DONE,		/* nreg entries registered, or failed */
};

struct fr_thread;

struct fr_ent {
	struct fr_thread *t;
	struct fr_req_header *hdr;
	char *payload;
	char *mem;			/* FR_PREFIX + payload, between guard pages */
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
	/* Registration, under G.lock: */
	enum fr_phase phase;
	unsigned nreg;			/* entries the kernel took */
	unsigned nrefused;		/* REGISTERs it refused, retries too */
	int err;			/* the last refusal, or why it failed */
	bool failed;			/* gave up before any REGISTER */
};

static struct {
	struct fuse_session *se;
	int devfd;
	size_t payload_sz, page;
	struct fr_thread *threads;
	unsigned nthreads, nqueues;
	unsigned kqueues;		/* queues the kernel has (possible CPUs) */
	unsigned conn;			/* in /sys/fs/fuse/connections, or 0 */
	_Atomic bool aborted;		/* set-up failed: connection aborted */
	struct fr_ent **all;		/* every entry, for reply lookup */
	unsigned nall;
	_Atomic uint64_t init_unique;	/* the INIT request, seen by fr_read */
	_Atomic bool init_offers_ring;	/* INIT offered FUSE_OVER_IO_URING */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool init_done, stopping;	/* under lock */
	bool closed;			/* no more REGISTERs; under lock */
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

/*
 * How many queues to plan and start. The test build can pretend to have
 * more CPUs (VCACHEFS_TEST_POSSIBLE_CPUS) to check what a large host would
 * reserve; the extra queues' threads then register on the kernel's real
 * queues (qid modulo kqueues), so the mount still works.
 */
static unsigned
fr_queues(void)
{
	unsigned n = fr_possible_cpus();
#ifdef VC_FAULT_INJECT
	const char *s = getenv("VCACHEFS_TEST_POSSIBLE_CPUS");

	if (s != NULL && *s != '\0') {
		unsigned long v = strtoul(s, NULL, 10);

		if (v >= n && v <= 4096)
			n = (unsigned)v;
		else
			log_warnx("VCACHEFS_TEST_POSSIBLE_CPUS=%s ignored "
			    "(from %u to 4096)", s, n);
	}
#endif
	return n;
}

static size_t
fr_payload_size(void)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t sz = VC_IO_MAX;

	/* The kernel wants room for its largest request or reply. */
	if (page > 0)
		sz = (sz + (size_t)page - 1) & ~((size_t)page - 1);
	return sz;
}

int
fuse_uring_plan(size_t budget, unsigned depth_max,
    struct vc_fuse_uring_plan *p)
{
	size_t fixed, depth;

	memset(p, 0, sizeof(*p));
	p->queues = fr_queues();
	if (p->queues == 0)
		return -ENODEV;
	p->entry_size = FR_PREFIX + fr_payload_size();
	fixed = (size_t)p->queues * VC_IO_BUF_SIZE;
	p->min_bytes = fixed + (size_t)p->queues * p->entry_size;
	/* The kernel uses the ring only once every queue has an entry. */
	if (budget < p->min_bytes)
		return -ENOBUFS;
	depth = (budget - fixed) / ((size_t)p->queues * p->entry_size);
	p->depth = depth > depth_max ? depth_max : (unsigned)depth;
	p->bytes = fixed + (size_t)p->queues * p->depth * p->entry_size;
	return 0;
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

/*
 * Queue REGISTER or COMMIT_AND_FETCH for e; owner thread only. bad makes
 * a REGISTER the kernel refuses (one iovec instead of two): the fault
 * point ring_register, so the kernel's own refusal path runs.
 */
static void
fr_prep_cmd(struct fr_ent *e, unsigned op, uint64_t commit_id, bool bad)
{
	struct fr_thread *t = e->t;
	struct io_uring_sqe *sqe = fr_sqe(t);
	struct fr_cmd_req *cr;

	if (sqe == NULL && op == FR_CMD_COMMIT_AND_FETCH) {
		/*
		 * Only when io_uring_submit itself fails (the ring has room
		 * for every entry). Keep the reply, as a reply from another
		 * thread waits, and let the loop try again after its submit:
		 * a dropped commit would leave the request unanswered.
		 */
		static _Atomic bool said;

		if (!atomic_exchange(&said, true))
			log_warnx("FUSE ring: no submission entry for a reply; "
			    "retrying it after the next submit");
		atomic_store(&e->unique, commit_id);
		pthread_mutex_lock(&t->lock);
		e->next = t->replied;
		t->replied = e;
		pthread_mutex_unlock(&t->lock);
		return;
	}
	if (sqe == NULL) {		/* REGISTER at start: the ring is empty */
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
		sqe->len = bad ? 1 : 2;
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

		fr_prep_cmd(e, FR_CMD_COMMIT_AND_FETCH, id, false);
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

/* Abort the FUSE connection: every request, held or new, fails at once. */
static void
fr_abort_conn(void)
{
	char path[128];
	int fd;

	atomic_store(&G.aborted, true);
	if (G.conn == 0) {
		log_warnx("FUSE over io_uring: the connection number is "
		    "unknown; unmount with umount -f");
		return;
	}
	snprintf(path, sizeof(path), FUSECTL_DIR "/%u/abort", G.conn);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd == -1 && errno == ENOENT &&
	    mount("fusectl", FUSECTL_DIR, "fusectl", 0, NULL) == 0)
		fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd == -1 || write(fd, "1", 1) != 1)
		log_warn("%s", path);
	if (fd != -1)
		close(fd);
}

/*
 * Send the kernel back to /dev/fuse: a REGISTER it refuses clears the
 * connection's io_uring flag and wakes the requests held for the ring
 * (fuse_uring_cmd). Only while the ring is not ready, which the caller
 * knows: a queue has no entry. Returns the kernel's answer, -errno.
 */
static int
fr_send_fallback(void)
{
	struct __kernel_timespec ts = { .tv_sec = 2 };
	struct io_uring ring;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct fr_cmd_req *cr;
	int r;

	r = fault_hit(VC_FAULT_RING_FALLBACK);
	if (r < 0)
		return r;
	r = io_uring_queue_init(2, &ring, IORING_SETUP_SQE128);
	if (r < 0)
		return r;
	sqe = io_uring_get_sqe(&ring);
	if (sqe == NULL) {		/* cannot happen: the ring is empty */
		io_uring_queue_exit(&ring);
		return -EBUSY;
	}
	memset(sqe, 0, 2 * sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = G.devfd;
	sqe->cmd_op = FR_CMD_REGISTER;
	cr = (struct fr_cmd_req *)sqe->cmd;
	cr->qid = FR_BAD_QID;
	r = io_uring_submit(&ring);
	if (r >= 0)
		r = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
	if (r == 0) {
		r = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
		/* Taken (impossible): it would hold an entry we never serve. */
		if (r >= 0)
			r = -EPROTO;
	}
	io_uring_queue_exit(&ring);
	return r;
}

/* How long until ms from now, for pthread_cond_timedwait (CLOCK_REALTIME). */
static struct timespec
fr_deadline(unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* Threads in phase ph; under G.lock. */
static unsigned
fr_count_phase(enum fr_phase ph)
{
	unsigned n = 0;

	for (unsigned i = 0; i < G.nthreads; i++)
		n += G.threads[i].phase == ph;
	return n;
}

/*
 * Wait until every queue has registered or failed; phase ph ends at
 * deadline. Returns 0, or -ETIMEDOUT; under G.lock.
 */
static int
fr_wait_phase(enum fr_phase ph, const struct timespec *deadline)
{
	while (fr_count_phase(ph) > 0 && !G.stopping)
		if (pthread_cond_timedwait(&G.cond, &G.lock, deadline) ==
		    ETIMEDOUT)
			return fr_count_phase(ph) > 0 ? -ETIMEDOUT : 0;
	return 0;
}

/*
 * Why queue q has no entry, for the log; under G.lock. Several threads
 * may serve one queue: the first one's reason is shown.
 */
static void
fr_queue_why(unsigned q, char *why, size_t len)
{
	for (unsigned i = 0; i < G.nthreads; i++) {
		const struct fr_thread *t = &G.threads[i];

		if (t->qid != q)
			continue;
		if (t->phase == FR_PH_WAIT)
			snprintf(why, len, "queue %u did not register within "
			    "%u ms", q, VC_FUSE_URING_SETUP_MS);
		else if (t->phase == FR_PH_SUBMIT)
			snprintf(why, len, "queue %u did not finish "
			    "registering", q);
		else if (t->failed)
			snprintf(why, len, "queue %u failed before registering "
			    "(%s)", q, strerror(-t->err));
		else
			snprintf(why, len, "the kernel refused every REGISTER "
			    "of queue %u (%s)", q, strerror(-t->err));
		return;
	}
	snprintf(why, len, "queue %u has no thread", q);
}

/*
 * The INIT reply has been written: the queue threads may register. When
 * it promised the ring, the kernel now holds every new request until each
 * queue has an entry, so wait here (bounded) for every queue's result and
 * never leave one unregistered: either all queues have entries, or the
 * kernel is sent back to /dev/fuse, or the connection is aborted.
 */
static void
fr_settle(bool promised)
{
	struct timespec deadline = fr_deadline(VC_FUSE_URING_SETUP_MS);
	unsigned missing = 0, first = 0, refused = 0, min = UINT32_MAX;
	bool stuck = false, started;
	char why[160];
	int r;

	pthread_mutex_lock(&G.lock);
	G.init_done = true;
	G.closed = !promised;
	started = G.nthreads > 0 && !G.stopping;
	pthread_cond_broadcast(&G.cond);
	if (!promised) {
		pthread_mutex_unlock(&G.lock);
		/* Without queue threads, main.c has said why already. */
		if (started)
			log_info("FUSE requests go through /dev/fuse: the "
			    "kernel's INIT did not offer FUSE over io_uring");
		return;
	}
	/* Threads that have not started registering by then never will. */
	if (fr_wait_phase(FR_PH_WAIT, &deadline) < 0)
		G.closed = true;
	/* Those registering finish at once (REGISTER does not block). */
	deadline = fr_deadline(VC_FUSE_URING_SETUP_MS);
	stuck = fr_wait_phase(FR_PH_SUBMIT, &deadline) < 0;
	if (G.stopping) {
		pthread_mutex_unlock(&G.lock);
		return;
	}
	for (unsigned q = 0; q < G.kqueues; q++) {
		unsigned n = 0;

		for (unsigned i = 0; i < G.nthreads; i++)
			if (G.threads[i].qid == q &&
			    G.threads[i].phase == FR_PH_DONE)
				n += G.threads[i].nreg;
		if (n == 0 && missing++ == 0)
			first = q;
		if (n < min)
			min = n;
	}
	for (unsigned i = 0; i < G.nthreads; i++)
		refused += G.threads[i].nrefused;
	if (missing == 0 && !stuck) {
		pthread_mutex_unlock(&G.lock);
		/* The last queue's first entry made the ring ready. */
		log_info("FUSE requests go through io_uring: %u queues, %u "
		    "threads, %u entries each%s", G.nqueues, G.nthreads,
		    G.threads[0].nents, refused > 0 ? " (after refused "
		    "REGISTERs, see above)" : "");
		if (min < G.threads[0].nents * (G.nthreads / G.kqueues))
			log_warnx("FUSE over io_uring: a queue serves with %u "
			    "entries", min);
		return;
	}
	/* From here on, nothing registers: the ring never becomes ready. */
	G.closed = true;
	fr_queue_why(first, why, sizeof(why));
	pthread_mutex_unlock(&G.lock);
	if (missing > 1)
		log_warnx("FUSE over io_uring: %u of %u queues have no entry",
		    missing, G.kqueues);
	if (stuck) {
		log_warnx("FUSE over io_uring: %s, so what the kernel holds is "
		    "unknown; aborting the connection: the mount fails with "
		    "ENOTCONN", why);
		fr_abort_conn();
		return;
	}
	r = fr_send_fallback();
	switch (r) {
	case -EINVAL:		/* refused in REGISTER: back to /dev/fuse */
	case -ENOMEM:
	case -EOPNOTSUPP:	/* the connection's io_uring flag is off */
		log_warnx("FUSE over io_uring: %s; the kernel is back on "
		    "/dev/fuse: requests go through /dev/fuse", why);
		break;
	case -ENOTCONN:
	case -ECONNABORTED:
		log_warnx("FUSE over io_uring: %s, and the connection is gone",
		    why);
		break;
	default:
		log_warnc(r, "FUSE over io_uring: %s, and the kernel could not "
		    "be sent back to /dev/fuse; aborting the connection: the "
		    "mount fails with ENOTCONN", why);
		fr_abort_conn();
		break;
	}
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
static bool
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
		return false;
	out = iov[1].iov_base;
	if (((struct fuse_out_header *)iov[0].iov_base)->error != 0)
		return false;
	out->flags |= FUSE_INIT_EXT;
	out->flags2 |= FR_OVER_IO_URING_FLAGS2;
	return true;
}

/* Every reply libfuse sends: into its ring entry, or to /dev/fuse. */
static ssize_t
fr_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *oh = iov[0].iov_base;
	struct fr_ent *e = NULL;
	bool init, promised = false;
	ssize_t n;

	(void)userdata;
	if (oh->unique != 0)
		e = fr_find(oh->unique);
	if (e != NULL)
		return fr_reply(e, iov, count);
	init = oh->unique != 0 && oh->unique == atomic_load(&G.init_unique);
	if (init)
		promised = fr_init_reply(iov, count);
	n = writev(fd, iov, count);
	/* The kernel takes ring registrations once INIT is answered. */
	if (n >= 0 && init)
		fr_settle(promised);
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

/*
 * After a round of REGISTERs: take back the entries the kernel refused
 * (a refusal completes during the submit; a taken REGISTER completes only
 * with a request). Returns how many, with the last error in *err. When a
 * request has come already, the ring is ready and in use: the CQEs are
 * left to fr_loop, which retires refused entries; *served says so.
 */
static unsigned
fr_take_refused(struct fr_thread *t, int *err, bool *served)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0, n = 0;

	io_uring_for_each_cqe(&t->ring, head, cqe) {
		void *data = io_uring_cqe_get_data(cqe);

		if (data == &t->efd)
			continue;
		if (((uintptr_t)data & 1) || cqe->res >= 0)
			*served = true;
		else
			n++;
	}
	if (*served)
		return n;
	n = 0;
	io_uring_for_each_cqe(&t->ring, head, cqe) {
		void *data = io_uring_cqe_get_data(cqe);

		seen++;
		if (data == &t->efd) {
			eventfd_t v;

			eventfd_read(t->efd, &v);
			if (!(cqe->flags & IORING_CQE_F_MORE))
				fr_arm_efd(t);
			continue;
		}
		struct fr_ent *e = data;

		e->state = FR_IDLE;
		t->nkernel--;
		*err = cqe->res;
		n++;
	}
	io_uring_cq_advance(&t->ring, seen);
	return n;
}

/*
 * Register every entry of t, trying a refused one again a few times, and
 * report the outcome to fr_settle. The fault point ring_register makes
 * one REGISTER bad so that the kernel really refuses it, or with EAGAIN
 * stands for the kernel's "INIT not processed yet" (which comes from an
 * io_uring worker, after the submit, and cannot happen once INIT is
 * answered).
 */
static void
fr_register_all(struct fr_thread *t)
{
	unsigned refused = 0, nreg = 0;
	bool served = false, closed = false;
	int err = 0;

	fr_arm_efd(t);
	for (unsigned try = 1; try <= FR_REGISTER_TRIES; try++) {
		unsigned again = 0;

		if (try > 1) {
			struct timespec ts = {
				.tv_nsec = (long)FR_REGISTER_PAUSE_MS * try *
				    1000000L,
			};

			nanosleep(&ts, NULL);
			pthread_mutex_lock(&G.lock);
			closed = G.closed || G.stopping;
			pthread_mutex_unlock(&G.lock);
			if (closed)
				break;
		}
		for (unsigned i = 0; i < t->nents; i++) {
			struct fr_ent *e = &t->ents[i];
			int f;

			if (e->state != FR_IDLE)
				continue;
			f = fault_hit(VC_FAULT_RING_REGISTER);
			if (f == -EAGAIN) {
				err = f;
				again++;
				continue;
			}
			fr_prep_cmd(e, FR_CMD_REGISTER, 0, f < 0);
		}
		io_uring_submit(&t->ring);
		again += fr_take_refused(t, &err, &served);
		refused += again;
		if (again == 0 || served)
			break;
	}
	for (unsigned i = 0; i < t->nents; i++)
		nreg += t->ents[i].state == FR_KERNEL;
	if (served)	/* refusals still in the CQ are not registered */
		nreg -= fr_take_refused(t, &err, &served);
	if (refused > 0)
		log_warnc(err, "FUSE queue %u: the kernel refused %u REGISTER(s), "
		    "up to %u an entry; %u of %u entries registered",
		    t->qid, refused, FR_REGISTER_TRIES, nreg, t->nents);
	pthread_mutex_lock(&G.lock);
	t->nreg = nreg;
	t->nrefused = refused;
	t->err = err;
	t->phase = FR_PH_DONE;
	pthread_cond_broadcast(&G.cond);
	pthread_mutex_unlock(&G.lock);
}

static void
fr_loop(struct fr_thread *t)
{
	for (;;) {
		struct io_uring_cqe *cqe;
		struct fr_ent *e, *next, *replied;
		unsigned head, seen = 0, nreq = 0, nover = 0;
		bool stopping, wait;

		pthread_mutex_lock(&t->lock);
		replied = t->replied;
		t->replied = NULL;
		pthread_mutex_unlock(&t->lock);
		for (e = replied; e != NULL; e = next) {
			uint64_t id = atomic_exchange(&e->unique, 0);

			next = e->next;	/* fr_prep_cmd may queue e again */
			fr_prep_cmd(e, FR_CMD_COMMIT_AND_FETCH, id, false);
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
	/* A thread that fails here never registers: fr_settle sees it. */
	r = fault_hit(VC_FAULT_RING_THREAD);
	pthread_mutex_lock(&G.lock);
	if (r == 0 && (G.closed || G.stopping))
		r = -ECANCELED;		/* too late, or no ring promised */
	t->err = r;
	t->failed = r < 0;
	t->phase = r < 0 ? FR_PH_DONE : FR_PH_SUBMIT;
	pthread_cond_broadcast(&G.cond);
	pthread_mutex_unlock(&G.lock);
	if (r < 0) {
		if (r != -ECANCELED)
			log_warnc(r, "FUSE queue %u: failed before registering",
			    t->qid);
		goto out;
	}
	t->local.ring = &t->ring;
	t->local.tag = 1;
	uring_local_set(&t->local);
	workpool_set_nonblocking(fr_busy);	/* disk waits go to the pool */
	fr_register_all(t);
	fr_loop(t);
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
				munmap(t->ents[j].mem - G.page,
				    FR_PREFIX + G.payload_sz + 2 * G.page);
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

		t->qid = i % G.kqueues;
		t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		pthread_mutex_init(&t->lock, NULL);
		t->ents = calloc(depth, sizeof(*t->ents));
		if (t->efd == -1 || t->ents == NULL)
			return t->efd == -1 ? -errno : -ENOMEM;
		t->nents = depth;
		for (unsigned j = 0; j < depth; j++) {
			struct fr_ent *e = &t->ents[j];

			/*
			 * Touched only as far as requests fill it. Guard pages
			 * on both sides: a stray write faults, and each entry
			 * is a mapping of its own in /proc/PID/maps.
			 */
			char *m = mmap(NULL, FR_PREFIX + G.payload_sz +
			    2 * G.page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);

			if (m == MAP_FAILED)
				return -errno;
			e->mem = m + G.page;
			if (mprotect(e->mem, FR_PREFIX + G.payload_sz,
			    PROT_READ | PROT_WRITE) == -1)
				return -errno;
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
fuse_uring_start(const struct vc_fuse_uring_plan *p, unsigned conn)
{
	long page = sysconf(_SC_PAGESIZE);
	int r = 0;

	if (G.se == NULL || p->queues == 0 || p->depth == 0)
		return -EINVAL;
	G.kqueues = fr_possible_cpus();
	if (G.kqueues == 0 || p->queues < G.kqueues)
		return -ENODEV;
	G.nqueues = p->queues;
	G.conn = conn;
	G.page = page > 0 ? (size_t)page : 4096;
	G.payload_sz = fr_payload_size();
	/* One thread a queue: see fuse_uring.h. */
	r = fr_alloc(p->queues, p->depth);
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

bool
fuse_uring_aborted(void)
{
	return atomic_load(&G.aborted);
}
