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
#include <fuse_log.h>

#include "log.h"

static enum vc_log_target log_target = VC_LOG_STDERR;
static FILE *log_file;		/* owned; only with VC_LOG_FILE */
static bool log_verbose;
static const char *log_ident = "vcachefs";
/* Serialises lines to a file so that threads never interleave them. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/* Messages said before the target was set, for it; protected by log_lock. */
struct log_early {
	int prio;
	time_t when;
	char *msg;			/* owned */
};
static struct log_early log_kept[VC_LOG_EARLY_MAX];
static unsigned log_nkept;
static bool log_keeping = true;		/* until log_set_target() */
static unsigned log_lost;		/* past VC_LOG_EARLY_MAX */
/* Also to stderr: a syslog or file target before log_detached(). */
static bool log_tee;

void
log_init(const char *ident, bool debug)
{
	log_ident = ident;
	log_verbose = debug;
	log_target = VC_LOG_STDERR;
}

static void log_write(enum vc_log_target target, int prio, time_t when,
    const char *msg);

/* Hand the kept start-up messages to the new target, then drop them;
 * called with log_lock held. */
static void
log_replay(enum vc_log_target target)
{
	char msg[128];

	for (unsigned i = 0; i < log_nkept; i++) {
		if (target != VC_LOG_STDERR)
			log_write(target, log_kept[i].prio, log_kept[i].when,
			    log_kept[i].msg);
		free(log_kept[i].msg);
	}
	if (log_lost > 0 && target != VC_LOG_STDERR) {
		snprintf(msg, sizeof(msg), "%u more start-up message(s) were "
		    "on stderr only", log_lost);
		log_write(target, LOG_WARNING, time(NULL), msg);
	}
	log_nkept = 0;
	log_lost = 0;
	log_keeping = false;
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
	log_tee = target != VC_LOG_STDERR;
	log_replay(target);
	pthread_mutex_unlock(&log_lock);
	return 0;
}

void
log_detached(void)
{
	pthread_mutex_lock(&log_lock);
	log_tee = false;
	pthread_mutex_unlock(&log_lock);
}

bool
log_debug_enabled(void)
{
	return log_verbose;
}

/* One line to target; called with log_lock held. */
static void
log_write(enum vc_log_target target, int prio, time_t when, const char *msg)
{
	char stamp[32];
	struct tm tm;

	switch (target) {
	case VC_LOG_SYSLOG:
		syslog(prio, "%s", msg);
		break;
	case VC_LOG_FILE:
		localtime_r(&when, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
		fprintf(log_file, "%s %s: %s\n", stamp, log_ident, msg);
		break;
	default:
		fprintf(stderr, "%s: %s\n", log_ident, msg);
		break;
	}
}

/* Keep a start-up message for the target still to come; with log_lock. */
static void
log_keep(int prio, time_t when, const char *msg)
{
	char *copy;

	if (log_nkept == VC_LOG_EARLY_MAX || (copy = strdup(msg)) == NULL) {
		log_lost++;
		return;
	}
	log_kept[log_nkept++] = (struct log_early){ prio, when, copy };
}

/* One message line to wherever messages go now. */
static void
log_line(int prio, const char *msg)
{
	time_t now = time(NULL);

	pthread_mutex_lock(&log_lock);
	if (log_keeping)
		log_keep(prio, now, msg);
	if (log_tee)
		log_write(VC_LOG_STDERR, prio, now, msg);
	log_write(log_target, prio, now, msg);
	pthread_mutex_unlock(&log_lock);
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
	log_line(prio, msg);
}

/*
 * libfuse's messages ("fuse: ..."); its levels are syslog's. It may say
 * one line in several calls: each thread gathers its own up to the
 * newline (a full buffer is said as it is).
 */
static __thread char log_fuse_buf[1024];
static __thread size_t log_fuse_len;

static void
log_fuse(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char *nl;
	int n;

	if (level == FUSE_LOG_DEBUG && !log_verbose)
		return;
	n = vsnprintf(log_fuse_buf + log_fuse_len, sizeof(log_fuse_buf) -
	    log_fuse_len, fmt, ap);
	if (n < 0)
		return;
	log_fuse_len += (size_t)n;
	if (log_fuse_len >= sizeof(log_fuse_buf))
		log_fuse_len = sizeof(log_fuse_buf) - 1;
	while ((nl = memchr(log_fuse_buf, '\n', log_fuse_len)) != NULL) {
		size_t used = (size_t)(nl - log_fuse_buf) + 1;

		*nl = '\0';
		if (nl > log_fuse_buf)
			log_line((int)level, log_fuse_buf);
		memmove(log_fuse_buf, nl + 1, log_fuse_len - used);
		log_fuse_len -= used;
	}
	if (log_fuse_len == sizeof(log_fuse_buf) - 1) {
		log_fuse_buf[log_fuse_len] = '\0';
		log_line((int)level, log_fuse_buf);
		log_fuse_len = 0;
	}
}

void
log_route_fuse(void)
{
	fuse_set_log_func(log_fuse);
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
