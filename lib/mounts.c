/*
 * mounts.c - /proc/self/mountinfo and /proc/PID/{fd,cwd,root} scans (see mounts.h).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mounts.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void
mounts_unescape(char *s)
{
	char *d = s;

	while (*s != '\0') {
		if (s[0] == '\\' && isdigit((unsigned char)s[1]) &&
		    isdigit((unsigned char)s[2]) && isdigit((unsigned char)s[3])) {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else
			*d++ = *s++;
	}
	*d = '\0';
}

int
mounts_find(const char *path, struct vc_mountent *ent)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (f == NULL)
		return -errno;
	while (getline(&line, &cap, f) != -1) {
		char mnt[PATH_MAX], fstype[64], source[PATH_MAX];
		unsigned maj, min;
		char *sep;

		/* id parent maj:min root mountpoint opts ... - fstype source super */
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mnt) != 3)
			continue;
		sep = strstr(line, " - ");
		if (sep == NULL || sscanf(sep + 3, "%63s %4095s", fstype, source) != 2)
			continue;
		mounts_unescape(mnt);
		if (strcmp(mnt, path) != 0)
			continue;
		/* Later lines are mounted on top: keep the last match. */
		found = 1;
		mounts_unescape(source);
		snprintf(ent->fstype, sizeof(ent->fstype), "%s", fstype);
		snprintf(ent->source, sizeof(ent->source), "%s", source);
		ent->major = maj;
		ent->minor = min;
	}
	free(line);
	fclose(f);
	return found;
}

static int
mounts_under(const char *target, const char *dir, size_t dlen)
{
	if (strncmp(target, dir, dlen) != 0)
		return 0;
	return target[dlen] == '\0' || target[dlen] == '/' ||
	    (dlen == 1 && dir[0] == '/');
}

/* Report link (a /proc/PID/... symlink) to fn if it points at or below dir. */
static int
mounts_check_link(const char *link, const char *dir, size_t dlen, pid_t pid,
    const char *comm, const char *what,
    void (*fn)(pid_t, const char *, const char *, const char *, void *),
    void *arg)
{
	char target[PATH_MAX];
	ssize_t n = readlink(link, target, sizeof(target) - 1);

	if (n <= 0)
		return 0;
	target[n] = '\0';
	if (target[0] != '/' || !mounts_under(target, dir, dlen))
		return 0;
	if (fn != NULL)
		fn(pid, comm, what, target, arg);
	return 1;
}

int
mounts_holders(const char *dir,
    void (*fn)(pid_t pid, const char *comm, const char *what,
	const char *path, void *arg),
    void *arg)
{
	DIR *proc = opendir("/proc");
	struct dirent *pe;
	size_t dlen = strlen(dir);
	pid_t self = getpid();
	int count = 0;

	if (proc == NULL)
		return -errno;
	while ((pe = readdir(proc)) != NULL) {
		char fddir[64], comm[64] = "?", link[PATH_MAX + 80], what[32];
		pid_t pid = (pid_t)strtol(pe->d_name, NULL, 10);
		struct dirent *fe;
		DIR *fds;
		FILE *cf;

		if (pid <= 0 || pid == self)
			continue;
		snprintf(fddir, sizeof(fddir), "/proc/%d/fd", (int)pid);
		fds = opendir(fddir);
		if (fds == NULL)
			continue;	/* gone, or a kernel thread */
		snprintf(link, sizeof(link), "/proc/%d/comm", (int)pid);
		if ((cf = fopen(link, "re")) != NULL) {
			if (fgets(comm, sizeof(comm), cf) != NULL)
				comm[strcspn(comm, "\n")] = '\0';
			fclose(cf);
		}
		/*
		 * A working or root directory inside dir bypasses the mount
		 * just as an open file does: its lookups start below it.
		 */
		snprintf(link, sizeof(link), "/proc/%d/cwd", (int)pid);
		count += mounts_check_link(link, dir, dlen, pid, comm, "cwd",
		    fn, arg);
		snprintf(link, sizeof(link), "/proc/%d/root", (int)pid);
		count += mounts_check_link(link, dir, dlen, pid, comm, "root",
		    fn, arg);
		while ((fe = readdir(fds)) != NULL) {
			if (fe->d_name[0] == '.')
				continue;
			snprintf(link, sizeof(link), "%s/%s", fddir, fe->d_name);
			snprintf(what, sizeof(what), "fd %.20s", fe->d_name);
			count += mounts_check_link(link, dir, dlen, pid, comm,
			    what, fn, arg);
		}
		closedir(fds);
	}
	closedir(proc);
	return count;
}

int
mounts_abspath(const char *path, char *out, size_t len)
{
	char cwd[PATH_MAX];
	size_t n;

	if (path[0] == '/') {
		if (snprintf(out, len, "%s", path) >= (int)len)
			return -ENAMETOOLONG;
	} else {
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return -errno;
		if (snprintf(out, len, "%s/%s", strcmp(cwd, "/") ? cwd : "",
		    path) >= (int)len)
			return -ENAMETOOLONG;
	}
	/* Drop trailing slashes and "/." so it matches mountinfo. */
	n = strlen(out);
	while (n > 1 && (out[n - 1] == '/' ||
	    (n > 2 && out[n - 1] == '.' && out[n - 2] == '/'))) {
		out[--n] = '\0';
	}
	return 0;
}
