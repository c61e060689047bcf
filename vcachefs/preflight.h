/*
 * preflight.h - checks before mounting, each failing with one clear line.
 */
#ifndef VC_PREFLIGHT_H
#define VC_PREFLIGHT_H

#include <limits.h>
#include <stdbool.h>

/*
 * Check the mount point: detect a stale mount left by a dead daemon (and
 * with force, lazily unmount it) or a live one, and resolve the path.
 * Fills real (PATH_MAX). Returns 0, or -1 after logging the reason.
 */
int preflight_mountpoint(const char *arg, bool force, char *real);

/* SOURCE must be an existing directory. Fills real. 0 or -1. */
int preflight_source(const char *arg, char *real);

/*
 * Other processes holding files below dir open, or with their working or
 * root directory there, would bypass the mount: refuse (0 with force).
 */
int preflight_holders(const char *dir, bool force);

/* /dev/fuse opens, and allow_other is permitted when asked for. */
int preflight_fuse(bool allow_other);

#endif
