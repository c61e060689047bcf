/*
 * oflags.c - open flags by name (see oflags.h).
 *
 * The kernel's own values, from <asm/fcntl.h>, not glibc's: glibc defines
 * O_LARGEFILE as 0 on 64-bit machines, yet fdinfo shows the bit the kernel
 * sets there. That header clashes with <fcntl.h>, so this file keeps to
 * stdio.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <asm/fcntl.h>

#include "oflags.h"

/* In bit order; O_SYNC before the O_DSYNC it contains. */
static const struct { unsigned bits; const char *name; } oflags_table[] = {
	{ O_APPEND, "O_APPEND" },
	{ O_NONBLOCK, "O_NONBLOCK" },
	{ O_SYNC, "O_SYNC" },
	{ O_DSYNC, "O_DSYNC" },
	{ FASYNC, "O_ASYNC" },
	{ O_DIRECT, "O_DIRECT" },
	{ O_LARGEFILE, "O_LARGEFILE" },
	{ O_DIRECTORY, "O_DIRECTORY" },
	{ O_NOFOLLOW, "O_NOFOLLOW" },
	{ O_NOATIME, "O_NOATIME" },
	{ O_CLOEXEC, "O_CLOEXEC" },
	{ O_PATH, "O_PATH" },
};

int
oflags_fdinfo(int fd, unsigned *flags)
{
	char path[64], line[128];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (f == NULL)
		return -errno;
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = sscanf(line, "flags: %o", flags) == 1;
	fclose(f);
	return found ? 0 : -ENODATA;
}

char *
oflags_names(unsigned flags, char *buf, size_t len)
{
	static const char *const acc[] = { "O_RDONLY", "O_WRONLY", "O_RDWR",
	    "O_ACCMODE" };
	size_t n;

	n = (size_t)snprintf(buf, len, "%s", acc[flags & O_ACCMODE]);
	flags &= ~(unsigned)O_ACCMODE;
	for (size_t i = 0; i < sizeof(oflags_table) / sizeof(oflags_table[0]);
	    i++) {
		unsigned b = oflags_table[i].bits;

		if ((flags & b) != b || n >= len)
			continue;
		n += (size_t)snprintf(buf + n, len - n, "|%s",
		    oflags_table[i].name);
		flags &= ~b;
	}
	if (flags != 0 && n < len)
		snprintf(buf + n, len - n, "|0%o", flags);
	return buf;
}
