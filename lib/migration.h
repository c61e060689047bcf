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
 * The filesystem holding rel, a name below dirfd (the daemon's own
 * descriptor of SOURCE, never a path through the mount: with SOURCE ==
 * MOUNTPOINT that would be the FUSE mount itself): fstatfs of rel opened
 * as probe_open() does, or of its nearest existing parent below dirfd, as
 * libvirt walks up; for FUSE the type of that descriptor's mount (statx
 * mount ID, /proc/self/mountinfo). In the fault-injection build,
 * VCACHEFS_TEST_FSTYPE ("0x6969" or "fuse.glusterfs") replaces what
 * statfs says. Returns 0 or -errno.
 */
int mig_detect_at(int dirfd, const char *rel, struct mig_fs *out);

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
