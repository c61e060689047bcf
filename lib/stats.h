/*
 * stats.h - per-image I/O counters and latency histograms.
 *
 * Counted where the I/O happens (lib/io.c, lib/uring.c, the pool), on
 * every engine and both FUSE transports, with relaxed atomic adds: no lock
 * on the hot path. Latencies go into log-bucketed histograms (a fixed
 * number of buckets per power of two of nanoseconds), so percentiles cost
 * nothing to record and are read off the buckets. A snapshot is a plain
 * copy for the control socket (vcachefsctl stats/top).
 */
#ifndef VC_STATS_H
#define VC_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum vc_stat_op {
	VC_STAT_READ,
	VC_STAT_WRITE,
	VC_STAT_FLUSH,		/* a guest flush forwarded to the store */
	VC_STAT_FALLOCATE,
	VC_STAT_DISCARD,	/* fallocate with FALLOC_FL_PUNCH_HOLE */
	VC_STAT_NOPS
};
#define VC_STAT_NLAT	3	/* histograms: read, write, flush */

#define VC_HIST_SUB	8	/* buckets per power of two */
#define VC_HIST_MIN_SHIFT 8	/* below 256 ns: bucket 0 */
#define VC_HIST_BUCKETS	(VC_HIST_SUB * 32)	/* up to about 2^40 ns */
#define VC_STAT_ERRNO_MAX 134	/* errno values counted one by one; more: the last */

struct vc_stats {		/* all fields: relaxed atomics */
	uint64_t ops[VC_STAT_NOPS];
	uint64_t bytes[VC_STAT_NOPS];
	uint64_t flush_ignored;		/* dropped by the mode (unsafe) */
	uint64_t fua_writes;		/* writes the client asked to be durable */
	uint64_t bounced;		/* unaligned O_DIRECT requests served
					 * through a bounce buffer */
	uint64_t errors[VC_STAT_ERRNO_MAX + 1];	/* by errno */
	int64_t inflight;		/* requests taken, not yet answered */
	int64_t inflight_max;		/* the most seen at once (since reset) */
	uint64_t hist[VC_STAT_NLAT][VC_HIST_BUCKETS];
	uint64_t max_ns[VC_STAT_NLAT];
};

struct vc_stats_snap {		/* a plain copy */
	uint64_t ops[VC_STAT_NOPS];
	uint64_t bytes[VC_STAT_NOPS];
	uint64_t flush_ignored, fua_writes, bounced;
	uint64_t errors[VC_STAT_ERRNO_MAX + 1];
	int64_t inflight, inflight_max;
	uint64_t hist[VC_STAT_NLAT][VC_HIST_BUCKETS];
	uint64_t max_ns[VC_STAT_NLAT];
};

void stats_init(struct vc_stats *s);

/* Monotonic nanoseconds, for a request's start. */
uint64_t stats_now(void);

/* A request starts: counts it in flight. Returns its start time. */
uint64_t stats_begin(struct vc_stats *s);
/*
 * A request ends with res (bytes, 0, or -errno) after starting at start
 * (from stats_begin): counts the op and its bytes, or its errno, records
 * its latency (read, write, flush) and takes it out of flight.
 */
void stats_end(struct vc_stats *s, enum vc_stat_op op, ssize_t res,
    uint64_t start);
static inline void
stats_add(uint64_t *field, uint64_t n)
{
	__atomic_add_fetch(field, n, __ATOMIC_RELAXED);
}

/*
 * VCACHEFS_NO_STATS=1 in the environment at start turns recording off
 * (for make bench): every recording function then returns at its first,
 * always-taken branch. Read once, before main.
 */
extern bool stats_disabled;

/* stats_add unless recording is off: for the counters without an op
 * (flush_ignored, fua_writes, bounced). */
static inline void
stats_count(uint64_t *field, uint64_t n)
{
	if (__builtin_expect(!stats_disabled, 1))
		stats_add(field, n);
}
/* A request taken out of flight without being counted (stats_begin'd,
 * then not taken by the engine after all). */
void stats_abort(struct vc_stats *s);
/* A start time for a request that is not counted in flight (stats_done):
 * stats_now(), or 0 when recording is off. */
uint64_t stats_start(void);
/* stats_end without the in-flight count, for a request that never
 * entered it (stats_start). */
void stats_done(struct vc_stats *s, enum vc_stat_op op, ssize_t res,
    uint64_t start);

void stats_snapshot(const struct vc_stats *s, struct vc_stats_snap *out);
/* Zero the counters (not the in-flight count). */
void stats_reset(struct vc_stats *s);

/* The bucket of a latency, and the upper bound of a bucket, in ns. */
unsigned stats_bucket(uint64_t ns);
uint64_t stats_bucket_upper(unsigned bucket);
/* The latency below which fraction q (0..1) of the recorded ones lie:
 * a bucket's upper bound, or max_ns for the last; 0 with none. */
uint64_t stats_percentile(const struct vc_stats_snap *snap, unsigned lat,
    double q);

/* Names for output: "read", "write", "flush", "fallocate", "discard". */
const char *stats_op_name(enum vc_stat_op op);

#endif
