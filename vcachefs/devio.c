/*
 * devio.c - pausable /dev/fuse I/O for libfuse's workers (see devio.h).
 *
 * Counting. in_read: workers between their look at "paused" and the
 * count of what they read (a Dekker pair with the pausing thread: both
 * sides use sequentially consistent atomics, so either the worker sees
 * the pause or the pauser sees the worker). active: workers between a
 * read that returned a request and their next read, i.e. inside a
 * request (FORGET included, which is never answered). unanswered:
 * requests read that expect a reply, less the replies written. The hot
 * path only touches these atomics; the lock and the condition variable
 * are used only while a pause waits.
 */
#include <errno.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "devio.h"
#include "fault.h"
#include "handover.h"
#include "log.h"

/* The kernel marks an INTERRUPT's unique with it (FUSE 7.28; the
 * installed headers may be older). */
#ifndef FUSE_INT_REQ_BIT
#define FUSE_INT_REQ_BIT	(1ULL << 0)
#endif

static struct {
	int fd;				/* /dev/fuse, O_NONBLOCK */
	int wakefd;			/* readable while paused or exiting */
	bool attached;
	atomic_bool paused, exiting, draining;
	atomic_int in_read;
	atomic_long active, unanswered;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_key_t key;		/* its destructor ends a worker's request */
	/* INIT, written by the one worker that reads it, read after: */
	atomic_uint_least64_t init_unique;
	unsigned char init_in[HO_INIT_MAX], init_out[HO_INIT_MAX];
	size_t init_in_len, init_out_len;
	atomic_bool have_in, have_out;
	/* devio_replay_init(): the reply libfuse composed, not sent. */
	bool replaying;
	uint64_t replay_unique;
	unsigned char replay_out[HO_INIT_MAX];
	size_t replay_len;
} D = {
	.fd = -1, .wakefd = -1,
	.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
};

static __thread bool dv_active;		/* this worker is inside a request */
static __thread int dv_epfd = -1;	/* this worker's epoll set */
static __thread bool dv_keyed;		/* dv_thread_end() will run */

static void
dv_kick(void)
{
	if (!atomic_load(&D.draining) && !atomic_load(&D.paused))
		return;
	pthread_mutex_lock(&D.lock);
	pthread_cond_broadcast(&D.cond);
	pthread_mutex_unlock(&D.lock);
}

static void
dv_leave_request(void)
{
	if (!dv_active)
		return;
	dv_active = false;
	if (atomic_fetch_sub(&D.active, 1) == 1)
		dv_kick();
}

/* A worker thread ends (libfuse drops idle ones): its request is over. */
static void
dv_thread_end(void *arg)
{
	(void)arg;
	dv_leave_request();
	if (dv_epfd >= 0)
		close(dv_epfd);
	dv_epfd = -1;
}

/* Wait while paused. Returns 0 to read again, -1 once exiting. */
static int
dv_wait_unpaused(void)
{
	int old, r;

	/* libfuse cancels its workers at the end: never inside the lock. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	pthread_mutex_lock(&D.lock);
	while (atomic_load(&D.paused) && !atomic_load(&D.exiting))
		pthread_cond_wait(&D.cond, &D.lock);
	r = atomic_load(&D.exiting) ? -1 : 0;
	pthread_mutex_unlock(&D.lock);
	pthread_setcancelstate(old, NULL);
	return r;
}

/* Wait until the device or the wake descriptor has something. */
static void
dv_wait_readable(int fd)
{
	struct epoll_event ev[2];

	if (dv_epfd < 0) {
		int ep = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event dev = { .events = EPOLLIN | EPOLLEXCLUSIVE };
		struct epoll_event wake = { .events = EPOLLIN };

		if (ep >= 0 && (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &dev) == -1 ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, D.wakefd, &wake) == -1)) {
			close(ep);
			ep = -1;
		}
		dv_epfd = ep;
	}
	if (dv_epfd >= 0) {
		(void)epoll_wait(dv_epfd, ev, 2, -1);
	} else {
		/* No epoll set (out of descriptors): every worker wakes. */
		struct pollfd p[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = D.wakefd, .events = POLLIN },
		};

		(void)poll(p, 2, -1);
	}
}

/* Count what was read, and keep the INIT request. */
static void
dv_note_request(const void *buf, size_t n)
{
	const struct fuse_in_header *in = buf;

	if (n < sizeof(*in))
		return;
	switch (in->opcode) {
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
	case FUSE_INTERRUPT:
	case FUSE_NOTIFY_REPLY:
		return;		/* never answered */
	case FUSE_INIT:
		if (!atomic_load(&D.have_in)) {
			D.init_in_len = n < HO_INIT_MAX ? n : HO_INIT_MAX;
			memcpy(D.init_in, buf, D.init_in_len);
			atomic_store(&D.init_unique, in->unique);
			atomic_store(&D.have_in, true);
		}
		break;
	}
	atomic_fetch_add(&D.unanswered, 1);
}

static ssize_t
dv_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	if (!dv_keyed) {
		pthread_setspecific(D.key, (void *)1);
		dv_keyed = true;
	}
	dv_leave_request();
	for (;;) {
		ssize_t n;
		int saverr;

		atomic_fetch_add(&D.in_read, 1);
		if (atomic_load(&D.paused)) {
			if (atomic_fetch_sub(&D.in_read, 1) == 1)
				dv_kick();
			if (dv_wait_unpaused() < 0) {
				errno = EINTR;	/* libfuse sees the session exited */
				return -1;
			}
			continue;
		}
		n = read(fd, buf, len);
		saverr = errno;
		if (n > 0) {
			dv_note_request(buf, (size_t)n);
			dv_active = true;
			atomic_fetch_add(&D.active, 1);
			atomic_fetch_sub(&D.in_read, 1);
			return n;
		}
		if (atomic_fetch_sub(&D.in_read, 1) == 1)
			dv_kick();
		if (n == -1 && saverr == EAGAIN) {
			dv_wait_readable(fd);
			continue;
		}
		if (n == -1 && saverr == EINTR)
			continue;
		errno = saverr;
		return n;
	}
}

static size_t
dv_flatten(const struct iovec *iov, int count, unsigned char *out, size_t cap)
{
	size_t len = 0;

	for (int i = 0; i < count; i++) {
		size_t k = iov[i].iov_len;

		if (k > cap - len)
			k = cap - len;
		memcpy(out + len, iov[i].iov_base, k);
		len += k;
	}
	return len;
}

static ssize_t
dv_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *oh = iov[0].iov_base;
	ssize_t n;

	(void)userdata;
	if (D.replaying && oh->unique == D.replay_unique) {
		/* The kernel had its INIT answered by the old daemon. */
		size_t total = 0;

		for (int i = 0; i < count; i++)
			total += iov[i].iov_len;
		D.replay_len = dv_flatten(iov, count, D.replay_out,
		    sizeof(D.replay_out));
		return (ssize_t)total;
	}
	n = writev(fd, iov, count);
	/* A notification, or libfuse's EAGAIN to an INTERRUPT (whose unique
	 * has FUSE_INT_REQ_BIT): neither answers a counted request. */
	if (oh->unique == 0 || (oh->unique & FUSE_INT_REQ_BIT))
		return n;
	if (n >= 0 && !atomic_load(&D.have_out) && atomic_load(&D.have_in) &&
	    oh->unique == atomic_load(&D.init_unique)) {
		D.init_out_len = dv_flatten(iov, count, D.init_out,
		    sizeof(D.init_out));
		atomic_store(&D.have_out, true);
	}
	if (atomic_fetch_sub(&D.unanswered, 1) == 1)
		dv_kick();
	return n;
}

int
devio_attach(struct fuse_session *se, int fd)
{
	static const struct fuse_custom_io io = {
		.read = dv_read,
		.writev = dv_writev,
	};
	int fl, r;

	if (D.wakefd < 0) {
		D.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (D.wakefd == -1)
			return -errno;
		r = pthread_key_create(&D.key, dv_thread_end);
		if (r != 0)
			return -r;
	}
	/* Shared with a daemon taking over later, which uses devio too. */
	fl = fcntl(fd, F_GETFL);
	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -errno;
	r = fuse_session_custom_io(se, &io, fd);
	if (r != 0) {
		/*
		 * libfuse's own read(2) takes EAGAIN for a dead connection:
		 * put the flags back (a no-op on a handed-over descriptor,
		 * where the old daemon's devio set it and still relies on it).
		 */
		if (fcntl(fd, F_SETFL, fl) == -1)
			log_warn("/dev/fuse: cannot clear O_NONBLOCK");
		return r < 0 ? r : -EIO;
	}
	D.fd = fd;
	D.attached = true;
	return 0;
}

bool
devio_attached(void)
{
	return D.attached;
}

static bool
dv_busy(void)
{
	return atomic_load(&D.in_read) > 0 || atomic_load(&D.active) > 0 ||
	    atomic_load(&D.unanswered) > 0;
}

int
devio_pause(unsigned ms)
{
	struct timespec dl;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	atomic_store(&D.draining, true);
	atomic_store(&D.paused, true);
	(void)eventfd_write(D.wakefd, 1);
	pthread_mutex_lock(&D.lock);
	while (r == 0 && dv_busy())
		if (pthread_cond_timedwait(&D.cond, &D.lock, &dl) == ETIMEDOUT)
			r = dv_busy() ? -ETIMEDOUT : 0;
	pthread_mutex_unlock(&D.lock);
	if (r < 0)
		log_warnx("takeover: %ld request(s) still unanswered, %ld "
		    "worker(s) inside one after %u ms",
		    atomic_load(&D.unanswered), atomic_load(&D.active), ms);
	return r;
}

void
devio_resume(void)
{
	eventfd_t v;

	(void)eventfd_read(D.wakefd, &v);
	pthread_mutex_lock(&D.lock);
	atomic_store(&D.paused, false);
	atomic_store(&D.draining, false);
	pthread_cond_broadcast(&D.cond);
	pthread_mutex_unlock(&D.lock);
}

void
devio_exit(struct fuse_session *se)
{
	fuse_session_exit(se);
	pthread_mutex_lock(&D.lock);
	atomic_store(&D.exiting, true);
	pthread_cond_broadcast(&D.cond);
	pthread_mutex_unlock(&D.lock);
	(void)eventfd_write(D.wakefd, 1);
}

int
devio_init_bytes(const void **in, size_t *inlen, const void **out,
    size_t *outlen)
{
	if (!atomic_load(&D.have_in) || !atomic_load(&D.have_out))
		return -ENOENT;
	*in = D.init_in;
	*inlen = D.init_in_len;
	*out = D.init_out;
	*outlen = D.init_out_len;
	return 0;
}

/* The first field of the INIT replies that differs, for the message. */
static void
dv_init_diff(const unsigned char *a, size_t alen, const unsigned char *b,
    size_t blen, char *why, size_t whylen)
{
	static const struct { size_t off; const char *name; } fields[] = {
		{ offsetof(struct fuse_init_out, major), "major" },
		{ offsetof(struct fuse_init_out, minor), "minor" },
		{ offsetof(struct fuse_init_out, max_readahead), "max_readahead" },
		{ offsetof(struct fuse_init_out, flags), "flags" },
		{ offsetof(struct fuse_init_out, max_background), "max_background" },
		{ offsetof(struct fuse_init_out, congestion_threshold), "congestion_threshold" },
		{ offsetof(struct fuse_init_out, max_write), "max_write" },
		{ offsetof(struct fuse_init_out, time_gran), "time_gran" },
		{ offsetof(struct fuse_init_out, max_pages), "max_pages" },
	};
	size_t hdr = sizeof(struct fuse_out_header), n = alen < blen ? alen : blen;
	size_t at = 0;
	const char *name = "header";

	while (at < n && a[at] == b[at])
		at++;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (at >= hdr + fields[i].off)
			name = fields[i].name;
	if (at >= hdr + offsetof(struct fuse_init_out, max_pages) + 2)
		name = "flags2 or later fields";
	snprintf(why, whylen, "this daemon's INIT reply differs from the one "
	    "the kernel got (%zu and %zu bytes, first at byte %zu: %s); the "
	    "kernel keeps what it negotiated, so the old daemon stays", alen,
	    blen, at, at == n ? "length" : name);
}

int
devio_replay_init(struct fuse_session *se, const void *in, size_t inlen,
    const void *out, size_t outlen, char *why, size_t whylen)
{
	const struct fuse_in_header *ih = in;
	struct fuse_buf buf = { .size = inlen };

	if (inlen < sizeof(*ih) + sizeof(struct fuse_init_in) ||
	    ih->opcode != FUSE_INIT || ih->len != inlen ||
	    outlen < sizeof(struct fuse_out_header)) {
		snprintf(why, whylen, "the handed-over INIT request is malformed");
		return -EPROTO;
	}
	/* libfuse may read up to its buffer size: give it room. */
	buf.mem = calloc(1, inlen + 4096);
	if (buf.mem == NULL) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	memcpy(buf.mem, in, inlen);
	D.replaying = true;
	D.replay_unique = ih->unique;
	D.replay_len = 0;
	fuse_session_process_buf(se, &buf);
	D.replaying = false;
	free(buf.mem);
	if (fault_hit(VC_FAULT_TAKEOVER_INIT) < 0 && D.replay_len >=
	    sizeof(struct fuse_out_header) + offsetof(struct fuse_init_out,
	    max_write) + sizeof(uint32_t)) {
		size_t at = sizeof(struct fuse_out_header) +
		    offsetof(struct fuse_init_out, max_write);
		uint32_t mw;

		memcpy(&mw, D.replay_out + at, sizeof(mw));
		mw /= 2;
		memcpy(D.replay_out + at, &mw, sizeof(mw));
	}
	if (D.replay_len != outlen || memcmp(D.replay_out, out, outlen) != 0) {
		dv_init_diff(D.replay_out, D.replay_len, out, outlen, why, whylen);
		return -EPROTO;
	}
	/* This daemon can hand the connection on in its turn. */
	memcpy(D.init_in, in, inlen);
	D.init_in_len = inlen;
	memcpy(D.init_out, out, outlen);
	D.init_out_len = outlen;
	atomic_store(&D.init_unique, ih->unique);
	atomic_store(&D.have_in, true);
	atomic_store(&D.have_out, true);
	return 0;
}
