/*
 * image.c - open images and the registry of them (see image.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fault.h"
#include "image.h"
#include "io.h"
#include "backing.h"
#include "log.h"
#include "qcow2.h"
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
	for (unsigned i = 0; i < r->nclosed; i++) {
		free(r->closed[i].handle);
		free(r->closed[i].relpath);
	}
	r->nclosed = 0;
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
		enum vc_cache_mode in_effect, want;

		seen[n].relpath = strdup(img->relpath);
		if (seen[n].relpath == NULL)
			break;
		/* info_lock is a leaf: taken under the registry lock. */
		pthread_mutex_lock(&img->info_lock);
		in_effect = img->conf.cache;
		want = img->want.cache;
		pthread_mutex_unlock(&img->info_lock);
		/*
		 * What the config says now weighs, so a reload settles a chain
		 * in one go; while a switch is pending the mode in effect
		 * still does, and the safer of the two wins.
		 */
		seen[n++].cache = policy_get(want)->safety >=
		    policy_get(in_effect)->safety ? want : in_effect;
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

/* Copy src into dst (size bytes), cut if it is longer. */
static void
image_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = 0;

	while (n + 1 < size && src[n] != '\0')
		n++;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* What a decision found, beyond the settings themselves. */
struct registry_choice {
	char rule[PATH_MAX + 64];
	char format[16];
	uint64_t virtual_size;
	bool probed;
};

/* The registry's config now; reloads replace it (see vc_registry). */
static const struct vc_config *
registry_cfg(struct vc_registry *r)
{
	return __atomic_load_n(&r->cfg, __ATOMIC_ACQUIRE);
}

static unsigned
registry_gen(struct vc_registry *r)
{
	unsigned gen;

	pthread_mutex_lock(&r->lock);
	gen = r->gen;
	pthread_mutex_unlock(&r->lock);
	return gen;
}

/*
 * The settings for relpath: with a resolver, names then chains; else
 * names only. ch (may be NULL) gets what chose them and what probing
 * found. It probes files: called without r->lock.
 */
static void
registry_decide(struct vc_registry *r, const char *relpath,
    struct vc_image_conf *conf, struct registry_choice *ch)
{
	const struct vc_rule *named;
	struct vc_decision *d;

	if (ch != NULL) {
		snprintf(ch->format, sizeof(ch->format), "raw");
		ch->virtual_size = 0;
		ch->probed = false;
	}
	if (r->resolver != NULL && (d = malloc(sizeof(*d))) != NULL) {
		resolve_image(r->resolver, relpath, d);
		*conf = d->conf;
		if (ch != NULL) {
			image_strlcpy(ch->rule, d->rule, sizeof(ch->rule));
			if (d->probed) {
				image_strlcpy(ch->format, qcow2_format_name(
				    d->probe.format), sizeof(ch->format));
				ch->virtual_size = d->probe.virtual_size;
				ch->probed = true;
			}
		}
		if (d->note[0] != '\0')
			log_warnx("%s", d->note);
		free(d);
		return;
	}
	cfg_lookup(registry_cfg(r), relpath, conf, &named);
	if (ch != NULL)
		snprintf(ch->rule, sizeof(ch->rule), "[%s]",
		    named != NULL ? named->pattern : "global");
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
image_open_backing(const struct vc_image *img, const struct vc_policy *pol,
    bool writable)
{
	char proc[64];
	int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
	int fd;

	if (pol->o_direct)
		flags |= O_DIRECT;
	if (pol->write_durable)
		flags |= O_DSYNC;
	inode_procpath(img->inode, proc, sizeof(proc));
	fd = open(proc, flags);
	if (fd == -1)
		return -errno;
	return fd;
}

/*
 * The engine an image with conf gets (*uring: the ring, or NULL), after
 * the fallbacks, which are logged: native needs O_DIRECT, and io_uring
 * may be unavailable.
 */
static enum vc_aio_mode
image_engine(struct vc_registry *r, const char *relpath,
    const struct vc_image_conf *conf, struct vc_uring **uring)
{
	enum vc_aio_mode aio;
	bool fellback;

	aio = policy_effective_aio(conf->cache, conf->aio, &fellback);
	if (fellback)
		log_info("%s: aio=native needs O_DIRECT (cache=none or "
		    "directsync); cache=%s uses aio=threads", relpath,
		    policy_get(conf->cache)->name);
	*uring = NULL;
	if (aio != VC_AIO_THREADS) {
		*uring = r->uring;
		if (*uring == NULL) {
			log_info("%s: aio=%s: io_uring is not available here; "
			    "using aio=threads", relpath, policy_aio_name(aio));
			aio = VC_AIO_THREADS;
		}
	}
	return aio;
}

static void
image_free(struct vc_image *img)
{
	if (img->fd >= 0)
		close(img->fd);
	pthread_rwlock_destroy(&img->fdlock);
	pthread_mutex_destroy(&img->info_lock);
	gate_destroy(&img->sizelock);
	gate_destroy(&img->iogate);
	rangelock_destroy(&img->rmw);
	pthread_mutex_destroy(&img->upgrade_lock);
	free(img->relpath);
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
	struct registry_choice *ch;
	struct vc_image *img;
	char rel[PATH_MAX];
	struct stat st;
	int fd, err;

	img = calloc(1, sizeof(*img));
	if (img == NULL)
		return -ENOMEM;
	ch = malloc(sizeof(*ch));
	if (ch == NULL) {
		free(img);
		return -ENOMEM;
	}
	img->inode = inode;
	img->registry = r;
	img->fd = -1;
	/* Before deciding: a reload meanwhile makes the opener decide again. */
	img->cfg_gen = registry_gen(r);
	pthread_mutex_init(&img->upgrade_lock, NULL);
	pthread_mutex_init(&img->info_lock, NULL);
	img->wb_err = 0;	/* no flush has failed yet (see image.h) */
	pthread_rwlock_init(&img->fdlock, NULL);
	gate_init(&img->sizelock);
	rangelock_init(&img->rmw);
	stats_init(&img->stats);
	gate_init(&img->iogate);

	err = inode_relpath(r->itable, inode, rel, sizeof(rel));
	if (err < 0) {
		/* Unlinked while looked up: no name to match, use [global]. */
		snprintf(rel, sizeof(rel), "(inode %llu)",
		    (unsigned long long)inode->ino);
	}
	img->relpath = strdup(rel);
	if (img->relpath == NULL) {
		free(ch);
		image_free(img);
		return -ENOMEM;
	}
	img->noname = err < 0;
	registry_decide(r, img->noname ? "" : rel, &img->conf, ch);
	img->want = img->conf;
	image_strlcpy(img->rule, ch->rule, sizeof(img->rule));
	image_strlcpy(img->format, ch->format, sizeof(img->format));
	img->virtual_size = ch->virtual_size;
	free(ch);
	img->policy = policy_get(img->conf.cache);
	img->aio = image_engine(r, img->relpath, &img->conf, &img->uring);

	if (img->conf.readonly && writable) {
		image_free(img);
		return -EROFS;
	}
	fd = image_open_backing(img, img->policy, writable);
	if (fd < 0) {
		log_warnc(fd, "%s: open backing file (cache=%s)", img->relpath,
		    img->policy->name);
		image_free(img);
		return fd;
	}
	img->fd = fd;
	img->fd_writable = writable;
	/* Not probed (no resolver, or no name): a raw file is its own size. */
	if (img->virtual_size == 0 && strcmp(img->format, "raw") == 0 &&
	    fstat(fd, &st) == 0)
		img->virtual_size = (uint64_t)st.st_size;
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
	log_debug("%s: opened cache=%s aio=%s readonly=%s (from %s)",
	    img->relpath, img->policy->name, policy_aio_name(img->aio),
	    img->conf.readonly ? "yes" : "no", img->rule);
	*out = img;
	return 0;
}


/*
 * A writer opens an image: swap in a writable descriptor unless it has
 * one. The caller holds an open reference and no registry lock: the
 * quiesce waits for this image's I/O in flight (a long flush), which
 * must stall only this image's openers. Quiesced, not only fdlock: the
 * gate makes new requests wait behind the swap, where a reader-preferring
 * rwlock alone could keep it waiting as long as I/O goes on.
 */
static int
image_upgrade(struct vc_image *img)
{
	int fd, old, err = 0;

	pthread_mutex_lock(&img->upgrade_lock);
	if (img->fd_writable)		/* another writer was first */
		goto out;
	fd = image_open_backing(img, img->policy, true);
	if (fd < 0) {
		err = fd;
		goto out;
	}
	io_quiesce(img);
	pthread_rwlock_wrlock(&img->fdlock);
	old = img->fd;
	img->fd = fd;
	img->fd_writable = true;
	pthread_rwlock_unlock(&img->fdlock);
	io_resume(img);
	close(old);
out:
	pthread_mutex_unlock(&img->upgrade_lock);
	return err;
}

#ifndef __NR_cachestat
#define __NR_cachestat 451	/* Linux 6.5, the same number on every arch */
#endif

/* The kernel's struct cachestat_range and struct cachestat (uapi mman.h). */
struct image_cachestat_range {
	uint64_t off, len;		/* len 0: to the end of the file */
};

struct image_cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted,
	    nr_recently_evicted;
};

int
image_dirty_bytes(int fd, uint64_t *bytes)
{
	struct image_cachestat_range range = { 0, 0 };
	struct image_cachestat cs;

	*bytes = 0;
	if (syscall(__NR_cachestat, fd, &range, &cs, 0) == -1)
		return -errno;
	/* Pages under writeback are not on storage yet either. */
	*bytes = (cs.nr_dirty + cs.nr_writeback) *
	    (uint64_t)sysconf(_SC_PAGESIZE);
	return 0;
}

/* Whether a mode keeps acknowledged writes in the host page cache only. */
static bool
image_mode_holds_dirty(const struct vc_policy *pol)
{
	return !pol->o_direct && !pol->write_durable;
}

static bool
image_conf_equal(const struct vc_image_conf *a, const struct vc_image_conf *b)
{
	return a->cache == b->cache && a->aio == b->aio &&
	    a->readonly == b->readonly && a->format == b->format &&
	    a->shareable == b->shareable;
}

/*
 * Record what the config says now for img, decided under registry
 * generation gen. A decision older than the one recorded is dropped.
 * Returns whether want or rule changed.
 */
static bool
image_set_want(struct vc_image *img, const struct vc_image_conf *want,
    const char *rule, unsigned gen)
{
	bool changed = false;

	pthread_mutex_lock(&img->info_lock);
	if ((int)(gen - img->cfg_gen) >= 0) {
		changed = !image_conf_equal(&img->want, want) ||
		    strcmp(img->rule, rule) != 0;
		img->want = *want;
		image_strlcpy(img->rule, rule, sizeof(img->rule));
		img->cfg_gen = gen;
	}
	pthread_mutex_unlock(&img->info_lock);
	return changed;
}

static void image_pending(struct vc_image *img, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
image_pending(struct vc_image *img, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&img->info_lock);
	va_start(ap, fmt);
	vsnprintf(img->pending, sizeof(img->pending), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&img->info_lock);
}

/* fdatasync of the descriptor in effect, with the test fault hook. */
static int
image_sync_fd(int fd)
{
	int r = fault_hit(VC_FAULT_FSYNC);

	if (r == 0 && fdatasync(fd) == -1)
		r = -errno;
	return r;
}

#define IMAGE_RO_PENDING "readonly: new write opens are refused; open " \
	"writers keep writing until the last close"

/*
 * Apply img->want (see image_switch()). The caller holds a reference.
 * Everything here runs under upgrade_lock, which keeps img->fd and
 * img->fd_writable still (only upgrades and switches change them, both
 * under it), so the descriptor may be used outside the image; the
 * fields the I/O path reads change only while it is quiesced.
 */
static int
image_apply(struct vc_registry *r, struct vc_image *img, char *msg, size_t len)
{
	const struct vc_policy *oldpol, *newpol;
	struct vc_image_conf want, cur;
	struct vc_uring *uring;
	enum vc_aio_mode aio;
	unsigned align = 0, mem_align = 0;
	uint64_t before = 0, late = 0;
	bool ro_pending = false, known = true, sync, newfd_needed;
	int newfd = -1, oldfd = -1, err;
	char rule[sizeof(img->rule)];

	msg[0] = '\0';
	pthread_mutex_lock(&img->upgrade_lock);
	pthread_mutex_lock(&img->info_lock);
	want = img->want;
	cur = img->conf;
	image_strlcpy(rule, img->rule, sizeof(rule));
	pthread_mutex_unlock(&img->info_lock);

	/*
	 * readonly: an image that never had a writer becomes readonly at
	 * once; one with a writable descriptor keeps its writers (their
	 * handles are open), and only new write opens are refused (want).
	 */
	if (want.readonly && !cur.readonly && img->fd_writable) {
		ro_pending = true;
		want.readonly = false;
	}
	oldpol = img->policy;
	newpol = policy_get(want.cache);
	if (want.cache == cur.cache && want.aio == cur.aio) {
		pthread_mutex_lock(&img->info_lock);
		img->conf.readonly = want.readonly;
		img->conf.format = want.format;
		img->conf.shareable = want.shareable;
		image_strlcpy(img->pending, ro_pending ? IMAGE_RO_PENDING : "",
	    sizeof(img->pending));
		pthread_mutex_unlock(&img->info_lock);
		pthread_mutex_unlock(&img->upgrade_lock);
		if (want.readonly != cur.readonly || ro_pending)
			snprintf(msg, len, "%s: readonly=%s%s", img->relpath,
			    want.readonly || ro_pending ? "yes" : "no",
			    ro_pending ? " for new opens; its open writers "
			    "keep writing" : "");
		return 0;
	}
	aio = image_engine(r, img->relpath, &want, &uring);

	/*
	 * Leaving a mode that holds acknowledged writes only in the host
	 * page cache: make them durable first. Most of it now, with I/O
	 * still running, so the pause below is short; then, quiesced,
	 * whatever was written meanwhile.
	 */
	sync = image_mode_holds_dirty(oldpol) && want.cache != cur.cache;
	if (sync) {
		if (image_dirty_bytes(img->fd, &before) < 0)
			known = false;
		err = image_sync_fd(img->fd);
		if (err < 0)
			goto sync_failed;
	}
	newfd_needed = oldpol->o_direct != newpol->o_direct ||
	    oldpol->write_durable != newpol->write_durable;
	if (newfd_needed) {
		err = fault_hit(VC_FAULT_OPEN);
		newfd = err < 0 ? err : image_open_backing(img, newpol,
		    img->fd_writable);
		if (newfd < 0) {
			err = newfd;
			image_pending(img, "cache=%s: cannot open the backing "
			    "file: %s", newpol->name, strerror(-err));
			goto fail;
		}
		if (newpol->o_direct) {
			io_probe_dio_align(newfd, &align, &mem_align);
			if (align > VC_IO_MAXALIGN || mem_align > VC_IO_MAXALIGN) {
				err = -EINVAL;
				image_pending(img, "cache=%s: O_DIRECT alignment "
				    "%u is larger than %u", newpol->name, align,
				    VC_IO_MAXALIGN);
				goto fail;
			}
		}
	}

	err = io_quiesce(img);
	if (err < 0) {
		image_pending(img, "cache=%s: cannot pause its I/O: %s",
		    newpol->name, strerror(-err));
		goto fail;
	}
	if (sync) {
		uint64_t n;

		if (known && image_dirty_bytes(img->fd, &n) == 0)
			late = n;
		err = image_sync_fd(img->fd);
		if (err < 0) {
			io_resume(img);
			goto sync_failed;
		}
	}
	pthread_mutex_lock(&img->info_lock);
	img->conf = want;
	img->policy = newpol;
	img->aio = aio;
	img->uring = uring;
	if (newfd >= 0) {
		oldfd = img->fd;
		img->fd = newfd;
		img->dio_align = align;
		img->dio_mem_align = mem_align;
	}
	image_strlcpy(img->pending, ro_pending ? IMAGE_RO_PENDING : "",
	    sizeof(img->pending));
	pthread_mutex_unlock(&img->info_lock);
	io_resume(img);
	if (oldfd >= 0)
		close(oldfd);
	/* As at first open: an O_DIRECT image keeps no (clean) cached pages. */
	if (newpol->o_direct && !oldpol->o_direct)
		(void)posix_fadvise(img->fd, 0, 0, POSIX_FADV_DONTNEED);
	pthread_mutex_unlock(&img->upgrade_lock);

	if (!sync)
		snprintf(msg, len, "%s: cache=%s aio=%s -> cache=%s aio=%s "
		    "(from %s)", img->relpath, oldpol->name,
		    policy_aio_name(cur.aio), newpol->name,
		    policy_aio_name(aio), rule);
	else if (known)
		snprintf(msg, len, "%s: cache=%s aio=%s -> cache=%s aio=%s "
		    "(from %s); made %llu bytes durable first", img->relpath,
		    oldpol->name, policy_aio_name(cur.aio), newpol->name,
		    policy_aio_name(aio), rule,
		    (unsigned long long)(before + late));
	else
		snprintf(msg, len, "%s: cache=%s aio=%s -> cache=%s aio=%s "
		    "(from %s); made its dirty data durable first (how many "
		    "bytes is unknown: no cachestat(2))", img->relpath,
		    oldpol->name, policy_aio_name(cur.aio), newpol->name,
		    policy_aio_name(aio), rule);
	return 1;

sync_failed:
	/* Guest flushes must report it too: the data may be gone. */
	backing_latch(img, err);
	image_pending(img, "cache=%s: flushing the data of cache=%s first "
	    "failed: %s", newpol->name, oldpol->name, strerror(-err));
fail:
	if (newfd >= 0)
		close(newfd);
	pthread_mutex_unlock(&img->upgrade_lock);
	pthread_mutex_lock(&img->info_lock);
	snprintf(msg, len, "%s: stays cache=%s aio=%s: %s", img->relpath,
	    oldpol->name, policy_aio_name(cur.aio), img->pending);
	pthread_mutex_unlock(&img->info_lock);
	return err;
}

int
image_switch(struct vc_registry *r, struct vc_image *img,
    const struct vc_image_conf *want, const char *rule, char *msg,
    size_t len)
{
	image_set_want(img, want, rule, registry_gen(r));
	return image_apply(r, img, msg, len);
}

/* Whether img's want differs from what is in effect, or is pending. */
static bool
image_needs_apply(struct vc_image *img)
{
	bool need;

	pthread_mutex_lock(&img->info_lock);
	need = !image_conf_equal(&img->want, &img->conf) ||
	    img->pending[0] != '\0';
	pthread_mutex_unlock(&img->info_lock);
	return need;
}

struct registry_recheck {
	struct vc_registry *r;
	const struct vc_image *overlay;	/* the caller holds a reference */
};

/*
 * A new overlay may change what an open base below it should get
 * (downward inheritance): decide the base again and switch it now, so it
 * runs in the mode its overlays imply before the overlay's I/O starts.
 * Called without r->lock.
 */
static void
registry_recheck_base(const char *below, void *arg)
{
	struct registry_recheck *rc = arg;
	struct registry_choice *ch;
	struct vc_image_conf conf;
	struct vc_image *base;
	char msg[PATH_MAX + 512];
	unsigned gen;
	int res;

	base = registry_find(rc->r, below);
	if (base == NULL)
		return;
	ch = malloc(sizeof(*ch));
	if (ch != NULL) {
		gen = registry_gen(rc->r);
		registry_decide(rc->r, below, &conf, ch);
		image_set_want(base, &conf, ch->rule, gen);
		free(ch);
		if (image_needs_apply(base)) {
			res = image_apply(rc->r, base, msg, sizeof(msg));
			if (res > 0)
				log_info("%s (%s opened)", msg,
				    rc->overlay->relpath);
			else if (res < 0)
				log_warnx("%s", msg);
		}
	}
	image_release(rc->r, base);
}

/* A reload may happen while a first open decides: then it decides again. */
#define IMAGE_CREATE_TRIES 8

int
image_open(struct vc_registry *r, struct vc_inode *inode, int flags,
    struct vc_image **out)
{
	bool writable = image_flags_write(flags), ro;
	struct vc_image *img, *fresh = NULL;
	int err;

	/* The reference is taken under the lock: no last release frees it. */
	pthread_mutex_lock(&r->lock);
	img = inode->image;
	if (img != NULL)
		img->opencount++;
	pthread_mutex_unlock(&r->lock);

	for (unsigned tries = 1; img == NULL; tries++) {
		err = image_create(r, inode, writable, &fresh);
		if (err < 0)
			return err;
		pthread_mutex_lock(&r->lock);
		img = inode->image;
		if (img != NULL) {
			img->opencount++;	/* another first open won */
		} else if (fresh->cfg_gen != r->gen &&
		    tries < IMAGE_CREATE_TRIES) {
			/* Decided under a config a reload has replaced. */
			pthread_mutex_unlock(&r->lock);
			image_free(fresh);
			fresh = NULL;
			continue;
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
	/* A reload may have made it readonly: new writers are refused. */
	pthread_mutex_lock(&img->info_lock);
	ro = img->conf.readonly || img->want.readonly;
	pthread_mutex_unlock(&img->info_lock);
	if (writable && ro)
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

/* What the image did, at its last release (the debug log). */
static void
image_log_stats(const struct vc_image *img)
{
	struct vc_stats_snap sn;
	uint64_t errors = 0;
	double p99[VC_STAT_NLAT];

	if (!log_debug_enabled())
		return;
	stats_snapshot(&img->stats, &sn);
	for (unsigned i = 0; i <= VC_STAT_ERRNO_MAX; i++)
		errors += sn.errors[i];
	for (unsigned l = 0; l < VC_STAT_NLAT; l++)
		p99[l] = (double)stats_percentile(&sn, l, 0.99) / 1000.0;
	log_debug("%s: closed: reads=%llu read_bytes=%llu writes=%llu "
	    "write_bytes=%llu flushes=%llu flush_ignored=%llu fua_writes=%llu "
	    "fallocates=%llu discards=%llu bounced=%llu errors=%llu "
	    "inflight=%lld (at most %lld in flight) p99_us=%.0f/%.0f/%.0f",
	    img->relpath,
	    (unsigned long long)sn.ops[VC_STAT_READ],
	    (unsigned long long)sn.bytes[VC_STAT_READ],
	    (unsigned long long)sn.ops[VC_STAT_WRITE],
	    (unsigned long long)sn.bytes[VC_STAT_WRITE],
	    (unsigned long long)sn.ops[VC_STAT_FLUSH],
	    (unsigned long long)sn.flush_ignored,
	    (unsigned long long)sn.fua_writes,
	    (unsigned long long)sn.ops[VC_STAT_FALLOCATE],
	    (unsigned long long)sn.ops[VC_STAT_DISCARD],
	    (unsigned long long)sn.bounced,
	    (unsigned long long)errors, (long long)sn.inflight,
	    (long long)sn.inflight_max,
	    p99[VC_STAT_READ], p99[VC_STAT_WRITE], p99[VC_STAT_FLUSH]);
}

/*
 * Remember a closing image whose mode held dirty data, so that the stop
 * can make it durable and count the bytes; handle is a copy of its file
 * handle (owned from now on, may be NULL). Nothing is kept for a file the
 * kernel reports clean or that was deleted. When the list is full the
 * oldest entry goes: the stop's syncfs still covers it, it is only not
 * counted. Called without r->lock; img is off the registry.
 */
static void
registry_note_closed(struct vc_registry *r, struct vc_image *img,
    struct file_handle *handle)
{
	struct vc_closed_dirty e = { .handle = handle };
	uint64_t dirty;
	struct stat st;

	if (!image_mode_holds_dirty(img->policy) || img->fd < 0 ||
	    (image_dirty_bytes(img->fd, &dirty) == 0 && dirty == 0) ||
	    fstat(img->fd, &st) == -1 || st.st_nlink == 0) {
		free(handle);
		return;
	}
	e.dev = st.st_dev;
	e.ino = st.st_ino;
	e.relpath = img->noname ? NULL : strdup(img->relpath);
	if (e.relpath == NULL && e.handle == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < r->nclosed; i++) {
		if (r->closed[i].dev == e.dev && r->closed[i].ino == e.ino) {
			free(r->closed[i].handle);
			free(r->closed[i].relpath);
			r->closed[i] = r->closed[--r->nclosed];
			break;
		}
	}
	if (r->nclosed == VC_CLOSED_DIRTY_MAX) {
		free(r->closed[0].handle);
		free(r->closed[0].relpath);
		memmove(&r->closed[0], &r->closed[1],
		    (r->nclosed - 1) * sizeof(r->closed[0]));
		r->nclosed--;
	}
	r->closed[r->nclosed++] = e;
	pthread_mutex_unlock(&r->lock);
}

/* A copy of inode's file handle, if it can be reopened; under r->lock. */
static struct file_handle *
registry_copy_handle(struct vc_registry *r, const struct vc_inode *inode)
{
	struct file_handle *h;
	size_t len;

	if (inode->handle == NULL || !r->itable->handles)
		return NULL;
	len = sizeof(*inode->handle) + inode->handle->handle_bytes;
	h = malloc(len);
	if (h != NULL)
		memcpy(h, inode->handle, len);
	return h;
}

void
image_release(struct vc_registry *r, struct vc_image *img)
{
	struct vc_image **pp;
	struct vc_inode *inode = img->inode;
	struct file_handle *handle = NULL;

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
	/* Before the inode may go with the detach below. */
	if (image_mode_holds_dirty(img->policy))
		handle = registry_copy_handle(r, inode);
	itable_set_image(r->itable, inode, NULL);
	pthread_mutex_unlock(&r->lock);
	registry_note_closed(r, img, handle);
	image_log_stats(img);
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
			struct vc_image *img = dir->image;

			pthread_mutex_lock(&img->info_lock);
			*conf = img->conf;
			/* Refused to new writers once a reload says so. */
			conf->readonly = img->conf.readonly || img->want.readonly;
			pthread_mutex_unlock(&img->info_lock);
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
	registry_decide(r, rel, conf, NULL);
	return 0;
}

struct vc_image_conf
image_conf_now(struct vc_image *img)
{
	struct vc_image_conf c;

	pthread_mutex_lock(&img->info_lock);
	c = img->conf;
	pthread_mutex_unlock(&img->info_lock);
	return c;
}

void
image_info(struct vc_image *img, struct vc_image_info *out)
{
	memset(out, 0, sizeof(*out));
	image_strlcpy(out->relpath, img->relpath, sizeof(out->relpath));
	pthread_mutex_lock(&img->registry->lock);
	out->opencount = img->opencount - img->holds;
	pthread_mutex_unlock(&img->registry->lock);
	pthread_mutex_lock(&img->info_lock);
	out->conf = img->conf;
	out->want = img->want;
	out->aio = img->aio;
	image_strlcpy(out->rule, img->rule, sizeof(out->rule));
	image_strlcpy(out->pending, img->pending, sizeof(out->pending));
	image_strlcpy(out->format, img->format, sizeof(out->format));
	out->virtual_size = img->virtual_size;
	pthread_mutex_unlock(&img->info_lock);
}

/*
 * The open images, each with a hold (an open reference counted in
 * holds too); *n gets how many. NULL with *n 0 when none or out of
 * memory (*nomem then true).
 */
static struct vc_image **
registry_hold_all(struct vc_registry *r, unsigned *n, bool *nomem)
{
	struct vc_image **arr = NULL;

	*n = 0;
	*nomem = false;
	pthread_mutex_lock(&r->lock);
	if (r->nopen > 0) {
		arr = calloc(r->nopen, sizeof(*arr));
		*nomem = arr == NULL;
	}
	for (struct vc_image *img = r->open; arr != NULL && img != NULL;
	    img = img->next_open) {
		img->opencount++;
		img->holds++;
		arr[(*n)++] = img;
	}
	pthread_mutex_unlock(&r->lock);
	return arr;
}

static void
registry_unhold_all(struct vc_registry *r, struct vc_image **arr, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		pthread_mutex_lock(&r->lock);
		arr[i]->holds--;
		pthread_mutex_unlock(&r->lock);
		image_release(r, arr[i]);
	}
	free(arr);
}

int
registry_each(struct vc_registry *r, int (*fn)(struct vc_image *img, void *arg),
    void *arg)
{
	struct vc_image **arr;
	unsigned n;
	bool nomem;
	int res = 0;

	arr = registry_hold_all(r, &n, &nomem);
	if (nomem)
		return -ENOMEM;
	for (unsigned i = 0; i < n && res >= 0; i++)
		res = fn(arr[i], arg);
	registry_unhold_all(r, arr, n);
	return res < 0 ? res : (int)n;
}

struct vc_image *
registry_find(struct vc_registry *r, const char *relpath)
{
	struct vc_image *img;

	pthread_mutex_lock(&r->lock);
	for (img = r->open; img != NULL; img = img->next_open) {
		if (!img->noname && strcmp(img->relpath, relpath) == 0) {
			img->opencount++;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return img;
}

void
registry_set_config(struct vc_registry *r, const struct vc_config *cfg)
{
	pthread_mutex_lock(&r->lock);
	__atomic_store_n(&r->cfg, cfg, __ATOMIC_RELEASE);
	if (r->resolver != NULL)
		resolver_set_config(r->resolver, cfg);
	r->gen++;
	pthread_mutex_unlock(&r->lock);
}

unsigned
registry_recompute(struct vc_registry *r,
    void (*say)(const char *line, void *arg), void *arg)
{
	struct registry_choice *ch;
	struct vc_image_conf conf;
	struct vc_image **arr;
	char msg[PATH_MAX + 512];
	unsigned n, gen, passes, switched = 0;
	bool nomem, changed = true;
	int res;

	arr = registry_hold_all(r, &n, &nomem);
	ch = malloc(sizeof(*ch));
	if (nomem || ch == NULL) {
		log_warnx("reload: out of memory: open images keep their mode");
		registry_unhold_all(r, arr, n);
		free(ch);
		return 0;
	}
	gen = registry_gen(r);
	/*
	 * Names first, then chains: downward inheritance weighs the open
	 * overlays' new wants, which this pass may just have changed. Each
	 * further pass settles one more level of a chain; a pass that
	 * changes nothing ends it.
	 */
	passes = (n < VC_CHAIN_MAX ? n : VC_CHAIN_MAX) + 1;
	for (unsigned p = 0; p < passes && changed; p++) {
		changed = false;
		for (unsigned i = 0; i < n; i++) {
			registry_decide(r, arr[i]->noname ? "" :
			    arr[i]->relpath, &conf, ch);
			if (image_set_want(arr[i], &conf, ch->rule, gen))
				changed = true;
		}
	}
	free(ch);
	for (unsigned i = 0; i < n; i++) {
		if (!image_needs_apply(arr[i]))
			continue;
		res = image_apply(r, arr[i], msg, sizeof(msg));
		if (res > 0)
			switched++;
		if (msg[0] == '\0')
			continue;
		if (res < 0)
			log_warnx("%s", msg);
		else
			log_info("%s", msg);
		if (say != NULL)
			say(msg, arg);
	}
	registry_unhold_all(r, arr, n);
	return switched;
}

/* Stop-time durability: what was found and synced. */
struct registry_durable {
	uint64_t bytes;
	bool known;
	int nsynced;
	int err;			/* first -errno of a sync */
};

static void
registry_durable_fd(struct registry_durable *d, int fd, const char *name)
{
	uint64_t n;
	int err;

	if (image_dirty_bytes(fd, &n) == 0)
		d->bytes += n;
	else
		d->known = false;
	err = image_sync_fd(fd);
	if (err < 0) {
		log_warnc(err, "%s: fdatasync at stop", name);
		if (d->err == 0)
			d->err = err;
	}
	d->nsynced++;
}

static int
registry_durable_open(struct vc_image *img, void *arg)
{
	struct registry_durable *d = arg;

	/* upgrade_lock keeps img->fd still (see image_apply()). */
	pthread_mutex_lock(&img->upgrade_lock);
	if (image_mode_holds_dirty(img->policy))
		registry_durable_fd(d, img->fd, img->relpath);
	pthread_mutex_unlock(&img->upgrade_lock);
	return 0;
}

/* Reopen a closed image: by its handle, else by name if still the same file. */
static int
registry_reopen_closed(struct vc_registry *r, const struct vc_closed_dirty *e)
{
	struct stat st;
	int fd = -1;

	if (e->handle != NULL && r->itable->mountfd >= 0)
		fd = open_by_handle_at(r->itable->mountfd, e->handle,
		    O_RDONLY | O_CLOEXEC);
	if (fd < 0 && e->relpath != NULL) {
		/* Beneath the root, no symlink anywhere, never blocking. */
		fd = probe_open(r->itable->root.fd, e->relpath, false);
		if (fd >= 0 && (fstat(fd, &st) == -1 || st.st_dev != e->dev ||
		    st.st_ino != e->ino)) {
			close(fd);
			fd = -1;
		}
	}
	return fd;
}

int
registry_make_durable(struct vc_registry *r, uint64_t *bytes, bool *known)
{
	struct registry_durable d = { .known = true };
	struct vc_closed_dirty closed[VC_CLOSED_DIRTY_MAX];
	unsigned nclosed;
	int fd, res;

	res = registry_each(r, registry_durable_open, &d);
	if (res < 0 && d.err == 0)
		d.err = res;
	pthread_mutex_lock(&r->lock);
	nclosed = r->nclosed;
	memcpy(closed, r->closed, nclosed * sizeof(closed[0]));
	r->nclosed = 0;
	pthread_mutex_unlock(&r->lock);
	for (unsigned i = 0; i < nclosed; i++) {
		fd = registry_reopen_closed(r, &closed[i]);
		if (fd >= 0) {
			registry_durable_fd(&d, fd, closed[i].relpath != NULL ?
			    closed[i].relpath : "(unlinked image)");
			close(fd);
		} else {
			/* Gone, or renamed with no handle: syncfs covers it. */
			log_debug("%s: not found again at stop", closed[i].relpath
			    != NULL ? closed[i].relpath : "(unlinked image)");
		}
		free(closed[i].handle);
		free(closed[i].relpath);
	}
	*bytes = d.bytes;
	*known = d.known;
	return d.err < 0 ? d.err : d.nsynced;
}
