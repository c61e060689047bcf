/*
 * image.h - the open state of an image (a regular file under the mount).
 *
 * An image is created at its first open and freed at its last release.
 * All openers share it, and with it the cache mode that the config chose
 * at first open, until a reload or a newly opened overlay changes what the
 * config implies: then the image is switched live (image_switch()). The
 * backing descriptor is swappable: it is only used under fdlock held for
 * reading, and replaced under fdlock held for writing (to upgrade a
 * read-only descriptor when a writer opens), or while the image is
 * quiesced (io_quiesce(), a live mode switch).
 *
 * Locking. The registry lock guards only the list of open images, the
 * open counts and inode->image; it is never held across I/O (probing,
 * opening a backing file) or across a wait for another lock that I/O may
 * hold (fdlock). Lock order: upgrade_lock, then fdlock (or the quiesce),
 * then info_lock; the registry lock is taken with none of them wanted
 * afterwards, and the resolver's own lock only inside it. A first open decides and opens outside the
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
#include "stats.h"

struct file_handle;
struct vc_uring;
struct vc_resolver;
struct vc_registry;

/*
 * The live switch (image_switch()). What the I/O path reads of an image's
 * mode -- conf, policy, aio, uring, fd, fd_writable, dio_align,
 * dio_mem_align -- changes only while the image is quiesced
 * (io_quiesce(): no request of the image in flight on any engine, new
 * ones held back) and under upgrade_lock; so a request reads them only
 * after it has entered the image, and one request sees one mode from
 * submission to completion. conf, aio, want, rule and pending are also
 * written under info_lock, so image_info() copies them consistently
 * without entering the image. Other images are never paused.
 */
struct vc_image {
	struct vc_inode *inode;		/* owner; inode->image points back */
	char *relpath;			/* name at first open, for logs and config;
					   fixed until freed */
	unsigned opencount;		/* open references and holds; protected
					   by registry lock */
	unsigned holds;			/* of those, registry_each()'s; protected
					   by registry lock */
	struct vc_registry *registry;	/* the registry it is open in */
	bool noname;			/* unlinked at first open: [global] only */
	unsigned cfg_gen;		/* registry generation the settings were
					   decided under (see vc_registry);
					   protected by info_lock */
	struct vc_image_conf conf;	/* in effect; changed only by a switch
					   (quiesced, upgrade_lock, info_lock) */
	const struct vc_policy *policy;	/* row of conf.cache; as conf */
	enum vc_aio_mode aio;		/* effective engine after fallback; as conf */
	struct vc_uring *uring;		/* the engine for native/io_uring, else
					   NULL; as conf */

	/*
	 * Serialises descriptor swaps of this image (upgrades and live
	 * switches), so one writer opens the writable descriptor and the
	 * others find it. Held across the open and the wait for fdlock or
	 * the quiesce: only this image's openers and switch wait.
	 */
	pthread_mutex_t upgrade_lock;
	pthread_rwlock_t fdlock;	/* read: using fd; write: swapping it */
	int fd;				/* backing data descriptor; protected by
					   fdlock, swapped by a switch */
	bool fd_writable;		/* written under upgrade_lock and fdlock
					   (write); read under either */
	unsigned dio_align;		/* O_DIRECT offset/length alignment, bytes;
					   re-probed by a switch to O_DIRECT */
	unsigned dio_mem_align;		/* O_DIRECT buffer alignment, bytes; as
					   dio_align */

	/*
	 * What the config says now and why it is not in effect, for status.
	 * want equals conf except when a switch failed or must wait: then
	 * pending says why ("" when conf is what the config wants). A
	 * writable image made readonly by a reload keeps conf.readonly
	 * false (its writers keep writing) while want.readonly refuses new
	 * write opens. rule is what chose want. format and virtual_size are
	 * what probing found at first open. All protected by info_lock.
	 */
	pthread_mutex_t info_lock;
	struct vc_image_conf want;
	char rule[320];
	char pending[160];
	char format[16];
	uint64_t virtual_size;

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

	/*
	 * Entered (held shared) by every request from its submission until
	 * its engine finishes it, and by every synchronous I/O call; held
	 * exclusive by io_quiesce(), so that fd, fd_writable, policy, conf,
	 * aio, uring and the alignments may change under it (io.h).
	 */
	struct vc_gate iogate;
	struct vc_stats stats;		/* counted where the I/O happens (stats.h) */
	struct vc_image *next_open;	/* registry list; protected by registry lock */
};

/*
 * A closed image whose mode held dirty data when it closed: at stop it is
 * reopened (by file handle, else by name if it is still the same file),
 * measured and synced. No descriptor is kept: a closed image holds none.
 */
struct vc_closed_dirty {
	struct file_handle *handle;	/* owned; NULL: none */
	char *relpath;			/* owned */
	dev_t dev;
	ino_t ino;
};

#define VC_CLOSED_DIRTY_MAX	64

/* All open images of one mount. */
struct vc_registry {
	/*
	 * Mount-wide: every open and release takes it, so it is held only
	 * for list and count updates, never across I/O or fdlock.
	 */
	pthread_mutex_t lock;
	struct vc_itable *itable;
	/*
	 * Not owned; replaced by a reload (registry_set_config()), and old
	 * ones stay valid until exit, so a reader may use a pointer it
	 * loaded (atomically) for as long as it likes. gen counts the
	 * replacements (protected by lock): a first open whose decision
	 * overlapped one decides again, so no image keeps an old config.
	 */
	const struct vc_config *cfg;
	unsigned gen;
	struct vc_resolver *resolver;	/* not owned; NULL: names only */
	struct vc_uring *uring;		/* not owned; NULL: io_uring unavailable */
	struct vc_image *open;		/* protected by lock */
	unsigned nopen;			/* protected by lock */
	/* Closed writeback/unsafe images not yet known clean; protected by lock. */
	struct vc_closed_dirty closed[VC_CLOSED_DIRTY_MAX];
	unsigned nclosed;
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

/* Whether open(2) flags ask for write access. */
bool image_flags_write(int flags);

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
/* The settings in effect now: a reload may change them under info_lock. */
struct vc_image_conf image_conf_now(struct vc_image *img);
/* Call fn on each open image, holding a reference (fn may block: flush,
 * cachestat); stops at the first fn that returns < 0 and returns that,
 * else the number of images. */
int registry_each(struct vc_registry *r, int (*fn)(struct vc_image *img, void *arg), void *arg);
/*
 * The open image named relpath, with a reference (image_release), or NULL.
 * That reference counts in opencount like an opener's until released.
 */
struct vc_image *registry_find(struct vc_registry *r, const char *relpath);

/*
 * Install cfg as the configuration in effect (a reload). The old one must
 * stay valid until exit: openers may still read it. Then
 * registry_recompute() decides every open image again.
 */
void registry_set_config(struct vc_registry *r, const struct vc_config *cfg);

/*
 * Decide every open image's settings again (names, then chains, until
 * nothing changes) and switch each image whose cache or aio changed.
 * say(line, arg) (may be NULL) gets one line per change or failure.
 * Returns the number of images switched.
 */
unsigned registry_recompute(struct vc_registry *r,
    void (*say)(const char *line, void *arg), void *arg);

/*
 * Switch the open image img (the caller holds a reference) to want:
 * make dirty host-cache data of a writeback/unsafe mode durable first,
 * open a backing descriptor with the new mode's flags, and swap it in
 * with the policy while the image is quiesced. On failure the old mode
 * stays and img->pending says why. msg gets a line for the log. Returns
 * 1 when the mode changed, 0 when nothing needed to change, or -errno.
 */
int image_switch(struct vc_registry *r, struct vc_image *img,
    const struct vc_image_conf *want, const char *rule, char *msg,
    size_t len);

/*
 * At stop: make every open and recently closed image of a mode that
 * keeps dirty host-cache data (writeback, unsafe) durable (fdatasync),
 * and close the kept descriptors of closed ones. *bytes gets the dirty
 * bytes measured before (cachestat(2)), *known false where the kernel
 * cannot tell (Linux < 6.5). Returns the number of images synced, or
 * the first -errno of a sync (the others are synced all the same).
 */
int registry_make_durable(struct vc_registry *r, uint64_t *bytes,
    bool *known);

/*
 * Dirty (and under writeback) bytes of fd's file in the host page cache,
 * by cachestat(2) (Linux 6.5+). Returns 0, or -ENOSYS where the kernel
 * has no cachestat (or another -errno): then the count is unknown.
 */
int image_dirty_bytes(int fd, uint64_t *bytes);

#endif
