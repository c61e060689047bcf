/*
 * migration.c - live migration safety (migration.h).
 *
 * The rules are libvirt's (src/qemu/qemu_migration.c, qemuMigrationSrcIsSafe;
 * src/util/virfile.c, virFileIsSharedFS and virFileIsClusterFS), with these
 * differences: libvirt skips a read-only disk, counts fuse.glusterfs as a
 * cluster filesystem, and lets QEMU's drop-cache make a buffered disk on a
 * shared filesystem safe. GlusterFS is shared here: a buffered mode keeps
 * the image in this host's page cache of the client's file, which another
 * host's writes do not invalidate. QEMU's drop-cache is a
 * posix_fadvise on its own descriptor, which FUSE does not forward, so on
 * a vcachefs mount it never reaches the backing file's page cache: only
 * what vcachefs itself does to the backing file counts here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "migration.h"
#include "probe.h"

/*
 * One row per filesystem: the statfs magic (0 for a FUSE client, named by
 * its mount type instead) and its class. The shared and cluster rows are
 * libvirt's list; the local rows only give common filesystems a name.
 */
static const struct mig_fstype {
	const char *name;
	unsigned long magic;
	const char *fuse;	/* the mount type of a FUSE client, or NULL */
	enum mig_class cls;
} mig_fstypes[] = {
	{ "gfs2",	0x01161970UL, NULL, MIG_FS_CLUSTER },
	{ "ocfs2",	0x7461636fUL, NULL, MIG_FS_CLUSTER },
	{ "ceph",	0x00c36400UL, NULL, MIG_FS_CLUSTER },
	{ "nfs",	0x00006969UL, NULL, MIG_FS_SHARED },
	{ "afs",	0x6b414653UL, NULL, MIG_FS_SHARED },
	{ "smb",	0x0000517bUL, NULL, MIG_FS_SHARED },
	{ "cifs",	0xff534d42UL, NULL, MIG_FS_SHARED },
	{ "gpfs",	0x47504653UL, NULL, MIG_FS_SHARED },
	{ "acfs",	0x61636673UL, NULL, MIG_FS_SHARED },
	{ "beegfs",	0x19830326UL, NULL, MIG_FS_SHARED },
	{ "fuse.glusterfs", 0, "fuse.glusterfs", MIG_FS_SHARED },
	{ "fuse.quobyte", 0, "fuse.quobyte", MIG_FS_SHARED },
	{ "ext4",	0x0000ef53UL, NULL, MIG_FS_LOCAL },
	{ "xfs",	0x58465342UL, NULL, MIG_FS_LOCAL },
	{ "btrfs",	0x9123683eUL, NULL, MIG_FS_LOCAL },
	{ "tmpfs",	0x01021994UL, NULL, MIG_FS_LOCAL },
	{ "overlay",	0x794c7630UL, NULL, MIG_FS_LOCAL },
	{ "zfs",	0x2fc12fc1UL, NULL, MIG_FS_LOCAL },
};

#define MIG_NFSTYPES (sizeof(mig_fstypes) / sizeof(mig_fstypes[0]))

static const char *const mig_class_names[] = {
	[MIG_FS_LOCAL] = "local",
	[MIG_FS_SHARED] = "shared",
	[MIG_FS_CLUSTER] = "cluster",
};

const char *
mig_class_name(enum mig_class cls)
{
	return (unsigned)cls < sizeof(mig_class_names) /
	    sizeof(mig_class_names[0]) ? mig_class_names[cls] : "?";
}

void
mig_classify(unsigned long magic, const char *fusetype, struct mig_fs *out)
{
	bool fuse = magic == MIG_FUSE_MAGIC;

	out->cls = MIG_FS_LOCAL;
	out->magic = magic;
	if (fuse)
		snprintf(out->type, sizeof(out->type), "%s",
		    fusetype != NULL ? fusetype : "fuse");
	else
		snprintf(out->type, sizeof(out->type), "f_type 0x%lx", magic);
	for (size_t i = 0; i < MIG_NFSTYPES; i++) {
		const struct mig_fstype *t = &mig_fstypes[i];

		if (fuse ? t->fuse == NULL || fusetype == NULL ||
		    strcmp(t->fuse, fusetype) != 0 : t->fuse != NULL ||
		    t->magic != magic)
			continue;
		out->cls = t->cls;
		snprintf(out->type, sizeof(out->type), "%s", t->name);
		return;
	}
}

/*
 * The type of the mount with ID mnt_id, from mountinfo
 * ("ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - TYPE SOURCE SUPER").
 * By ID, not by path: with SOURCE == MOUNTPOINT a path names the mount
 * covering SOURCE, not the one the daemon's descriptor is on.
 */
static int
mig_mount_type(uint64_t mnt_id, char *type, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int err = -ENOENT;

	if (f == NULL)
		return -errno;
	while (err != 0 && getline(&line, &cap, f) > 0) {
		char *save, *t, *sep, *end;
		unsigned long long id;

		sep = strstr(line, " - ");
		if (sep == NULL)
			continue;
		t = strtok_r(sep + 3, " \n", &save);
		errno = 0;
		id = strtoull(line, &end, 10);
		if (t == NULL || errno != 0 || end == line || *end != ' ' ||
		    id != mnt_id)
			continue;
		snprintf(type, len, "%s", t);
		err = 0;
	}
	free(line);
	fclose(f);
	return err;
}

#ifdef VC_FAULT_INJECT
/* The test override: "0xMAGIC" or a FUSE mount type. 1 when it applies. */
static int
mig_test_override(struct mig_fs *out)
{
	const char *v = getenv("VCACHEFS_TEST_FSTYPE");
	unsigned long magic;
	char *end;

	if (v == NULL || *v == '\0')
		return 0;
	if (strncmp(v, "fuse", 4) == 0) {
		mig_classify(MIG_FUSE_MAGIC, v, out);
		return 1;
	}
	errno = 0;
	magic = strtoul(v, &end, 0);
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	mig_classify(magic, NULL, out);
	return 1;
}
#endif

int
mig_detect_at(int dirfd, const char *rel, struct mig_fs *out)
{
	char dir[4096], type[128];
	struct statfs sb;
	struct statx stx;
	char *slash;
	int fd, r;

#ifdef VC_FAULT_INJECT
	r = mig_test_override(out);
	if (r != 0)
		return r < 0 ? r : 0;
#endif
	if (snprintf(dir, sizeof(dir), "%s", rel) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	/* A missing file: its nearest parent below dirfd tells the filesystem. */
	for (;;) {
		fd = dir[0] == '\0' ? -ENOENT : probe_open(dirfd, dir, true);
		if (fd >= 0 || dir[0] == '\0')
			break;
		if (fd != -ENOENT && fd != -ENOTDIR && fd != -EACCES)
			return fd;
		slash = strrchr(dir, '/');
		if (slash == NULL)
			dir[0] = '\0';
		else
			*slash = '\0';
	}
	if (fd < 0)
		fd = dirfd;
	r = fstatfs(fd, &sb) == -1 ? -errno : 0;
	if (r == 0 && (unsigned long)sb.f_type == MIG_FUSE_MAGIC) {
		r = statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) == -1 ?
		    -errno : 0;
		if (r == 0 && !(stx.stx_mask & STATX_MNT_ID))
			r = -ENOSYS;	/* before Linux 5.8 */
		if (r == 0)
			r = mig_mount_type(stx.stx_mnt_id, type, sizeof(type));
		mig_classify(MIG_FUSE_MAGIC, r == 0 ? type : NULL, out);
		r = 0;
	} else if (r == 0) {
		mig_classify((unsigned long)sb.f_type, NULL, out);
	}
	if (fd != dirfd)
		close(fd);
	return r;
}

bool
mig_verdict(const struct mig_fs *fs, const struct mig_image *img,
    char *why, size_t len)
{
	const struct vc_policy *pol = policy_get(img->cache);

	if (fs->cls == MIG_FS_LOCAL) {
		snprintf(why, len, "%s is not a shared filesystem: the other "
		    "host cannot see this image; migrate with "
		    "--copy-storage-all, or put SOURCE on shared storage",
		    fs->type);
		return false;
	}
	if (!pol->flush_forwarded) {
		snprintf(why, len, "cache=%s drops the guest's flushes: its "
		    "last writes may still be only in this host's page cache "
		    "when the other host reads", pol->name);
		return false;
	}
	if (fs->cls == MIG_FS_CLUSTER) {
		snprintf(why, len, "%s is a cluster filesystem, coherent "
		    "across hosts, so cache=%s is safe", fs->type, pol->name);
		return true;
	}
	if (pol->o_direct) {
		snprintf(why, len, "cache=%s bypasses the host page cache on "
		    "%s, a shared filesystem", pol->name, fs->type);
		return true;
	}
	if (img->readonly) {
		snprintf(why, len, "readonly = yes on %s, a shared filesystem: "
		    "no host writes it", fs->type);
		return true;
	}
	if (img->shareable) {
		snprintf(why, len, "shareable = yes on %s, a shared filesystem: "
		    "the administrator declares it shared", fs->type);
		return true;
	}
	snprintf(why, len, "cache=%s keeps the image in the host page cache on "
	    "%s, a shared filesystem that is not a cluster filesystem: the "
	    "other host may read stale data; use cache none or directsync, "
	    "readonly = yes or shareable = yes", pol->name, fs->type);
	return false;
}
