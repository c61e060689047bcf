/*
 * stats.c - per-image I/O counters and latency histograms (stats.h).
 *
 * Recording is a handful of relaxed atomic adds on the image's own
 * counters and one clock read per request; no lock anywhere. Readers
 * (snapshot) see each counter whole but not all of them at one instant,
 * which is what a monitoring tool needs.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stats.h"

bool stats_disabled;

/* Read the switch once, before any thread exists. */
__attribute__((constructor)) static void
stats_read_env(void)
{
	const char *v = getenv("VCACHEFS_NO_STATS");

	stats_disabled = v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static inline uint64_t
stats_load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void
stats_store(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

void
stats_init(struct vc_stats *s)
{
	memset(s, 0, sizeof(*s));
}

uint64_t
stats_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t
stats_start(void)
{
	if (__builtin_expect(stats_disabled, 0))
		return 0;
	return stats_now();
}

uint64_t
stats_begin(struct vc_stats *s)
{
	int64_t cur, max;

	if (__builtin_expect(stats_disabled, 0))
		return 0;
	cur = __atomic_add_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
	/* A plain load almost always: the CAS only while the peak rises. */
	max = __atomic_load_n(&s->inflight_max, __ATOMIC_RELAXED);
	while (cur > max && !__atomic_compare_exchange_n(&s->inflight_max,
	    &max, cur, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	return stats_now();
}

unsigned
stats_bucket(uint64_t ns)
{
	unsigned e, b;

	if (ns < (1u << VC_HIST_MIN_SHIFT))
		return 0;
	e = 63u - (unsigned)__builtin_clzll(ns);	/* >= VC_HIST_MIN_SHIFT */
	/* VC_HIST_SUB (8) linear steps inside [2^e, 2^(e+1)). */
	b = (e - VC_HIST_MIN_SHIFT) * VC_HIST_SUB +
	    (unsigned)((ns >> (e - 3)) & (VC_HIST_SUB - 1)) + 1;
	return b < VC_HIST_BUCKETS ? b : VC_HIST_BUCKETS - 1;
}

uint64_t
stats_bucket_upper(unsigned bucket)
{
	unsigned e, sub;

	if (bucket == 0)
		return 1u << VC_HIST_MIN_SHIFT;
	if (bucket >= VC_HIST_BUCKETS - 1)
		return UINT64_MAX;
	e = (bucket - 1) / VC_HIST_SUB + VC_HIST_MIN_SHIFT;
	sub = (bucket - 1) % VC_HIST_SUB;
	return (uint64_t)(VC_HIST_SUB + sub + 1) << (e - 3);
}

void
stats_done(struct vc_stats *s, enum vc_stat_op op, ssize_t res,
    uint64_t start)
{
	if (__builtin_expect(stats_disabled, 0))
		return;
	if (res < 0) {
		uint64_t e = (uint64_t)-res;

		stats_add(&s->errors[e < VC_STAT_ERRNO_MAX ? e :
		    VC_STAT_ERRNO_MAX], 1);
	} else {
		stats_add(&s->ops[op], 1);
		if (res > 0)
			stats_add(&s->bytes[op], (uint64_t)res);
	}
	if ((unsigned)op < VC_STAT_NLAT && start != 0) {
		uint64_t now = stats_now();
		uint64_t ns = now > start ? now - start : 0;
		uint64_t max = stats_load(&s->max_ns[op]);

		stats_add(&s->hist[op][stats_bucket(ns)], 1);
		while (ns > max && !__atomic_compare_exchange_n(&s->max_ns[op],
		    &max, ns, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			;
	}
}

void
stats_abort(struct vc_stats *s)
{
	if (__builtin_expect(stats_disabled, 0))
		return;
	__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
}

void
stats_end(struct vc_stats *s, enum vc_stat_op op, ssize_t res, uint64_t start)
{
	if (__builtin_expect(stats_disabled, 0))
		return;
	__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
	stats_done(s, op, res, start);
}

void
stats_snapshot(const struct vc_stats *s, struct vc_stats_snap *out)
{
	for (unsigned i = 0; i < VC_STAT_NOPS; i++) {
		out->ops[i] = stats_load(&s->ops[i]);
		out->bytes[i] = stats_load(&s->bytes[i]);
	}
	out->flush_ignored = stats_load(&s->flush_ignored);
	out->fua_writes = stats_load(&s->fua_writes);
	out->bounced = stats_load(&s->bounced);
	for (unsigned i = 0; i <= VC_STAT_ERRNO_MAX; i++)
		out->errors[i] = stats_load(&s->errors[i]);
	out->inflight = __atomic_load_n(&s->inflight, __ATOMIC_RELAXED);
	out->inflight_max = __atomic_load_n(&s->inflight_max, __ATOMIC_RELAXED);
	for (unsigned l = 0; l < VC_STAT_NLAT; l++) {
		for (unsigned b = 0; b < VC_HIST_BUCKETS; b++)
			out->hist[l][b] = stats_load(&s->hist[l][b]);
		out->max_ns[l] = stats_load(&s->max_ns[l]);
	}
}

void
stats_reset(struct vc_stats *s)
{
	for (unsigned i = 0; i < VC_STAT_NOPS; i++) {
		stats_store(&s->ops[i], 0);
		stats_store(&s->bytes[i], 0);
	}
	stats_store(&s->flush_ignored, 0);
	stats_store(&s->fua_writes, 0);
	stats_store(&s->bounced, 0);
	__atomic_store_n(&s->inflight_max, 0, __ATOMIC_RELAXED);
	for (unsigned i = 0; i <= VC_STAT_ERRNO_MAX; i++)
		stats_store(&s->errors[i], 0);
	for (unsigned l = 0; l < VC_STAT_NLAT; l++) {
		for (unsigned b = 0; b < VC_HIST_BUCKETS; b++)
			stats_store(&s->hist[l][b], 0);
		stats_store(&s->max_ns[l], 0);
	}
}

uint64_t
stats_percentile(const struct vc_stats_snap *snap, unsigned lat, double q)
{
	uint64_t total = 0, want, seen = 0;

	if (lat >= VC_STAT_NLAT)
		return 0;
	for (unsigned b = 0; b < VC_HIST_BUCKETS; b++)
		total += snap->hist[lat][b];
	if (total == 0)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	/* The smallest count that covers fraction q, at least one. */
	want = (uint64_t)(q * (double)total);
	if ((double)want < q * (double)total)
		want++;
	if (want == 0)
		want = 1;
	for (unsigned b = 0; b < VC_HIST_BUCKETS; b++) {
		seen += snap->hist[lat][b];
		if (seen >= want) {
			uint64_t up = stats_bucket_upper(b);

			/* Never above the largest latency recorded. */
			return up < snap->max_ns[lat] || snap->max_ns[lat] == 0 ?
			    up : snap->max_ns[lat];
		}
	}
	return snap->max_ns[lat];
}

const char *
stats_op_name(enum vc_stat_op op)
{
	static const char *const names[VC_STAT_NOPS] = {
		[VC_STAT_READ] = "read",
		[VC_STAT_WRITE] = "write",
		[VC_STAT_FLUSH] = "flush",
		[VC_STAT_FALLOCATE] = "fallocate",
		[VC_STAT_DISCARD] = "discard",
	};

	return (unsigned)op < VC_STAT_NOPS ? names[op] : "?";
}
