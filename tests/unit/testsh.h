/*
 * testsh.h - shell helpers for unit tests that make real images with
 * qemu-img. The including file defines test_dir (a mkdtemp()'d directory)
 * before including this.
 */
#ifndef VC_TESTSH_H
#define VC_TESTSH_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_sh(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), unused));

/* Run a shell command in test_dir, quietly. Returns its exit status. */
static int
test_sh(const char *fmt, ...)
{
	char cmd[1024];
	int n;
	va_list ap;

	n = snprintf(cmd, sizeof(cmd), "cd %s && (", test_dir);
	va_start(ap, fmt);
	vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	strncat(cmd, ") >/dev/null 2>&1", sizeof(cmd) - strlen(cmd) - 1);
	return system(cmd);
}

/*
 * Run "qemu-img VERB ARGS" in test_dir. Creating a LUKS image fails now and
 * then with "Unable to get accurate CPU usage" (QEMU times its PBKDF
 * benchmark in whole milliseconds of CPU time), so try a few times.
 */
static int __attribute__((unused))
test_qemu_img(const char *verb, const char *args)
{
	int r = -1;

	for (int i = 0; i < 20 && r != 0; i++)
		r = test_sh("qemu-img %s%s", verb, args);
	return r;
}

#endif
