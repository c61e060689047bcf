/*
 * preflight.c - refuse to mount where it would go wrong (preflight.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mounts.h"
#include "preflight.h"

#define PREFLIGHT_PROBE_MS 3000

enum preflight_state { PF_ALIVE, PF_STALE, PF_HUNG };

/*
 * stat the mount root in a child, so a hung daemon cannot hang us:
 * an error (ENOTCONN, or ECONNABORTED after FUSE over io_uring) means
 * its daemon died, a timeout means it does not answer.
 */
static enum preflight_state
preflight_probe(const char *path)
{
	struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };
	int status, waited = 0;
	pid_t pid = fork();

	if (pid == 0) {
		struct stat st;

		if (stat(path, &st) == 0)
			_exit(0);
		_exit(errno == ENOTCONN ? 2 : 3);
	}
	if (pid < 0)
		return PF_HUNG;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (waited >= PREFLIGHT_PROBE_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return PF_HUNG;
		}
		nanosleep(&ts, NULL);
		waited += 50;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return PF_ALIVE;
	return PF_STALE;
}

int
preflight_mountpoint(const char *arg, bool force, char *real)
{
	char abs[PATH_MAX];
	struct vc_mountent ent;
	struct stat st;
	int r;

	if ((r = mounts_abspath(arg, abs, sizeof(abs))) < 0) {
		log_warnc(r, "%s", arg);
		return -1;
	}
	r = mounts_find(abs, &ent);
	if (r > 0 && strncmp(ent.fstype, "fuse", 4) == 0) {
		enum preflight_state s = preflight_probe(abs);

		if (s == PF_ALIVE) {
			log_warnx("%s: already mounted (%s from %s); stop that "
			    "daemon first", abs, ent.fstype, ent.source);
			return -1;
		}
		if (!force) {
			log_warnx("%s: stale %s mount (its daemon %s); run "
			    "'fusermount3 -uz %s' or start with --force", abs,
			    ent.fstype, s == PF_HUNG ? "does not answer" : "is gone",
			    abs);
			return -1;
		}
		if (umount2(abs, MNT_DETACH) == -1) {
			log_warn("%s: lazy unmount of the stale mount", abs);
			return -1;
		}
		log_info("%s: lazily unmounted a stale %s mount (--force)", abs,
		    ent.fstype);
	}
	if (realpath(abs, real) == NULL) {
		log_warn("mountpoint %s", abs);
		return -1;
	}
	if (stat(real, &st) == -1) {
		log_warn("mountpoint %s", real);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_warnx("mountpoint %s: not a directory", real);
		return -1;
	}
	return 0;
}

int
preflight_source(const char *arg, char *real)
{
	struct stat st;

	if (realpath(arg, real) == NULL || stat(real, &st) == -1) {
		log_warn("source %s", arg);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_warnx("source %s: not a directory", real);
		return -1;
	}
	if (strchr(real, ',') != NULL) {
		log_warnx("source %s: a comma in the path cannot be passed as "
		    "a mount option", real);
		return -1;
	}
	return 0;
}

struct preflight_holders {
	char list[512];
	int shown;
};

static void
preflight_holder(pid_t pid, const char *comm, const char *what,
    const char *path, void *arg)
{
	struct preflight_holders *h = arg;
	size_t len = strlen(h->list);

	if (h->shown++ >= 4)
		return;
	snprintf(h->list + len, sizeof(h->list) - len, "%spid %d (%s) %s %s",
	    len ? ", " : "", (int)pid, comm, what, path);
}

int
preflight_holders(const char *dir, bool force)
{
	struct preflight_holders h = { .list = "", .shown = 0 };
	int n = mounts_holders(dir, preflight_holder, &h);

	if (n <= 0)
		return 0;
	if (force) {
		log_warnx("%s: %d open file(s), working or root director(ies) "
		    "of other processes will bypass the mount (--force): %s%s",
		    dir, n, h.list, h.shown > 4 ? ", ..." : "");
		return 0;
	}
	log_warnx("%s: %d open file(s), working or root director(ies) of "
	    "other processes would bypass the mount: %s%s; stop them or use "
	    "--force", dir, n, h.list, h.shown > 4 ? ", ..." : "");
	return -1;
}

/* user_allow_other in /etc/fuse.conf lets non-root users ask for allow_other. */
static bool
preflight_user_allow_other(void)
{
	FILE *f = fopen("/etc/fuse.conf", "re");
	char line[256];
	bool ok = false;

	if (f == NULL)
		return false;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p = line + strspn(line, " \t");

		if (strncmp(p, "user_allow_other", 16) == 0)
			ok = true;
	}
	fclose(f);
	return ok;
}

int
preflight_fuse(bool allow_other)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd == -1) {
		log_warn("cannot open /dev/fuse (is the fuse module loaded, "
		    "and /dev/fuse present in this container?)");
		return -1;
	}
	close(fd);
	if (allow_other && geteuid() != 0 && !preflight_user_allow_other()) {
		log_warnx("-o allow_other needs root, or user_allow_other in "
		    "/etc/fuse.conf");
		return -1;
	}
	return 0;
}
