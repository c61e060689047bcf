/*
 * log.c - logging to stderr, syslog or a file (see log.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static enum vc_log_target log_target = VC_LOG_STDERR;
static FILE *log_file;		/* owned; only with VC_LOG_FILE */
static bool log_verbose;
static const char *log_ident = "vcachefs";
/* Serialises lines to a file so that threads never interleave them. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void
log_init(const char *ident, bool debug)
{
	log_ident = ident;
	log_verbose = debug;
	log_target = VC_LOG_STDERR;
}

int
log_set_target(enum vc_log_target target, const char *path)
{
	FILE *f = NULL;

	if (target == VC_LOG_FILE) {
		f = fopen(path, "ae");
		if (f == NULL)
			return -errno;
		setvbuf(f, NULL, _IOLBF, 0);
	}
	if (target == VC_LOG_SYSLOG)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	pthread_mutex_lock(&log_lock);
	if (log_file != NULL)
		fclose(log_file);
	log_file = f;
	log_target = target;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

bool
log_debug_enabled(void)
{
	return log_verbose;
}

static void
log_vemit(int prio, const char *fmt, va_list ap, const char *suffix)
{
	char msg[2048];
	int n;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	if (suffix != NULL && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - n, ": %s", suffix);

	switch (log_target) {
	case VC_LOG_SYSLOG:
		syslog(prio, "%s", msg);
		break;
	case VC_LOG_FILE: {
		char stamp[32];
		time_t now = time(NULL);
		struct tm tm;

		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
		pthread_mutex_lock(&log_lock);
		fprintf(log_file, "%s %s: %s\n", stamp, log_ident, msg);
		pthread_mutex_unlock(&log_lock);
		break;
	}
	default:
		fprintf(stderr, "%s: %s\n", log_ident, msg);
		break;
	}
}

static void
log_emit(int prio, const char *suffix, const char *fmt, va_list ap)
{
	int saved = errno;

	log_vemit(prio, fmt, ap, suffix);
	errno = saved;
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;
	const char *e = strerror(errno);

	va_start(ap, fmt);
	log_emit(LOG_WARNING, e, fmt, ap);
	va_end(ap);
}

void
log_warnc(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_WARNING, strerror(err < 0 ? -err : err), fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_WARNING, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_verbose)
		return;
	va_start(ap, fmt);
	log_emit(LOG_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;
	const char *e = strerror(errno);

	va_start(ap, fmt);
	log_emit(LOG_CRIT, e, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(LOG_CRIT, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
