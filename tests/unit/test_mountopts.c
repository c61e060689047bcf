/*
 * test_mountopts.c - how -o lists are sorted (lib/mountopts.c), TAP output.
 */
#include <errno.h>
#include <string.h>

#include "mountopts.h"
#include "tap.h"

/* One list: expected return, libfuse string, config, log_file. */
static void
test_list(const char *list, int want_r, const char *want_fuse,
    const char *want_config, const char *want_log)
{
	struct vc_mountopts mo;
	char err[256] = "";
	int r;

	mountopts_init(&mo);
	r = mountopts_add(&mo, list, err, sizeof(err));
	test_ok(r == want_r, "'%s': returns %d (got %d: %s)", list, want_r, r, err);
	if (want_r != 0) {
		test_ok(err[0] != '\0', "'%s': says why (%s)", list, err);
		return;
	}
	test_ok(strcmp(mo.fuse, want_fuse) == 0, "'%s': libfuse gets '%s' (got '%s')",
	    list, want_fuse, mo.fuse);
	test_ok(strcmp(mo.config, want_config) == 0, "'%s': config '%s' (got '%s')",
	    list, want_config, mo.config);
	test_ok(strcmp(mo.log_file, want_log) == 0, "'%s': log_file '%s' (got '%s')",
	    list, want_log, mo.log_file);
}

static void
test_message(const char *list, const char *want)
{
	struct vc_mountopts mo;
	char err[256] = "";

	mountopts_init(&mo);
	mountopts_add(&mo, list, err, sizeof(err));
	test_ok(strstr(err, want) != NULL, "'%s': message names '%s' (%s)", list,
	    want, err);
}

int
main(void)
{
	struct vc_mountopts mo;
	char err[256];

	/* What mount.fuse3 passes for the fstab line of the README. */
	test_list("rw,config=/etc/vcachefs.conf,nofail,dev,suid", 0, "rw",
	    "/etc/vcachefs.conf", "");
	test_list("rw,config=/a/vc.conf,log_file=/var/log/vc.log,dev,suid", 0,
	    "rw", "/a/vc.conf", "/var/log/vc.log");
	test_list("ro,nosuid,nodev,noexec,noatime,_netdev,x-systemd.before=libvirtd."
	    "service,x-systemd.requires=a,defaults,auto,noauto,user,users,nouser,"
	    "owner,group,relatime,comment=x", 0, "ro,nosuid,nodev,noexec,noatime",
	    "", "");
	test_list("allow_other,max_read=131072,auto_unmount,sync,async,dirsync,"
	    "atime,exec,default_permissions,allow_root", 0,
	    "allow_other,max_read=131072,auto_unmount,sync,async,dirsync,atime,"
	    "exec,default_permissions,allow_root", "", "");
	test_list(",rw,,", 0, "rw", "", "");
	test_list("", 0, "", "", "");
	test_list("config=/a,config=/b", 0, "", "/b", "");
	/* Unknown and refused options, missing values. */
	test_list("rw,frobnicate", -EINVAL, NULL, NULL, NULL);
	test_list("suidx", -EINVAL, NULL, NULL, NULL);
	test_list("config=", -EINVAL, NULL, NULL, NULL);
	test_list("log_file=", -EINVAL, NULL, NULL, NULL);
	test_list("fsname=x", -EINVAL, NULL, NULL, NULL);
	test_list("subtype=x", -EINVAL, NULL, NULL, NULL);
	test_list("configx=/a", -EINVAL, NULL, NULL, NULL);
	test_message("rw,frobnicate,nofail", "unknown mount option 'frobnicate'");
	test_message("fsname=x", "vcachefs sets fsname itself");
	test_message("config=", "config= needs a file name");

	/* suid and dev are counted and dropped, so the mount stays nosuid,nodev. */
	mountopts_init(&mo);
	test_ok(mountopts_add(&mo, "rw,dev,suid", err, sizeof(err)) == 0 &&
	    mo.dropped_suid_dev == 2 && strcmp(mo.fuse, "rw") == 0,
	    "suid and dev dropped and counted (%u, '%s')", mo.dropped_suid_dev,
	    mo.fuse);
	/* Several lists (-o given more than once) accumulate. */
	mountopts_init(&mo);
	mountopts_add(&mo, "noatime", err, sizeof(err));
	mountopts_add(&mo, "noexec,config=/c", err, sizeof(err));
	test_ok(strcmp(mo.fuse, "noatime,noexec") == 0 && strcmp(mo.config, "/c") == 0,
	    "two lists accumulate ('%s', '%s')", mo.fuse, mo.config);
	/* Too long. */
	{
		static char big[8192];

		memset(big, 'a', sizeof(big) - 1);
		memcpy(big, "config=/", 8);
		mountopts_init(&mo);
		test_ok(mountopts_add(&mo, big, err, sizeof(err)) == -E2BIG,
		    "an over-long option: -E2BIG (%s)", err);
		mountopts_init(&mo);
		for (int i = 0; i < 200; i++)
			if (mountopts_add(&mo, "noatime", err, sizeof(err)) < 0)
				break;
		test_ok(mountopts_add(&mo, "noatime", err, sizeof(err)) == -E2BIG,
		    "too many options: -E2BIG (%s)", err);
	}
	return test_failed ? 1 : 0;
}
