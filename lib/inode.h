/*
 * inode.h - the daemon's table of backing inodes.
 *
 * Every object the kernel knows through the mount has one vc_inode, keyed
 * by the backing (st_dev, st_ino). So hard links share one inode, renames
 * of open files keep working, and the in-place overmount never needs a
 * path: everything is reached with *at() calls relative to the inodes'
 * O_PATH descriptors.
 *
 * Descriptors are bounded: a directory of any size must not starve image
 * opens of descriptors. Where the backing filesystem exports file handles
 * (name_to_handle_at) and the daemon may open them (CAP_DAC_READ_SEARCH),
 * an inode keeps its handle and its O_PATH descriptor is only a cache:
 * unused ones beyond t->maxfds are closed, oldest first, and reopened from
 * the handle on the next use. Inodes without a handle (other filesystems
 * below the source, stores that export none, a non-root daemon) keep their
 * descriptor for as long as the kernel remembers them, as before.
 *
 * Use an inode's descriptor only between inode_fd_get() and
 * inode_fd_put(). An inode with an open image is pinned for the image's
 * life, so its descriptor stays valid while the image is open.
 */
#ifndef VC_INODE_H
#define VC_INODE_H

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "slots.h"

struct vc_image;

struct vc_inode {
	uint64_t nodeid;	/* the kernel's name for it: a slot number of
				 * the table (slots.h), FUSE_ROOT_ID for the
				 * root; fixed for the inode's life */
	int fd;			/* O_PATH on the backing object, -1 while closed;
				 * protected by table lock */
	struct file_handle *handle;	/* NULL: fd never closes; owned */
	dev_t dev;
	ino_t ino;
	mode_t type;		/* S_IFMT bits, fixed for the inode's life */
	bool maybe_privs;	/* may have setuid/setgid bits: a write by a
				 * caller without CAP_FSETID must look; atomic */
	uint64_t nlookup;	/* kernel references; protected by table lock */
	unsigned fd_users;	/* inode_fd_get() holders, plus one while an
				 * image is open; protected by table lock */
	struct vc_image *image;	/* open state, NULL when closed; set under table lock */
	struct vc_inode *next;	/* hash chain; protected by table lock */
	bool hashed;		/* on it: false once found stale (its object
				 * deleted, its number reused); table lock */
	/* On the table's LRU of closable descriptors (fd open, a handle, no
	 * users); protected by table lock. */
	struct vc_inode *lru_prev, *lru_next;
};

struct vc_itable {
	pthread_mutex_t lock;
	struct vc_inode **buckets;	/* protected by lock */
	size_t nbuckets;
	size_t count;			/* protected by lock */
	struct vc_inode root;		/* never freed, never in the hash */
	struct vc_inode *stale;		/* unhashed, still known to the kernel;
					 * chained by next; protected by lock */
	bool handles;			/* file handles can be reopened here */
	int mountfd;			/* the root, readable: for open_by_handle_at */
	unsigned maxfds;		/* closable descriptors kept open at most */
	unsigned nclosable;		/* on the LRU; protected by lock */
	struct vc_inode lru;		/* list head: lru.lru_next is the oldest */
	struct vc_slots slots;		/* node IDs: every inode but the root */
};

#define ITABLE_ROOT_ID	1		/* FUSE_ROOT_ID */

/*
 * rootfd: an O_PATH or O_RDONLY descriptor of the source directory; owned
 * from now on. The descriptor budget is derived from RLIMIT_NOFILE as it
 * is now: raise the limit first.
 */
int itable_init(struct vc_itable *t, int rootfd);
void itable_exit(struct vc_itable *t);

/*
 * Look up name in parent on the backing store. On success *out holds the
 * inode with one more lookup reference and *st its attributes.
 * Returns 0 or -errno.
 */
int itable_lookup(struct vc_itable *t, struct vc_inode *parent,
    const char *name, struct vc_inode **out, struct stat *st);

/*
 * The same for the object that descriptor fd (any kind, not consumed)
 * refers to, found without any name: for what the daemon itself has just
 * created, so that a name swapped in meanwhile cannot stand in for it.
 */
int itable_lookup_fd(struct vc_itable *t, int fd, struct vc_inode **out,
    struct stat *st);

/*
 * The inode of node ID nodeid, or NULL. Takes no lock: the kernel only
 * names node IDs it holds a lookup reference on.
 */
static inline struct vc_inode *
itable_get(struct vc_itable *t, uint64_t nodeid)
{
	if (nodeid == ITABLE_ROOT_ID)
		return &t->root;
	return slots_get(&t->slots, nodeid);
}

/*
 * Enter a handed-over inode (takeover.c) at its old node ID, before any
 * lookup: fd is its O_PATH descriptor (owned from now on) or -1 with a
 * handle (copied) to reopen it from. stale: it was found stale already
 * (ESTALE from now on). nlookup may be 0 for an inode the kernel forgot
 * while a file of it is still open: its image, opened next, keeps it.
 * Returns 0 or -errno (EEXIST: a node ID twice).
 */
int itable_install(struct vc_itable *t, uint64_t nodeid, int fd,
    const struct file_handle *handle, dev_t dev, ino_t ino, mode_t type,
    uint64_t nlookup, bool stale);
/* After the installs: free node IDs may be given out. Returns 0 or -errno. */
int itable_seal(struct vc_itable *t);

/*
 * Call fn for the root, then every other inode, under the table lock (fn
 * must not block or call into t). Stops at the first fn < 0; returns it.
 */
int itable_each(struct vc_itable *t, int (*fn)(struct vc_inode *n, void *arg),
    void *arg);

/* Drop n lookup references; the inode is freed at zero. */
void itable_forget(struct vc_itable *t, struct vc_inode *inode, uint64_t n);

/*
 * Attach or detach the open state; attaching pins the inode's descriptor
 * (the caller holds it through inode_fd_get()). Detaching from an inode
 * the kernel has already forgotten frees the inode: do not touch it
 * afterwards.
 */
void itable_set_image(struct vc_itable *t, struct vc_inode *inode,
    struct vc_image *img);

/*
 * Pin the inode's O_PATH descriptor, reopening it from its handle if it
 * was closed. Returns the descriptor, or -errno (ESTALE: the object is
 * gone). Every successful call needs one inode_fd_put().
 */
int inode_fd_get(struct vc_itable *t, struct vc_inode *inode);
void inode_fd_put(struct vc_itable *t, struct vc_inode *inode);

/* "/proc/self/fd/N" for a pinned inode: how to reopen an O_PATH descriptor. */
void inode_procpath(const struct vc_inode *inode, char *buf, size_t len);

/* Path of the inode relative to the source root ("" for the root).
 * Returns 0 or -errno; the name may be stale after a rename elsewhere. */
int inode_relpath(struct vc_itable *t, struct vc_inode *inode,
    char *buf, size_t len);

/* Record what a stat of the inode showed (for inode_kill_privs). */
void inode_note_mode(struct vc_inode *inode, mode_t mode);
/*
 * A write by a caller without CAP_FSETID (FUSE_WRITE_KILL_SUIDGID): clear
 * setuid and setgid as the kernel does for such a writer, owner included.
 * in_group(gid, arg) tells whether the writer is in group gid. The inode
 * must be pinned. Returns 0 or -errno.
 */
int inode_kill_privs(struct vc_inode *inode, bool (*in_group)(gid_t, void *),
    void *arg);

/* Flush the whole backing filesystem. Returns 0 or -errno. */
int itable_syncfs(const struct vc_itable *t);

#endif
