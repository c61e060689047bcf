/*
 * log.h - the one logging module.
 *
 * In the foreground (and before the daemon detaches) messages go to stderr;
 * as a daemon they go to syslog, or to the file named by log_init().
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
/* Switch target. For VC_LOG_FILE, path is opened for append: 0 or -errno. */
int log_set_target(enum vc_log_target target, const char *path);
bool log_debug_enabled(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));	/* appends strerror(errno) */
void log_warnc(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));	/* appends strerror(err); err may be negative */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
