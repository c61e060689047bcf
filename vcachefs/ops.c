/*
 * ops.c - the FUSE low-level operations: thin glue over lib/.
 *
 * Each handler does its work through a helper that returns 0 or -errno,
 * then replies exactly once. Errors from the backing store pass through
 * unchanged. Node IDs are slot numbers of the inode table (inode.h; the
 * root is FUSE_ROOT_ID), an image's file handle is its inode's node ID,
 * and a directory handle is a slot number of fs->dirs: numbers a new
 * daemon can answer after a takeover (takeover.c). st_ino in replies is
 * the backing inode number, so numbers stay stable.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <linux/xattr.h>
#include <unistd.h>

#include "creds.h"
#include "fs.h"
#include "io.h"
#include "log.h"

#define VC_MAX_BACKGROUND	128

static struct vc_fs *
vc_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct vc_inode *
vc_inode(fuse_req_t req, fuse_ino_t ino)
{
	return itable_get(&vc_fs(req)->itable, ino);
}

/* An open file's image: its inode keeps it while the file is open. */
static struct vc_image *
vc_image(fuse_req_t req, struct fuse_file_info *fi)
{
	return itable_get(&vc_fs(req)->itable, fi->fh)->image;
}

static fuse_ino_t
vc_nodeid(struct vc_fs *fs, struct vc_inode *inode)
{
	return inode->nodeid;
}

static void
vc_reply_err(fuse_req_t req, int err)
{
	fuse_reply_err(req, err < 0 ? -err : err);
}

/*
 * Pin an inode's backing descriptor for one request (inode.h): every use
 * of inode->fd or inode_procpath() sits between these two. Returns 0 or
 * -errno.
 */
static int
vc_pin(fuse_req_t req, struct vc_inode *inode)
{
	int fd = inode_fd_get(&vc_fs(req)->itable, inode);

	return fd < 0 ? fd : 0;	/* the descriptor is inode->fd */
}

static void
vc_unpin(fuse_req_t req, struct vc_inode *inode)
{
	inode_fd_put(&vc_fs(req)->itable, inode);
}

/* stat a pinned inode, and remember whether it has setuid/setgid bits. */
static int
vc_stat(struct vc_inode *inode, struct stat *st)
{
	if (fstatat(inode->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1)
		return -errno;
	inode_note_mode(inode, st->st_mode);
	return 0;
}

/* Look up name and fill e; takes one lookup reference on success. */
static int
vc_do_lookup(fuse_req_t req, fuse_ino_t parent, const char *name,
    struct fuse_entry_param *e)
{
	struct vc_fs *fs = vc_fs(req);
	struct vc_inode *inode;
	int err;

	memset(e, 0, sizeof(*e));
	err = itable_lookup(&fs->itable, vc_inode(req, parent), name, &inode,
	    &e->attr);
	if (err < 0)
		return err;
	e->ino = vc_nodeid(fs, inode);
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
	return 0;
}

static void
vc_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err = vc_do_lookup(req, parent, name, &e);

	if (err < 0)
		vc_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void
vc_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	itable_forget(&vc_fs(req)->itable, vc_inode(req, ino), nlookup);
	fuse_reply_none(req);
}

static void
vc_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		itable_forget(&vc_fs(req)->itable, vc_inode(req, forgets[i].ino),
		    forgets[i].nlookup);
	fuse_reply_none(req);
}

static void
vc_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vc_inode *inode = vc_inode(req, ino);
	struct stat st;
	int err = vc_pin(req, inode);

	if (err >= 0) {
		err = vc_stat(inode, &st);
		vc_unpin(req, inode);
	}
	if (err < 0)
		vc_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, vc_fs(req)->timeout);
}

/* Truncate through the open image when there is one, so its locks and mode hold. */
static int
vc_do_truncate(struct vc_fs *fs, struct vc_inode *inode, off_t size,
    struct fuse_file_info *fi)
{
	struct vc_image_conf conf;
	struct vc_image *img;
	int err;

	if (fi != NULL)
		return io_truncate(itable_get(&fs->itable, fi->fh)->image, size);
	err = registry_conf(&fs->registry, inode, NULL, &conf);
	if (err == 0 && conf.readonly)
		return -EROFS;
	/* Open it as an image: the same path as any writer, policy included. */
	err = image_open(&fs->registry, inode, O_WRONLY, &img);
	if (err < 0)
		return err;
	err = io_truncate(img, size);
	image_release(&fs->registry, img);
	return err;
}

static int
vc_do_utimens(struct vc_inode *inode, const struct stat *attr, int to_set)
{
	struct timespec tv[2] = {
		{ .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT },
	};
	char proc[64];

	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		tv[0].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		tv[0] = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		tv[1].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		tv[1] = attr->st_mtim;
	if (S_ISLNK(inode->type))
		return -EPERM;	/* the magic link would follow it */
	inode_procpath(inode, proc, sizeof(proc));
	if (utimensat(AT_FDCWD, proc, tv, 0) == -1)
		return -errno;
	return 0;
}

static void
vc_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
    struct fuse_file_info *fi)
{
	struct vc_fs *fs = vc_fs(req);
	struct vc_inode *inode = vc_inode(req, ino);
	char proc[64];
	struct stat st;
	int err = vc_pin(req, inode);

	if (err < 0) {
		vc_reply_err(req, err);
		return;
	}
	err = 0;
	inode_procpath(inode, proc, sizeof(proc));
	if (to_set & FUSE_SET_ATTR_MODE) {
		if (S_ISLNK(inode->type))
			err = -EOPNOTSUPP;
		else if (chmod(proc, attr->st_mode) == -1)
			err = -errno;
	}
	if (err == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(inode->fd, "", uid, gid,
		    AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1)
			err = -errno;
	}
	if (err == 0 && (to_set & FUSE_SET_ATTR_SIZE))
		err = vc_do_truncate(fs, inode, attr->st_size, fi);
	if (err == 0 && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	    FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)))
		err = vc_do_utimens(inode, attr, to_set);
	if (err == 0)
		err = vc_stat(inode, &st);
	vc_unpin(req, inode);
	if (err < 0)
		vc_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, fs->timeout);
}

static void
vc_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct vc_inode *inode = vc_inode(req, ino);
	char buf[PATH_MAX + 1];
	ssize_t n = vc_pin(req, inode);
	int saverr = 0;

	if (n >= 0) {
		n = readlinkat(inode->fd, "", buf, sizeof(buf));
		saverr = errno;
		vc_unpin(req, inode);
	}
	if (n < 0)
		vc_reply_err(req, n == -1 ? saverr : (int)n);
	else if (n >= (ssize_t)sizeof(buf))
		vc_reply_err(req, ENAMETOOLONG);
	else {
		buf[n] = '\0';
		fuse_reply_readlink(req, buf);
	}
}

/*
 * The credentials of the request's caller, for creating as the caller
 * (creds.h). Supplementary groups come from /proc; if the caller is gone,
 * none are used, which can only take permissions away.
 */
static void
vc_caller(fuse_req_t req, struct vc_creds *c)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	c->uid = ctx->uid;
	c->gid = ctx->gid;
	c->umask = ctx->umask;
	c->ngroups = fuse_req_getgroups(req, VC_CREDS_GROUPS_MAX, c->groups);
	if (c->ngroups > VC_CREDS_GROUPS_MAX)
		c->ngroups = VC_CREDS_GROUPS_MAX;
	if (c->ngroups < 0)
		c->ngroups = 0;
}

enum vc_make { VC_MAKE_NODE, VC_MAKE_DIR, VC_MAKE_SYMLINK };

/*
 * Make name in parent as the caller, so it is the caller's from the
 * start: nothing is handed over afterwards, so a name swapped in
 * meanwhile cannot change hands. Returns 0 or -errno.
 */
static int
vc_do_make(fuse_req_t req, struct vc_inode *parent, const char *name,
    enum vc_make what, mode_t mode, dev_t rdev, const char *link)
{
	struct vc_creds c;
	int err = vc_pin(req, parent), r = 0;

	if (err < 0)
		return err;
	vc_caller(req, &c);
	err = creds_enter(&c);
	if (err == 0) {
		switch (what) {
		case VC_MAKE_NODE:
			r = mknodat(parent->fd, name, mode, rdev);
			break;
		case VC_MAKE_DIR:
			r = mkdirat(parent->fd, name, mode);
			break;
		case VC_MAKE_SYMLINK:
			r = symlinkat(link, parent->fd, name);
			break;
		}
		err = r == -1 ? -errno : 0;
		creds_leave();
	}
	vc_unpin(req, parent);
	return err;
}

/*
 * After making name in parent: look it up and reply. No system call
 * returns what mknod, mkdir or symlink made, so this looks up the name;
 * an object swapped in meanwhile keeps its own owner and mode, which the
 * kernel then checks, so it gains nothing.
 */
static void
vc_reply_new(fuse_req_t req, fuse_ino_t parent, const char *name, int err)
{
	struct fuse_entry_param e;

	if (err == 0)
		err = vc_do_lookup(req, parent, name, &e);
	if (err < 0)
		vc_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void
vc_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    dev_t rdev)
{
	struct vc_image_conf conf;
	int err = 0;

	/* A regular file made by mknod is an image like one made by create. */
	if (S_ISREG(mode) && registry_conf(&vc_fs(req)->registry,
	    vc_inode(req, parent), name, &conf) == 0 && conf.readonly)
		err = -EROFS;
	if (err == 0)
		err = vc_do_make(req, vc_inode(req, parent), name, VC_MAKE_NODE,
		    mode, rdev, NULL);
	vc_reply_new(req, parent, name, err);
}

static void
vc_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	vc_reply_new(req, parent, name, vc_do_make(req, vc_inode(req, parent),
	    name, VC_MAKE_DIR, mode, 0, NULL));
}

static void
vc_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
    const char *name)
{
	vc_reply_new(req, parent, name, vc_do_make(req, vc_inode(req, parent),
	    name, VC_MAKE_SYMLINK, 0, 0, link));
}

/*
 * Link as the caller too, so the backing kernel applies its hard-link
 * restrictions (fs.protected_hardlinks) to the caller, not to root.
 */
static int
vc_do_link(fuse_req_t req, struct vc_inode *inode, struct vc_inode *newparent,
    const char *newname)
{
	char proc[64];
	struct vc_creds c;
	int err = vc_pin(req, inode);

	if (err < 0)
		return err;
	err = vc_pin(req, newparent);
	if (err < 0) {
		vc_unpin(req, inode);
		return err;
	}
	vc_caller(req, &c);
	err = creds_enter(&c);
	if (err == 0) {
		/* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; else via /proc. */
		inode_procpath(inode, proc, sizeof(proc));
		if (linkat(inode->fd, "", newparent->fd, newname,
		    AT_EMPTY_PATH) == -1 &&
		    linkat(AT_FDCWD, proc, newparent->fd, newname,
		    AT_SYMLINK_FOLLOW) == -1)
			err = -errno;
		creds_leave();
	}
	vc_unpin(req, newparent);
	vc_unpin(req, inode);
	return err;
}

static void
vc_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname)
{
	struct fuse_entry_param e;
	int err = vc_do_link(req, vc_inode(req, ino), vc_inode(req, newparent),
	    newname);

	if (err == 0)
		err = vc_do_lookup(req, newparent, newname, &e);
	if (err < 0)
		vc_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static int
vc_do_unlink(fuse_req_t req, struct vc_inode *parent, const char *name,
    int flags)
{
	int err = vc_pin(req, parent);

	if (err < 0)
		return err;
	if (unlinkat(parent->fd, name, flags) == -1)
		err = -errno;
	vc_unpin(req, parent);
	return err;
}

static void
vc_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	vc_reply_err(req, vc_do_unlink(req, vc_inode(req, parent), name, 0));
}

static void
vc_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	vc_reply_err(req, vc_do_unlink(req, vc_inode(req, parent), name,
	    AT_REMOVEDIR));
}

static void
vc_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct vc_inode *from = vc_inode(req, parent), *to = vc_inode(req, newparent);
	int err = vc_pin(req, from);

	if (err >= 0) {
		err = vc_pin(req, to);
		if (err >= 0) {
			if (renameat2(from->fd, name, to->fd, newname, flags) == -1)
				err = -errno;
			vc_unpin(req, to);
		}
		vc_unpin(req, from);
	}
	vc_reply_err(req, err);
}

/*
 * The open reply for an image. direct_io: every read and write reaches the
 * daemon, where the policy is, and nothing is cached twice.
 * FOPEN_PARALLEL_DIRECT_WRITES: without it the kernel sends one write per
 * inode at a time, and a guest's queue collapses to depth 1. libfuse 3.14
 * cannot set that flag, so the reply is composed here; kernels that do not
 * know the flag ignore it. Returns what fuse_reply_buf returns.
 */
static int
vc_reply_open_image(fuse_req_t req, struct fuse_file_info *fi)
{
	struct fuse_open_out out = {
		.fh = fi->fh,
		.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES,
	};

	return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}

/* A FUSE timeout in seconds as the kernel wants it: whole and nanoseconds. */
static void
vc_timeout(double t, uint64_t *sec, uint32_t *nsec)
{
	*sec = (uint64_t)t;
	*nsec = (uint32_t)((t - (double)*sec) * 1e9);
}

/*
 * The create reply for an image, composed like the open reply so that a
 * new file also gets FOPEN_PARALLEL_DIRECT_WRITES (fuse_reply_create
 * cannot carry it). Returns what fuse_reply_buf returns.
 */
static int
vc_reply_create_image(fuse_req_t req, const struct fuse_entry_param *e,
    struct fuse_file_info *fi)
{
	struct {
		struct fuse_entry_out entry;
		struct fuse_open_out open;
	} out;
	const struct stat *st = &e->attr;
	struct fuse_attr *a = &out.entry.attr;

	memset(&out, 0, sizeof(out));
	out.entry.nodeid = e->ino;
	out.entry.generation = e->generation;
	vc_timeout(e->entry_timeout, &out.entry.entry_valid,
	    &out.entry.entry_valid_nsec);
	vc_timeout(e->attr_timeout, &out.entry.attr_valid,
	    &out.entry.attr_valid_nsec);
	a->ino = st->st_ino;
	a->size = (uint64_t)st->st_size;
	a->blocks = (uint64_t)st->st_blocks;
	a->atime = (uint64_t)st->st_atim.tv_sec;
	a->mtime = (uint64_t)st->st_mtim.tv_sec;
	a->ctime = (uint64_t)st->st_ctim.tv_sec;
	a->atimensec = (uint32_t)st->st_atim.tv_nsec;
	a->mtimensec = (uint32_t)st->st_mtim.tv_nsec;
	a->ctimensec = (uint32_t)st->st_ctim.tv_nsec;
	a->mode = st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->rdev = (uint32_t)st->st_rdev;
	a->blksize = (uint32_t)st->st_blksize;
	out.open.fh = fi->fh;
	out.open.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
	return fuse_reply_buf(req, (const char *)&out, sizeof(out));
}

static void
vc_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vc_inode *inode = vc_inode(req, ino);
	struct vc_image *img;
	int err = vc_pin(req, inode);

	/* An open image pins its inode itself (itable_set_image). */
	if (err >= 0) {
		err = image_open(&vc_fs(req)->registry, inode, fi->flags, &img);
		vc_unpin(req, inode);
	}

	/* No O_TRUNC here: without atomic O_TRUNC (vc_init) the kernel
	 * strips it and sends a truncating setattr after the open. */
	if (err < 0) {
		vc_reply_err(req, err);
		return;
	}
	fi->fh = inode->nodeid;
	if (vc_reply_open_image(req, fi) == -ENOENT)
		image_release(&vc_fs(req)->registry, img);	/* interrupted */
}

/*
 * Create (or open, without O_EXCL) name as the caller, and find the inode
 * through the descriptor that did it, never through the name: a file
 * renamed onto the name meanwhile is not what the caller gets. Returns an
 * open descriptor of it (the caller closes it) or -errno.
 */
static int
vc_do_create(fuse_req_t req, struct vc_inode *dir, const char *name,
    mode_t mode, int flags)
{
	struct vc_creds c;
	struct stat st;
	int fd = vc_pin(req, dir), err;

	if (fd < 0)
		return fd;
	vc_caller(req, &c);
	err = creds_enter(&c);
	if (err == 0) {
		/* O_NONBLOCK: an existing FIFO must not hang the daemon. */
		fd = openat(dir->fd, name, O_CREAT | O_CLOEXEC | O_NOFOLLOW |
		    O_NONBLOCK | (flags & (O_ACCMODE | O_EXCL | O_TRUNC)), mode);
		err = fd == -1 ? -errno : 0;
		creds_leave();
	}
	vc_unpin(req, dir);
	if (err < 0)
		return err;
	if (fstat(fd, &st) == -1)
		err = -errno;
	else if (!S_ISREG(st.st_mode))
		err = S_ISDIR(st.st_mode) ? -EISDIR : -EEXIST;
	if (err < 0) {
		close(fd);
		return err;
	}
	return fd;
}

static void
vc_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
    struct fuse_file_info *fi)
{
	struct vc_fs *fs = vc_fs(req);
	struct vc_inode *dir = vc_inode(req, parent), *inode;
	struct vc_image_conf conf;
	struct fuse_entry_param e;
	struct vc_image *img = NULL;
	int fd, err;

	err = registry_conf(&fs->registry, dir, name, &conf);
	if (err == 0 && conf.readonly)
		err = -EROFS;
	fd = err < 0 ? err : vc_do_create(req, dir, name, mode, fi->flags);
	if (fd < 0) {
		vc_reply_err(req, fd);
		return;
	}
	memset(&e, 0, sizeof(e));
	err = itable_lookup_fd(&fs->itable, fd, &inode, &e.attr);
	close(fd);
	if (err < 0) {
		vc_reply_err(req, err);
		return;
	}
	e.ino = vc_nodeid(fs, inode);
	e.attr_timeout = fs->timeout;
	e.entry_timeout = fs->timeout;
	err = vc_pin(req, inode);
	if (err >= 0) {
		err = image_open(&fs->registry, inode, fi->flags, &img);
		vc_unpin(req, inode);
	}
	if (err < 0) {
		itable_forget(&fs->itable, inode, 1);
		vc_reply_err(req, err);
		return;
	}
	fi->fh = inode->nodeid;
	if (vc_reply_create_image(req, &e, fi) == -ENOENT) {
		image_release(&fs->registry, img);
		itable_forget(&fs->itable, inode, 1);
	}
}

/* Completions reply to the kernel; they may run in the io_uring thread. */
static void
vc_read_done(void *arg, ssize_t res, const void *data)
{
	fuse_req_t req = arg;

	if (res < 0)
		vc_reply_err(req, (int)res);
	else
		fuse_reply_buf(req, data, (size_t)res);
}

static void
vc_write_done(void *arg, ssize_t res, const void *data)
{
	fuse_req_t req = arg;

	if (res < 0)
		vc_reply_err(req, (int)res);
	else
		fuse_reply_write(req, (size_t)res);
}

static void
vc_status_done(void *arg, ssize_t res, const void *data)
{
	vc_reply_err(arg, (int)res);
}

static void
vc_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	io_submit_read(vc_image(req, fi), size, off, vc_read_done, req);
}

/*
 * Whether the kernel asks us to clear setuid/setgid for this write
 * (FUSE_WRITE_KILL_SUIDGID: the writer lacks CAP_FSETID). The kernel sets
 * it on every direct_io write by such a writer, and leaves the clearing
 * to us; the daemon writes as root, whose writes never clear them.
 * libfuse 3.14 drops write_flags, but its write header sits right before
 * the payload, both in a /dev/fuse request and in a ring entry rebuilt by
 * fuse_uring.c. If it does not look like this request's header, be safe.
 */
static bool
vc_write_kills_privs(const char *buf, size_t size, off_t off)
{
	const struct fuse_write_in *in = (const void *)(buf - sizeof(*in));

	if (in->size != size || in->offset != (uint64_t)off)
		return true;
	return (in->write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
}

/* Whether the request's caller is in group gid (for inode_kill_privs). */
static bool
vc_caller_in_group(gid_t gid, void *arg)
{
	fuse_req_t req = arg;
	gid_t groups[VC_CREDS_GROUPS_MAX];
	int n;

	if (fuse_req_ctx(req)->gid == gid)
		return true;
	n = fuse_req_getgroups(req, VC_CREDS_GROUPS_MAX, groups);
	for (int i = 0; i < n && i < VC_CREDS_GROUPS_MAX; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

static void
vc_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
    off_t off, struct fuse_file_info *fi)
{
	struct vc_image *img = vc_image(req, fi);
	int err;

	/* An open image keeps its inode pinned. */
	if (vc_write_kills_privs(buf, size, off) &&
	    (err = inode_kill_privs(img->inode, vc_caller_in_group, req)) < 0) {
		vc_reply_err(req, err);
		return;
	}
	/* For WRITE, libfuse puts the kernel's per-write flags in fi->flags;
	 * O_SYNC includes the O_DSYNC bit. */
	io_submit_write(img, buf, size, off, (fi->flags & O_DSYNC) != 0,
	    vc_write_done, req);
}

/* FLUSH is close(2), not a data sync: nothing to do. Locks are the kernel's. */
static void
vc_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void
vc_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	image_release(&vc_fs(req)->registry, vc_image(req, fi));
	fuse_reply_err(req, 0);
}

static void
vc_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	io_submit_fsync(vc_image(req, fi), datasync != 0, vc_status_done, req);
}

static void
vc_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
    struct fuse_file_info *fi)
{
	struct vc_image *img = vc_image(req, fi);

	if (image_conf_now(img).readonly)
		vc_reply_err(req, EROFS);
	else
		vc_reply_err(req, io_fallocate(img, mode, off, len));
}

static void
vc_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
    struct fuse_file_info *fi)
{
	off_t r = io_lseek(vc_image(req, fi), off, whence);

	if (r < 0)
		vc_reply_err(req, (int)r);
	else
		fuse_reply_lseek(req, r);
}

static void
vc_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
    struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
    struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct vc_image *out = vc_image(req, fi_out);
	ssize_t n;

	if (flags != 0) {
		vc_reply_err(req, EINVAL);
		return;
	}
	if (image_conf_now(out).readonly) {
		vc_reply_err(req, EROFS);
		return;
	}
	n = io_copy_range(vc_image(req, fi_in), off_in, out, off_out, len);
	if (n < 0)
		vc_reply_err(req, (int)n);
	else
		fuse_reply_write(req, (size_t)n);
}

/*
 * Directory handles (struct vc_dir, fs.h) are slots of fs->dirs. One
 * handed over by a takeover has no stream yet: it is opened at its first
 * use and positioned with seekdir, since the backing filesystem's
 * telldir cookies stay valid across streams (ext4 and xfs hash them).
 */
static struct vc_dir *
vc_dir(fuse_req_t req, struct fuse_file_info *fi)
{
	return slots_get(&vc_fs(req)->dirs, fi->fh);
}

/* Open d's stream on inode. Returns 0 or -errno. */
static int
vc_dir_open(fuse_req_t req, struct vc_inode *inode, struct vc_dir *d)
{
	int fd = vc_pin(req, inode), saverr;
	DIR *dp;

	if (fd < 0)
		return fd;
	fd = openat(inode->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	saverr = errno;
	vc_unpin(req, inode);
	if (fd == -1)
		return -saverr;
	dp = fdopendir(fd);
	if (dp == NULL) {
		saverr = errno;
		close(fd);
		return -saverr;
	}
	__atomic_store_n(&d->dp, dp, __ATOMIC_RELEASE);
	return 0;
}

/*
 * A handed-over handle's stream, at the offset the kernel left it. The
 * kernel serializes readdirs of one handle but not fsyncdir with them:
 * the first use opens it under a lock (rare: handed-over handles only).
 */
static int
vc_dir_ready(fuse_req_t req, fuse_ino_t ino, struct vc_dir *d)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	int err = 0;

	if (__atomic_load_n(&d->dp, __ATOMIC_ACQUIRE) != NULL)
		return 0;
	pthread_mutex_lock(&lock);
	if (d->dp == NULL) {
		err = vc_dir_open(req, vc_inode(req, ino), d);
		if (err == 0 && d->offset != 0)
			seekdir(d->dp, d->offset);
		d->entry = NULL;
	}
	pthread_mutex_unlock(&lock);
	return err;
}

static int
vc_dir_free(uint64_t fh, void *p, void *arg)
{
	struct vc_dir *d = p;

	if (d->dp != NULL)
		closedir(d->dp);
	free(d);
	return 0;
}

void
ops_dirs_exit(struct vc_fs *fs)
{
	/* Handed over or never released: the kernel will not release them here. */
	slots_each(&fs->dirs, vc_dir_free, NULL);
	slots_exit(&fs->dirs);
}

static void
vc_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vc_fs *fs = vc_fs(req);
	struct vc_dir *d = calloc(1, sizeof(*d));
	int err;

	if (d == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	d->nodeid = ino;
	err = vc_dir_open(req, vc_inode(req, ino), d);
	if (err == 0 && (fi->fh = slots_alloc(&fs->dirs, d)) == 0)
		err = -ENOMEM;
	if (err < 0) {
		if (d->dp != NULL)
			closedir(d->dp);
		free(d);
		vc_reply_err(req, err);
		return;
	}
	if (fuse_reply_open(req, fi) == -ENOENT) {
		slots_free(&fs->dirs, fi->fh);
		closedir(d->dp);
		free(d);
	}
}

static void
vc_do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi, bool plus)
{
	struct vc_dir *d = vc_dir(req, fi);
	char *buf = malloc(size);
	size_t used = 0;
	int err = 0;

	if (buf == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	err = -vc_dir_ready(req, ino, d);
	if (err != 0) {
		fuse_reply_err(req, err);
		free(buf);
		return;
	}
	if (off != d->offset) {
		seekdir(d->dp, off);
		d->entry = NULL;
		d->offset = off;
	}
	for (;;) {
		struct dirent *de = d->entry;
		size_t n;

		if (de == NULL) {
			errno = 0;
			de = readdir(d->dp);
			if (de == NULL) {
				err = errno;
				break;
			}
			d->entry = de;
		}
		off_t next = telldir(d->dp);

		if (plus) {
			struct fuse_entry_param e;
			bool dot = strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0;

			memset(&e, 0, sizeof(e));
			if (dot) {
				e.attr.st_ino = de->d_ino;
				e.attr.st_mode = (mode_t)de->d_type << 12;
			} else {
				err = -vc_do_lookup(req, ino, de->d_name, &e);
				if (err != 0) {
					if (err == ENOENT) {	/* raced with unlink */
						err = 0;
						d->entry = NULL;
						d->offset = next;
						continue;
					}
					break;
				}
			}
			n = fuse_add_direntry_plus(req, buf + used, size - used,
			    de->d_name, &e, next);
			if (n > size - used) {
				if (!dot)	/* not sent: give the reference back */
					itable_forget(&vc_fs(req)->itable,
					    vc_inode(req, e.ino), 1);
				break;
			}
		} else {
			struct stat st = {
				.st_ino = de->d_ino,
				.st_mode = (mode_t)de->d_type << 12,
			};

			n = fuse_add_direntry(req, buf + used, size - used,
			    de->d_name, &st, next);
			if (n > size - used)
				break;
		}
		used += n;
		d->entry = NULL;
		d->offset = next;
	}
	/* An error after some entries: send those; the next call reports it. */
	if (err != 0 && used == 0)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void
vc_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	vc_do_readdir(req, ino, size, off, fi, false);
}

static void
vc_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi)
{
	vc_do_readdir(req, ino, size, off, fi, true);
}

static void
vc_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vc_dir *d = vc_dir(req, fi);

	slots_free(&vc_fs(req)->dirs, fi->fh);
	if (d->dp != NULL)
		closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

static void
vc_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	struct vc_dir *d = vc_dir(req, fi);
	int err = vc_dir_ready(req, ino, d), fd;

	if (err == 0) {
		fd = dirfd(d->dp);
		if ((datasync ? fdatasync(fd) : fsync(fd)) == -1)
			err = -errno;
	}
	vc_reply_err(req, err);
}

static void
vc_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct vc_inode *inode = vc_inode(req, ino);
	struct statvfs sv;
	int err = vc_pin(req, inode);

	if (err >= 0) {
		if (fstatvfs(inode->fd, &sv) == -1)
			err = -errno;
		vc_unpin(req, inode);
	}
	if (err < 0)
		vc_reply_err(req, err);
	else
		fuse_reply_statfs(req, &sv);
}

static void
vc_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct vc_inode *inode = vc_inode(req, ino);
	char proc[64];
	int err = vc_pin(req, inode);

	if (err >= 0) {
		inode_procpath(inode, proc, sizeof(proc));
		if (faccessat(AT_FDCWD, proc, mask, 0) == -1)
			err = -errno;
		vc_unpin(req, inode);
	}
	vc_reply_err(req, err);
}

/*
 * xattrs go through /proc/self/fd: the f*xattr calls refuse O_PATH. Pins
 * the inode: vc_xattr_done() unpins it.
 */
static int
vc_xattr_path(fuse_req_t req, struct vc_inode *inode, char *proc, size_t len)
{
	int err;

	if (S_ISLNK(inode->type))
		return -EOPNOTSUPP;	/* the magic link would follow it */
	err = vc_pin(req, inode);
	if (err < 0)
		return err;
	inode_procpath(inode, proc, len);
	return 0;
}

static void
vc_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
    const char *value, size_t size, int flags)
{
	struct vc_inode *inode = vc_inode(req, ino);
	char proc[64];
	int err = vc_xattr_path(req, inode, proc, sizeof(proc));

	if (err < 0) {
		vc_reply_err(req, err);
		return;
	}
	if (setxattr(proc, name, value, size, flags) == -1)
		err = -errno;
	vc_unpin(req, inode);
	vc_reply_err(req, err);
}

/* get and list share their reply shape: a size probe or the bytes. */
static void
vc_reply_xattr(fuse_req_t req, size_t size, ssize_t n, const char *buf)
{
	if (n < 0)
		vc_reply_err(req, (int)n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void
vc_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct vc_inode *inode = vc_inode(req, ino);
	char proc[64], *buf = NULL;
	ssize_t n = vc_xattr_path(req, inode, proc, sizeof(proc));

	if (n < 0) {
		vc_reply_err(req, (int)n);
		return;
	}
	if (size > 0 && (buf = malloc(size)) == NULL)
		n = -ENOMEM;
	else if ((n = getxattr(proc, name, buf, size)) == -1)
		n = -errno;
	vc_unpin(req, inode);
	vc_reply_xattr(req, size, n, buf);
	free(buf);
}

/*
 * All names of path, in a buffer the caller frees. Returns the length or
 * -errno; retries when the list grows between the two calls.
 */
static ssize_t
vc_list_all(const char *path, char **out)
{
	for (int tries = 0; tries < 8; tries++) {
		ssize_t len = listxattr(path, NULL, 0), n;
		char *buf;

		if (len <= 0) {
			*out = NULL;
			return len == -1 ? -errno : 0;
		}
		if ((buf = malloc((size_t)len)) == NULL)
			return -ENOMEM;
		n = listxattr(path, buf, (size_t)len);
		if (n >= 0) {
			*out = buf;
			return n;
		}
		free(buf);
		if (errno != ERANGE)
			return -errno;
	}
	return -ERANGE;
}

/*
 * Drop trusted.* names in place for callers other than root: the kernel
 * lets only CAP_SYS_ADMIN see them (ext4 filters them itself), the daemon
 * lists as root, and FUSE tells us the caller's uid, not its
 * capabilities. Returns the new length.
 */
static size_t
vc_filter_trusted(char *list, size_t len)
{
	size_t in = 0, out = 0;

	while (in < len) {
		size_t n = strnlen(list + in, len - in) + 1;

		if (strncmp(list + in, XATTR_TRUSTED_PREFIX,
		    XATTR_TRUSTED_PREFIX_LEN) != 0) {
			memmove(list + out, list + in, n);
			out += n;
		}
		in += n;
	}
	return out;
}

static void
vc_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct vc_inode *inode = vc_inode(req, ino);
	char proc[64], *buf = NULL;
	ssize_t n = vc_xattr_path(req, inode, proc, sizeof(proc));

	if (n < 0) {
		vc_reply_err(req, (int)n);
		return;
	}
	n = vc_list_all(proc, &buf);
	vc_unpin(req, inode);
	if (n > 0 && fuse_req_ctx(req)->uid != 0)
		n = (ssize_t)vc_filter_trusted(buf, (size_t)n);
	if (n >= 0 && size > 0 && (size_t)n > size)
		n = -ERANGE;
	vc_reply_xattr(req, size, n, buf);
	free(buf);
}

static void
vc_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct vc_inode *inode = vc_inode(req, ino);
	char proc[64];
	int err = vc_xattr_path(req, inode, proc, sizeof(proc));

	if (err < 0) {
		vc_reply_err(req, err);
		return;
	}
	if (removexattr(proc, name) == -1)
		err = -errno;
	vc_unpin(req, inode);
	vc_reply_err(req, err);
}

static void
vc_init(void *userdata, struct fuse_conn_info *conn)
{
	/* Let 1 MiB guest requests through whole. */
	conn->max_write = VC_IO_MAX;
	/*
	 * The kernel's writeback cache would acknowledge writes the policy
	 * wants synchronous; images are direct_io anyway.
	 */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/*
	 * Setuid/setgid bits. Without HANDLE_KILLPRIV the kernel clears them
	 * itself on truncate, chown and copy_file_range (it sends the mode
	 * along), but not on direct_io writes: there it sets
	 * FUSE_WRITE_KILL_SUIDGID and leaves it to us (vc_write). An atomic
	 * O_TRUNC open would be truncated by the daemon as root, keeping
	 * them: let the kernel send the truncate as a setattr instead.
	 */
	conn->want &= ~(FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_ATOMIC_O_TRUNC);
	/*
	 * POSIX ACLs: the kernel reads system.posix_acl_* through getxattr
	 * and enforces them in its permission checks (default_permissions
	 * alone looks at mode bits, and the daemon reads as root). It then
	 * leaves the umask to us (DONT_MASK): new objects are made as the
	 * caller with the caller's umask (creds.c), so a parent's default
	 * ACL applies as on a plain directory.
	 */
	if ((conn->capable & (FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK)) ==
	    (FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK))
		conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/*
	 * O_DIRECT requests from asynchronous clients (QEMU's aio=native and
	 * io_uring, fio) reach us as background requests, of which the
	 * kernel lets 12 be in flight by default: too few to keep a disk's
	 * queue full. Measured (make bench, 4k random read QD32): 48k IOPS
	 * at 12, 56k at 128.
	 */
	conn->max_background = VC_MAX_BACKGROUND;
	conn->congestion_threshold = VC_MAX_BACKGROUND * 3 / 4;
}

/*
 * No getlk/setlk/flock: the kernel then keeps POSIX, OFD and flock locks
 * locally on the FUSE inodes. Openers through this mount conflict exactly
 * as on a plain directory, which QEMU's image locking relies on.
 */
const struct fuse_lowlevel_ops vc_ops = {
	.init = vc_init,
	.lookup = vc_lookup,
	.forget = vc_forget,
	.forget_multi = vc_forget_multi,
	.getattr = vc_getattr,
	.setattr = vc_setattr,
	.readlink = vc_readlink,
	.mknod = vc_mknod,
	.mkdir = vc_mkdir,
	.symlink = vc_symlink,
	.link = vc_link,
	.unlink = vc_unlink,
	.rmdir = vc_rmdir,
	.rename = vc_rename,
	.open = vc_open,
	.create = vc_create,
	.read = vc_read,
	.write = vc_write,
	.flush = vc_flush,
	.release = vc_release,
	.fsync = vc_fsync,
	.opendir = vc_opendir,
	.readdir = vc_readdir,
	.readdirplus = vc_readdirplus,
	.releasedir = vc_releasedir,
	.fsyncdir = vc_fsyncdir,
	.statfs = vc_statfs,
	.access = vc_access,
	.setxattr = vc_setxattr,
	.getxattr = vc_getxattr,
	.listxattr = vc_listxattr,
	.removexattr = vc_removexattr,
	.fallocate = vc_fallocate,
	.lseek = vc_lseek,
	.copy_file_range = vc_copy_file_range,
};
