/*
 * fdstore.c - the takeover through systemd's fd store (see fdstore.h).
 *
 * The notification protocol is spoken here directly (a datagram with
 * SCM_RIGHTS to $NOTIFY_SOCKET, "@" for the abstract namespace), as
 * sd_pid_notify_with_fds() does, so there is no libsystemd dependency.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devio.h"
#include "fdstore.h"
#include "log.h"
#include "mounts.h"

#define FS_NAME_FUSE	"vcachefs-fuse"
#define FS_NAME_ROOT	"vcachefs-root"
#define FS_NAME_STATE	"vcachefs-state"
#define FS_NAME_INODE	"vcachefs-inode-"

/* Send one notification (with fd, or -1) to $NOTIFY_SOCKET. */
static int
fs_notify(const char *msg, int fd)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	struct msghdr mh = { .msg_name = &sa, .msg_iov = &iov, .msg_iovlen = 1 };
	size_t len;
	int s, r = 0;

	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return -ENOTCONN;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	mh.msg_namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
	    (path[0] == '/'));
	if (fd >= 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		cm.h.cmsg_level = SOL_SOCKET;
		cm.h.cmsg_type = SCM_RIGHTS;
		cm.h.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&cm.h), &fd, sizeof(int));
	}
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s == -1)
		return -errno;
	if (sendmsg(s, &mh, MSG_NOSIGNAL) == -1)
		r = -errno;
	close(s);
	return r;
}

/* $FDSTORE, the size of the service's fd store (systemd 254+), or 0. */
static unsigned long
fs_store_max(void)
{
	const char *v = getenv("FDSTORE");
	char *end;
	unsigned long n;

	if (v == NULL || *v == '\0')
		return 0;
	errno = 0;
	n = strtoul(v, &end, 10);
	return errno != 0 || *end != '\0' ? 0 : n;
}

static int
fs_store(const char *name, int fd)
{
	char msg[128];

	/* FDPOLL=0: systemd must not watch these (it cannot poll an O_PATH
	 * descriptor, and would drop it). */
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDPOLL=0\nFDNAME=%s", name);
	return fs_notify(msg, fd);
}

static void
fs_remove(const char *name)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	(void)fs_notify(msg, -1);
}

/* Remove what a failed store left: the names of the first n inodes too. */
static void
fs_remove_all(unsigned ninodes)
{
	char name[64];

	fs_remove(FS_NAME_FUSE);
	fs_remove(FS_NAME_ROOT);
	fs_remove(FS_NAME_STATE);
	for (unsigned i = 0; i < ninodes; i++) {
		snprintf(name, sizeof(name), FS_NAME_INODE "%u", i);
		fs_remove(name);
	}
}

int
fdstore_give(struct vc_fs *fs, char *why, size_t whylen)
{
	struct vc_takeover_pack p;
	char name[64];
	int r;

	r = takeover_check(fs, why, whylen);
	if (r < 0)
		return r;
	if (getenv("NOTIFY_SOCKET") == NULL) {
		snprintf(why, whylen, "no systemd here (NOTIFY_SOCKET is unset)");
		return -ENOTCONN;
	}
	/*
	 * systemd drops what does not fit in the store, and says nothing:
	 * only a systemd that tells the service its store size ($FDSTORE,
	 * systemd 254 and later) can be trusted with the connection, whose
	 * loss takes every guest's disk. Checked again with the real count.
	 */
	if (fs_store_max() == 0) {
		snprintf(why, whylen, "systemd does not say how many descriptors "
		    "it keeps ($FDSTORE unset: systemd older than 254, or no "
		    "FileDescriptorStoreMax= in the unit)");
		return -ENOSPC;
	}
	if (!takeover_set_busy(fs, true)) {
		snprintf(why, whylen, "the daemon is stopping");
		return -ESHUTDOWN;
	}
	log_info("fdstore: requested; pausing requests");
	r = devio_pause(TAKEOVER_DRAIN_MS);
	if (r < 0) {
		devio_resume();
		takeover_set_busy(fs, false);
		snprintf(why, whylen, "requests in flight did not finish "
		    "within %u ms", TAKEOVER_DRAIN_MS);
		return r;
	}
	r = takeover_pack(fs, &p);
	if (r < 0) {
		devio_resume();
		takeover_set_busy(fs, false);
		snprintf(why, whylen, "cannot write the state: %s", strerror(-r));
		return r;
	}
	if (p.nfds + 3 > fs_store_max()) {
		snprintf(why, whylen, "the fd store keeps %lu descriptors, this "
		    "needs %u", fs_store_max(), p.nfds + 3);
		takeover_pack_free(&p);
		devio_resume();
		takeover_set_busy(fs, false);
		return -ENOSPC;
	}
	/* The connection last: a store without it is never taken over. */
	r = fs_store(FS_NAME_ROOT, fs->itable.root.fd);
	if (r == 0)
		r = fs_store(FS_NAME_STATE, p.memfd);
	for (unsigned i = 0; r == 0 && i < p.nfds; i++) {
		snprintf(name, sizeof(name), FS_NAME_INODE "%u", i);
		r = fs_store(name, p.fds[i]);
	}
	if (r == 0)
		r = fs_store(FS_NAME_FUSE, fuse_session_fd(fs->se));
	if (r < 0) {
		fs_remove_all(p.nfds);
		snprintf(why, whylen, "storing in systemd's fd store: %s (is "
		    "FileDescriptorStoreMax= at least %u?)", strerror(-r),
		    p.nfds + 3);
		takeover_pack_free(&p);
		devio_resume();
		takeover_set_busy(fs, false);
		log_warnx("fdstore refused: %s; serving on", why);
		return r;
	}
	log_info("fdstore: stored the connection, %zu inode(s) (%u by "
	    "descriptor), %zu open image(s), %zu directory handle(s); leaving "
	    "%s mounted for the next start", p.ninodes, p.nfds, p.nimages,
	    p.ndirs, fs->mountpoint);
	takeover_pack_free(&p);
	takeover_mark_given(fs);
	return 1;
}

/* The index of name in LISTEN_FDNAMES (colon-separated), or -1. */
static int
fs_find(const char *names, const char *name)
{
	size_t n = strlen(name);
	int i = 0;

	for (const char *p = names; p != NULL; i++) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len == n && memcmp(p, name, n) == 0)
			return i;
		p = end ? end + 1 : NULL;
	}
	return -1;
}

int
fdstore_take(const char *mountpoint, char *mnt, size_t mntlen,
    char *source, size_t srclen, struct vc_takeover *tk)
{
	const char *spid = getenv("LISTEN_PID"), *sn = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	struct vc_mountent ent;
	char name[64];
	int nfds, fuse, root, state, r;

	takeover_init(tk);
	if (spid == NULL || sn == NULL || names == NULL ||
	    strtol(spid, NULL, 10) != (long)getpid())
		return 0;
	nfds = (int)strtol(sn, NULL, 10);
	fuse = fs_find(names, FS_NAME_FUSE);
	if (fuse < 0 || nfds <= 0)
		return 0;	/* descriptors, but not a stored connection */
	root = fs_find(names, FS_NAME_ROOT);
	state = fs_find(names, FS_NAME_STATE);
	if (root < 0 || state < 0 || fuse >= nfds || root >= nfds ||
	    state >= nfds) {
		log_warnx("fdstore: the store has %s but not %s and %s",
		    FS_NAME_FUSE, FS_NAME_ROOT, FS_NAME_STATE);
		return -EPROTO;
	}
	r = mounts_abspath(mountpoint, mnt, mntlen);
	if (r == 0 && (mounts_find(mnt, &ent) <= 0 ||
	    strcmp(ent.fstype, "fuse.vcachefs") != 0))
		r = -ENOENT;
	if (r < 0) {
		log_warnx("fdstore: a stored connection, but no vcachefs mount "
		    "at %s", mountpoint);
		return r;
	}
	r = takeover_read_state(tk, 3 + state);
	if (r < 0)
		return r;
	tk->from_store = true;
	tk->devfd = 3 + fuse;
	tk->rootfd = 3 + root;
	close(3 + state);
	if (tk->state.nfds > 0) {
		tk->fds = calloc(tk->state.nfds, sizeof(int));
		if (tk->fds == NULL)
			return -ENOMEM;
	}
	tk->nfds = tk->state.nfds;
	for (unsigned i = 0; i < tk->state.nfds; i++) {
		int k;

		snprintf(name, sizeof(name), FS_NAME_INODE "%u", i);
		k = fs_find(names, name);
		if (k < 0 || k >= nfds) {
			log_warnx("fdstore: %s is missing from the store", name);
			for (unsigned j = i; j < tk->nfds; j++)
				tk->fds[j] = -1;
			return -EPROTO;
		}
		tk->fds[i] = 3 + k;
	}
	if (strlen(tk->state.source) >= srclen)
		return -ENAMETOOLONG;
	strcpy(source, tk->state.source);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	log_info("fdstore: taking over %s from systemd's fd store", mnt);
	return 1;
}

int
fdstore_release(struct vc_takeover *tk)
{
	fs_remove_all(tk->nfds);
	return 0;
}
