/*
 * stop.c - the signal thread and the stop policy (see stop.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "mounts.h"
#include "reload.h"
#include "stop.h"
#include "takeover.h"

#define FUSECTL_DIR "/sys/fs/fuse/connections"

static pthread_t stop_thread;
static struct vc_fs *stop_fs;
static unsigned stop_conn;
static bool stop_running;
static int stop_abort_fd = -1;	/* the connection's abort file, or -1 */
static volatile sig_atomic_t stop_was_forced;
/* Set before stop_finish() wakes the thread: any other SIGUSR1 is ignored. */
static volatile sig_atomic_t stop_finishing;
/*
 * Under a service manager a stop job cannot be taken back: a refused stop
 * stays pending and completes once no image is open (stop_retry()).
 * Only the signal thread touches these.
 */
static bool stop_pending;
static bool stop_retry_warned;

/* At most this many holders are named after each open image. */
#define STOP_HOLDERS_SHOWN	4

/* A descriptor of another process on a file of the mount. */
struct stop_holder {
	pid_t pid;
	char comm[64];
	char what[32];			/* "fd N" */
	char *path;			/* owned */
};

/* The open images and their holders, for the refusal line. */
struct stop_open {
	char list[1536];
	const char *mountpoint;
	struct stop_holder *h;		/* owned */
	size_t nh, caph;
};

/* mounts_holders() callback: keep the descriptors, not cwd or root. */
static void
stop_add_holder(pid_t pid, const char *comm, const char *what,
    const char *path, void *arg)
{
	struct stop_open *so = arg;
	struct stop_holder *h;

	if (strncmp(what, "fd ", 3) != 0)
		return;
	if (so->nh == so->caph) {
		size_t cap = so->caph ? 2 * so->caph : 16;

		h = realloc(so->h, cap * sizeof(*h));
		if (h == NULL)
			return;	/* the line then names fewer holders */
		so->h = h;
		so->caph = cap;
	}
	h = &so->h[so->nh];
	h->path = strdup(path);
	if (h->path == NULL)
		return;
	h->pid = pid;
	snprintf(h->comm, sizeof(h->comm), "%s", comm);
	snprintf(h->what, sizeof(h->what), "%s", what);
	so->nh++;
}

static void
stop_open_free(struct stop_open *so)
{
	for (size_t i = 0; i < so->nh; i++)
		free(so->h[i].path);
	free(so->h);
}

/* Whether path (as /proc shows it) is relpath below the mount point. */
static bool
stop_is_image(const char *path, const char *mnt, const char *relpath)
{
	size_t n = strlen(mnt);

	if (relpath[0] == '\0' || strncmp(path, mnt, n) != 0)
		return false;
	if (!(n == 1 && mnt[0] == '/')) {
		if (path[n] != '/')
			return false;
		n++;
	}
	return strcmp(path + n, relpath) == 0;
}

/* Append "NAME (pid P (COMM) fd N, ...)" for one open image. */
static void
stop_name_open(const struct vc_image *img, void *arg)
{
	struct stop_open *so = arg;
	size_t cap = sizeof(so->list) - 100, len = strlen(so->list);
	unsigned shown = 0, more = 0;

	if (len >= cap)
		return;
	len += snprintf(so->list + len, cap - len, "%s%s", len ? ", " : "",
	    img->relpath);
	for (size_t i = 0; i < so->nh && len < cap; i++) {
		const struct stop_holder *h = &so->h[i];

		if (!stop_is_image(h->path, so->mountpoint, img->relpath))
			continue;
		if (shown == STOP_HOLDERS_SHOWN) {
			more++;
			continue;
		}
		len += snprintf(so->list + len, cap - len, "%spid %d (%s) %s",
		    shown ? ", " : " (held by ", (int)h->pid, h->comm, h->what);
		shown++;
	}
	if (more > 0 && len < cap)
		len += snprintf(so->list + len, cap - len, " and %u more", more);
	if (shown > 0 && len < cap)
		snprintf(so->list + len, cap - len, ")");
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

/* The mount is being, or was, handed to a new daemon: leave it be. */
static void
stop_defer(const char *what)
{
	static bool said;

	if (said)
		return;
	said = true;
	log_warnx("%s: a takeover is under way or done; not unmounting %s "
	    "(its connection is, or may become, the new daemon's; stop that "
	    "one instead)", what, stop_fs->mountpoint);
}

/* One stop request, so the holders found in /proc. Returns true when the
 * session is ending. */
static bool
stop_decide(int sig, double *refused_at, struct stop_open *so)
{
	struct vc_fs *fs = stop_fs;
	unsigned n = registry_foreach_open(&fs->registry, stop_name_open, so);
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
		    "signal again within %d s to force a lazy unmount", n,
		    so->list, VC_STOP_FORCE_WINDOW);
	}
	*refused_at = now;
	if (notify_active()) {
		if (!stop_pending)
			log_info("stop pending (service manager): %s is "
			    "unmounted once no image is open", fs->mountpoint);
		stop_pending = true;
		if (n > 0)
			notify_status("stop pending: %u image(s) open: %s", n,
			    so->list);
		else
			notify_status("stop pending: unmounting %s failed "
			    "(busy)", fs->mountpoint);
	}
	return false;
}

static void
stop_count_open(const struct vc_image *img, void *arg)
{
	(void)img;
	(void)arg;
}

/*
 * A pending stop, tried again: true once unmounted. Nothing tells this
 * thread of a last close, so it asks once a second; a second more at
 * the end of a stop costs nothing.
 */
static bool
stop_retry(void)
{
	struct vc_fs *fs = stop_fs;
	int err;

	if (registry_foreach_open(&fs->registry, stop_count_open, NULL) > 0)
		return false;
	if (!takeover_stop_begin()) {
		stop_defer("stop pending");
		return false;
	}
	if (umount2(fs->mountpoint, 0) == 0 || errno == EINVAL) {
		log_info("stop pending: no image open any more, unmounted %s",
		    fs->mountpoint);
		fuse_session_exit(fs->se);
		takeover_stop_end();
		return true;
	}
	err = errno;
	takeover_stop_end();
	if (!stop_retry_warned)
		log_warnc(err, "stop pending: unmount %s (trying again every "
		    "second)", fs->mountpoint);
	stop_retry_warned = true;
	return false;
}

static bool
stop_request(int sig, double *refused_at)
{
	struct stop_open so = { .list = "", .mountpoint = stop_fs->mountpoint };
	bool ending;
	int r;

	/* Before the registry is locked: the scan reads all of /proc. */
	r = mounts_holders(stop_fs->mountpoint, stop_add_holder, &so);
	if (r < 0)
		log_warnc(r, "cannot name the processes holding images: /proc");
	if (takeover_stop_begin()) {
		ending = stop_decide(sig, refused_at, &so);
		takeover_stop_end();
	} else {
		stop_defer(strsignal(sig));
		ending = false;
	}
	stop_open_free(&so);
	return ending;
}

static void *
stop_main(void *arg)
{
	sigset_t set;
	double refused_at = 0;
	int sig;

	stop_signal_set(&set);
	for (;;) {
		if (stop_pending) {
			struct timespec second = { 1, 0 };

			sig = sigtimedwait(&set, NULL, &second);
			if (sig == -1) {
				if (errno == EAGAIN && stop_retry())
					break;
				continue;
			}
		} else if (sigwait(&set, &sig) != 0) {
			continue;
		}
		if (sig == SIGUSR1) {
			if (stop_finishing)
				break;	/* stop_finish(): the loop is over */
			continue;
		}
		if (sig == SIGHUP) {
			/* Logs each error, switch and its summary itself. */
			log_info("SIGHUP: reloading %s", stop_fs->reload.path);
			notify_reloading();
			notify_reloaded(reload_config(&stop_fs->reload, NULL,
			    NULL, NULL, 0));
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
