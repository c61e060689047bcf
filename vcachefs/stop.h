/*
 * stop.h - careful stopping on SIGTERM/SIGINT.
 *
 * With no image open: unmount, let in-flight requests finish, and exit.
 * With images open: refuse, name them, keep serving; a second signal
 * within VC_STOP_FORCE_WINDOW seconds lazily unmounts and aborts the
 * connection, because running VMs lose their disks when we go.
 */
#ifndef VC_STOP_H
#define VC_STOP_H

#include <signal.h>

#include "fs.h"

#define VC_STOP_FORCE_WINDOW 5

/* The signals the signal thread waits for; every thread blocks them. */
void stop_signal_set(sigset_t *set);

/*
 * Start the signal thread. The caller has blocked SIGTERM, SIGINT and
 * SIGHUP in every thread. conn is the FUSE connection number (the minor
 * of the mount's st_dev), or 0 if unknown. Returns 0 or -errno.
 */
int stop_start(struct vc_fs *fs, unsigned conn);

/* Stop and join the signal thread after the session loop has ended. */
void stop_finish(void);

/* Whether the session ended because of a forced stop. */
bool stop_forced(void);

#endif
