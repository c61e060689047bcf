/*
 * policy.h - the cache modes of vcachefs and what each one means.
 *
 * The five modes live in one const table in policy.c. Every other part of
 * vcachefs asks that table through the fields below and never compares a
 * mode by name or number.
 */
#ifndef VC_POLICY_H
#define VC_POLICY_H

#include <stdbool.h>

enum vc_cache_mode {
	VC_CACHE_WRITEBACK = 0,	/* the default, as in the reference */
	VC_CACHE_WRITETHROUGH,
	VC_CACHE_NONE,
	VC_CACHE_DIRECTSYNC,
	VC_CACHE_UNSAFE,
	VC_CACHE_NMODES
};

enum vc_aio_mode {
	VC_AIO_THREADS = 0,	/* the default */
	VC_AIO_NATIVE,
	VC_AIO_IO_URING,
	VC_AIO_NMODES
};

/* One row per cache mode. */
struct vc_policy {
	const char *name;	/* as written in the config file */
	bool o_direct;		/* backing I/O bypasses the host page cache */
	bool write_durable;	/* a write is acknowledged once on stable storage */
	bool flush_forwarded;	/* a guest FSYNC reaches the backing store */
	bool honour_dsync;	/* an O_DSYNC/FUA write from the client is made durable */
	unsigned safety;	/* higher is safer; orders modes for inheritance */
	const char *summary;	/* one line for --help, logs and --check-config */
};

/* The row for a mode; never NULL for a valid mode. */
const struct vc_policy *policy_get(enum vc_cache_mode mode);

/* Parse a mode name. Returns 0 and sets *mode, or -EINVAL. */
int policy_parse_cache(const char *name, enum vc_cache_mode *mode);

/* "writeback|writethrough|none|directsync|unsafe", for error messages. */
const char *policy_cache_names(void);

/* aio names: "threads", "native", "io_uring". */
const char *policy_aio_name(enum vc_aio_mode aio);
int policy_parse_aio(const char *name, enum vc_aio_mode *aio);
const char *policy_aio_names(void);

/*
 * The aio engine an image really gets: native needs O_DIRECT (reference
 * section 6), so with a buffered cache mode it falls back to threads.
 * Returns the effective engine; *fellback tells whether a fallback happened.
 */
enum vc_aio_mode policy_effective_aio(enum vc_cache_mode mode,
    enum vc_aio_mode want, bool *fellback);

#endif
