/*
 * creds.h - act as the FUSE caller in the calling thread, while creating
 * a file, directory, node or link.
 *
 * The daemon runs as root. Creating as root and handing the new object
 * over afterwards (chown by name) lets a name swapped in between change
 * hands instead; creating as the caller lets the backing filesystem apply
 * the caller's permissions, its umask, the parent's setgid group and its
 * default ACL, exactly as on a plain directory. Linux keeps the
 * filesystem uid/gid, the supplementary groups and (after
 * unshare(CLONE_FS)) the umask per thread, so other requests served at
 * the same time keep the daemon's own credentials.
 */
#ifndef VC_CREDS_H
#define VC_CREDS_H

#include <stdbool.h>
#include <sys/types.h>

#define VC_CREDS_GROUPS_MAX	256

struct vc_creds {
	uid_t uid;
	gid_t gid;
	mode_t umask;
	int ngroups;			/* supplementary groups; -1: unknown */
	gid_t groups[VC_CREDS_GROUPS_MAX];
};

/*
 * Switch this thread to c until creds_leave(). Without root, only the
 * umask changes (the daemon can only create as itself). Returns 0 or
 * -errno; on failure nothing stays switched.
 */
int creds_enter(const struct vc_creds *c);
void creds_leave(void);

#endif
