/*
 * resolve.h - which settings an image gets: the config's sections, then
 * what its backing chain implies.
 *
 * Precedence: exact name, globs in file order, [format:qcow2]/[format:raw],
 * then the chain, then [global]. From the chain: a backing file that no
 * section names takes the safest mode of the overlays above it that are
 * open or configured (exact names), never less safe than its own [global]
 * default (downward); a top layer (no such overlay above it) takes the
 * cache mode of the nearest image below it that a section names (upward).
 * Downward is looked at first only to tell a base from a top layer: the
 * two never compete for one image. Inheritance carries cache and aio;
 * readonly never travels along a chain (bases are often readonly, their
 * overlays are not).
 *
 * Images are probed through the daemon's own descriptor of the source
 * directory, never through the mount. A guest owns the bytes of its raw
 * image, so a raw image is never probed unless a section says format =
 * qcow2, and no image's content can name a file outside the mount.
 */
#ifndef VC_RESOLVE_H
#define VC_RESOLVE_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "probe.h"

#define VC_CHAIN_MAX	64	/* backing files followed below an image */

/*
 * An image that is open now, for downward inheritance. The walk calls fn
 * for each open image holding no lock of its own: fn probes files.
 */
typedef void (*vc_open_visit)(const char *relpath, enum vc_cache_mode cache,
    void *arg);
typedef void (*vc_open_walk)(void *walk_arg, vc_open_visit fn, void *fn_arg);

struct vc_resolver {
	/* Not owned; replaced by a reload, old ones stay valid (see
	 * vc_registry): read it with an atomic load, resolve_cfg(). */
	const struct vc_config *cfg;
	int rootfd;			/* the source directory, not owned */
	const char *source;		/* absolute paths, for backing names */
	const char *mountpoint;
	vc_open_walk open_walk;		/* may be NULL: nothing is open */
	void *open_arg;
	pthread_mutex_t lock;		/* protects the probe cache */
	struct resolve_cached *cache;	/* protected by lock */
	unsigned ncache, next_evict;	/* protected by lock */
};

struct vc_decision {
	struct vc_image_conf conf;
	char rule[PATH_MAX + 64];	/* what chose conf, for logs and --check-config */
	struct vc_probe probe;		/* of the image itself */
	bool probed;			/* probe holds a result */
	char chain[2048];		/* "a.qcow2 -> b.qcow2 -> base.raw" */
	char note[512];			/* loop, missing or refused backing file */
};

int resolver_init(struct vc_resolver *rs, const struct vc_config *cfg,
    int rootfd, const char *source, const char *mountpoint);
void resolver_exit(struct vc_resolver *rs);
/* Decide with cfg from now on (a reload); cfg must outlive the resolver. */
void resolver_set_config(struct vc_resolver *rs, const struct vc_config *cfg);

/*
 * Decide the settings of the image at relpath (relative to the mount
 * root). Never fails on a bad image: it is served as raw, and d->note or
 * d->probe.warning says why. Returns 0, or -errno when relpath cannot be
 * probed at all (for instance it no longer exists); d then holds what the
 * names alone decide.
 */
int resolve_image(struct vc_resolver *rs, const char *relpath,
    struct vc_decision *d);

/* Call fn for each image in the backing chain below relpath, top first. */
void resolve_foreach_below(struct vc_resolver *rs, const char *relpath,
    void (*fn)(const char *below, void *arg), void *arg);

#endif
