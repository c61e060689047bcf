/*
 * ops.c - the FUSE low-level operations: thin glue over lib/.
 *
 * Each handler does its work through a helper that returns 0 or -errno,
 * then replies exactly once. Errors from the backing store pass through
 * unchanged. Node IDs are vc_inode pointers (the root is FUSE_ROOT_ID);
 * st_ino in replies is the backing inode number, so numbers stay stable.
 */
#include <dirent.h>
#include <errno.h>
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
#include <unistd.h>

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
	if (ino == FUSE_ROOT_ID)
		return &vc_fs(req)->itable.root;
	return (struct vc_inode *)(uintptr_t)ino;
}

static struct vc_image *
vc_image(struct fuse_file_info *fi)
{
	return (struct vc_image *)(uintptr_t)fi->fh;
}

static fuse_ino_t
vc_nodeid(struct vc_fs *fs, struct vc_inode *inode)
{
	return inode == &fs->itable.root ? FUSE_ROOT_ID : (uintptr_t)inode;
}

static void
vc_reply_err(fuse_req_t req, int err)
{
	fuse_reply_err(req, err < 0 ? -err : err);
}

static int
vc_stat(struct vc_inode *inode, struct stat *st)
{
	if (fstatat(inode->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1)
		return -errno;
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
	struct stat st;
	int err = vc_stat(vc_inode(req, ino), &st);

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
		return io_truncate(vc_image(fi), size);
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
	int err = 0;

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
	if (err < 0)
		vc_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, fs->timeout);
}

static void
vc_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = readlinkat(vc_inode(req, ino)->fd, "", buf, sizeof(buf));

	if (n == -1)
		vc_reply_err(req, errno);
	else if (n >= (ssize_t)sizeof(buf))
		vc_reply_err(req, ENAMETOOLONG);
	else {
		buf[n] = '\0';
		fuse_reply_readlink(req, buf);
	}
}

/*
 * A new object in parent belongs to the caller, as on a plain directory.
 * The daemon creates it as root, then hands it over; the group stays the
 * parent's when the parent is setgid, as the kernel chose it.
 */
static int
vc_give_to_caller(fuse_req_t req, struct vc_inode *parent, const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat pst;
	gid_t gid = ctx->gid;

	if (!vc_fs(req)->chown_new)
		return 0;
	if (fstatat(parent->fd, "", &pst, AT_EMPTY_PATH) == -1)
		return -errno;
	if (pst.st_mode & S_ISGID)
		gid = (gid_t)-1;
	if (ctx->uid == 0 && (gid == (gid_t)-1 || gid == 0))
		return 0;
	if (fchownat(parent->fd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW) == -1)
		return -errno;
	return 0;
}

/* After making name in parent: hand it over, look it up, reply. */
static void
vc_reply_new(fuse_req_t req, fuse_ino_t parent, const char *name, int err)
{
	struct fuse_entry_param e;

	if (err == 0)
		err = vc_give_to_caller(req, vc_inode(req, parent), name);
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
	if (err == 0 && mknodat(vc_inode(req, parent)->fd, name, mode, rdev) == -1)
		err = -errno;
	vc_reply_new(req, parent, name, err);
}

static void
vc_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	int err = mkdirat(vc_inode(req, parent)->fd, name, mode) == -1 ?
	    -errno : 0;

	vc_reply_new(req, parent, name, err);
}

static void
vc_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
    const char *name)
{
	int err = symlinkat(link, vc_inode(req, parent)->fd, name) == -1 ?
	    -errno : 0;

	vc_reply_new(req, parent, name, err);
}

static void
vc_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
    const char *newname)
{
	struct vc_inode *inode = vc_inode(req, ino);
	struct fuse_entry_param e;
	int err = 0;

	if (linkat(inode->fd, "", vc_inode(req, newparent)->fd, newname,
	    AT_EMPTY_PATH) == -1) {
		char proc[64];

		/* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; go via /proc. */
		inode_procpath(inode, proc, sizeof(proc));
		if (linkat(AT_FDCWD, proc, vc_inode(req, newparent)->fd,
		    newname, AT_SYMLINK_FOLLOW) == -1)
			err = -errno;
	}
	if (err == 0)
		err = vc_do_lookup(req, newparent, newname, &e);
	if (err < 0)
		vc_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void
vc_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int r = unlinkat(vc_inode(req, parent)->fd, name, 0);

	fuse_reply_err(req, r == -1 ? errno : 0);
}

static void
vc_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int r = unlinkat(vc_inode(req, parent)->fd, name, AT_REMOVEDIR);

	fuse_reply_err(req, r == -1 ? errno : 0);
}

static void
vc_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	int r = renameat2(vc_inode(req, parent)->fd, name,
	    vc_inode(req, newparent)->fd, newname, flags);

	fuse_reply_err(req, r == -1 ? errno : 0);
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
	struct vc_image *img;
	int err = image_open(&vc_fs(req)->registry, vc_inode(req, ino),
	    fi->flags, &img);

	/* libfuse asks for atomic O_TRUNC: the kernel leaves it to us. */
	if (err == 0 && (fi->flags & O_TRUNC)) {
		err = io_truncate(img, 0);
		if (err < 0)
			image_release(&vc_fs(req)->registry, img);
	}
	if (err < 0) {
		vc_reply_err(req, err);
		return;
	}
	fi->fh = (uintptr_t)img;
	if (vc_reply_open_image(req, fi) == -ENOENT)
		image_release(&vc_fs(req)->registry, img);	/* interrupted */
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
	if (err == 0) {
		fd = openat(dir->fd, name, O_CREAT | O_WRONLY | O_CLOEXEC |
		    O_NOFOLLOW | (fi->flags & (O_EXCL | O_TRUNC)), mode);
		if (fd == -1)
			err = -errno;
		else
			close(fd);
	}
	if (err == 0)
		err = vc_give_to_caller(req, dir, name);
	if (err == 0)
		err = vc_do_lookup(req, parent, name, &e);
	if (err < 0) {
		vc_reply_err(req, err);
		return;
	}
	inode = vc_inode(req, e.ino);
	err = image_open(&fs->registry, inode, fi->flags, &img);
	if (err < 0) {
		itable_forget(&fs->itable, inode, 1);
		vc_reply_err(req, err);
		return;
	}
	fi->fh = (uintptr_t)img;
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
	io_submit_read(vc_image(fi), size, off, vc_read_done, req);
}

static void
vc_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
    off_t off, struct fuse_file_info *fi)
{
	/* For WRITE, libfuse puts the kernel's per-write flags in fi->flags;
	 * O_SYNC includes the O_DSYNC bit. */
	io_submit_write(vc_image(fi), buf, size, off,
	    (fi->flags & O_DSYNC) != 0, vc_write_done, req);
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
	image_release(&vc_fs(req)->registry, vc_image(fi));
	fuse_reply_err(req, 0);
}

static void
vc_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	io_submit_fsync(vc_image(fi), datasync != 0, vc_status_done, req);
}

static void
vc_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
    struct fuse_file_info *fi)
{
	struct vc_image *img = vc_image(fi);

	if (img->conf.readonly)
		vc_reply_err(req, EROFS);
	else
		vc_reply_err(req, io_fallocate(img, mode, off, len));
}

static void
vc_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
    struct fuse_file_info *fi)
{
	off_t r = io_lseek(vc_image(fi), off, whence);

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
	struct vc_image *out = vc_image(fi_out);
	ssize_t n;

	if (flags != 0) {
		vc_reply_err(req, EINVAL);
		return;
	}
	if (out->conf.readonly) {
		vc_reply_err(req, EROFS);
		return;
	}
	n = io_copy_range(vc_image(fi_in), off_in, out, off_out, len);
	if (n < 0)
		vc_reply_err(req, (int)n);
	else
		fuse_reply_write(req, (size_t)n);
}

/* Directory handles. */
struct vc_dir {
	DIR *dp;
	off_t offset;		/* telldir() cookie of the next entry */
	struct dirent *entry;	/* read but not yet replied; owned by dp */
};

static void
vc_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vc_dir *d = calloc(1, sizeof(*d));
	int fd, saverr;

	if (d == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fd = openat(vc_inode(req, ino)->fd, ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC);
	if (fd == -1 || (d->dp = fdopendir(fd)) == NULL) {
		saverr = errno;
		if (fd != -1)
			close(fd);
		free(d);
		fuse_reply_err(req, saverr);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		closedir(d->dp);
		free(d);
	}
}

static void
vc_do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
    struct fuse_file_info *fi, bool plus)
{
	struct vc_dir *d = (struct vc_dir *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	size_t used = 0;
	int err = 0;

	if (buf == NULL) {
		fuse_reply_err(req, ENOMEM);
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
	struct vc_dir *d = (struct vc_dir *)(uintptr_t)fi->fh;

	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

static void
vc_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
    struct fuse_file_info *fi)
{
	struct vc_dir *d = (struct vc_dir *)(uintptr_t)fi->fh;
	int fd = dirfd(d->dp);
	int r = datasync ? fdatasync(fd) : fsync(fd);

	fuse_reply_err(req, r == -1 ? errno : 0);
}

static void
vc_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	if (fstatvfs(vc_inode(req, ino)->fd, &sv) == -1)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

static void
vc_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	char proc[64];

	inode_procpath(vc_inode(req, ino), proc, sizeof(proc));
	fuse_reply_err(req, faccessat(AT_FDCWD, proc, mask, 0) == -1 ? errno : 0);
}

/* xattrs go through /proc/self/fd: the f*xattr calls refuse O_PATH. */
static int
vc_xattr_path(struct vc_inode *inode, char *proc, size_t len)
{
	if (S_ISLNK(inode->type))
		return -EOPNOTSUPP;	/* the magic link would follow it */
	inode_procpath(inode, proc, len);
	return 0;
}

static void
vc_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
    const char *value, size_t size, int flags)
{
	char proc[64];
	int err = vc_xattr_path(vc_inode(req, ino), proc, sizeof(proc));

	if (err == 0 && setxattr(proc, name, value, size, flags) == -1)
		err = -errno;
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
	char proc[64], *buf = NULL;
	ssize_t n = vc_xattr_path(vc_inode(req, ino), proc, sizeof(proc));

	if (n == 0 && size > 0 && (buf = malloc(size)) == NULL)
		n = -ENOMEM;
	if (n == 0 && (n = getxattr(proc, name, buf, size)) == -1)
		n = -errno;
	vc_reply_xattr(req, size, n, buf);
	free(buf);
}

static void
vc_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char proc[64], *buf = NULL;
	ssize_t n = vc_xattr_path(vc_inode(req, ino), proc, sizeof(proc));

	if (n == 0 && size > 0 && (buf = malloc(size)) == NULL)
		n = -ENOMEM;
	if (n == 0 && (n = listxattr(proc, buf, size)) == -1)
		n = -errno;
	vc_reply_xattr(req, size, n, buf);
	free(buf);
}

static void
vc_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	char proc[64];
	int err = vc_xattr_path(vc_inode(req, ino), proc, sizeof(proc));

	if (err == 0 && removexattr(proc, name) == -1)
		err = -errno;
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
	 * The daemon writes as root, whose writes never clear setuid bits:
	 * let the kernel clear them on behalf of the real writer.
	 */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
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
