/*
 * migration.h - whether an image may be live-migrated to another host
 * without copying its storage: libvirt's rules (qemuMigrationSrcIsSafe,
 * virFileIsSharedFS, virFileIsClusterFS) applied to the filesystem under
 * the mount's SOURCE and to the cache mode vcachefs really uses.
 *
 * The filesystem classes live in one const table (migration.c).
 */
#ifndef VC_MIGRATION_H
#define VC_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>

#include "policy.h"

enum mig_class {
	MIG_FS_LOCAL = 0,	/* or shared in a way libvirt does not know */
	MIG_FS_SHARED,		/* shared, not coherent across hosts' page caches */
	MIG_FS_CLUSTER,		/* coherent cluster filesystem */
};

#define MIG_FUSE_MAGIC	0x65735546UL	/* FUSE_SUPER_MAGIC */

/* What is under a path. */
struct mig_fs {
	enum mig_class cls;
	unsigned long magic;	/* statfs f_type */
	char type[64];		/* "nfs", "fuse.glusterfs", "ext4"... */
};

/*
 * Classify a statfs f_type; for FUSE (MIG_FUSE_MAGIC) fusetype is the
 * mount's type ("fuse.glusterfs"), or NULL when unknown. Pure.
 */
void mig_classify(unsigned long magic, const char *fusetype, struct mig_fs *out);

/*
 * The filesystem holding path (absolute): statfs, walking up to the
 * nearest existing parent as libvirt does, and for FUSE the type of the
 * mount holding path in /proc/self/mountinfo. In the fault-injection
 * build, VCACHEFS_TEST_FSTYPE ("0x6969" or "fuse.glusterfs") replaces what
 * statfs says. Returns 0 or -errno.
 */
int mig_detect(const char *path, struct mig_fs *out);

/* The settings of one image that the verdict looks at. */
struct mig_image {
	enum vc_cache_mode cache;	/* in effect, not the domain XML's */
	bool readonly;
	bool shareable;
};

/*
 * Whether migrating img on fs without copying storage is safe. why gets
 * one line (no newline) saying the rule that decided. Pure.
 */
bool mig_verdict(const struct mig_fs *fs, const struct mig_image *img,
    char *why, size_t len);

const char *mig_class_name(enum mig_class cls);

#endif
