/*
 * notify.h - tell a service manager how the daemon is doing, through
 * sd_notify(3) (systemd's Type=notify). Every call does nothing when the
 * daemon was not started with NOTIFY_SOCKET in its environment.
 *
 * READY=1 is sent only once the mount answers: a thread of its own looks
 * the mount point up until it is the topmost mount, of type fuse.vcachefs
 * and of this connection, and a stat(2) of its root has been answered by
 * the session loop (which also means FUSE INIT is done).
 */
#ifndef VC_NOTIFY_H
#define VC_NOTIFY_H

#include <stdbool.h>

/* Whether a service manager listens (NOTIFY_SOCKET was set at start). */
bool notify_active(void);

/*
 * Start the readiness thread for mountpoint (absolute), FUSE connection
 * conn (the minor of st_dev; 0 if unknown). status is sent with READY=1.
 * Call it just before the session loop runs. Returns 0 or -errno; with no
 * service manager it starts nothing and returns 0.
 */
int notify_ready_start(const char *mountpoint, unsigned conn,
    const char *status);

/* STATUS=text, printf-style. */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* RELOADING=1 before a reload; notify_reloaded() after it (READY=1 again). */
void notify_reloading(void);
void notify_reloaded(int result);

/* STOPPING=1: the daemon is on its way out; no READY=1 follows. */
void notify_stopping(const char *status);

#endif
