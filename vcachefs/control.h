/*
 * control.h - the control socket of a mount (vcachefsctl(8)).
 *
 * One thread of its own runs a poll() loop over a UNIX stream socket and
 * its non-blocking client connections, with a buffer per connection: a
 * slow or stuck client only ever waits for itself, and no FUSE or queue
 * thread ever waits for the control thread.
 */
#ifndef VC_CONTROL_H
#define VC_CONTROL_H

#include <stddef.h>

#include "fs.h"

#include "ctlproto.h"

#define VC_CONTROL_DIR	CTL_SOCKET_DIR

/*
 * Create and bind the socket: path, or the default when path is NULL
 * (then VC_CONTROL_DIR is created 0700 if missing). A stale socket is
 * replaced; a socket another daemon answers on is not. Returns 0, 1 when
 * the default could not be set up and the mount goes on without one
 * (logged), or -errno (logged).
 */
int control_open(struct vc_fs *fs, const char *path);
/* Start the thread (after the daemon has detached). 0 or -errno. */
int control_start(void);
/* Stop the thread, close the connections and unlink the socket. */
void control_stop(void);

#endif
