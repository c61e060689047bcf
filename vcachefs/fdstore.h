/*
 * fdstore.h - the takeover through systemd's file descriptor store.
 *
 * With FileDescriptorStoreMax= set, "vcachefsctl fdstore" (control
 * request "fdstore") makes the daemon pause and drain as for --takeover,
 * store its /dev/fuse descriptor, the source directory, the state memfd
 * and the inodes' descriptors in systemd's store (sd_notify FDSTORE=1,
 * one FDNAME each: vcachefs-fuse, vcachefs-root, vcachefs-state,
 * vcachefs-inode-N) and exit 0 without unmounting; systemd restarts the
 * service and passes them back (LISTEN_FDS, LISTEN_FDNAMES). The new
 * daemon, started with the usual command line, finds them, takes over,
 * and removes them from the store (FDSTOREREMOVE=1) once it serves.
 * There is no old daemon to go back to: a new one that fails leaves the
 * descriptors in the store for the next start.
 */
#ifndef VC_FDSTORE_H
#define VC_FDSTORE_H

#include <stddef.h>

#include "fs.h"
#include "takeover.h"

/* Old side (control thread). Returns 1 when stored (the session ends),
 * or -errno with why (the daemon goes on serving). */
int fdstore_give(struct vc_fs *fs, char *why, size_t whylen);

/*
 * New side: whether systemd passed a stored connection. Returns 0 when
 * not, 1 with tk filled (and mnt, source as takeover_begin()), or -errno
 * after logging why.
 */
int fdstore_take(const char *mountpoint, char *mnt, size_t mntlen,
    char *source, size_t srclen, struct vc_takeover *tk);

/* Serving: take the descriptors out of the store. Returns 0 or -errno. */
int fdstore_release(struct vc_takeover *tk);

#endif
