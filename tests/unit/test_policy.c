/*
 * test_policy.c - pins the cache mode table of policy.c (TAP output).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "tap.h"

/* What each mode must mean, one row per mode (the reference, section 4). */
static const struct {
	enum vc_cache_mode mode;
	const char *name;
	bool o_direct, write_durable, flush_forwarded, honour_dsync;
	bool native_falls_back;
} test_rows[] = {
	{ VC_CACHE_WRITEBACK, "writeback", false, false, true, true, true },
	{ VC_CACHE_WRITETHROUGH, "writethrough", false, true, true, true, true },
	{ VC_CACHE_NONE, "none", true, false, true, true, false },
	{ VC_CACHE_DIRECTSYNC, "directsync", true, true, true, true, false },
	{ VC_CACHE_UNSAFE, "unsafe", false, false, false, false, true },
};

#define TEST_PER_ROW	10
#define TEST_OTHERS	9	/* test_safety_order + test_names */

#define TEST_NROWS (sizeof(test_rows) / sizeof(test_rows[0]))

static void
test_row(size_t i)
{
	const struct vc_policy *p = policy_get(test_rows[i].mode);
	enum vc_cache_mode m = VC_CACHE_NMODES;
	enum vc_aio_mode aio;
	bool fb;
	char name[128];

/* Two arguments, "%s" and the name: a built name is no format string
 * (-Wformat-security, part of the Debian build's flags). */
#define TEST_NAME(what) \
	"%s", (snprintf(name, sizeof(name), "%s: %s", test_rows[i].name, what), name)
	test_ok(strcmp(p->name, test_rows[i].name) == 0, TEST_NAME("name"));
	test_ok(policy_parse_cache(test_rows[i].name, &m) == 0 &&
	    m == test_rows[i].mode, TEST_NAME("name round trip"));
	test_ok(p->o_direct == test_rows[i].o_direct, TEST_NAME("o_direct"));
	test_ok(p->write_durable == test_rows[i].write_durable,
	    TEST_NAME("write_durable"));
	test_ok(p->flush_forwarded == test_rows[i].flush_forwarded,
	    TEST_NAME("flush_forwarded"));
	test_ok(p->honour_dsync == test_rows[i].honour_dsync,
	    TEST_NAME("honour_dsync"));
	test_ok(p->summary != NULL && p->summary[0] != '\0',
	    TEST_NAME("has a summary"));
	aio = policy_effective_aio(test_rows[i].mode, VC_AIO_NATIVE, &fb);
	test_ok(fb == test_rows[i].native_falls_back &&
	    aio == (fb ? VC_AIO_THREADS : VC_AIO_NATIVE),
	    TEST_NAME(test_rows[i].native_falls_back ?
	    "aio=native falls back to threads" : "aio=native kept"));
	aio = policy_effective_aio(test_rows[i].mode, VC_AIO_IO_URING, &fb);
	test_ok(!fb && aio == VC_AIO_IO_URING, TEST_NAME("aio=io_uring kept"));
	aio = policy_effective_aio(test_rows[i].mode, VC_AIO_THREADS, &fb);
	test_ok(!fb && aio == VC_AIO_THREADS, TEST_NAME("aio=threads kept"));
#undef TEST_NAME
}

static void
test_safety_order(void)
{
	static const enum vc_cache_mode order[] = {
		VC_CACHE_DIRECTSYNC, VC_CACHE_WRITETHROUGH, VC_CACHE_NONE,
		VC_CACHE_WRITEBACK, VC_CACHE_UNSAFE,
	};
	bool ok = true;

	for (size_t i = 1; i < sizeof(order) / sizeof(order[0]); i++)
		if (policy_get(order[i - 1])->safety <=
		    policy_get(order[i])->safety)
			ok = false;
	test_ok(ok, "safety: directsync > writethrough > none > writeback > "
	    "unsafe");
}

static void
test_names(void)
{
	enum vc_cache_mode m = VC_CACHE_NONE;
	enum vc_aio_mode a = VC_AIO_NATIVE;
	static const char *const aio_names[] = { "threads", "native",
	    "io_uring" };
	bool ok = true;

	test_ok(policy_parse_cache("fast", &m) == -EINVAL &&
	    m == VC_CACHE_NONE, "unknown mode: -EINVAL, mode untouched");
	test_ok(policy_parse_cache("None", &m) == -EINVAL,
	    "mode names are case-sensitive");
	test_ok(policy_parse_cache("", &m) == -EINVAL, "empty mode rejected");
	test_ok(strcmp(policy_cache_names(),
	    "writeback, writethrough, none, directsync, unsafe") == 0,
	    "policy_cache_names lists all modes");
	for (unsigned i = 0; i < VC_AIO_NMODES; i++) {
		if (strcmp(policy_aio_name((enum vc_aio_mode)i),
		    aio_names[i]) != 0 ||
		    policy_parse_aio(aio_names[i], &a) != 0 || a != i)
			ok = false;
	}
	test_ok(ok, "aio names round trip");
	a = VC_AIO_NATIVE;
	test_ok(policy_parse_aio("posix", &a) == -EINVAL && a == VC_AIO_NATIVE,
	    "unknown aio: -EINVAL, engine untouched");
	test_ok(strcmp(policy_aio_names(), "threads, native, io_uring") == 0,
	    "policy_aio_names lists all engines");
	test_ok(strcmp(policy_get(VC_CACHE_NMODES)->name, "writeback") == 0,
	    "policy_get of an invalid mode gives writeback, not NULL");
}

int
main(void)
{
	printf("1..%zu\n", TEST_NROWS * TEST_PER_ROW + TEST_OTHERS);
	for (size_t i = 0; i < TEST_NROWS; i++)
		test_row(i);
	test_safety_order();
	test_names();
	return test_failed ? 1 : 0;
}
