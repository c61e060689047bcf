/*
 * mountopts.c - sort -o option lists (see mountopts.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mountopts.h"

enum mo_action {
	MO_FUSE,	/* handed to libfuse as it is */
	MO_IGNORE,	/* mount(8)/fstab words with no meaning for the mount */
	MO_SUID_DEV,	/* suid, dev: dropped (see mountopts.h) */
	MO_CONFIG,	/* config=FILE */
	MO_LOG_FILE,	/* log_file=FILE */
	MO_REFUSE,	/* vcachefs sets it itself */
};

struct mo_rule {
	const char *name;	/* with a trailing '=' or '-': a prefix */
	enum mo_action action;
};

/* Sorted by action; a name ending in '=' or '-' matches every option it starts. */
static const struct mo_rule mo_rules[] = {
	/* What libfuse 3 takes for the mount or the session. */
	{ "rw", MO_FUSE }, { "ro", MO_FUSE },
	{ "nosuid", MO_FUSE }, { "nodev", MO_FUSE },
	{ "exec", MO_FUSE }, { "noexec", MO_FUSE },
	{ "async", MO_FUSE }, { "sync", MO_FUSE }, { "dirsync", MO_FUSE },
	{ "atime", MO_FUSE }, { "noatime", MO_FUSE },
	{ "allow_other", MO_FUSE }, { "allow_root", MO_FUSE },
	{ "auto_unmount", MO_FUSE }, { "default_permissions", MO_FUSE },
	{ "max_read=", MO_FUSE }, { "blksize=", MO_FUSE },
	{ "context=", MO_FUSE }, { "fscontext=", MO_FUSE },
	{ "defcontext=", MO_FUSE }, { "rootcontext=", MO_FUSE },
	/* For mount(8), systemd's fstab generator or the helper only. */
	{ "defaults", MO_IGNORE }, { "nofail", MO_IGNORE },
	{ "_netdev", MO_IGNORE }, { "auto", MO_IGNORE }, { "noauto", MO_IGNORE },
	{ "user", MO_IGNORE }, { "nouser", MO_IGNORE }, { "users", MO_IGNORE },
	{ "owner", MO_IGNORE }, { "group", MO_IGNORE },
	{ "relatime", MO_IGNORE },	/* the kernel's default anyway */
	{ "comment=", MO_IGNORE }, { "x-", MO_IGNORE },
	{ "suid", MO_SUID_DEV }, { "dev", MO_SUID_DEV },
	{ "config=", MO_CONFIG },
	{ "log_file=", MO_LOG_FILE },
	/* /proc/mounts and vcachefsctl find the mount by these. */
	{ "fsname=", MO_REFUSE }, { "subtype=", MO_REFUSE },
};

static const struct mo_rule *
mo_lookup(const char *opt)
{
	for (size_t i = 0; i < sizeof(mo_rules) / sizeof(mo_rules[0]); i++) {
		const char *n = mo_rules[i].name;
		size_t len = strlen(n);

		if (n[len - 1] == '=' || n[len - 1] == '-') {
			if (strncmp(opt, n, len) == 0)
				return &mo_rules[i];
		} else if (strcmp(opt, n) == 0) {
			return &mo_rules[i];
		}
	}
	return NULL;
}

void
mountopts_init(struct vc_mountopts *mo)
{
	memset(mo, 0, sizeof(*mo));
}

/* Copy the value after '=' into dst. Returns 0, or -errno with err set. */
static int
mo_value(const char *opt, char *dst, size_t size, char *err, size_t errlen)
{
	const char *v = strchr(opt, '=') + 1;

	if (*v == '\0') {
		snprintf(err, errlen, "mount option %s needs a file name", opt);
		return -EINVAL;
	}
	if (snprintf(dst, size, "%s", v) >= (int)size) {
		snprintf(err, errlen, "mount option %.20s...: name too long", opt);
		return -E2BIG;
	}
	return 0;
}

static int
mo_add_one(struct vc_mountopts *mo, const char *opt, char *err, size_t errlen)
{
	const struct mo_rule *r = mo_lookup(opt);
	size_t len;

	if (r == NULL) {
		snprintf(err, errlen, "unknown mount option '%s' (see "
		    "MOUNT OPTIONS in vcachefs(8))", opt);
		return -EINVAL;
	}
	switch (r->action) {
	case MO_FUSE:
		len = strlen(mo->fuse);
		if (snprintf(mo->fuse + len, sizeof(mo->fuse) - len, "%s%s",
		    len ? "," : "", opt) >= (int)(sizeof(mo->fuse) - len)) {
			mo->fuse[len] = '\0';
			snprintf(err, errlen, "mount options too long");
			return -E2BIG;
		}
		return 0;
	case MO_IGNORE:
		return 0;
	case MO_SUID_DEV:
		mo->dropped_suid_dev++;
		return 0;
	case MO_CONFIG:
		return mo_value(opt, mo->config, sizeof(mo->config), err, errlen);
	case MO_LOG_FILE:
		return mo_value(opt, mo->log_file, sizeof(mo->log_file), err,
		    errlen);
	case MO_REFUSE:
		snprintf(err, errlen, "mount option '%s' is refused: vcachefs "
		    "sets %.*s itself", opt, (int)strcspn(opt, "="), opt);
		return -EINVAL;
	}
	return -EINVAL;
}

int
mountopts_add(struct vc_mountopts *mo, const char *list, char *err,
    size_t errlen)
{
	char opt[PATH_MAX + 16];
	const char *p = list;

	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		int r;

		if (n >= sizeof(opt)) {
			snprintf(err, errlen, "mount option %.20s...: too long", p);
			return -E2BIG;
		}
		memcpy(opt, p, n);
		opt[n] = '\0';
		p += n;
		if (*p == ',')
			p++;
		if (n == 0)
			continue;	/* "a,,b" or a trailing comma */
		r = mo_add_one(mo, opt, err, errlen);
		if (r < 0)
			return r;
	}
	return 0;
}
