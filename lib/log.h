/*
 * log.h - the one logging module.
 *
 * In the foreground messages go to stderr; as a daemon they go to syslog,
 * or to the file of --log-file. Until log_set_target() is first called,
 * messages go to stderr and are also kept (at most VC_LOG_EARLY_MAX), so
 * that a daemon's target gets every start-up message, even those said
 * before it was known. From then until log_detached(), messages go to
 * stderr as well as to syslog or the file: whoever started the daemon
 * sees why a start failed.
 * Only the command line parts of the tools write to stdout/stderr directly.
 */
#ifndef VC_LOG_H
#define VC_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum vc_log_target {
	VC_LOG_STDERR = 0,
	VC_LOG_SYSLOG,
	VC_LOG_FILE,
};

/* Start logging as ident; debug enables log_debug(). */
void log_init(const char *ident, bool debug);
#define VC_LOG_EARLY_MAX	64

/*
 * Switch target. For VC_LOG_FILE, path is opened for append: 0 or -errno.
 * The messages kept since start are written to a new syslog or file target
 * (they were on stderr already), then dropped.
 */
int log_set_target(enum vc_log_target target, const char *path);
/* The daemon has detached: stop copying messages to stderr. */
void log_detached(void);
/* libfuse's own messages go through this module too (one log for all). */
void log_route_fuse(void);
bool log_debug_enabled(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));	/* appends strerror(errno) */
void log_warnc(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));	/* appends strerror(err); err may be negative */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
