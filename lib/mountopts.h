/*
 * mountopts.h - the -o option lists of vcachefs.
 *
 * mount(8) starts vcachefs through the FUSE mount helper (mount.fuse3) as
 * "vcachefs SOURCE MOUNTPOINT -o rw,...,dev,suid": the list mixes options
 * of vcachefs itself (config=, log_file=), mount(8) and fstab words that
 * mean nothing to a FUSE mount (nofail, _netdev, x-*, ...), and real FUSE
 * mount options. mountopts_add() sorts one list into these; each option's
 * fate is a row of one table in mountopts.c.
 *
 * suid and dev are accepted and dropped: the mount helper adds them to
 * every list unless nosuid/nodev were given, so an explicit one cannot be
 * told from the default, and an image store needs neither. libfuse mounts
 * nosuid,nodev unless told otherwise, so the mount always has both.
 */
#ifndef VC_MOUNTOPTS_H
#define VC_MOUNTOPTS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

struct vc_mountopts {
	char config[PATH_MAX];		/* config=FILE, "" if not given */
	char log_file[PATH_MAX];	/* log_file=FILE, "" if not given */
	char fuse[1024];		/* options for libfuse, comma-joined */
	unsigned dropped_suid_dev;	/* suid/dev seen and dropped */
};

/* Empty mo (no option yet). */
void mountopts_init(struct vc_mountopts *mo);

/*
 * Add the options of one comma-separated list to mo; a later config= or
 * log_file= replaces an earlier one. Returns 0, or -EINVAL (an unknown
 * or refused option, a missing value) or -E2BIG (too long) with a
 * one-line reason in err; mo may then hold part of the list.
 */
int mountopts_add(struct vc_mountopts *mo, const char *list, char *err,
    size_t errlen);

#endif
