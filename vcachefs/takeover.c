/*
 * takeover.c - hand the FUSE connection to a new daemon (see takeover.h).
 *
 * Why not with FUSE over io_uring: once the ring is in use the kernel
 * queues each request on a ring entry of the submitting CPU's queue
 * (fs/fuse/dev_uring.c, fuse_uring_queue_fuse_req), and an entry leaves
 * the old daemon only with a request in it: there is no command that
 * withdraws one (fuse_uring_cmd knows REGISTER and COMMIT_AND_FETCH), and
 * the cancel at ring teardown (fuse_uring_cancel) takes only entries
 * without a request. A request put on an old entry after the old daemon's
 * last look is sent to a ring nobody reads (fuse_uring_send_in_task),
 * stays in the queue's processing list, and is never answered. A new
 * daemon could REGISTER entries on the ready ring (fuse_uring_register
 * creates them on the existing queues), but cannot prevent that loss.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctlproto.h"
#include "devio.h"
#include "fault.h"
#include "fdstore.h"
#include "log.h"
#include "mounts.h"
#include "takeover.h"

#define TK_MAGIC	"VCTAKE1"	/* 8 bytes with its NUL */
#define TK_BATCH	200		/* descriptors a message (SCM_MAX_FD is 253) */
#define TK_REPLY_MAX	512

/* The first message of the old daemon; devfd, rootfd, memfd ride along. */
struct tk_hello {
	char magic[8];
	uint32_t nfds;		/* inode descriptors to follow, in batches */
	uint32_t pad;
	uint64_t size;		/* bytes of the state in the memfd */
};

static atomic_bool tk_given;
/*
 * The stop thread holds it while it unmounts or aborts; a takeover marks
 * itself under it, so neither starts while the other is under way.
 */
static pthread_mutex_t tk_stop_lock = PTHREAD_MUTEX_INITIALIZER;
static bool tk_busy;		/* paused for a takeover, or handed over */

static int tk_read_state(struct vc_takeover *tk, int memfd, uint64_t size);
static void tk_init(struct vc_takeover *tk);

bool
takeover_given(void)
{
	return atomic_load(&tk_given);
}

bool
takeover_stop_begin(void)
{
	pthread_mutex_lock(&tk_stop_lock);
	if (tk_busy || atomic_load(&tk_given)) {
		pthread_mutex_unlock(&tk_stop_lock);
		return false;
	}
	return true;
}

void
takeover_stop_end(void)
{
	pthread_mutex_unlock(&tk_stop_lock);
}

bool
takeover_set_busy(struct vc_fs *fs, bool busy)
{
	bool ok = true;

	pthread_mutex_lock(&tk_stop_lock);
	if (busy && fuse_session_exited(fs->se))
		ok = false;
	else
		tk_busy = busy;
	pthread_mutex_unlock(&tk_stop_lock);
	return ok;
}

static int
tk_why(char *why, size_t len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
tk_why(char *why, size_t len, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return err;
}

/* Send len bytes with fds (may be 0) in one message. Returns 0 or -errno. */
static int
tk_send(int sock, const void *buf, size_t len, const int *fds, unsigned n)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * TK_BATCH)];
	} cm;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t r;

	if (n > 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		cm.h.cmsg_level = SOL_SOCKET;
		cm.h.cmsg_type = SCM_RIGHTS;
		cm.h.cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(&cm.h), fds, sizeof(int) * n);
	}
	do
		r = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (r == -1 && errno == EINTR);
	if (r == -1)
		return -errno;
	if ((size_t)r < len) {
		/* The rest without descriptors: they went with the first byte. */
		size_t off = (size_t)r;

		while (off < len) {
			r = send(sock, (const char *)buf + off, len - off,
			    MSG_NOSIGNAL);
			if (r == -1 && errno == EINTR)
				continue;
			if (r <= 0)
				return r == 0 ? -EPIPE : -errno;
			off += (size_t)r;
		}
	}
	return 0;
}

/* A line from sock within ms (without its newline). Returns 0 or -errno. */
static int
tk_recv_line(int sock, char *buf, size_t len, unsigned ms)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		ssize_t r;
		int pr = poll(&p, 1, (int)ms);

		if (pr == -1 && errno == EINTR)
			continue;
		if (pr == 0)
			return -ETIMEDOUT;
		if (pr < 0)
			return -errno;
		r = recv(sock, buf + n, 1, 0);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return r == 0 ? -ECONNRESET : -errno;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			return 0;
		}
		n++;
	}
	return -EMSGSIZE;
}

/* --- the old daemon --- */

struct tk_collect {
	struct vc_handover *h;
	int *fds;		/* dups of inode descriptors */
	unsigned nfds, capfds;
	int err;
	uint64_t nohandle;	/* inodes passed by descriptor only */
};

static int
tk_collect_inode(struct vc_inode *n, void *arg)
{
	struct tk_collect *c = arg;
	struct vc_ho_inode in = { .nodeid = n->nodeid, .dev = n->dev,
	    .ino = n->ino, .nlookup = n->nlookup, .type = n->type,
	    .stale = !n->hashed, .fdidx = -1 };

	if (n->nodeid == ITABLE_ROOT_ID)
		return 0;	/* passed on its own */
	if (n->handle != NULL) {
		if (n->handle->handle_bytes > HO_HANDLE_MAX)
			return c->err = -EOVERFLOW;
		in.handle_type = n->handle->handle_type;
		in.handle_bytes = n->handle->handle_bytes;
		memcpy(in.handle, n->handle->f_handle, in.handle_bytes);
	} else {
		c->nohandle++;
	}
	if (n->fd >= 0) {
		if (c->nfds == c->capfds) {
			unsigned cap = c->capfds ? c->capfds * 2 : 64;
			int *p = realloc(c->fds, cap * sizeof(*p));

			if (p == NULL)
				return c->err = -ENOMEM;
			c->fds = p;
			c->capfds = cap;
		}
		/* A copy: the table may close its own once we unlock. */
		int fd = fcntl(n->fd, F_DUPFD_CLOEXEC, 0);

		if (fd == -1)
			return c->err = -errno;
		in.fdidx = (int32_t)c->nfds;
		c->fds[c->nfds++] = fd;
	} else if (n->handle == NULL) {
		return c->err = -EBADF;	/* cannot happen: see inode.h */
	}
	c->err = ho_add_inode(c->h, &in);
	return c->err;
}

static void
tk_collect_image(const struct vc_image *img, void *arg)
{
	struct tk_collect *c = arg;
	struct vc_ho_image im = { .nodeid = img->inode->nodeid,
	    .opens = img->opencount - img->holds,
	    .writable = img->fd_writable };

	if (c->err == 0 && im.opens > 0)
		c->err = ho_add_image(c->h, &im);
}

static int
tk_collect_dir(uint64_t fh, void *p, void *arg)
{
	struct tk_collect *c = arg;
	const struct vc_dir *d = p;
	struct vc_ho_dir hd = { .fh = fh, .nodeid = d->nodeid,
	    .offset = d->offset };

	return c->err = ho_add_dir(c->h, &hd);
}

static void
tk_close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* The state in a memfd. Returns it or -errno. */
static int
tk_state_memfd(struct vc_fs *fs, struct tk_collect *c, size_t *size)
{
	const void *in, *out;
	size_t inlen, outlen, len;
	unsigned char *buf;
	int fd, r;

	r = devio_init_bytes(&in, &inlen, &out, &outlen);
	if (r < 0)
		return r;
	memcpy(c->h->init_in, in, inlen);
	c->h->init_in_len = (uint32_t)inlen;
	memcpy(c->h->init_out, out, outlen);
	c->h->init_out_len = (uint32_t)outlen;
	c->h->root_dev = fs->itable.root.dev;
	c->h->root_ino = fs->itable.root.ino;
	r = ho_set_source(c->h, fs->source);
	if (r == 0)
		r = itable_each(&fs->itable, tk_collect_inode, c);
	if (r == 0)
		registry_foreach_open(&fs->registry, tk_collect_image, c);
	if (r == 0 && c->err == 0)
		r = slots_each(&fs->dirs, tk_collect_dir, c);
	if (r == 0)
		r = c->err;
	if (r < 0)
		return r;
	c->h->nfds = c->nfds;
	r = ho_encode(c->h, &buf, &len);
	if (r < 0)
		return r;
	fd = memfd_create("vcachefs-handover", MFD_CLOEXEC);
	if (fd == -1) {
		r = -errno;
		free(buf);
		return r;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, buf + off, len - off);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0) {
			r = w == 0 ? -EIO : -errno;
			free(buf);
			close(fd);
			return r;
		}
		off += (size_t)w;
	}
	free(buf);
	*size = len;
	return fd;
}

int
takeover_pack(struct vc_fs *fs, struct vc_takeover_pack *p)
{
	struct vc_handover h;
	struct tk_collect c = { .h = &h };
	int r;

	memset(p, 0, sizeof(*p));
	ho_init(&h);
	r = tk_state_memfd(fs, &c, &p->size);
	p->memfd = r;
	p->fds = c.fds;
	p->nfds = c.nfds;
	p->ninodes = h.ninodes;
	p->nimages = h.nimages;
	p->ndirs = h.ndirs;
	ho_free(&h);
	if (r < 0) {
		takeover_pack_free(p);
		return r;
	}
	return 0;
}

void
takeover_pack_free(struct vc_takeover_pack *p)
{
	if (p->memfd >= 0)
		close(p->memfd);
	p->memfd = -1;
	if (p->fds != NULL)
		tk_close_fds(p->fds, p->nfds);
	free(p->fds);
	p->fds = NULL;
	p->nfds = 0;
}

void
takeover_mark_given(struct vc_fs *fs)
{
	atomic_store(&tk_given, true);
	devio_exit(fs->se);
}

int
takeover_check(struct vc_fs *fs, char *why, size_t whylen)
{
	if (fs->fuse_uring)
		return tk_why(why, whylen, -EOPNOTSUPP, "requests go through "
		    "FUSE over io_uring, whose ring entries the kernel gives "
		    "no way to hand over (see vcachefs(8)); start the daemon "
		    "with --fuse-uring off to be able to take it over");
	if (!devio_attached())
		return tk_why(why, whylen, -EOPNOTSUPP, "this daemon was "
		    "started for FUSE over io_uring and reads /dev/fuse "
		    "without the takeover's I/O; start it with --fuse-uring "
		    "off");
	if (takeover_given())
		return tk_why(why, whylen, -EALREADY, "already handed over");
	return 0;
}

int
takeover_read_state(struct vc_takeover *tk, int memfd)
{
	struct stat st;

	if (fstat(memfd, &st) == -1)
		return -errno;
	return tk_read_state(tk, memfd, (uint64_t)st.st_size);
}

void
takeover_init(struct vc_takeover *tk)
{
	tk_init(tk);
}

/* Hand over, the reads paused and drained. Returns 1, or -errno with why. */
static int
tk_give_paused(struct vc_fs *fs, int cfd, void (*listener)(bool reopen),
    char *why, size_t whylen)
{
	struct vc_handover h;
	struct tk_collect c = { .h = &h };
	struct tk_hello hello = { .magic = TK_MAGIC };
	char line[TK_REPLY_MAX];
	size_t size = 0;
	int memfd, r, first[3];

	ho_init(&h);
	memfd = tk_state_memfd(fs, &c, &size);
	if (memfd < 0) {
		r = tk_why(why, whylen, memfd, "cannot write the state: %s",
		    strerror(-memfd));
		goto out;
	}
	hello.nfds = c.nfds;
	hello.size = size;
	first[0] = fuse_session_fd(fs->se);
	first[1] = fs->itable.root.fd;
	first[2] = memfd;
	r = tk_send(cfd, &hello, sizeof(hello), first, 3);
	for (unsigned i = 0; r == 0 && i < c.nfds; i += TK_BATCH) {
		unsigned n = c.nfds - i < TK_BATCH ? c.nfds - i : TK_BATCH;

		r = tk_send(cfd, "F", 1, c.fds + i, n);
	}
	close(memfd);
	if (r < 0) {
		r = tk_why(why, whylen, r, "sending the connection: %s",
		    strerror(-r));
		goto out;
	}
	log_info("takeover: sent the connection, %zu inode(s) (%u by "
	    "descriptor), %zu open image(s), %zu directory handle(s); "
	    "waiting for the new daemon", h.ninodes, c.nfds, h.nimages,
	    h.ndirs);
	r = tk_recv_line(cfd, line, sizeof(line), TAKEOVER_ACK_MS);
	if (r < 0) {
		r = tk_why(why, whylen, r, "no answer from the new daemon: %s",
		    strerror(-r));
		goto out;
	}
	if (strcmp(line, "ack") != 0) {
		r = tk_why(why, whylen, -ECANCELED, "the new daemon refused: %s",
		    strncmp(line, "error ", 6) == 0 ? line + 6 : line);
		goto out;
	}
	/* Committed: from here on the connection is the new daemon's. */
	listener(false);
	if (send(cfd, "ok\n", 3, MSG_NOSIGNAL) != 3) {
		int err = errno;

		/* It never hears "ok", so it never serves: keep serving, and
		 * reachable (the workers are still paused: no file is made
		 * under bind's umask). */
		listener(true);
		r = tk_why(why, whylen, -err, "the new daemon left after its "
		    "ack (%s)", strerror(err));
		goto out;
	}
	atomic_store(&tk_given, true);
	log_info("takeover: the new daemon serves %s; leaving without "
	    "unmounting", fs->mountpoint);
	devio_exit(fs->se);
	r = 1;
out:
	tk_close_fds(c.fds, c.nfds);
	free(c.fds);
	ho_free(&h);
	return r;
}

int
takeover_give(struct vc_fs *fs, int cfd, void (*listener)(bool reopen),
    char *why, size_t whylen)
{
	int fl, r;

	r = takeover_check(fs, why, whylen);
	if (r < 0)
		return r;
	fl = fcntl(cfd, F_GETFL);
	if (fl == -1 || fcntl(cfd, F_SETFL, fl & ~O_NONBLOCK) == -1)
		return tk_why(why, whylen, -errno, "control socket: %s",
		    strerror(errno));
	if (!takeover_set_busy(fs, true)) {
		(void)fcntl(cfd, F_SETFL, fl);
		return tk_why(why, whylen, -ESHUTDOWN, "the daemon is stopping");
	}
	log_info("takeover: requested; pausing requests");
	r = devio_pause(TAKEOVER_DRAIN_MS);
	if (r < 0) {
		devio_resume();
		takeover_set_busy(fs, false);
		(void)fcntl(cfd, F_SETFL, fl);
		return tk_why(why, whylen, r, "requests in flight did not "
		    "finish within %u ms", TAKEOVER_DRAIN_MS);
	}
	r = tk_give_paused(fs, cfd, listener, why, whylen);
	if (r < 0) {
		devio_resume();
		takeover_set_busy(fs, false);
		log_warnx("takeover refused: %s; serving on", why);
	}
	(void)fcntl(cfd, F_SETFL, fl);
	return r;
}

/* --- the new daemon --- */

static void
tk_init(struct vc_takeover *tk)
{
	memset(tk, 0, sizeof(*tk));
	tk->sock = tk->devfd = tk->rootfd = -1;
	ho_init(&tk->state);
}

void
takeover_free(struct vc_takeover *tk)
{
	if (tk->sock >= 0)
		close(tk->sock);
	if (tk->devfd >= 0)
		close(tk->devfd);
	if (tk->rootfd >= 0)
		close(tk->rootfd);
	if (tk->fds != NULL)
		tk_close_fds(tk->fds, tk->nfds);
	free(tk->fds);
	ho_free(&tk->state);
	tk->sock = tk->devfd = tk->rootfd = -1;
	tk->fds = NULL;
	tk->nfds = 0;
}

/*
 * One message: up to len bytes (all of them unless it is an error line),
 * and the descriptors it carries into fds (at most maxfds; *nfds gets
 * how many). Returns the bytes read or -errno.
 */
static ssize_t
tk_recv(int sock, void *buf, size_t len, int *fds, unsigned maxfds,
    unsigned *nfds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * TK_BATCH)];
	} cm;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
	ssize_t r;

	*nfds = 0;
	do
		r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (r == -1 && errno == EINTR);
	if (r == -1)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL;
	    c = CMSG_NXTHDR(&mh, c)) {
		unsigned n;
		int *p;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		p = (int *)CMSG_DATA(c);
		for (unsigned i = 0; i < n; i++) {
			if (*nfds < maxfds)
				fds[(*nfds)++] = p[i];
			else
				close(p[i]);	/* more than announced */
		}
	}
	if (mh.msg_flags & MSG_CTRUNC) {
		tk_close_fds(fds, *nfds);
		*nfds = 0;
		return -EMFILE;
	}
	return r;
}

/*
 * Whoever answers at the control socket is trusted with the mount only
 * if it is root or this daemon's user (anyone else could bind a stale
 * path), and what it sends must be /dev/fuse and a directory.
 */
static int
tk_check_peer(int sock, const char *path)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_warn("takeover: %s: SO_PEERCRED", path);
		return -errno;
	}
	if (cred.uid != 0 && cred.uid != geteuid()) {
		log_warnx("takeover: %s is served by pid %d of uid %u, not root "
		    "or uid %u: not trusted", path, (int)cred.pid,
		    (unsigned)cred.uid, (unsigned)geteuid());
		return -EPERM;
	}
	return 0;
}

static int
tk_check_fds(int devfd, int rootfd, const char *path)
{
	struct stat st;

	if (fstat(devfd, &st) == -1 || !S_ISCHR(st.st_mode) ||
	    major(st.st_rdev) != 10 || minor(st.st_rdev) != 229) {
		log_warnx("takeover: %s sent a descriptor that is not /dev/fuse "
		    "(10:229)", path);
		return -EPROTO;
	}
	if (fstat(rootfd, &st) == -1 || !S_ISDIR(st.st_mode)) {
		log_warnx("takeover: %s sent a source that is not a directory",
		    path);
		return -EPROTO;
	}
	return 0;
}

/* Read the memfd's state into tk->state. */
static int
tk_read_state(struct vc_takeover *tk, int memfd, uint64_t size)
{
	char why[256];
	struct stat st;
	unsigned char *buf;
	int r;

	if (fstat(memfd, &st) == -1)
		return -errno;
	if ((uint64_t)st.st_size != size || size > HO_MAX_BYTES) {
		log_warnx("takeover: the state has %lld bytes, %llu announced",
		    (long long)st.st_size, (unsigned long long)size);
		return -EPROTO;
	}
	buf = malloc(size ? size : 1);
	if (buf == NULL)
		return -ENOMEM;
	for (size_t off = 0; off < size;) {
		ssize_t n = pread(memfd, buf + off, size - off, (off_t)off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n == 0 ? -EIO : -errno;
			free(buf);
			return r;
		}
		off += (size_t)n;
	}
	r = ho_decode(buf, size, &tk->state, why, sizeof(why));
	free(buf);
	if (r < 0)
		log_warnx("takeover: the old daemon's state is unusable: %s", why);
	return r;
}

int
takeover_request(const char *path, struct vc_takeover *tk)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = TAKEOVER_ACK_MS / 1000 };
	struct tk_hello hello;
	int first[3], r, memfd;
	unsigned n;
	ssize_t got;

	tk_init(tk);
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_warnx("takeover: %s: name too long", path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	tk->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (tk->sock == -1 || connect(tk->sock, (struct sockaddr *)&sa,
	    sizeof(sa)) == -1) {
		r = -errno;
		log_warnc(r, "takeover: no daemon answers at %s", path);
		takeover_free(tk);
		return r;
	}
	r = tk_check_peer(tk->sock, path);
	if (r < 0) {
		takeover_free(tk);
		return r;
	}
	/* Draining may take TAKEOVER_DRAIN_MS: wait longer than that. */
	(void)setsockopt(tk->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(tk->sock, "takeover\n", 9, MSG_NOSIGNAL) != 9) {
		r = -errno;
		log_warnc(r, "takeover: %s", path);
		takeover_free(tk);
		return r;
	}
	memset(&hello, 0, sizeof(hello));
	got = tk_recv(tk->sock, &hello, sizeof(hello), first, 3, &n);
	if (got > 0 && n == 0 && strncmp(hello.magic, "error ", 6) == 0) {
		char msg[TK_REPLY_MAX + sizeof(hello)];
		size_t k = (size_t)got;

		memcpy(msg, &hello, k);
		msg[k] = '\0';
		if (memchr(msg, '\n', k) == NULL)
			(void)tk_recv_line(tk->sock, msg + k, sizeof(msg) - k, 5000);
		msg[strcspn(msg, "\n")] = '\0';
		log_warnx("takeover refused by the daemon of %s: %s", path,
		    msg + 6);
		takeover_free(tk);
		return -ECANCELED;
	}
	if (got != (ssize_t)sizeof(hello) || n != 3 ||
	    memcmp(hello.magic, TK_MAGIC, sizeof(hello.magic)) != 0) {
		tk_close_fds(first, n);
		log_warnx("takeover: unexpected answer from %s (%zd bytes, %u "
		    "descriptors)", path, got, n);
		takeover_free(tk);
		return got < 0 ? (int)got : -EPROTO;
	}
	tk->devfd = first[0];
	tk->rootfd = first[1];
	memfd = first[2];
	r = tk_check_fds(tk->devfd, tk->rootfd, path);
	if (r == 0)
		r = tk_read_state(tk, memfd, hello.size);
	close(memfd);
	if (r == 0 && tk->state.nfds != hello.nfds)
		r = -EPROTO;
	if (r == 0 && hello.nfds > 0) {
		tk->fds = malloc(hello.nfds * sizeof(int));
		if (tk->fds == NULL)
			r = -ENOMEM;
	}
	while (r == 0 && tk->nfds < hello.nfds) {
		char b;

		got = tk_recv(tk->sock, &b, 1, tk->fds + tk->nfds,
		    hello.nfds - tk->nfds, &n);
		if (got != 1 || n == 0)
			r = got < 0 ? (int)got : -EPROTO;
		tk->nfds += n;
	}
	if (r < 0) {
		log_warnc(r, "takeover: receiving the state from %s", path);
		takeover_refuse(tk, "the state could not be received");
		return r;
	}
	return 0;
}

int
takeover_begin(const char *mountpoint, const char *control, char *mnt,
    size_t mntlen, char *source, size_t srclen, struct vc_takeover *tk)
{
	char def[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct vc_mountent ent;
	int r;

	tk_init(tk);
	r = mounts_abspath(mountpoint, mnt, mntlen);
	if (r < 0) {
		log_warnc(r, "%s", mountpoint);
		return r;
	}
	if (mounts_find(mnt, &ent) <= 0 || strcmp(ent.fstype, "fuse.vcachefs") != 0) {
		log_warnx("--takeover: no vcachefs mount at %s", mnt);
		return -ENOENT;
	}
	if (control == NULL) {
		r = ctl_default_socket(mnt, def, sizeof(def));
		if (r < 0) {
			log_warnc(r, "--takeover: no control socket name for %s "
			    "(use --control PATH)", mnt);
			return r;
		}
		control = def;
	}
	r = takeover_request(control, tk);
	if (r < 0)
		return r;
	if (strlen(tk->state.source) >= srclen) {
		takeover_refuse(tk, "source path too long");
		return -ENAMETOOLONG;
	}
	strcpy(source, tk->state.source);
	return 0;
}

/* Install one inode of the state. */
static int
tk_install_inode(struct vc_fs *fs, struct vc_takeover *tk,
    const struct vc_ho_inode *in, char *why, size_t whylen)
{
	struct {
		struct file_handle h;
		unsigned char bytes[HO_HANDLE_MAX];
	} fh;
	int fd = in->fdidx >= 0 ? tk->fds[in->fdidx] : -1, r;
	struct stat st;

	if (fd >= 0 && (fstat(fd, &st) == -1 || st.st_dev != in->dev ||
	    st.st_ino != in->ino))
		return tk_why(why, whylen, -ESTALE, "inode %llu: its "
		    "descriptor is not the object named",
		    (unsigned long long)in->nodeid);
	fh.h.handle_bytes = in->handle_bytes;
	fh.h.handle_type = in->handle_type;
	memcpy(fh.h.f_handle, in->handle, in->handle_bytes);
	r = itable_install(&fs->itable, in->nodeid, fd,
	    in->handle_bytes > 0 ? &fh.h : NULL, in->dev, in->ino, in->type,
	    in->nlookup, in->stale);
	if (r < 0)
		return tk_why(why, whylen, r, "inode %llu: %s",
		    (unsigned long long)in->nodeid, strerror(-r));
	if (fd >= 0)
		tk->fds[in->fdidx] = -1;	/* the table's now */
	return 0;
}

/* Open an image as often as the kernel has it open. */
static int
tk_install_image(struct vc_fs *fs, const struct vc_ho_image *im, char *why,
    size_t whylen)
{
	struct vc_inode *inode = itable_get(&fs->itable, im->nodeid);
	struct vc_image *img;
	int r;

	if (inode == NULL)
		return tk_why(why, whylen, -EINVAL, "image %llu: no inode",
		    (unsigned long long)im->nodeid);
	for (uint32_t k = 0; k < im->opens; k++) {
		/* One writer makes the descriptor writable, as before. */
		int flags = im->writable && k == 0 ? O_RDWR : O_RDONLY;

		r = fault_hit(VC_FAULT_OPEN);
		if (r == 0)
			r = inode_fd_get(&fs->itable, inode);
		if (r >= 0) {
			r = image_open(&fs->registry, inode, flags, &img);
			inode_fd_put(&fs->itable, inode);
		}
		if (r < 0)
			return tk_why(why, whylen, r, "reopening image %llu "
			    "(%s): %s", (unsigned long long)im->nodeid,
			    inode->image ? inode->image->relpath : "?",
			    strerror(-r));
	}
	return 0;
}

int
takeover_install(struct vc_fs *fs, struct vc_takeover *tk, char *why,
    size_t whylen)
{
	const struct vc_handover *h = &tk->state;
	int r = 0;

	if (fs->itable.root.dev != h->root_dev ||
	    fs->itable.root.ino != h->root_ino)
		return tk_why(why, whylen, -ESTALE, "the source directory is "
		    "not the one the old daemon serves");
	for (size_t i = 0; r == 0 && i < h->ninodes; i++)
		r = tk_install_inode(fs, tk, &h->inodes[i], why, whylen);
	if (r == 0 && (r = itable_seal(&fs->itable)) < 0)
		tk_why(why, whylen, r, "inode table: %s", strerror(-r));
	for (size_t i = 0; r == 0 && i < h->nimages; i++)
		r = tk_install_image(fs, &h->images[i], why, whylen);
	for (size_t i = 0; r == 0 && i < h->ndirs; i++) {
		struct vc_dir *d = calloc(1, sizeof(*d));

		if (d == NULL) {
			r = tk_why(why, whylen, -ENOMEM, "out of memory");
			break;
		}
		d->nodeid = h->dirs[i].nodeid;
		d->offset = (off_t)h->dirs[i].offset;
		r = slots_install(&fs->dirs, h->dirs[i].fh, d);
		if (r < 0) {
			free(d);
			tk_why(why, whylen, r, "directory handle %llu: %s",
			    (unsigned long long)h->dirs[i].fh, strerror(-r));
		}
	}
	if (r == 0 && (r = slots_seal(&fs->dirs)) < 0)
		tk_why(why, whylen, r, "directory handles: %s", strerror(-r));
	if (r < 0)
		return r;
	r = devio_attach(fs->se, tk->devfd);
	if (r < 0)
		return tk_why(why, whylen, r, "/dev/fuse: %s", strerror(-r));
	tk->devfd = -1;		/* the session's: fuse_session_destroy closes it */
	return devio_replay_init(fs->se, h->init_in, h->init_in_len,
	    h->init_out, h->init_out_len, why, whylen);
}

int
takeover_commit(struct vc_takeover *tk)
{
	char line[TK_REPLY_MAX];
	int r;

	if (tk->from_store)
		return fdstore_release(tk);
	if (send(tk->sock, "ack\n", 4, MSG_NOSIGNAL) != 4) {
		r = -errno;
		log_warnc(r, "takeover: sending the ack");
		return r;
	}
	r = tk_recv_line(tk->sock, line, sizeof(line), TAKEOVER_ACK_MS);
	if (r == 0 && strcmp(line, "ok") != 0)
		r = -EPROTO;
	if (r < 0)
		log_warnc(r, "takeover: the old daemon did not confirm (%s); "
		    "it keeps the connection", r == -EPROTO ? line : "no ok");
	close(tk->sock);
	tk->sock = -1;
	return r;
}

void
takeover_refuse(struct vc_takeover *tk, const char *why)
{
	char line[TK_REPLY_MAX];

	if (tk->sock >= 0) {
		snprintf(line, sizeof(line), "error %s\n", why);
		(void)!send(tk->sock, line, strlen(line), MSG_NOSIGNAL);
	}
	takeover_free(tk);
}

#if defined(__SANITIZE_ADDRESS__)
/*
 * A daemon that handed its connection over skips fuse_session_unmount(),
 * which alone frees libfuse's copy of the mount point (and would unmount):
 * 15 bytes left at exit on purpose, not a leak to report.
 */
const char *__lsan_default_suppressions(void);

const char *
__lsan_default_suppressions(void)
{
	return "leak:fuse_session_mount\n";
}
#endif
