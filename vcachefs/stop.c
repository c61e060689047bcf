/*
 * stop.c - the signal thread and the stop policy (see stop.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "reload.h"
#include "stop.h"

#define FUSECTL_DIR "/sys/fs/fuse/connections"

static pthread_t stop_thread;
static struct vc_fs *stop_fs;
static unsigned stop_conn;
static bool stop_running;
static int stop_abort_fd = -1;	/* the connection's abort file, or -1 */
static volatile sig_atomic_t stop_was_forced;
/* Set before stop_finish() wakes the thread: any other SIGUSR1 is ignored. */
static volatile sig_atomic_t stop_finishing;

static void
stop_name_open(const struct vc_image *img, void *arg)
{
	char *list = arg;
	size_t len = strlen(list);

	if (len < 900)
		snprintf(list + len, 1024 - len, "%s%s", len ? ", " : "",
		    img->relpath);
}

static void
stop_abort_path(char *path, size_t len)
{
	snprintf(path, len, FUSECTL_DIR "/%u/abort", stop_conn);
}

/* Abort the FUSE connection so the workers leave their reads. */
static void
stop_abort_conn(void)
{
	char path[128];
	int fd = stop_abort_fd;

	if (stop_conn == 0)
		return;
	stop_abort_path(path, sizeof(path));
	if (fd == -1) {
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd == -1 && errno == ENOENT &&
		    mount("fusectl", FUSECTL_DIR, "fusectl", 0, NULL) == 0)
			fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd == -1) {
			log_warn("%s", path);
			return;
		}
	}
	if (write(fd, "1", 1) != 1)
		log_warn("%s", path);
	if (fd != stop_abort_fd)
		close(fd);
}

static double
stop_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One stop request. Returns true when the session is ending. */
static bool
stop_request(int sig, double *refused_at)
{
	struct vc_fs *fs = stop_fs;
	char list[1024] = "";
	unsigned n = registry_foreach_open(&fs->registry, stop_name_open, list);
	double now = stop_now();

	if (*refused_at > 0 && now - *refused_at <= VC_STOP_FORCE_WINDOW) {
		log_warnx("%s again within %d s: forced stop, lazy unmount of "
		    "%s; %u open image(s) lose their disk", strsignal(sig),
		    VC_STOP_FORCE_WINDOW, fs->mountpoint, n);
		stop_was_forced = 1;
		itable_syncfs(&fs->itable);
		if (umount2(fs->mountpoint, MNT_DETACH) == -1 && errno != EINVAL)
			log_warn("lazy unmount %s", fs->mountpoint);
		fuse_session_exit(fs->se);
		stop_abort_conn();
		return true;
	}
	if (n == 0) {
		log_info("%s: no image open, unmounting %s", strsignal(sig),
		    fs->mountpoint);
		if (umount2(fs->mountpoint, 0) == 0 || errno == EINVAL) {
			fuse_session_exit(fs->se);
			return true;
		}
		log_warn("refusing to stop: unmount %s", fs->mountpoint);
	} else {
		log_warnx("refusing to stop: %u image(s) open: %s; send the "
		    "signal again within %d s to force a lazy unmount", n, list,
		    VC_STOP_FORCE_WINDOW);
	}
	*refused_at = now;
	return false;
}

static void *
stop_main(void *arg)
{
	sigset_t set;
	double refused_at = 0;
	int sig;

	stop_signal_set(&set);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGUSR1) {
			if (stop_finishing)
				break;	/* stop_finish(): the loop is over */
			continue;
		}
		if (sig == SIGHUP) {
			/* Logs each error, switch and its summary itself. */
			log_info("SIGHUP: reloading %s", stop_fs->reload.path);
			reload_config(&stop_fs->reload, NULL, NULL, NULL, 0);
			continue;
		}
		if (stop_request(sig, &refused_at))
			break;
	}
	return NULL;
}

void
stop_signal_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);	/* stop_finish() wakes the thread with it */
}

int
stop_start(struct vc_fs *fs, unsigned conn)
{
	int err;

	stop_fs = fs;
	stop_conn = conn;
	/*
	 * Open now where fusectl is mounted: a forced stop may come when
	 * every descriptor is taken, and without the abort it would hang.
	 */
	if (conn != 0) {
		char path[128];

		stop_abort_path(path, sizeof(path));
		stop_abort_fd = open(path, O_WRONLY | O_CLOEXEC);
	}
	err = pthread_create(&stop_thread, NULL, stop_main, NULL);
	if (err != 0) {
		if (stop_abort_fd != -1)
			close(stop_abort_fd);
		stop_abort_fd = -1;
		return -err;
	}
	stop_running = true;
	return 0;
}

void
stop_finish(void)
{
	if (!stop_running)
		return;
	/* Harmless if the thread already left after a stop request. */
	stop_finishing = 1;
	pthread_kill(stop_thread, SIGUSR1);
	pthread_join(stop_thread, NULL);
	stop_running = false;
	if (stop_abort_fd != -1)
		close(stop_abort_fd);
	stop_abort_fd = -1;
}

bool
stop_forced(void)
{
	return stop_was_forced != 0;
}
