/*
 * test_migration.c - pins the migration verdict of lib/migration.c: every
 * filesystem row of libvirt's list in every cache mode, with readonly and
 * shareable, against a table written here from the rules (TAP output).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "migration.h"
#include "policy.h"
#include "tap.h"

/* statfs magic (or a FUSE mount type) -> the class libvirt gives it. */
static const struct {
	unsigned long magic;
	const char *fuse;
	enum mig_class cls;
	const char *name;
} test_fs[] = {
	{ 0x01161970UL, NULL, MIG_FS_CLUSTER, "gfs2" },
	{ 0x7461636fUL, NULL, MIG_FS_CLUSTER, "ocfs2" },
	{ 0x00c36400UL, NULL, MIG_FS_CLUSTER, "ceph" },
	{ 0x6969UL, NULL, MIG_FS_SHARED, "nfs" },
	{ 0x6b414653UL, NULL, MIG_FS_SHARED, "afs" },
	{ 0x517bUL, NULL, MIG_FS_SHARED, "smb" },
	{ 0xff534d42UL, NULL, MIG_FS_SHARED, "cifs" },
	{ 0x47504653UL, NULL, MIG_FS_SHARED, "gpfs" },
	{ 0x61636673UL, NULL, MIG_FS_SHARED, "acfs" },
	{ 0x19830326UL, NULL, MIG_FS_SHARED, "beegfs" },
	{ MIG_FUSE_MAGIC, "fuse.glusterfs", MIG_FS_SHARED, "fuse.glusterfs" },
	{ MIG_FUSE_MAGIC, "fuse.quobyte", MIG_FS_SHARED, "fuse.quobyte" },
	{ MIG_FUSE_MAGIC, "fuse.sshfs", MIG_FS_LOCAL, "fuse.sshfs" },
	{ MIG_FUSE_MAGIC, "fuse.vcachefs", MIG_FS_LOCAL, "fuse.vcachefs" },
	{ MIG_FUSE_MAGIC, NULL, MIG_FS_LOCAL, "fuse" },
	{ 0xef53UL, NULL, MIG_FS_LOCAL, "ext4" },
	{ 0x58465342UL, NULL, MIG_FS_LOCAL, "xfs" },
	{ 0x01021994UL, NULL, MIG_FS_LOCAL, "tmpfs" },
	{ 0x12345678UL, NULL, MIG_FS_LOCAL, "f_type 0x12345678" },
};

#define TEST_NFS (sizeof(test_fs) / sizeof(test_fs[0]))

/* The rules, written out: what the verdict must be. */
static bool
test_expect(enum mig_class cls, const char *mode, bool ro, bool share)
{
	if (cls == MIG_FS_LOCAL || strcmp(mode, "unsafe") == 0)
		return false;
	if (cls == MIG_FS_CLUSTER)
		return true;
	return strcmp(mode, "none") == 0 || strcmp(mode, "directsync") == 0 ||
	    ro || share;
}

int
main(void)
{
	static const char *const modes[] = { "writeback", "writethrough",
	    "none", "directsync", "unsafe" };
	size_t nmodes = sizeof(modes) / sizeof(modes[0]);
	char why[512];

	printf("1..%zu\n", TEST_NFS * 2 + TEST_NFS * nmodes * 4 + 3);
	for (size_t i = 0; i < TEST_NFS; i++) {
		struct mig_fs fs;

		mig_classify(test_fs[i].magic, test_fs[i].fuse, &fs);
		test_ok(fs.cls == test_fs[i].cls, "%s is %s", test_fs[i].name,
		    mig_class_name(test_fs[i].cls));
		test_ok(strcmp(fs.type, test_fs[i].name) == 0,
		    "%s is named '%s' (got '%s')", test_fs[i].name,
		    test_fs[i].name, fs.type);
		for (size_t m = 0; m < nmodes; m++) {
			for (int k = 0; k < 4; k++) {
				struct mig_image img = { .readonly = k & 1,
				    .shareable = k & 2 };
				bool want, got;

				if (policy_parse_cache(modes[m], &img.cache) < 0) {
					test_ok(0, "mode %s parses", modes[m]);
					continue;
				}
				want = test_expect(fs.cls, modes[m], img.readonly,
				    img.shareable);
				why[0] = '\0';
				got = mig_verdict(&fs, &img, why, sizeof(why));
				test_ok(got == want && why[0] != '\0',
				    "%s cache=%s readonly=%d shareable=%d: %s",
				    test_fs[i].name, modes[m], img.readonly,
				    img.shareable, want ? "safe" : "unsafe");
				if (got != want)
					printf("# reason: %s\n", why);
			}
		}
	}
	/* The reasons name the remedy an administrator needs. */
	{
		struct mig_fs fs;
		struct mig_image img = { .cache = VC_CACHE_WRITEBACK };

		mig_classify(0xef53UL, NULL, &fs);
		(void)mig_verdict(&fs, &img, why, sizeof(why));
		test_ok(strstr(why, "--copy-storage-all") != NULL,
		    "local: the reason says --copy-storage-all (%s)", why);
		mig_classify(0x6969UL, NULL, &fs);
		(void)mig_verdict(&fs, &img, why, sizeof(why));
		test_ok(strstr(why, "none or directsync") != NULL,
		    "shared, buffered: the reason names the safe modes (%s)", why);
		img.cache = VC_CACHE_UNSAFE;
		mig_classify(0x00c36400UL, NULL, &fs);
		(void)mig_verdict(&fs, &img, why, sizeof(why));
		test_ok(strstr(why, "flushes") != NULL,
		    "unsafe on a cluster fs: the reason says flushes are dropped (%s)",
		    why);
	}
	return test_failed ? 1 : 0;
}
