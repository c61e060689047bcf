/*
 * tap.h - the little TAP writer every unit test shares: one "ok N - name"
 * or "not ok N - name" line per check; the test exits non-zero when any
 * failed (test_failed).
 */
#ifndef VC_TAP_H
#define VC_TAP_H

#include <stdarg.h>
#include <stdio.h>

static int test_n, test_failed;

static void test_ok(int cond, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), unused));

static void
test_ok(int cond, const char *fmt, ...)
{
	va_list ap;

	test_n++;
	if (!cond)
		test_failed++;
	printf("%sok %d - ", cond ? "" : "not ", test_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static void __attribute__((unused))
test_skip(const char *name, const char *why)
{
	printf("ok %d - %s # SKIP %s\n", ++test_n, name, why);
}

#endif
