/*
 * notify.c - sd_notify(3) messages for a service manager (see notify.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mounts.h"
#include "notify.h"

#define NOTIFY_FUSE_MAGIC	0x65735546	/* FUSE_SUPER_MAGIC */

/* Copies: the thread is detached and may outlive main()'s buffers. */
static char notify_mnt[PATH_MAX];
static char notify_ready_status[PATH_MAX + 64];
static unsigned notify_conn;
static pthread_mutex_t notify_lock = PTHREAD_MUTEX_INITIALIZER;
static bool notify_is_stopping;		/* protected by notify_lock */
static bool notify_is_ready;		/* protected by notify_lock */

bool
notify_active(void)
{
	const char *s = getenv("NOTIFY_SOCKET");

	return s != NULL && s[0] != '\0';
}

/* Send one message; a failure is logged, never fatal. */
static void
notify_send(const char *msg)
{
	int r = sd_notify(0, msg);

	if (r < 0)
		log_warnc(r, "sd_notify to $NOTIFY_SOCKET");
}

/* 1 when the mount point is our mount and its root answered, 0 if not yet. */
static int
notify_mount_answers(void)
{
	struct vc_mountent ent;
	struct statfs sfs;
	struct stat st;

	if (mounts_find(notify_mnt, &ent) <= 0 ||
	    strcmp(ent.fstype, "fuse.vcachefs") != 0 ||
	    (notify_conn != 0 && ent.minor != notify_conn))
		return 0;
	/* Both block until the session loop has answered INIT and GETATTR. */
	if (statfs(notify_mnt, &sfs) == -1 || sfs.f_type != NOTIFY_FUSE_MAGIC ||
	    stat(notify_mnt, &st) == -1)
		return 0;
	return notify_conn == 0 || (major(st.st_dev) == 0 &&
	    minor(st.st_dev) == notify_conn);
}

static void *
notify_ready_main(void *arg)
{
	struct timespec pause = { 0, 20 * 1000 * 1000 };
	char msg[sizeof(notify_ready_status) + 64];
	unsigned tries;

	(void)arg;
	/* The mount is in place before the loop starts: this rarely loops. */
	for (tries = 0; notify_mount_answers() != 1; tries++) {
		pthread_mutex_lock(&notify_lock);
		bool stopping = notify_is_stopping;
		pthread_mutex_unlock(&notify_lock);
		if (stopping)
			return NULL;
		if (tries == 250)
			log_warnx("readiness: %s does not answer as a vcachefs "
			    "mount yet; READY=1 waits", notify_mnt);
		nanosleep(&pause, NULL);
	}
	snprintf(msg, sizeof(msg), "READY=1\nMAINPID=%d\nSTATUS=%s",
	    (int)getpid(), notify_ready_status);
	pthread_mutex_lock(&notify_lock);
	if (!notify_is_stopping) {
		notify_send(msg);
		notify_is_ready = true;
		log_debug("readiness: %s answers, READY=1 sent", notify_mnt);
	}
	pthread_mutex_unlock(&notify_lock);
	return NULL;
}

int
notify_ready_start(const char *mountpoint, unsigned conn, const char *status)
{
	pthread_attr_t attr;
	pthread_t t;
	int err;

	if (!notify_active())
		return 0;
	snprintf(notify_mnt, sizeof(notify_mnt), "%s", mountpoint);
	snprintf(notify_ready_status, sizeof(notify_ready_status), "%s", status);
	notify_conn = conn;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&t, &attr, notify_ready_main, NULL);
	pthread_attr_destroy(&attr);
	return -err;
}

void
notify_status(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	int n;

	if (!notify_active())
		return;
	n = snprintf(msg, sizeof(msg), "STATUS=");
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);
	/* One line: a newline would start another assignment. */
	for (char *p = msg; *p != '\0'; p++)
		if (*p == '\n')
			*p = ' ';
	notify_send(msg);
}

static unsigned long long
notify_monotonic_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000;
}

void
notify_reloading(void)
{
	char msg[128];

	if (!notify_active())
		return;
	/* MONOTONIC_USEC: newer systemd matches the reload by it. */
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu\n"
	    "STATUS=reloading the configuration", notify_monotonic_usec());
	/* Before READY=1 (a SIGHUP during start-up) it would lie. */
	pthread_mutex_lock(&notify_lock);
	if (notify_is_ready && !notify_is_stopping)
		notify_send(msg);
	pthread_mutex_unlock(&notify_lock);
}

void
notify_reloaded(int result)
{
	char msg[sizeof(notify_ready_status) + 128];

	if (!notify_active())
		return;
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s; %s",
	    notify_ready_status, result == 0 ? "configuration reloaded" :
	    "reload rejected, the old configuration stays");
	pthread_mutex_lock(&notify_lock);
	if (notify_is_ready && !notify_is_stopping)
		notify_send(msg);
	pthread_mutex_unlock(&notify_lock);
}

void
notify_stopping(const char *status)
{
	char msg[512];

	if (!notify_active())
		return;
	snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", status);
	pthread_mutex_lock(&notify_lock);
	if (!notify_is_stopping)
		notify_send(msg);
	notify_is_stopping = true;
	pthread_mutex_unlock(&notify_lock);
}
