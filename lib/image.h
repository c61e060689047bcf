/*
 * image.h - the open state of an image (a regular file under the mount).
 *
 * An image is created at its first open and freed at its last release.
 * All openers share it, and with it the cache mode that the config chose
 * at first open. The backing descriptor is swappable: it is only used
 * under fdlock held for reading, and replaced under fdlock held for
 * writing (to upgrade a read-only descriptor when a writer opens, and
 * later to switch the mode of an open image).
 *
 * Locking. The registry lock guards only the list of open images, the
 * open counts and inode->image; it is never held across I/O (probing,
 * opening a backing file) or across a wait for another lock that I/O may
 * hold (fdlock). Lock order: upgrade_lock, then fdlock; the registry lock
 * is taken with neither of them wanted afterwards, and the resolver's own
 * lock only inside it. A first open decides and opens outside the
 * registry lock, then installs its image unless another opener installed
 * one meanwhile (the loser closes its own). Any opener takes its open
 * reference under the registry lock before dropping it, so a concurrent
 * last release never frees an image about to be used.
 */
#ifndef VC_IMAGE_H
#define VC_IMAGE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "gate.h"
#include "inode.h"
#include "policy.h"
#include "rangelock.h"

struct vc_uring;
struct vc_resolver;

struct vc_image_stats {		/* updated with relaxed atomics where the I/O happens */
	uint64_t reads, writes, bytes_read, bytes_written;
	uint64_t fsyncs, fsyncs_dropped, errors;
	uint64_t writes_inflight, writes_inflight_max;	/* concurrency seen */
};

struct vc_image {
	struct vc_inode *inode;		/* owner; inode->image points back */
	char *relpath;			/* name at first open, for logs and config;
					   fixed until freed */
	unsigned opencount;		/* protected by registry lock */
	struct vc_image_conf conf;	/* fixed from first open to last release */
	const struct vc_policy *policy;	/* row of conf.cache */
	enum vc_aio_mode aio;		/* effective engine after fallback */
	struct vc_uring *uring;		/* the engine for native/io_uring, else NULL */

	/*
	 * Serialises descriptor swaps of this image (upgrades), so one writer
	 * opens the writable descriptor and the others find it. Held across
	 * the open and the wait for fdlock: only this image's openers wait.
	 */
	pthread_mutex_t upgrade_lock;
	pthread_rwlock_t fdlock;	/* read: using fd; write: swapping it */
	int fd;				/* backing data descriptor; protected by fdlock */
	bool fd_writable;		/* written under upgrade_lock and fdlock
					   (write); read under either */
	unsigned dio_align;		/* O_DIRECT offset/length alignment, bytes */
	unsigned dio_mem_align;		/* O_DIRECT buffer alignment, bytes */

	/*
	 * Read-modify-write of unaligned O_DIRECT edges: a write claims the
	 * edge blocks it rewrites, excluding every other write to them, so
	 * no write loses bytes to an edge rewrite. Aligned writes only wait
	 * for edge rewrites inside their range, never for each other.
	 */
	struct vc_rangelock rmw;
	/*
	 * Held for writing by anything that may move the end of file while
	 * bytes past it are transiently visible (an RMW write that pads the
	 * tail, truncate, fallocate); for reading by all other data I/O.
	 */
	struct vc_gate sizelock;

	/*
	 * The first error of a backing sync that covered guest data (0 when
	 * none): every later guest flush reports it, until the image is freed
	 * at its last release. The kernel reports a writeback error only once
	 * per open file, and all openers share one backing descriptor, so
	 * without this a second fsync would succeed for dropped data (QEMU's
	 * file-posix latches it the same way). Atomic.
	 */
	int wb_err;

	struct vc_image_stats stats;
	char *rule;			/* Q-STUB (R replaces): what chose conf */
	struct vc_image *next_open;	/* registry list; protected by registry lock */
};

/* All open images of one mount. */
struct vc_registry {
	/*
	 * Mount-wide: every open and release takes it, so it is held only
	 * for list and count updates, never across I/O or fdlock.
	 */
	pthread_mutex_t lock;
	struct vc_itable *itable;
	const struct vc_config *cfg;	/* not owned */
	struct vc_resolver *resolver;	/* not owned; NULL: names only */
	struct vc_uring *uring;		/* not owned; NULL: io_uring unavailable */
	struct vc_image *open;		/* protected by lock */
	unsigned nopen;			/* protected by lock */
};

void registry_init(struct vc_registry *r, struct vc_itable *t,
    const struct vc_config *cfg);
/* Decide settings with the resolver (chains, probing) from now on. */
void registry_set_resolver(struct vc_registry *r, struct vc_resolver *rs);
void registry_exit(struct vc_registry *r);

/*
 * Open the image of inode for an opener with open(2) flags. Returns 0 and
 * the image with one more open reference, or -errno (EROFS when a
 * readonly image is opened for writing).
 */
int image_open(struct vc_registry *r, struct vc_inode *inode, int flags,
    struct vc_image **out);
/* Drop one open reference; the last one closes the backing descriptor. */
void image_release(struct vc_registry *r, struct vc_image *img);

/*
 * Call fn for each open image under the registry lock; fn must not block.
 * Returns the number of open images.
 */
unsigned registry_foreach_open(struct vc_registry *r,
    void (*fn)(const struct vc_image *img, void *arg), void *arg);

/*
 * The settings the config gives the file name in directory dir (or dir
 * itself when name is NULL), whether or not it is open. An open image
 * keeps the settings of its first open: pass its inode to see them.
 * Returns 0 or -errno.
 */
int registry_conf(struct vc_registry *r, struct vc_inode *dir,
    const char *name, struct vc_image_conf *conf);

/*
 * Q-STUB: the interface of the design (issue 12), minimal versions in
 * image.c until R's lib/image.c lands; take R's at merge.
 */
/* Everything status shows about one open image; a consistent copy. */
struct vc_image_info {
	char relpath[4096];
	struct vc_image_conf conf;	/* in effect */
	struct vc_image_conf want;	/* what the config says now */
	enum vc_aio_mode aio;		/* effective engine */
	char rule[320];			/* what chose want ("[name]", "[global]", chain...) */
	char pending[160];		/* why want is not in effect yet, "" when it is */
	char format[16];		/* "raw", "qcow2", "qcow" as probed */
	uint64_t virtual_size;
	unsigned opencount;
};
void image_info(struct vc_image *img, struct vc_image_info *out);
/* Call fn on each open image, holding a reference (fn may block: flush,
 * cachestat); stops at the first fn that returns < 0 and returns that,
 * else the number of images. */
int registry_each(struct vc_registry *r,
    int (*fn)(struct vc_image *img, void *arg), void *arg);
/* The open image named relpath, with a reference (image_release), or NULL. */
struct vc_image *registry_find(struct vc_registry *r, const char *relpath);

/* Whether open(2) flags ask for write access. */
bool image_flags_write(int flags);

#endif
