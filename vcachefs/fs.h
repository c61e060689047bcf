/*
 * fs.h - the state of one mounted vcachefs, shared by the FUSE operations
 * (ops.c), the stop logic (stop.c) and main.c.
 */
#ifndef VC_FS_H
#define VC_FS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "image.h"
#include "inode.h"
#include "reload.h"
#include "resolve.h"
#include "slots.h"
#include "uring.h"

/* An open directory handle: a slot of vc_fs.dirs (ops.c). */
struct vc_dir {
	DIR *dp;		/* NULL: handed over, opened at first use */
	off_t offset;		/* telldir() cookie of the next entry */
	struct dirent *entry;	/* read but not yet replied; owned by dp */
	uint64_t nodeid;	/* the directory's */
};

struct vc_fs {
	struct vc_itable itable;
	struct vc_slots dirs;		/* open directory handles (struct vc_dir) */
	struct vc_registry registry;
	struct vc_config *cfg;		/* owned */
	const char *source;		/* absolute path of the backing directory */
	const char *mountpoint;		/* absolute path of the mount */
	double timeout;			/* entry and attribute cache, seconds */
	struct fuse_session *se;
	struct vc_uring uring;
	struct vc_resolver resolver;
	bool resolver_ok;
	struct vc_reload reload;	/* SIGHUP and vcachefsctl reload */
	bool uring_ok;			/* uring is set up */
	bool fuse_uring;		/* FUSE requests may come through io_uring */
	char fuse_uring_why[160];	/* why not, for the log */
	const char *config_path;	/* the file read at start; NULL: built-in defaults */
	struct timespec started;	/* CLOCK_MONOTONIC, when serving began */
	time_t started_wall;
	const char *control_path;	/* the control socket; NULL: none */
};

/* Close and free the directory handles left, and the table (at exit). */
void ops_dirs_exit(struct vc_fs *fs);

/* The low-level operations table. */
extern const struct fuse_lowlevel_ops vc_ops;

#endif
