/*
 * image.c - open images and the registry of them (see image.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "io.h"
#include "log.h"
#include "resolve.h"

static void image_free(struct vc_image *img);

void
registry_init(struct vc_registry *r, struct vc_itable *t,
    const struct vc_config *cfg)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->itable = t;
	r->cfg = cfg;
}

void
registry_exit(struct vc_registry *r)
{
	/* Left open by a forced stop: the kernel will never release them. */
	while (r->open != NULL) {
		struct vc_image *img = r->open;

		r->open = img->next_open;
		img->inode->image = NULL;
		image_free(img);
	}
	r->nopen = 0;
	pthread_mutex_destroy(&r->lock);
}

/* An open image as the resolver sees it: a copy, visited unlocked. */
struct registry_seen {
	char *relpath;
	enum vc_cache_mode cache;
};

/*
 * The open images, for downward inheritance. fn probes files, so it runs
 * on a copy taken under r->lock, with the lock dropped. Called without it.
 */
static void
registry_walk_open(void *walk_arg, vc_open_visit fn, void *fn_arg)
{
	struct vc_registry *r = walk_arg;
	struct registry_seen *seen = NULL;
	unsigned n = 0, cap;

	pthread_mutex_lock(&r->lock);
	cap = r->nopen;
	if (cap > 0)
		seen = calloc(cap, sizeof(*seen));
	for (struct vc_image *img = r->open; seen != NULL && img != NULL &&
	    n < cap; img = img->next_open) {
		seen[n].relpath = strdup(img->relpath);
		if (seen[n].relpath == NULL)
			break;
		seen[n++].cache = img->conf.cache;
	}
	pthread_mutex_unlock(&r->lock);
	if (cap > 0 && n < cap)
		log_warnx("out of memory: %u of %u open images not weighed for "
		    "downward inheritance", cap - n, cap);
	for (unsigned i = 0; i < n; i++) {
		fn(seen[i].relpath, seen[i].cache, fn_arg);
		free(seen[i].relpath);
	}
	free(seen);
}

void
registry_set_resolver(struct vc_registry *r, struct vc_resolver *rs)
{
	r->resolver = rs;
	rs->open_walk = registry_walk_open;
	rs->open_arg = r;
}

/*
 * The settings for relpath: with a resolver, names then chains; else
 * names only. rule (len bytes, may be NULL with len 0) gets what chose
 * them. It probes files: called without r->lock.
 */
static void
registry_decide(struct vc_registry *r, const char *relpath,
    struct vc_image_conf *conf, char *rule, size_t len)
{
	const struct vc_rule *named;
	struct vc_decision *d;

	if (r->resolver != NULL && (d = malloc(sizeof(*d))) != NULL) {
		resolve_image(r->resolver, relpath, d);
		*conf = d->conf;
		snprintf(rule, len, "%s", d->rule);
		if (d->note[0] != '\0')
			log_warnx("%s", d->note);
		free(d);
		return;
	}
	cfg_lookup(r->cfg, relpath, conf, &named);
	snprintf(rule, len, "[%s]", named != NULL ? named->pattern : "global");
}

bool
image_flags_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

/*
 * Open the backing data descriptor through the inode's O_PATH descriptor
 * (never through the mount), with the flags the cache mode wants.
 * Returns a descriptor or -errno.
 */
static int
image_open_backing(const struct vc_image *img, bool writable)
{
	char proc[64];
	int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
	int fd;

	if (img->policy->o_direct)
		flags |= O_DIRECT;
	if (img->policy->write_durable)
		flags |= O_DSYNC;
	inode_procpath(img->inode, proc, sizeof(proc));
	fd = open(proc, flags);
	if (fd == -1)
		return -errno;
	return fd;
}

static void
image_free(struct vc_image *img)
{
	if (img->fd >= 0)
		close(img->fd);
	pthread_rwlock_destroy(&img->fdlock);
	gate_destroy(&img->sizelock);
	rangelock_destroy(&img->rmw);
	pthread_mutex_destroy(&img->upgrade_lock);
	free(img->relpath);
	free(img->rule);	/* Q-STUB */
	free(img);
}

/*
 * First open: settle the policy and open the backing descriptor. Called
 * without r->lock (it probes and opens files); the caller installs the
 * image, or frees it if another opener was first.
 */
static int
image_create(struct vc_registry *r, struct vc_inode *inode, bool writable,
    struct vc_image **out)
{
	struct vc_image *img;
	char rel[PATH_MAX], rule[PATH_MAX + 64];
	bool fellback;
	int fd, err;

	img = calloc(1, sizeof(*img));
	if (img == NULL)
		return -ENOMEM;
	img->inode = inode;
	img->fd = -1;
	pthread_mutex_init(&img->upgrade_lock, NULL);
	img->wb_err = 0;	/* no flush has failed yet (see image.h) */
	pthread_rwlock_init(&img->fdlock, NULL);
	gate_init(&img->sizelock);
	rangelock_init(&img->rmw);

	err = inode_relpath(r->itable, inode, rel, sizeof(rel));
	if (err < 0) {
		/* Unlinked while looked up: no name to match, use [global]. */
		snprintf(rel, sizeof(rel), "(inode %llu)",
		    (unsigned long long)inode->ino);
	}
	img->relpath = strdup(rel);
	if (img->relpath == NULL) {
		image_free(img);
		return -ENOMEM;
	}
	registry_decide(r, err < 0 ? "" : rel, &img->conf, rule, sizeof(rule));
	img->policy = policy_get(img->conf.cache);
	img->aio = policy_effective_aio(img->conf.cache, img->conf.aio,
	    &fellback);
	if (fellback)
		log_info("%s: aio=native needs O_DIRECT (cache=none or "
		    "directsync); cache=%s uses aio=threads", img->relpath,
		    img->policy->name);
	if (img->aio != VC_AIO_THREADS) {
		img->uring = r->uring;
		if (img->uring == NULL) {
			log_info("%s: aio=%s: io_uring is not available here; "
			    "using aio=threads", img->relpath,
			    policy_aio_name(img->aio));
			img->aio = VC_AIO_THREADS;
		}
	}

	if (img->conf.readonly && writable) {
		image_free(img);
		return -EROFS;
	}
	fd = image_open_backing(img, writable);
	if (fd < 0) {
		log_warnc(fd, "%s: open backing file (cache=%s)", img->relpath,
		    img->policy->name);
		image_free(img);
		return fd;
	}
	img->fd = fd;
	img->fd_writable = writable;
	if (img->policy->o_direct) {
		io_probe_dio_align(fd, &img->dio_align, &img->dio_mem_align);
		if (img->dio_align > VC_IO_MAXALIGN ||
		    img->dio_mem_align > VC_IO_MAXALIGN) {
			log_warnx("%s: O_DIRECT alignment %u is larger than %u",
			    img->relpath, img->dio_align, VC_IO_MAXALIGN);
			image_free(img);
			return -EINVAL;
		}
	}
	/*
	 * Probing went through the page cache; O_DIRECT images keep none.
	 * Drop it through our own descriptor, not by name: a name may have
	 * been swapped for a FIFO or a symlink meanwhile. Clean pages only:
	 * probing read them, nothing dirtied them.
	 */
	if (img->policy->o_direct && r->resolver != NULL && err == 0)
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	img->rule = strdup(rule);	/* Q-STUB: for image_info */
	log_debug("%s: opened cache=%s aio=%s readonly=%s (from %s)",
	    img->relpath, img->policy->name, policy_aio_name(img->aio),
	    img->conf.readonly ? "yes" : "no", rule);
	*out = img;
	return 0;
}

/*
 * A writer opens an image: swap in a writable descriptor unless it has
 * one. The caller holds an open reference and no registry lock: waiting
 * for fdlock waits for this image's I/O in flight (a long flush), which
 * must stall only this image's openers.
 */
static int
image_upgrade(struct vc_image *img)
{
	int fd, old, err = 0;

	pthread_mutex_lock(&img->upgrade_lock);
	if (img->fd_writable)		/* another writer was first */
		goto out;
	fd = image_open_backing(img, true);
	if (fd < 0) {
		err = fd;
		goto out;
	}
	pthread_rwlock_wrlock(&img->fdlock);
	old = img->fd;
	img->fd = fd;
	img->fd_writable = true;
	pthread_rwlock_unlock(&img->fdlock);
	close(old);
out:
	pthread_mutex_unlock(&img->upgrade_lock);
	return err;
}

struct registry_recheck {
	struct vc_registry *r;
	const struct vc_image *overlay;	/* the caller holds a reference */
};

/*
 * A new overlay may change what an open base below it should get. Modes
 * stay fixed while open, so say so. Called without r->lock: the base's
 * mode is copied under it, the decision (probing) is made after.
 */
static void
registry_recheck_base(const char *below, void *arg)
{
	struct registry_recheck *rc = arg;
	struct vc_image_conf conf;
	enum vc_cache_mode open_cache = VC_CACHE_WRITEBACK;
	char rule[PATH_MAX + 64];
	bool found = false;

	pthread_mutex_lock(&rc->r->lock);
	for (struct vc_image *img = rc->r->open; img != NULL;
	    img = img->next_open) {
		if (strcmp(img->relpath, below) == 0) {
			open_cache = img->conf.cache;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&rc->r->lock);
	if (!found)
		return;
	registry_decide(rc->r, below, &conf, rule, sizeof(rule));
	if (conf.cache != open_cache)
		log_info("%s: open with cache=%s; with %s open it would get "
		    "cache=%s (%s) from its next open on", below,
		    policy_get(open_cache)->name, rc->overlay->relpath,
		    policy_get(conf.cache)->name, rule);
}

int
image_open(struct vc_registry *r, struct vc_inode *inode, int flags,
    struct vc_image **out)
{
	bool writable = image_flags_write(flags);
	struct vc_image *img, *fresh = NULL;
	int err;

	/* The reference is taken under the lock: no last release frees it. */
	pthread_mutex_lock(&r->lock);
	img = inode->image;
	if (img != NULL)
		img->opencount++;
	pthread_mutex_unlock(&r->lock);

	if (img == NULL) {
		err = image_create(r, inode, writable, &fresh);
		if (err < 0)
			return err;
		pthread_mutex_lock(&r->lock);
		img = inode->image;
		if (img != NULL) {
			img->opencount++;	/* another first open won */
		} else {
			img = fresh;
			fresh = NULL;
			img->opencount = 1;
			itable_set_image(r->itable, inode, img);
			img->next_open = r->open;
			r->open = img;
			r->nopen++;
		}
		pthread_mutex_unlock(&r->lock);
		if (fresh == NULL) {
			/* Ours, opened as this opener wants it. */
			if (r->resolver != NULL) {
				struct registry_recheck rc = { r, img };

				resolve_foreach_below(r->resolver, img->relpath,
				    registry_recheck_base, &rc);
			}
			*out = img;
			return 0;
		}
		image_free(fresh);
	}
	if (writable && img->conf.readonly)
		err = -EROFS;
	else
		err = writable ? image_upgrade(img) : 0;
	if (err < 0) {
		image_release(r, img);
		return err;
	}
	*out = img;
	return 0;
}

void
image_release(struct vc_registry *r, struct vc_image *img)
{
	struct vc_image **pp;
	struct vc_inode *inode = img->inode;

	pthread_mutex_lock(&r->lock);
	if (--img->opencount > 0) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	for (pp = &r->open; *pp != NULL; pp = &(*pp)->next_open) {
		if (*pp == img) {
			*pp = img->next_open;
			break;
		}
	}
	r->nopen--;
	itable_set_image(r->itable, inode, NULL);
	pthread_mutex_unlock(&r->lock);
	log_debug("%s: closed: %llu reads (%llu bytes), %llu writes (%llu "
	    "bytes, at most %llu in flight), %llu fsyncs, %llu dropped, "
	    "%llu errors", img->relpath,
	    (unsigned long long)img->stats.reads,
	    (unsigned long long)img->stats.bytes_read,
	    (unsigned long long)img->stats.writes,
	    (unsigned long long)img->stats.bytes_written,
	    (unsigned long long)img->stats.writes_inflight_max,
	    (unsigned long long)img->stats.fsyncs,
	    (unsigned long long)img->stats.fsyncs_dropped,
	    (unsigned long long)img->stats.errors);
	image_free(img);
}

unsigned
registry_foreach_open(struct vc_registry *r,
    void (*fn)(const struct vc_image *img, void *arg), void *arg)
{
	unsigned n;

	pthread_mutex_lock(&r->lock);
	for (struct vc_image *img = r->open; img != NULL; img = img->next_open)
		fn(img, arg);
	n = r->nopen;
	pthread_mutex_unlock(&r->lock);
	return n;
}

int
registry_conf(struct vc_registry *r, struct vc_inode *dir, const char *name,
    struct vc_image_conf *conf)
{
	char rel[PATH_MAX];
	size_t len;
	int err;

	if (name == NULL) {
		pthread_mutex_lock(&r->lock);
		if (dir->image != NULL) {
			*conf = dir->image->conf;
			pthread_mutex_unlock(&r->lock);
			return 0;
		}
		pthread_mutex_unlock(&r->lock);
	}
	err = inode_relpath(r->itable, dir, rel, sizeof(rel));
	if (err < 0)
		return err;
	if (name != NULL) {
		len = strlen(rel);
		if (snprintf(rel + len, sizeof(rel) - len, "%s%s",
		    len > 0 ? "/" : "", name) >= (int)(sizeof(rel) - len))
			return -ENAMETOOLONG;
	}
	registry_decide(r, rel, conf, NULL, 0);
	return 0;
}

/*
 * Q-STUB: minimal image_info/registry_each/registry_find (the design's
 * interface) so the control socket builds and runs before R's versions
 * land; at merge take R's and drop these. The caller's reference is not
 * counted in opencount; want is conf and format is what the config says.
 */
void
image_info(struct vc_image *img, struct vc_image_info *out)
{
	struct stat st;

	memset(out, 0, sizeof(*out));
	snprintf(out->relpath, sizeof(out->relpath), "%s", img->relpath);
	out->conf = img->conf;
	out->want = img->conf;
	out->aio = img->aio;
	snprintf(out->rule, sizeof(out->rule), "%s",
	    img->rule != NULL ? img->rule : "?");
	snprintf(out->format, sizeof(out->format), "%s",
	    img->conf.format == VC_FORMAT_QCOW2 ? "qcow2" : "raw");
	pthread_rwlock_rdlock(&img->fdlock);
	if (fstat(img->fd, &st) == 0)
		out->virtual_size = (uint64_t)st.st_size;
	pthread_rwlock_unlock(&img->fdlock);
	out->opencount = __atomic_load_n(&img->opencount, __ATOMIC_RELAXED) - 1;
}

int
registry_each(struct vc_registry *r,
    int (*fn)(struct vc_image *img, void *arg), void *arg)
{
	struct vc_image **list, *img;
	unsigned n = 0, i;
	int ret = 0;

	pthread_mutex_lock(&r->lock);
	list = calloc(r->nopen + 1, sizeof(*list));
	if (list == NULL) {
		pthread_mutex_unlock(&r->lock);
		return -ENOMEM;
	}
	for (img = r->open; img != NULL; img = img->next_open) {
		img->opencount++;
		list[n++] = img;
	}
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < n; i++) {
		if (ret >= 0) {
			int e = fn(list[i], arg);

			if (e < 0)
				ret = e;
		}
		image_release(r, list[i]);
	}
	free(list);
	return ret < 0 ? ret : (int)n;
}

struct vc_image *
registry_find(struct vc_registry *r, const char *relpath)
{
	struct vc_image *img;

	pthread_mutex_lock(&r->lock);
	for (img = r->open; img != NULL; img = img->next_open)
		if (strcmp(img->relpath, relpath) == 0)
			break;
	if (img != NULL)
		img->opencount++;
	pthread_mutex_unlock(&r->lock);
	return img;
}
