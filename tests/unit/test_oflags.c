/*
 * test_oflags.c - open flags as fdinfo shows them, and their names (TAP).
 *
 * Real descriptors opened with known flags: oflags_fdinfo() must see the
 * kernel's bits (O_CLOEXEC, and O_LARGEFILE, which glibc calls 0 on 64-bit
 * machines), and oflags_names() must name each, the access mode first.
 * The file lives under /var/tmp: tmpfs may refuse O_DIRECT.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "oflags.h"
#include "tap.h"

static char test_dir[] = "/var/tmp/vcachefs-oflags.XXXXXX";
static char test_path[sizeof(test_dir) + 16];

/* The names of fd's fdinfo flags, "" after a failure. */
static const char *
test_names(int fd, char *buf, size_t len)
{
	unsigned flags;

	buf[0] = '\0';
	if (fd < 0 || oflags_fdinfo(fd, &flags) < 0)
		return buf;
	return oflags_names(flags, buf, len);
}

/* Whether name is one of the |-separated names of list. */
static int
test_has(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
		if ((p == list || p[-1] == '|') && (p[n] == '\0' || p[n] == '|'))
			return 1;
	return 0;
}

int
main(void)
{
	char buf[256];
	unsigned flags = 0;
	int fd, r;

	if (mkdtemp(test_dir) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	snprintf(test_path, sizeof(test_path), "%s/img", test_dir);
	fd = open(test_path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	r = fd < 0 ? -errno : oflags_fdinfo(fd, &flags);
	test_ok(r == 0 && (flags & O_ACCMODE) == O_RDWR && (flags & O_CLOEXEC),
	    "fdinfo flags of an O_RDWR|O_CLOEXEC descriptor: 0%o (%d)", flags, r);
	test_names(fd, buf, sizeof(buf));
	test_ok(strncmp(buf, "O_RDWR|", 7) == 0 && test_has(buf, "O_CLOEXEC") &&
	    !test_has(buf, "O_DIRECT"), "named first O_RDWR, O_CLOEXEC: %s", buf);
	if (sizeof(long) == 8)
		test_ok(test_has(buf, "O_LARGEFILE"),
		    "64-bit: the kernel's O_LARGEFILE is named: %s", buf);
	if (fd >= 0)
		close(fd);

	fd = open(test_path, O_RDWR | O_DIRECT);
	if (fd < 0) {
		test_skip("O_DIRECT named", "/var/tmp refuses O_DIRECT");
	} else {
		test_names(fd, buf, sizeof(buf));
		test_ok(strncmp(buf, "O_RDWR|", 7) == 0 &&
		    test_has(buf, "O_DIRECT") && !test_has(buf, "O_CLOEXEC"),
		    "O_RDWR|O_DIRECT, no O_CLOEXEC: %s", buf);
		close(fd);
	}

	fd = open(test_path, O_WRONLY | O_APPEND | O_DSYNC);
	test_names(fd, buf, sizeof(buf));
	test_ok(strncmp(buf, "O_WRONLY|", 9) == 0 && test_has(buf, "O_APPEND") &&
	    test_has(buf, "O_DSYNC") && !test_has(buf, "O_SYNC"),
	    "O_WRONLY|O_APPEND|O_DSYNC: %s", buf);
	if (fd >= 0)
		close(fd);

	fd = open(test_path, O_RDONLY | O_SYNC);
	test_names(fd, buf, sizeof(buf));
	test_ok(strncmp(buf, "O_RDONLY|", 9) == 0 && test_has(buf, "O_SYNC") &&
	    !test_has(buf, "O_DSYNC"), "O_SYNC by its own name: %s", buf);
	if (fd >= 0)
		close(fd);

	fd = open(test_path, O_PATH);
	test_names(fd, buf, sizeof(buf));
	test_ok(test_has(buf, "O_PATH"), "an O_PATH handle says so: %s", buf);
	if (fd >= 0)
		close(fd);

	oflags_names(02u | 020000000000u, buf, sizeof(buf));
	test_ok(strcmp(buf, "O_RDWR|020000000000") == 0,
	    "a bit without a name in octal: %s", buf);
	test_ok(oflags_fdinfo(-1, &flags) == -ENOENT,
	    "no such descriptor: -ENOENT");

	unlink(test_path);
	rmdir(test_dir);
	printf("1..%d\n", test_n);
	return test_failed ? 1 : 0;
}
