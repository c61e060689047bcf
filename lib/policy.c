/*
 * policy.c - the one table of cache modes (see policy.h).
 *
 * Rows follow ../shared/virtual-disk-cache-modes.txt, section 4, and QEMU's
 * cache= option. "unsafe" is writeback with guest flushes dropped.
 */
#include <errno.h>
#include <string.h>

#include "policy.h"

static const struct vc_policy policy_table[VC_CACHE_NMODES] = {
	[VC_CACHE_WRITEBACK] = {
		.name = "writeback", .o_direct = false, .write_durable = false,
		.flush_forwarded = true, .honour_dsync = true, .safety = 1,
		.summary = "host page cache; write acked when cached; flush forwarded",
	},
	[VC_CACHE_WRITETHROUGH] = {
		.name = "writethrough", .o_direct = false, .write_durable = true,
		.flush_forwarded = true, .honour_dsync = true, .safety = 3,
		.summary = "host page cache; write acked when on storage",
	},
	[VC_CACHE_NONE] = {
		.name = "none", .o_direct = true, .write_durable = false,
		.flush_forwarded = true, .honour_dsync = true, .safety = 2,
		.summary = "O_DIRECT; write acked when the device took it; flush forwarded",
	},
	[VC_CACHE_DIRECTSYNC] = {
		.name = "directsync", .o_direct = true, .write_durable = true,
		.flush_forwarded = true, .honour_dsync = true, .safety = 4,
		.summary = "O_DIRECT; write acked when on storage",
	},
	[VC_CACHE_UNSAFE] = {
		.name = "unsafe", .o_direct = false, .write_durable = false,
		.flush_forwarded = false, .honour_dsync = false, .safety = 0,
		.summary = "host page cache; flushes ignored (data loss on host crash)",
	},
};

static const char *const policy_aio_table[VC_AIO_NMODES] = {
	[VC_AIO_THREADS] = "threads",
	[VC_AIO_NATIVE] = "native",
	[VC_AIO_IO_URING] = "io_uring",
};

const struct vc_policy *
policy_get(enum vc_cache_mode mode)
{
	if ((unsigned)mode >= VC_CACHE_NMODES)
		mode = VC_CACHE_WRITEBACK;
	return &policy_table[mode];
}

int
policy_parse_cache(const char *name, enum vc_cache_mode *mode)
{
	for (unsigned i = 0; i < VC_CACHE_NMODES; i++) {
		if (strcmp(name, policy_table[i].name) == 0) {
			*mode = (enum vc_cache_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *
policy_cache_names(void)
{
	return "writeback, writethrough, none, directsync, unsafe";
}

const char *
policy_aio_name(enum vc_aio_mode aio)
{
	if ((unsigned)aio >= VC_AIO_NMODES)
		aio = VC_AIO_THREADS;
	return policy_aio_table[aio];
}

int
policy_parse_aio(const char *name, enum vc_aio_mode *aio)
{
	for (unsigned i = 0; i < VC_AIO_NMODES; i++) {
		if (strcmp(name, policy_aio_table[i]) == 0) {
			*aio = (enum vc_aio_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *
policy_aio_names(void)
{
	return "threads, native, io_uring";
}

enum vc_aio_mode
policy_effective_aio(enum vc_cache_mode mode, enum vc_aio_mode want,
    bool *fellback)
{
	bool fb = want == VC_AIO_NATIVE && !policy_get(mode)->o_direct;

	if (fellback)
		*fellback = fb;
	return fb ? VC_AIO_THREADS : want;
}
