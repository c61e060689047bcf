/*
 * inode.c - the table of backing inodes (see inode.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "inode.h"
#include "log.h"

#define ITABLE_INITIAL_BUCKETS	1024
/* Closable descriptors kept open: this share of RLIMIT_NOFILE, within
 * bounds. The rest is for images, the rings and the FUSE session. */
#define ITABLE_FDS_MIN		32
#define ITABLE_FDS_MAX		65536
#define ITABLE_EVICT_BATCH	16

static size_t
itable_hash(const struct vc_itable *t, dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev;

	return (size_t)(h >> 17) & (t->nbuckets - 1);
}

/* The file handle of fd's object, or NULL where it has none. */
static struct file_handle *
itable_handle_of(int fd)
{
	struct file_handle *h, *shrunk;
	int mount_id;

	h = malloc(sizeof(*h) + MAX_HANDLE_SZ);
	if (h == NULL)
		return NULL;
	h->handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", h, &mount_id, AT_EMPTY_PATH) == -1) {
		free(h);
		return NULL;
	}
	shrunk = realloc(h, sizeof(*h) + h->handle_bytes);
	return shrunk != NULL ? shrunk : h;
}

/*
 * Whether handles of the source's filesystem can be reopened here: it
 * must export them and open_by_handle_at needs CAP_DAC_READ_SEARCH.
 * Says why not, once.
 */
static bool
itable_probe_handles(int rootfd, int mountfd)
{
	struct file_handle *h = itable_handle_of(rootfd);
	int fd, saverr;

	if (h == NULL) {
		log_info("the source's filesystem exports no file handles (%s): "
		    "every looked-up inode keeps a descriptor", strerror(errno));
		return false;
	}
	fd = mountfd < 0 ? -1 : open_by_handle_at(mountfd, h, O_PATH | O_CLOEXEC);
	saverr = mountfd < 0 ? EBADF : errno;
	free(h);
	if (fd == -1) {
		log_info("cannot reopen file handles (%s): every looked-up "
		    "inode keeps a descriptor", strerror(saverr));
		return false;
	}
	close(fd);
	return true;
}

static unsigned
itable_fd_budget(void)
{
	struct rlimit rl;
	rlim_t n = ITABLE_FDS_MIN * 2;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		n = rl.rlim_cur;
	n /= 2;
	if (n < ITABLE_FDS_MIN)
		n = ITABLE_FDS_MIN;
	if (n > ITABLE_FDS_MAX)
		n = ITABLE_FDS_MAX;
	return (unsigned)n;
}

int
itable_init(struct vc_itable *t, int rootfd)
{
	struct stat st;

	memset(t, 0, sizeof(*t));
	t->mountfd = -1;
	if (fstat(rootfd, &st) == -1)
		return -errno;
	t->buckets = calloc(ITABLE_INITIAL_BUCKETS, sizeof(*t->buckets));
	if (t->buckets == NULL)
		return -ENOMEM;
	t->nbuckets = ITABLE_INITIAL_BUCKETS;
	pthread_mutex_init(&t->lock, NULL);
	slots_init(&t->slots);
	t->root.nodeid = ITABLE_ROOT_ID;
	t->root.fd = rootfd;
	t->root.dev = st.st_dev;
	t->root.ino = st.st_ino;
	t->root.type = S_IFDIR;
	t->root.nlookup = 2;	/* the kernel never forgets the root */
	t->root.fd_users = 1;	/* and its descriptor never closes */
	t->lru.lru_next = t->lru.lru_prev = &t->lru;
	/* open_by_handle_at wants a descriptor it can read (not O_PATH). */
	t->mountfd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	t->handles = itable_probe_handles(rootfd, t->mountfd);
	if (!t->handles && t->mountfd >= 0) {
		close(t->mountfd);
		t->mountfd = -1;
	}
	t->maxfds = itable_fd_budget();
	log_debug("inode table: %s, at most %u unused descriptors kept",
	    t->handles ? "file handles" : "descriptors only", t->maxfds);
	return 0;
}

static void
itable_free_inode(struct vc_inode *n)
{
	if (n->fd >= 0)
		close(n->fd);
	free(n->handle);
	free(n);
}

void
itable_exit(struct vc_itable *t)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct vc_inode *n, *next;

		for (n = t->buckets[i]; n != NULL; n = next) {
			next = n->next;
			itable_free_inode(n);
		}
	}
	while (t->stale != NULL) {
		struct vc_inode *n = t->stale;

		t->stale = n->next;
		itable_free_inode(n);
	}
	free(t->buckets);
	t->buckets = NULL;
	slots_exit(&t->slots);
	if (t->root.fd >= 0)
		close(t->root.fd);
	t->root.fd = -1;
	if (t->mountfd >= 0)
		close(t->mountfd);
	t->mountfd = -1;
	pthread_mutex_destroy(&t->lock);
}

/* Double the buckets when chains grow long. Called with t->lock held. */
static void
itable_grow(struct vc_itable *t)
{
	size_t nb = t->nbuckets * 2;
	struct vc_inode **nbk = calloc(nb, sizeof(*nbk));
	struct vc_inode **old = t->buckets;
	size_t oldn = t->nbuckets;

	if (nbk == NULL)
		return;		/* keep the longer chains; still correct */
	t->buckets = nbk;
	t->nbuckets = nb;
	for (size_t i = 0; i < oldn; i++) {
		struct vc_inode *n, *next;

		for (n = old[i]; n != NULL; n = next) {
			size_t h = itable_hash(t, n->dev, n->ino);

			next = n->next;
			n->next = nbk[h];
			nbk[h] = n;
		}
	}
	free(old);
}

/* LRU of closable descriptors. Called with t->lock held. */
static void
itable_lru_del(struct vc_itable *t, struct vc_inode *n)
{
	if (n->lru_next == NULL)
		return;
	n->lru_prev->lru_next = n->lru_next;
	n->lru_next->lru_prev = n->lru_prev;
	n->lru_next = n->lru_prev = NULL;
	t->nclosable--;
}

static void
itable_lru_add(struct vc_itable *t, struct vc_inode *n)
{
	if (n->lru_next != NULL || n->fd < 0 || n->handle == NULL ||
	    n->fd_users > 0 || n == &t->root)
		return;
	n->lru_prev = t->lru.lru_prev;
	n->lru_next = &t->lru;
	t->lru.lru_prev->lru_next = n;
	t->lru.lru_prev = n;
	t->nclosable++;
}

/*
 * Take descriptors beyond the budget off their inodes, oldest first, into
 * fds (at most ITABLE_EVICT_BATCH). Called with t->lock held; the caller
 * closes them after unlocking. Returns how many.
 */
static unsigned
itable_evict_locked(struct vc_itable *t, int *fds)
{
	unsigned n = 0;

	while (t->nclosable > t->maxfds && n < ITABLE_EVICT_BATCH) {
		struct vc_inode *old = t->lru.lru_next;

		itable_lru_del(t, old);
		fds[n++] = old->fd;
		old->fd = -1;
	}
	return n;
}

static void
itable_close_all(const int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

static bool
itable_same_handle(const struct file_handle *a, const struct file_handle *b)
{
	return a->handle_type == b->handle_type &&
	    a->handle_bytes == b->handle_bytes &&
	    memcmp(a->f_handle, b->f_handle, a->handle_bytes) == 0;
}

/* Take n out of the hash; it lives on until forgotten. Called with t->lock held. */
static void
itable_unhash_locked(struct vc_itable *t, struct vc_inode *n)
{
	struct vc_inode **pp = &t->buckets[itable_hash(t, n->dev, n->ino)];

	while (*pp != NULL && *pp != n)
		pp = &(*pp)->next;
	if (*pp == n) {
		*pp = n->next;
		t->count--;
	}
	n->next = NULL;
	n->hashed = false;
}

/*
 * Enter the object of fd (O_PATH, owned from now on) with attributes st.
 * Returns 0 with *out referenced once more, or -errno.
 */
static int
itable_insert(struct vc_itable *t, int fd, const struct stat *st,
    struct vc_inode **out)
{
	struct vc_inode *n;
	struct file_handle *fh = NULL;
	bool have_fh = false;
	int evicted[ITABLE_EVICT_BATCH];
	unsigned nev;
	size_t h;

again:
	pthread_mutex_lock(&t->lock);
	if (st->st_dev == t->root.dev && st->st_ino == t->root.ino) {
		/* ".." of a top-level entry, or a bind loop: the root itself. */
		n = &t->root;
		n->nlookup++;
		pthread_mutex_unlock(&t->lock);
		close(fd);
		free(fh);
		*out = n;
		return 0;
	}
	h = itable_hash(t, st->st_dev, st->st_ino);
	for (n = t->buckets[h]; n != NULL; n = n->next) {
		if (n->dev == st->st_dev && n->ino == st->st_ino)
			break;
	}
	/*
	 * An open descriptor keeps its object, so its number cannot be
	 * reused. A closed one does not: the object may have been deleted
	 * and its number given to this one. Tell them apart by handle.
	 */
	if (n != NULL && n->fd < 0) {
		if (!have_fh) {
			pthread_mutex_unlock(&t->lock);
			fh = itable_handle_of(fd);
			have_fh = true;
			goto again;
		}
		/* Without the new handle it cannot be told: keep n (as
		 * before handles, when numbers could not be reused). */
		if (fh != NULL && !itable_same_handle(fh, n->handle)) {
			/* Stale: ESTALE from now on, freed when forgotten. */
			itable_unhash_locked(t, n);
			n->next = t->stale;
			t->stale = n;
			n = NULL;
		}
	}
	if (n != NULL) {
		n->nlookup++;
		if (n->fd < 0) {	/* evicted: this one saves a reopen */
			n->fd = fd;
			fd = -1;
			itable_lru_add(t, n);
		}
		nev = itable_evict_locked(t, evicted);
		pthread_mutex_unlock(&t->lock);
		if (fd >= 0)
			close(fd);	/* the inode keeps its own descriptor */
		free(fh);
		itable_close_all(evicted, nev);
		inode_note_mode(n, st->st_mode);
		*out = n;
		return 0;
	}
	n = calloc(1, sizeof(*n));
	if (n == NULL) {
		pthread_mutex_unlock(&t->lock);
		close(fd);
		free(fh);
		return -ENOMEM;
	}
	n->nodeid = slots_alloc(&t->slots, n);
	if (n->nodeid == 0) {
		pthread_mutex_unlock(&t->lock);
		free(n);
		close(fd);
		free(fh);
		return -ENOMEM;
	}
	n->fd = fd;
	n->dev = st->st_dev;
	n->ino = st->st_ino;
	n->type = st->st_mode & S_IFMT;
	n->nlookup = 1;
	n->fd_users = 1;	/* until it has a handle, below */
	inode_note_mode(n, st->st_mode);
	n->next = t->buckets[h];
	n->hashed = true;
	t->buckets[h] = n;
	if (++t->count > t->nbuckets * 2)
		itable_grow(t);
	pthread_mutex_unlock(&t->lock);

	/*
	 * Outside the lock. Handles are decoded against the source's
	 * filesystem: objects of other filesystems below it keep their fd.
	 */
	if (!have_fh)
		fh = t->handles && st->st_dev == t->root.dev ?
		    itable_handle_of(fd) : NULL;
	else if (fh != NULL && !(t->handles && st->st_dev == t->root.dev)) {
		free(fh);
		fh = NULL;
	}
	pthread_mutex_lock(&t->lock);
	n->handle = fh;
	n->fd_users--;
	itable_lru_add(t, n);
	nev = itable_evict_locked(t, evicted);
	pthread_mutex_unlock(&t->lock);
	itable_close_all(evicted, nev);
	*out = n;
	return 0;
}

int
itable_lookup(struct vc_itable *t, struct vc_inode *parent, const char *name,
    struct vc_inode **out, struct stat *st)
{
	int pfd, fd, saverr;

	pfd = inode_fd_get(t, parent);
	if (pfd < 0)
		return pfd;
	fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	saverr = errno;
	inode_fd_put(t, parent);
	if (fd == -1)
		return -saverr;
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) {
		saverr = errno;
		close(fd);
		return -saverr;
	}
	return itable_insert(t, fd, st, out);
}

int
itable_lookup_fd(struct vc_itable *t, int fd, struct vc_inode **out,
    struct stat *st)
{
	char proc[64];
	int pfd, saverr;

	/* Following the magic link reopens the same object, never a name
	 * (O_NOFOLLOW would open the link itself). */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	pfd = open(proc, O_PATH | O_CLOEXEC);
	if (pfd == -1)
		return -errno;
	if (fstatat(pfd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) {
		saverr = errno;
		close(pfd);
		return -saverr;
	}
	return itable_insert(t, pfd, st, out);
}

/* Unhash and free an inode nobody references. Called with t->lock held; drops it. */
static void
itable_drop_locked(struct vc_itable *t, struct vc_inode *inode)
{
	if (inode->nlookup > 0 || inode == &t->root || inode->image != NULL ||
	    inode->fd_users > 0) {
		pthread_mutex_unlock(&t->lock);
		return;
	}
	itable_lru_del(t, inode);
	if (inode->hashed) {
		itable_unhash_locked(t, inode);
	} else {
		struct vc_inode **pp = &t->stale;

		while (*pp != NULL && *pp != inode)
			pp = &(*pp)->next;
		if (*pp == inode)
			*pp = inode->next;
	}
	/* The kernel has forgotten the number: it may be given out again. */
	slots_free(&t->slots, inode->nodeid);
	pthread_mutex_unlock(&t->lock);
	itable_free_inode(inode);
}

int
itable_install(struct vc_itable *t, uint64_t nodeid, int fd,
    const struct file_handle *handle, dev_t dev, ino_t ino, mode_t type,
    uint64_t nlookup, bool stale)
{
	struct vc_inode *n = calloc(1, sizeof(*n));
	size_t h;
	int r;

	if (n == NULL || (fd < 0 && handle == NULL)) {
		free(n);
		return n == NULL ? -ENOMEM : -EINVAL;
	}
	if (handle != NULL) {
		n->handle = malloc(sizeof(*handle) + handle->handle_bytes);
		if (n->handle == NULL) {
			free(n);
			return -ENOMEM;
		}
		memcpy(n->handle, handle, sizeof(*handle) + handle->handle_bytes);
	}
	n->nodeid = nodeid;
	n->fd = fd;
	n->dev = dev;
	n->ino = ino;
	n->type = type & S_IFMT;
	n->nlookup = nlookup;
	/* Without a handle the descriptor never closes: itable_lru_add
	 * leaves such inodes off the LRU, as at lookup. */
	n->maybe_privs = S_ISREG(n->type);	/* until a stat says otherwise */
	pthread_mutex_lock(&t->lock);
	r = slots_install(&t->slots, nodeid, n);
	if (r < 0) {
		pthread_mutex_unlock(&t->lock);
		free(n->handle);
		free(n);
		return r;
	}
	if (stale) {
		n->next = t->stale;
		t->stale = n;
	} else {
		h = itable_hash(t, dev, ino);
		n->next = t->buckets[h];
		n->hashed = true;
		t->buckets[h] = n;
		if (++t->count > t->nbuckets * 2)
			itable_grow(t);
	}
	itable_lru_add(t, n);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int
itable_seal(struct vc_itable *t)
{
	return slots_seal(&t->slots);
}

struct itable_each_ctx {
	int (*fn)(struct vc_inode *n, void *arg);
	void *arg;
};

static int
itable_each_slot(uint64_t nodeid, void *p, void *arg)
{
	struct itable_each_ctx *c = arg;

	return c->fn(p, c->arg);
}

int
itable_each(struct vc_itable *t, int (*fn)(struct vc_inode *n, void *arg),
    void *arg)
{
	struct itable_each_ctx c = { fn, arg };
	int r;

	pthread_mutex_lock(&t->lock);
	r = fn(&t->root, arg);
	if (r >= 0)
		r = slots_each(&t->slots, itable_each_slot, &c);
	pthread_mutex_unlock(&t->lock);
	return r;
}

void
itable_forget(struct vc_itable *t, struct vc_inode *inode, uint64_t n)
{
	pthread_mutex_lock(&t->lock);
	if (n > inode->nlookup) {
		log_warnx("inode %llu: forget %llu of %llu references",
		    (unsigned long long)inode->ino, (unsigned long long)n,
		    (unsigned long long)inode->nlookup);
		n = inode->nlookup;
	}
	inode->nlookup -= n;
	itable_drop_locked(t, inode);
}

void
itable_set_image(struct vc_itable *t, struct vc_inode *inode,
    struct vc_image *img)
{
	pthread_mutex_lock(&t->lock);
	if (img != NULL && inode->image == NULL) {
		inode->fd_users++;	/* the caller's pin keeps fd open */
		itable_lru_del(t, inode);
	} else if (img == NULL && inode->image != NULL) {
		inode->fd_users--;
		itable_lru_add(t, inode);
	}
	inode->image = img;
	/* FORGET may overtake the asynchronous RELEASE: free it here then. */
	itable_drop_locked(t, inode);
}

int
inode_fd_get(struct vc_itable *t, struct vc_inode *inode)
{
	int fd, extra = -1, saverr;

	pthread_mutex_lock(&t->lock);
	inode->fd_users++;
	if (inode->fd >= 0) {
		itable_lru_del(t, inode);
		fd = inode->fd;
		pthread_mutex_unlock(&t->lock);
		return fd;
	}

	/* Closed for the budget: only inodes with a handle ever are. */
	if (inode->handle == NULL) {
		pthread_mutex_unlock(&t->lock);
		inode_fd_put(t, inode);
		return -EBADF;
	}
	pthread_mutex_unlock(&t->lock);
	fd = open_by_handle_at(t->mountfd, inode->handle, O_PATH | O_CLOEXEC);
	saverr = errno;
	pthread_mutex_lock(&t->lock);
	if (fd == -1) {
		pthread_mutex_unlock(&t->lock);
		inode_fd_put(t, inode);
		return -saverr;
	}
	if (inode->fd >= 0) {		/* another user reopened it first */
		extra = fd;
		fd = inode->fd;
	} else {
		inode->fd = fd;
	}
	pthread_mutex_unlock(&t->lock);
	if (extra >= 0)
		close(extra);
	return fd;
}

void
inode_fd_put(struct vc_itable *t, struct vc_inode *inode)
{
	int evicted[ITABLE_EVICT_BATCH];
	unsigned nev;

	pthread_mutex_lock(&t->lock);
	inode->fd_users--;
	itable_lru_add(t, inode);
	nev = itable_evict_locked(t, evicted);
	itable_drop_locked(t, inode);	/* unlocks */
	itable_close_all(evicted, nev);
}

void
inode_procpath(const struct vc_inode *inode, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", inode->fd);
}

int
inode_relpath(struct vc_itable *t, struct vc_inode *inode, char *buf,
    size_t len)
{
	char proc[64], root[PATH_MAX], self[PATH_MAX];
	ssize_t rl, sl;
	size_t rlen;
	int fd, saverr;

	inode_procpath(&t->root, proc, sizeof(proc));
	rl = readlink(proc, root, sizeof(root) - 1);
	if (rl < 0)
		return -errno;
	fd = inode_fd_get(t, inode);
	if (fd < 0)
		return fd;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	sl = readlink(proc, self, sizeof(self) - 1);
	saverr = errno;
	inode_fd_put(t, inode);
	if (sl < 0)
		return -saverr;
	root[rl] = '\0';
	self[sl] = '\0';
	rlen = (size_t)rl;
	if (strcmp(root, "/") == 0)
		rlen = 0;
	if (strncmp(self, root, rlen) != 0 ||
	    (self[rlen] != '/' && self[rlen] != '\0'))
		return -ENOENT;	/* moved out of the tree, or deleted */
	if (self[rlen] == '/')
		rlen++;
	if (strlen(self + rlen) >= len)
		return -ENAMETOOLONG;
	strcpy(buf, self + rlen);
	return 0;
}

void
inode_note_mode(struct vc_inode *inode, mode_t mode)
{
	__atomic_store_n(&inode->maybe_privs, S_ISREG(mode) &&
	    (mode & (S_ISUID | S_ISGID)) != 0, __ATOMIC_RELAXED);
}

int
inode_kill_privs(struct vc_inode *inode, bool (*in_group)(gid_t, void *),
    void *arg)
{
	char proc[64];
	struct stat st;
	mode_t kill;

	/* Most images have no such bits: skip the stat on every write. */
	if (!__atomic_load_n(&inode->maybe_privs, __ATOMIC_RELAXED))
		return 0;
	if (fstatat(inode->fd, "", &st, AT_EMPTY_PATH) == -1)
		return -errno;
	/*
	 * As current kernels decide (setattr_should_drop_sgid): setgid goes
	 * where group-exec is set, and also without it when the writer is
	 * not in the file's group (Linux 6.1 kept it then).
	 */
	kill = st.st_mode & S_ISUID;
	if ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) ||
	    !in_group(st.st_gid, arg)))
		kill |= S_ISGID;
	if (kill != 0) {
		inode_procpath(inode, proc, sizeof(proc));
		if (chmod(proc, st.st_mode & 07777 & ~kill) == -1)
			return -errno;
	}
	inode_note_mode(inode, st.st_mode & ~kill);
	return 0;
}

int
itable_syncfs(const struct vc_itable *t)
{
	/* syncfs refuses O_PATH descriptors: open the root for reading. */
	int fd = openat(t->root.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (fd == -1)
		return -errno;
	if (syncfs(fd) == -1)
		r = -errno;
	close(fd);
	return r;
}
