/*
 * inode.c - the table of backing inodes (see inode.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inode.h"
#include "log.h"

#define ITABLE_INITIAL_BUCKETS 1024

static size_t
itable_hash(const struct vc_itable *t, dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev;

	return (size_t)(h >> 17) & (t->nbuckets - 1);
}

int
itable_init(struct vc_itable *t, int rootfd)
{
	struct stat st;

	memset(t, 0, sizeof(*t));
	if (fstat(rootfd, &st) == -1)
		return -errno;
	t->buckets = calloc(ITABLE_INITIAL_BUCKETS, sizeof(*t->buckets));
	if (t->buckets == NULL)
		return -ENOMEM;
	t->nbuckets = ITABLE_INITIAL_BUCKETS;
	pthread_mutex_init(&t->lock, NULL);
	t->root.fd = rootfd;
	t->root.dev = st.st_dev;
	t->root.ino = st.st_ino;
	t->root.type = S_IFDIR;
	t->root.nlookup = 2;	/* the kernel never forgets the root */
	return 0;
}

void
itable_exit(struct vc_itable *t)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct vc_inode *n, *next;

		for (n = t->buckets[i]; n != NULL; n = next) {
			next = n->next;
			close(n->fd);
			free(n);
		}
	}
	free(t->buckets);
	t->buckets = NULL;
	if (t->root.fd >= 0)
		close(t->root.fd);
	t->root.fd = -1;
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

int
itable_lookup(struct vc_itable *t, struct vc_inode *parent, const char *name,
    struct vc_inode **out, struct stat *st)
{
	struct vc_inode *n;
	size_t h;
	int fd, saverr;

	fd = openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == -1) {
		saverr = errno;
		close(fd);
		return -saverr;
	}

	pthread_mutex_lock(&t->lock);
	if (st->st_dev == t->root.dev && st->st_ino == t->root.ino) {
		/* ".." of a top-level entry, or a bind loop: the root itself. */
		n = &t->root;
		n->nlookup++;
		pthread_mutex_unlock(&t->lock);
		close(fd);
		*out = n;
		return 0;
	}
	h = itable_hash(t, st->st_dev, st->st_ino);
	for (n = t->buckets[h]; n != NULL; n = n->next) {
		if (n->dev == st->st_dev && n->ino == st->st_ino)
			break;
	}
	if (n != NULL) {
		n->nlookup++;
		pthread_mutex_unlock(&t->lock);
		close(fd);	/* the inode keeps its own descriptor */
		*out = n;
		return 0;
	}
	n = calloc(1, sizeof(*n));
	if (n == NULL) {
		pthread_mutex_unlock(&t->lock);
		close(fd);
		return -ENOMEM;
	}
	n->fd = fd;
	n->dev = st->st_dev;
	n->ino = st->st_ino;
	n->type = st->st_mode & S_IFMT;
	n->nlookup = 1;
	n->next = t->buckets[h];
	t->buckets[h] = n;
	if (++t->count > t->nbuckets * 2)
		itable_grow(t);
	pthread_mutex_unlock(&t->lock);
	*out = n;
	return 0;
}

/* Unhash and free an inode nobody references. Called with t->lock held; drops it. */
static void
itable_drop_locked(struct vc_itable *t, struct vc_inode *inode)
{
	struct vc_inode **pp;

	if (inode->nlookup > 0 || inode == &t->root || inode->image != NULL) {
		pthread_mutex_unlock(&t->lock);
		return;
	}
	pp = &t->buckets[itable_hash(t, inode->dev, inode->ino)];
	while (*pp != NULL && *pp != inode)
		pp = &(*pp)->next;
	if (*pp == inode)
		*pp = inode->next;
	t->count--;
	pthread_mutex_unlock(&t->lock);
	close(inode->fd);
	free(inode);
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
	inode->image = img;
	/* FORGET may overtake the asynchronous RELEASE: free it here then. */
	itable_drop_locked(t, inode);
}

void
inode_procpath(const struct vc_inode *inode, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", inode->fd);
}

int
inode_relpath(const struct vc_itable *t, const struct vc_inode *inode,
    char *buf, size_t len)
{
	char proc[64], root[PATH_MAX], self[PATH_MAX];
	ssize_t rl, sl;
	size_t rlen;

	inode_procpath(&t->root, proc, sizeof(proc));
	rl = readlink(proc, root, sizeof(root) - 1);
	inode_procpath(inode, proc, sizeof(proc));
	sl = readlink(proc, self, sizeof(self) - 1);
	if (rl < 0 || sl < 0)
		return -errno;
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
