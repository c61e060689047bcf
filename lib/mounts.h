/*
 * mounts.h - facts about mounts and open files, read from /proc without
 * ever touching the filesystems concerned (a dead FUSE daemon would make
 * a stat hang or fail).
 */
#ifndef VC_MOUNTS_H
#define VC_MOUNTS_H

#include <limits.h>
#include <sys/types.h>

struct vc_mountent {
	char fstype[64];
	char source[PATH_MAX];
	unsigned major, minor;	/* st_dev of the mounted filesystem */
};

/*
 * The topmost mount whose mount point is exactly path (absolute, no
 * trailing slash). Returns 1 and fills *ent, 0 when none, or -errno.
 */
int mounts_find(const char *path, struct vc_mountent *ent);

/*
 * Call fn for each open descriptor, working directory or root directory of
 * another process that refers to dir or to anything below it; what says
 * which ("fd N", "cwd", "root"). Returns the number of such references.
 */
int mounts_holders(const char *dir,
    void (*fn)(pid_t pid, const char *comm, const char *what,
	const char *path, void *arg),
    void *arg);

/* Make path absolute without resolving anything (no stat). */
int mounts_abspath(const char *path, char *out, size_t len);

#endif
