/*
 * creds.c - per-thread caller credentials (see creds.h).
 */
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "creds.h"
#include "log.h"

/* Per thread: whether its fs_struct (umask) is its own yet, and what to
 * restore. glibc's setgroups() changes every thread: use the system call. */
static __thread bool creds_own_fs;
static __thread bool creds_switched;
static __thread mode_t creds_saved_umask;
static __thread uid_t creds_saved_fsuid;
static __thread gid_t creds_saved_fsgid;
static __thread int creds_saved_ngroups;
static __thread gid_t creds_saved_groups[VC_CREDS_GROUPS_MAX];

static int
creds_setgroups(int n, const gid_t *list)
{
	return syscall(SYS_setgroups, (size_t)n, list) == -1 ? -errno : 0;
}

int
creds_enter(const struct vc_creds *c)
{
	int err;

	if (!creds_own_fs) {
		if (unshare(CLONE_FS) == -1)
			return -errno;
		creds_own_fs = true;
	}
	creds_saved_umask = umask(c->umask & 0777);
	creds_switched = geteuid() == 0 && (c->uid != 0 || c->gid != 0 ||
	    c->ngroups != 0);
	if (!creds_switched)
		return 0;
	creds_saved_fsuid = (uid_t)setfsuid((uid_t)-1);
	creds_saved_fsgid = (gid_t)setfsgid((gid_t)-1);
	creds_saved_ngroups = getgroups(VC_CREDS_GROUPS_MAX, creds_saved_groups);
	if (creds_saved_ngroups < 0)
		creds_saved_ngroups = 0;
	/* Unknown groups: none, which can only take permissions away. */
	err = creds_setgroups(c->ngroups > 0 ? c->ngroups : 0, c->groups);
	if (err == 0) {
		setfsgid(c->gid);
		setfsuid(c->uid);
		/* setfsuid reports no error: ask for the value back. */
		if ((uid_t)setfsuid((uid_t)-1) != c->uid ||
		    (gid_t)setfsgid((gid_t)-1) != c->gid)
			err = -EPERM;
	}
	if (err < 0) {
		creds_leave();
		return err;
	}
	return 0;
}

void
creds_leave(void)
{
	umask(creds_saved_umask);
	if (!creds_switched)
		return;
	setfsuid(creds_saved_fsuid);
	setfsgid(creds_saved_fsgid);
	if (creds_setgroups(creds_saved_ngroups, creds_saved_groups) < 0)
		log_warn("cannot restore the daemon's groups");
	creds_switched = false;
}
