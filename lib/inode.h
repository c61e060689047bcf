/*
 * inode.h - the daemon's table of backing inodes.
 *
 * Every object the kernel knows through the mount has one vc_inode, keyed
 * by the backing (st_dev, st_ino), holding an O_PATH descriptor of it. So
 * hard links share one inode, renames of open files keep working, and the
 * in-place overmount never needs a path: everything is reached with *at()
 * calls relative to these descriptors.
 */
#ifndef VC_INODE_H
#define VC_INODE_H

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct vc_image;

struct vc_inode {
	int fd;			/* O_PATH on the backing object; owned */
	dev_t dev;
	ino_t ino;
	mode_t type;		/* S_IFMT bits, fixed for the inode's life */
	uint64_t nlookup;	/* kernel references; protected by table lock */
	struct vc_image *image;	/* open state, NULL when closed; set under table lock */
	struct vc_inode *next;	/* hash chain; protected by table lock */
};

struct vc_itable {
	pthread_mutex_t lock;
	struct vc_inode **buckets;	/* protected by lock */
	size_t nbuckets;
	size_t count;			/* protected by lock */
	struct vc_inode root;		/* never freed, never in the hash */
};

/* rootfd: an O_PATH or O_RDONLY descriptor of the source directory; owned from now on. */
int itable_init(struct vc_itable *t, int rootfd);
void itable_exit(struct vc_itable *t);

/*
 * Look up name in parent on the backing store. On success *out holds the
 * inode with one more lookup reference and *st its attributes.
 * Returns 0 or -errno.
 */
int itable_lookup(struct vc_itable *t, struct vc_inode *parent,
    const char *name, struct vc_inode **out, struct stat *st);

/* Drop n lookup references; the inode is freed at zero. */
void itable_forget(struct vc_itable *t, struct vc_inode *inode, uint64_t n);

/*
 * Attach or detach the open state. Detaching from an inode the kernel has
 * already forgotten frees the inode: do not touch it afterwards.
 */
void itable_set_image(struct vc_itable *t, struct vc_inode *inode,
    struct vc_image *img);

/* "/proc/self/fd/N" for an inode: how to reopen an O_PATH descriptor. */
void inode_procpath(const struct vc_inode *inode, char *buf, size_t len);

/* Path of the inode relative to the source root ("" for the root).
 * Returns 0 or -errno; the name may be stale after a rename elsewhere. */
int inode_relpath(const struct vc_itable *t, const struct vc_inode *inode,
    char *buf, size_t len);

/* Flush the whole backing filesystem. Returns 0 or -errno. */
int itable_syncfs(const struct vc_itable *t);

#endif
