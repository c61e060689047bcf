/*
 * difftest.c - randomized differential tester for a file under test.
 *
 * Applies one seeded random sequence of operations (pwrite, pread,
 * ftruncate, the fallocate modes, fstat) to a TEST file, normally on a
 * vcachefs mount, and to a REF file on a plain filesystem. Every syscall
 * must give the same result on both, every pread the same bytes, and after
 * each batch the two whole files must be identical. The first difference
 * is reported with the seed, the step and the operation, so a failure can
 * be replayed with --seed.
 *
 * Exit status: 0 all agreed, 1 a difference was found, 2 usage or setup
 * error (including errors on the reference side, which is not under test).
 *
 * --overlap is a concurrent mode instead: per round, in each of --lanes
 * separate groups of blocks, one thread writes an aligned range and another
 * at once an unaligned range overlapping it. As on a native file, every
 * sector must then hold one of the two orders' bytes: the aligned write's,
 * or the unaligned write's on top of it (and the old content never
 * survives inside the aligned range). It needs no reference file.
 *
 * Hidden option for the test suite: --inject-fault K flips one byte of the
 * test file (through a separate, buffered descriptor) after step K, or at
 * the first later step where the file is not empty, and then compares the
 * whole files at once, so the suite can prove that corruption is caught.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KIB	1024ULL
#define MIB	(1024ULL * KIB)
#define ALIGN	4096		/* buffer alignment for O_DIRECT */
#define MAX_IO	(1 * MIB)	/* largest single op, compare chunk */
#define HISTORY	8		/* recent ops shown on a failure */

/* Verdicts double as exit codes. */
enum verdict { DT_OK = 0, DT_FAIL = 1, DT_ERROR = 2 };

enum op_kind {
	OP_WRITE, OP_READ, OP_TRUNCATE, OP_FALLOC, OP_FALLOC_KEEP,
	OP_PUNCH, OP_ZERO, OP_FSTAT, OP_NKINDS
};

struct op_type {
	const char *name;	/* as printed in reports */
	int weight;		/* relative frequency */
	int mode;		/* fallocate mode, or -1 if not a fallocate */
};

static const struct op_type op_types[OP_NKINDS] = {
	[OP_WRITE]	= { "pwrite", 30, -1 },
	[OP_READ]	= { "pread", 25, -1 },
	[OP_TRUNCATE]	= { "ftruncate", 6, -1 },
	[OP_FALLOC]	= { "fallocate mode=0", 5, 0 },
	[OP_FALLOC_KEEP] = { "fallocate mode=KEEP_SIZE", 5,
			     FALLOC_FL_KEEP_SIZE },
	[OP_PUNCH]	= { "fallocate mode=PUNCH_HOLE|KEEP_SIZE", 7,
			    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE },
	[OP_ZERO]	= { "fallocate mode=ZERO_RANGE", 7,
			    FALLOC_FL_ZERO_RANGE },
	[OP_FSTAT]	= { "fstat", 5, -1 },
};

struct op {
	enum op_kind kind;
	uint64_t off;		/* new size for ftruncate */
	uint64_t len;
	int fill;		/* pwrite: -1 random bytes, else this byte */
};

/* One executed op, kept for the failure report. */
struct done_op {
	uint64_t step;
	struct op op;
	long long tres, rres;	/* results: >= 0, or -errno */
};

struct config {
	const char *test_path, *ref_path;
	uint64_t seed, ops, batch, max_size, fsync_every, inject_step;
	uint64_t rounds, lanes;		/* --overlap */
	bool direct, dsync, verbose, overlap;
};

struct dt {
	struct config cfg;
	int tfd, rfd;
	uint64_t rng;			/* PRNG state for the op stream */
	unsigned char *wbuf, *tbuf, *rbuf; /* write, test and ref buffers */
	bool skip[OP_NKINDS];		/* fallocate modes ref lacks */
	struct done_op hist[HISTORY];
	uint64_t nhist;
	uint64_t compares;
};

/* ---- PRNG: splitmix64, so a seed means the same run everywhere ---- */

static uint64_t
rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0; the modulo bias is negligible for our n. */
static uint64_t
rng_below(uint64_t *s, uint64_t n)
{
	return rng_next(s) % n;
}

static bool
rng_percent(uint64_t *s, unsigned pct)
{
	return rng_below(s, 100) < pct;
}

/* ---- formatting ---- */

/* A syscall result as a number, or the errno name when it failed. */
static const char *
fmt_res(long long r, char *buf, size_t size)
{
	if (r >= 0) {
		snprintf(buf, size, "%lld", r);
	} else {
		const char *name = strerrorname_np((int)-r);

		if (name != NULL)
			snprintf(buf, size, "-%s", name);
		else
			snprintf(buf, size, "-errno%lld", -r);
	}
	return buf;
}

static const char *
fmt_op(const struct op *op, char *buf, size_t size)
{
	const char *name = op_types[op->kind].name;

	switch (op->kind) {
	case OP_WRITE:
		if (op->fill < 0)
			snprintf(buf, size, "%s off=%" PRIu64 " len=%" PRIu64
				 " fill=random", name, op->off, op->len);
		else
			snprintf(buf, size, "%s off=%" PRIu64 " len=%" PRIu64
				 " fill=0x%02x", name, op->off, op->len,
				 op->fill);
		break;
	case OP_TRUNCATE:
		snprintf(buf, size, "%s size=%" PRIu64, name, op->off);
		break;
	case OP_FSTAT:
		snprintf(buf, size, "%s", name);
		break;
	default:
		snprintf(buf, size, "%s off=%" PRIu64 " len=%" PRIu64,
			 name, op->off, op->len);
		break;
	}
	return buf;
}

/* ---- reporting ---- */

static void
remember(struct dt *d, uint64_t step, const struct op *op,
	 long long tres, long long rres)
{
	struct done_op *h = &d->hist[d->nhist++ % HISTORY];

	h->step = step;
	h->op = *op;
	h->tres = tres;
	h->rres = rres;
}

static void
print_history(const struct dt *d)
{
	uint64_t n = d->nhist < HISTORY ? d->nhist : HISTORY;
	char ob[160], tb[32], rb[32];

	for (uint64_t i = d->nhist - n; i < d->nhist; i++) {
		const struct done_op *h = &d->hist[i % HISTORY];

		fprintf(stderr, "difftest:   recent step %" PRIu64 ": %s ->"
			" test %s, ref %s\n", h->step,
			fmt_op(&h->op, ob, sizeof(ob)),
			fmt_res(h->tres, tb, sizeof(tb)),
			fmt_res(h->rres, rb, sizeof(rb)));
	}
}

/*
 * The one failure line: seed, step, what was being done, what differed.
 * Then the recent ops and a replay hint, since a batch compare can only say
 * which bytes differ, not which op broke them.
 */
static enum verdict
fail(const struct dt *d, uint64_t step, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static enum verdict
fail(const struct dt *d, uint64_t step, const char *what, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "difftest: seed %" PRIu64 ": FAIL at step %" PRIu64
		": %s: ", d->cfg.seed, step, what);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	print_history(d);
	if (d->cfg.overlap) {
		/* Which rounds fail depends on timing: the seed gives the plan. */
		fprintf(stderr, "difftest: replay: --overlap --seed %" PRIu64
			" --rounds %" PRIu64 " --lanes %" PRIu64 "%s%s\n",
			d->cfg.seed, d->cfg.rounds, d->cfg.lanes,
			d->cfg.direct ? " --direct" : "",
			d->cfg.dsync ? " --dsync" : "");
		return DT_FAIL;
	}
	fprintf(stderr, "difftest: replay: --seed %" PRIu64 " --ops %" PRIu64
		" --batch %" PRIu64 " --max-size %" PRIu64 "%s%s",
		d->cfg.seed, d->cfg.ops, d->cfg.batch, d->cfg.max_size,
		d->cfg.direct ? " --direct" : "",
		d->cfg.dsync ? " --dsync" : "");
	if (d->cfg.fsync_every)
		fprintf(stderr, " --fsync-every %" PRIu64, d->cfg.fsync_every);
	if (d->cfg.inject_step)
		fprintf(stderr, " --inject-fault %" PRIu64, d->cfg.inject_step);
	fputc('\n', stderr);
	return DT_FAIL;
}

/* Index of the first differing byte of two equal-length ranges, or -1. */
static long long
first_diff(const unsigned char *a, const unsigned char *b, size_t n)
{
	if (memcmp(a, b, n) == 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return (long long)i;
	return -1;
}

/* ---- choosing op parameters ---- */

/* Mostly up to 256 KiB, many sub-page, a handful up to 1 MiB. */
static uint64_t
pick_len(struct dt *d)
{
	uint64_t r = rng_below(&d->rng, 100);

	if (r < 30)
		return 1 + rng_below(&d->rng, 4 * KIB);
	if (r < 95)
		return 1 + rng_below(&d->rng, 256 * KIB);
	return 256 * KIB + 1 + rng_below(&d->rng, MAX_IO - 256 * KIB);
}

/*
 * Offsets are unaligned and anywhere below --max-size, but biased toward
 * the interesting places: straddling the end of file, inside the file and
 * just past its end.
 * A few ops are page aligned so the aligned fast paths are exercised too.
 * Keeps off + len <= max_size, so the file never grows past it.
 */
static void
pick_range(struct dt *d, uint64_t size, uint64_t *offp, uint64_t *lenp)
{
	uint64_t max = d->cfg.max_size;
	uint64_t len = pick_len(d);
	uint64_t r = rng_below(&d->rng, 100);
	uint64_t off;

	if (r < 25 && size > 0) {
		/* starts before EOF, ends at or beyond it */
		uint64_t back = 1 + rng_below(&d->rng,
					      len < size ? len : size);
		off = size - back;
	} else if (r < 50 && size > 0) {
		off = rng_below(&d->rng, size);
	} else if (r < 75) {
		/* up to 1 MiB past EOF: grows the file gradually, holes */
		off = rng_below(&d->rng, size + MAX_IO);
	} else {
		off = rng_below(&d->rng, max);
	}
	if (rng_percent(&d->rng, 10)) {
		off &= ~(uint64_t)(ALIGN - 1);
		len = (len + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
	}
	if (off >= max)
		off = max - 1;
	if (len > max - off)
		len = max - off;
	*offp = off;
	*lenp = len;
}

/* New size: near the current one (grow or shrink), anywhere, or zero. */
static uint64_t
pick_size(struct dt *d, uint64_t size)
{
	uint64_t max = d->cfg.max_size;
	uint64_t r = rng_below(&d->rng, 100);
	uint64_t n;

	if (r < 5)
		return 0;
	if (r < 50) {
		uint64_t delta = pick_len(d);

		if (rng_percent(&d->rng, 50))
			n = delta > size ? 0 : size - delta;
		else
			n = size + delta;
	} else {
		n = rng_below(&d->rng, max + 1);
	}
	if (rng_percent(&d->rng, 10))
		n &= ~(uint64_t)(ALIGN - 1);
	return n > max ? max : n;
}

static enum op_kind
pick_kind(struct dt *d)
{
	int total = 0, r;

	for (int k = 0; k < OP_NKINDS; k++)
		if (!d->skip[k])
			total += op_types[k].weight;
	r = (int)rng_below(&d->rng, (uint64_t)total);
	for (int k = 0; k < OP_NKINDS; k++) {
		if (d->skip[k])
			continue;
		if (r < op_types[k].weight)
			return (enum op_kind)k;
		r -= op_types[k].weight;
	}
	return OP_FSTAT;	/* not reached */
}

/* Random bytes, or a repeated byte (zeros often: sparse-looking data). */
static void
fill_buffer(struct dt *d, struct op *op)
{
	uint64_t r = rng_below(&d->rng, 100);

	if (r < 70) {
		op->fill = -1;
		for (uint64_t i = 0; i < op->len; i += 8) {
			uint64_t v = rng_next(&d->rng);
			size_t n = op->len - i < 8 ? op->len - i : 8;

			memcpy(d->wbuf + i, &v, n);
		}
	} else {
		op->fill = r < 85 ? 0 : (int)rng_below(&d->rng, 256);
		memset(d->wbuf, op->fill, op->len);
	}
}

static struct op
pick_op(struct dt *d, uint64_t size)
{
	struct op op = { .kind = pick_kind(d), .fill = -1 };

	switch (op.kind) {
	case OP_TRUNCATE:
		op.off = pick_size(d, size);
		break;
	case OP_FSTAT:
		break;
	default:
		pick_range(d, size, &op.off, &op.len);
		if (op.kind == OP_WRITE)
			fill_buffer(d, &op);
		break;
	}
	return op;
}

/* ---- executing ops ---- */

/* Result of the syscall just made: its return value, or -errno. */
static long long
res(long long r)
{
	return r < 0 ? -(long long)errno : r;
}

static long long
do_fstat_size(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -(long long)errno;
	return (long long)st.st_size;
}

/*
 * Run one op on the reference and then on the test file, storing both
 * results. The reference goes first so that a fallocate mode it does not
 * support can be dropped before the test file sees it, keeping the two in
 * step; returns false then.
 */
static bool
exec_op(struct dt *d, const struct op *op, long long *tr, long long *rr)
{
	int mode = op_types[op->kind].mode;
	off_t off = (off_t)op->off;
	size_t len = (size_t)op->len;

	switch (op->kind) {
	case OP_WRITE:
		*rr = res(pwrite(d->rfd, d->wbuf, len, off));
		*tr = res(pwrite(d->tfd, d->wbuf, len, off));
		break;
	case OP_READ:
		*rr = res(pread(d->rfd, d->rbuf, len, off));
		*tr = res(pread(d->tfd, d->tbuf, len, off));
		break;
	case OP_TRUNCATE:
		*rr = res(ftruncate(d->rfd, off));
		*tr = res(ftruncate(d->tfd, off));
		break;
	case OP_FSTAT:
		*rr = do_fstat_size(d->rfd);
		*tr = do_fstat_size(d->tfd);
		break;
	default:
		*rr = res(fallocate(d->rfd, mode, off, (off_t)len));
		if (*rr == -EOPNOTSUPP) {
			d->skip[op->kind] = true;
			printf("difftest: note: reference file does not support"
			       " %s (EOPNOTSUPP), skipping it\n",
			       op_types[op->kind].name);
			return false;
		}
		*tr = res(fallocate(d->tfd, mode, off, (off_t)len));
		break;
	}
	return true;
}

/* Both results must be equal, and a pread must return the same bytes. */
static enum verdict
check_op(struct dt *d, uint64_t step, const struct op *op,
	 long long tr, long long rr)
{
	char ob[160], tb[32], rb[32], where[96] = "";
	long long diff = -1;

	fmt_op(op, ob, sizeof(ob));
	fmt_res(tr, tb, sizeof(tb));
	fmt_res(rr, rb, sizeof(rb));
	if (d->cfg.verbose)
		printf("difftest: step %" PRIu64 ": %s -> test %s, ref %s\n",
		       step, ob, tb, rb);

	if (op->kind == OP_READ && tr >= 0 && rr >= 0)
		diff = first_diff(d->tbuf, d->rbuf,
				  (size_t)(tr < rr ? tr : rr));
	if (diff >= 0)
		snprintf(where, sizeof(where), "first difference at offset"
			 " %" PRIu64 " (test 0x%02x, ref 0x%02x)",
			 op->off + (uint64_t)diff, d->tbuf[diff],
			 d->rbuf[diff]);

	if (tr != rr)
		return fail(d, step, ob, "%s differs (test %s, ref %s)%s%s",
			    op->kind == OP_FSTAT ? "size" : "result", tb, rb,
			    diff >= 0 ? ", " : "", where);
	if (diff >= 0)
		return fail(d, step, ob, "%s", where);
	return DT_OK;
}

static enum verdict
run_op(struct dt *d, uint64_t step, const struct op *op)
{
	long long tr = 0, rr = 0;

	if (!exec_op(d, op, &tr, &rr))
		return DT_OK;
	remember(d, step, op, tr, rr);
	return check_op(d, step, op, tr, rr);
}

/* ---- whole-file compare ---- */

/*
 * Read want bytes at off, retrying short reads, asking for up to ask bytes
 * per call; returns the count (less than want only at end of file) or
 * -errno. The test file is asked for a whole aligned chunk, since O_DIRECT
 * may need aligned lengths; the last chunk then comes back short.
 */
static long long
read_chunk(int fd, unsigned char *buf, size_t ask, size_t want, uint64_t off)
{
	size_t got = 0;

	while (got < want) {
		ssize_t n = pread(fd, buf + got, ask - got,
				  (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -(long long)errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (long long)got;
}

static enum verdict
compare_files(struct dt *d, uint64_t step)
{
	long long tsize = do_fstat_size(d->tfd);
	long long rsize = do_fstat_size(d->rfd);
	char what[64], tb[32], rb[32];
	uint64_t size, off;

	d->compares++;
	if (rsize < 0) {
		fprintf(stderr, "difftest: fstat %s: %s\n", d->cfg.ref_path,
			strerror((int)-rsize));
		return DT_ERROR;
	}
	snprintf(what, sizeof(what), "compare size=%lld", rsize);
	if (tsize < 0)
		return fail(d, step, what, "fstat of test file failed (%s)",
			    fmt_res(tsize, tb, sizeof(tb)));

	/* On a size difference still find where the data first differs. */
	size = (uint64_t)(tsize < rsize ? tsize : rsize);
	for (off = 0; off < size; off += MAX_IO) {
		size_t want = size - off < MAX_IO ? size - off : MAX_IO;
		long long tn = read_chunk(d->tfd, d->tbuf, MAX_IO, want, off);
		long long rn = read_chunk(d->rfd, d->rbuf, want, want, off);
		long long diff;

		if (rn < 0) {
			fprintf(stderr, "difftest: pread %s: %s\n",
				d->cfg.ref_path, strerror((int)-rn));
			return DT_ERROR;
		}
		if (tn < 0)
			return fail(d, step, what, "pread of test file at"
				    " offset %" PRIu64 " failed (%s)", off,
				    fmt_res(tn, tb, sizeof(tb)));
		if ((uint64_t)tn < want || (uint64_t)rn < want) {
			uint64_t n = (uint64_t)(tn < rn ? tn : rn);

			diff = first_diff(d->tbuf, d->rbuf, (size_t)n);
			if (diff < 0)
				diff = (long long)n;
			return fail(d, step, what, "short read (test %lld,"
				    " ref %lld bytes at offset %" PRIu64 "),"
				    " first difference at offset %" PRIu64,
				    tn, rn, off, off + (uint64_t)diff);
		}
		diff = first_diff(d->tbuf, d->rbuf, want);
		if (diff >= 0)
			return fail(d, step, what, "%sfirst difference at"
				    " offset %" PRIu64 " (test 0x%02x,"
				    " ref 0x%02x)",
				    tsize != rsize ? "size differs, " : "",
				    off + (uint64_t)diff, d->tbuf[diff],
				    d->rbuf[diff]);
	}
	if (tsize != rsize)
		return fail(d, step, what, "size differs (test %s, ref %s),"
			    " first difference at offset %" PRIu64,
			    fmt_res(tsize, tb, sizeof(tb)),
			    fmt_res(rsize, rb, sizeof(rb)), size);
	if (d->cfg.verbose)
		printf("difftest: step %" PRIu64 ": compared %lld bytes, OK\n",
		       step, rsize);
	return DT_OK;
}

/* ---- fault injection (hidden --inject-fault) ---- */

/*
 * Flip one byte of the test file through a separate buffered descriptor
 * (the test fd may be O_DIRECT and need alignment). The offset comes from
 * its own PRNG so the op stream stays the same as in a clean run.
 * Returns 1 if a byte was flipped, 0 if the file is empty, or -errno.
 */
static int
inject_fault(struct dt *d, uint64_t step)
{
	uint64_t s = d->cfg.seed ^ 0x5eedfa017ULL;
	uint64_t off;
	long long size;
	unsigned char b;
	int fd, ret = 1;

	fd = open(d->cfg.test_path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size = do_fstat_size(fd);
	if (size <= 0) {
		close(fd);
		return (int)size;
	}
	off = rng_below(&s, (uint64_t)size);
	errno = 0;
	if (pread(fd, &b, 1, (off_t)off) != 1) {
		ret = errno ? -errno : -EIO;
	} else {
		b ^= 0xff;
		if (pwrite(fd, &b, 1, (off_t)off) != 1 || fdatasync(fd) < 0)
			ret = errno ? -errno : -EIO;
	}
	close(fd);
	if (ret == 1)
		fprintf(stderr, "difftest: inject-fault: flipped byte at"
			" offset %" PRIu64 " of the test file after step"
			" %" PRIu64 "\n", off, step);
	return ret;
}

/* ---- the run ---- */

static enum verdict
run_step(struct dt *d, uint64_t step, bool *injected)
{
	long long size = do_fstat_size(d->rfd);
	struct op op;
	enum verdict v;

	if (size < 0) {
		fprintf(stderr, "difftest: fstat %s: %s\n", d->cfg.ref_path,
			strerror((int)-size));
		return DT_ERROR;
	}
	op = pick_op(d, (uint64_t)size);
	v = run_op(d, step, &op);
	if (v != DT_OK)
		return v;

	if (d->cfg.fsync_every && step % d->cfg.fsync_every == 0 &&
	    fdatasync(d->tfd) < 0) {
		char eb[32];

		return fail(d, step, "fdatasync", "failed on test file (%s)",
			    fmt_res(-(long long)errno, eb, sizeof(eb)));
	}

	/* After an injected fault compare at once: detection is certain. */
	if (d->cfg.inject_step && !*injected && step >= d->cfg.inject_step) {
		int r = inject_fault(d, step);

		if (r < 0) {
			fprintf(stderr, "difftest: inject-fault: %s\n",
				strerror(-r));
			return DT_ERROR;
		}
		if (r == 1) {
			*injected = true;
			return compare_files(d, step);
		}
	}
	if (step % d->cfg.batch == 0)
		return compare_files(d, step);
	return DT_OK;
}

static enum verdict
run(struct dt *d)
{
	bool injected = false;
	enum verdict v;

	for (uint64_t step = 1; step <= d->cfg.ops; step++) {
		v = run_step(d, step, &injected);
		if (v != DT_OK)
			return v;
	}
	/* The last batch, unless the loop just compared it. */
	if (d->cfg.ops == 0 || d->cfg.ops % d->cfg.batch != 0) {
		v = compare_files(d, d->cfg.ops);
		if (v != DT_OK)
			return v;
	}
	return DT_OK;
}

/* ---- --overlap: concurrent aligned and unaligned writes ---- */

#define OV_BLK		4096		/* the aligned writes' unit */
#define OV_SECTOR	512		/* checked per sector: see ov_check */
#define OV_LANE_BLKS	4
#define OV_LANE		(OV_LANE_BLKS * OV_BLK)
#define OV_MAX_LANES	64

struct ov_write {
	uint64_t off, len;
	unsigned char fill;
};

struct ov {
	struct dt *d;
	pthread_barrier_t go, done;
	struct ov_write plan[OV_MAX_LANES][2];	/* [lane][0 aligned, 1 not] */
	bool stop;
	int err;				/* first errno of a writer */
	pthread_mutex_t lock;
};

struct ov_thread {
	pthread_t tid;
	struct ov *ov;
	unsigned lane, which;
	unsigned char *buf;
};

static void *
ov_writer(void *arg)
{
	struct ov_thread *t = arg;
	struct ov *ov = t->ov;

	for (;;) {
		const struct ov_write *w;
		ssize_t n;

		pthread_barrier_wait(&ov->go);
		if (ov->stop)
			return NULL;
		w = &ov->plan[t->lane][t->which];
		memset(t->buf, w->fill, w->len);
		n = pwrite(ov->d->tfd, t->buf, w->len, (off_t)w->off);
		if (n != (ssize_t)w->len) {
			pthread_mutex_lock(&ov->lock);
			if (ov->err == 0)
				ov->err = n < 0 ? errno : EIO;
			pthread_mutex_unlock(&ov->lock);
		}
		pthread_barrier_wait(&ov->done);
	}
}

/*
 * Lane l of a round: an aligned write of 1..4 blocks, and an unaligned
 * one (both ends off block bounds) that overlaps it, all inside the lane.
 */
static void
ov_pick(struct dt *d, struct ov *ov, unsigned l, uint64_t round)
{
	struct ov_write *a = &ov->plan[l][0], *u = &ov->plan[l][1];
	uint64_t lane = l * (uint64_t)OV_LANE;
	uint64_t nb = 1 + rng_below(&d->rng, OV_LANE_BLKS);
	uint64_t us, ue;

	a->off = lane + rng_below(&d->rng, OV_LANE_BLKS - nb + 1) * OV_BLK;
	a->len = nb * OV_BLK;
	a->fill = 0x80 + (unsigned char)(round % 16);
	do {
		us = lane + 1 + rng_below(&d->rng, OV_LANE - 2);
		ue = lane + 1 + rng_below(&d->rng, OV_LANE - 2);
	} while (ue <= us || us % OV_BLK == 0 || ue % OV_BLK == 0 ||
		 ue <= a->off || us >= a->off + a->len);
	u->off = us;
	u->len = ue - us;
	u->fill = 0x40 + (unsigned char)(round % 16);
}

/*
 * Every sector of lane l must be as if the two writes ran one after the
 * other. Per sector, whatever block size the daemon read-modify-writes:
 * the rule per aligned block implies it per sector, and the lost update
 * this catches (old bytes written back over the aligned write) shows in
 * the sectors of the edge block that the unaligned write does not cover.
 */
static enum verdict
ov_check(struct dt *d, struct ov *ov, unsigned l, uint64_t round,
	 const unsigned char *got, unsigned char old)
{
	const struct ov_write *a = &ov->plan[l][0], *u = &ov->plan[l][1];
	uint64_t lane = l * (uint64_t)OV_LANE;

	for (uint64_t s = lane; s < lane + OV_LANE; s += OV_SECTOR) {
		bool in_a = s >= a->off && s < a->off + a->len;
		unsigned char x[OV_SECTOR], y[OV_SECTOR];	/* u first, u last */
		const unsigned char *g = got + s;
		char what[160];

		memset(x, in_a ? a->fill : old, OV_SECTOR);
		memcpy(y, x, OV_SECTOR);
		for (uint64_t i = 0; i < OV_SECTOR; i++)
			if (s + i >= u->off && s + i < u->off + u->len)
				y[i] = u->fill;
		/* Outside the aligned write only the unaligned one lands. */
		if (memcmp(g, y, OV_SECTOR) == 0 ||
		    (in_a && memcmp(g, x, OV_SECTOR) == 0))
			continue;
		snprintf(what, sizeof(what), "overlap round %" PRIu64 " lane %u"
			 ": aligned pwrite off=%" PRIu64 " len=%" PRIu64
			 " fill=0x%02x, unaligned pwrite off=%" PRIu64
			 " len=%" PRIu64 " fill=0x%02x", round, l, a->off,
			 a->len, a->fill, u->off, u->len, u->fill);
		for (uint64_t i = 0; i < OV_SECTOR; i++) {
			if (g[i] == y[i] || (in_a && g[i] == x[i]))
				continue;
			return fail(d, round, what, "sector at %" PRIu64
				    " is neither order: byte at offset %"
				    PRIu64 " is 0x%02x%s", s, s + i, g[i],
				    g[i] == old ? " (the old content)" : "");
		}
		return fail(d, round, what, "sector at %" PRIu64 " mixes the"
			    " two orders", s);
	}
	return DT_OK;
}

static enum verdict
ov_round(struct dt *d, struct ov *ov, uint64_t round, unsigned char *got)
{
	size_t size = (size_t)(d->cfg.lanes * OV_LANE);
	unsigned char old = 0x10 + (unsigned char)(round % 16);
	long long n;

	for (unsigned l = 0; l < d->cfg.lanes; l++)
		ov_pick(d, ov, l, round);
	memset(d->wbuf, old, size);
	if (pwrite(d->tfd, d->wbuf, size, 0) != (ssize_t)size)
		return fail(d, round, "overlap reset", "pwrite failed (%s)",
			    strerror(errno));
	pthread_barrier_wait(&ov->go);
	pthread_barrier_wait(&ov->done);
	if (ov->err != 0)
		return fail(d, round, "overlap pwrite", "failed (%s)",
			    strerror(ov->err));
	n = read_chunk(d->tfd, got, size, size, 0);
	if (n != (long long)size)
		return fail(d, round, "overlap read back", "got %lld of %zu"
			    " bytes", n, size);
	for (unsigned l = 0; l < d->cfg.lanes; l++) {
		enum verdict v = ov_check(d, ov, l, round, got, old);

		if (v != DT_OK)
			return v;
	}
	return DT_OK;
}

static enum verdict
run_overlap(struct dt *d)
{
	unsigned nt = (unsigned)(2 * d->cfg.lanes);
	struct ov_thread *t = calloc(nt, sizeof(*t));
	struct ov *ov = calloc(1, sizeof(*ov));
	enum verdict v = DT_OK;
	unsigned started = 0;

	if (t == NULL || ov == NULL) {
		fprintf(stderr, "difftest: out of memory\n");
		free(t);
		free(ov);
		return DT_ERROR;
	}
	ov->d = d;
	pthread_mutex_init(&ov->lock, NULL);
	pthread_barrier_init(&ov->go, NULL, nt + 1);
	pthread_barrier_init(&ov->done, NULL, nt + 1);
	/* Never extend the file: the kernel serialises extending writes. */
	if (ftruncate(d->tfd, (off_t)(d->cfg.lanes * OV_LANE)) < 0) {
		fprintf(stderr, "difftest: ftruncate %s: %s\n",
			d->cfg.test_path, strerror(errno));
		v = DT_ERROR;
	}
	for (unsigned i = 0; v == DT_OK && i < nt; i++) {
		t[i].ov = ov;
		t[i].lane = i / 2;
		t[i].which = i % 2;
		if (posix_memalign((void **)&t[i].buf, ALIGN, OV_LANE) != 0 ||
		    pthread_create(&t[i].tid, NULL, ov_writer, &t[i]) != 0) {
			fprintf(stderr, "difftest: cannot start writer %u\n", i);
			v = DT_ERROR;
			break;
		}
		started++;
	}
	if (started < nt) {
		/* The barriers count nt + 1: the threads missing can never
		 * arrive, so the ones started are left blocked; just leave. */
		return DT_ERROR;
	}
	for (uint64_t r = 1; v == DT_OK && r <= d->cfg.rounds; r++)
		v = ov_round(d, ov, r, d->tbuf);
	ov->stop = true;
	pthread_barrier_wait(&ov->go);
	for (unsigned i = 0; i < nt; i++) {
		pthread_join(t[i].tid, NULL);
		free(t[i].buf);
	}
	pthread_barrier_destroy(&ov->go);
	pthread_barrier_destroy(&ov->done);
	pthread_mutex_destroy(&ov->lock);
	free(ov);
	free(t);
	return v;
}

/* ---- setup ---- */

static const char synopsis[] =
"usage: difftest --test FILE --ref FILE [--seed N] [--ops N] [--batch N]\n"
"                [--max-size BYTES] [--direct] [--dsync] [--fsync-every N]\n"
"                [--verbose]\n"
"       difftest --test FILE --overlap [--seed N] [--rounds N] [--lanes N]\n"
"                [--direct] [--dsync]\n";

static void
usage(void)
{
	fputs(synopsis, stdout);
	fputs(
"\n"
"Apply the same seeded random pwrite/pread/ftruncate/fallocate/fstat ops to\n"
"the test file and to a reference file, and compare them.\n"
"\n"
"  --test FILE        file under test (created/truncated)\n"
"  --ref FILE         reference file on a plain filesystem (also created/\n"
"                     truncated)\n"
"  --seed N           PRNG seed (default: time based, always printed)\n"
"  --ops N            number of operations (default 4000)\n"
"  --batch N          compare whole files every N ops (default 50)\n"
"  --max-size BYTES   offsets stay below this; K/M/G suffix ok (default 8M)\n"
"  --direct           open the test file with O_DIRECT (unaligned I/O)\n"
"  --dsync            open the test file with O_DSYNC\n"
"  --fsync-every N    fdatasync the test file every N ops (default 0: never)\n"
"  --verbose          print every op\n"
"\n"
"  --overlap          instead: per round and lane, one thread writes an\n"
"                     aligned range and another an unaligned one overlapping\n"
"                     it, at once; each sector must then hold one of the two\n"
"                     orders' bytes (no --ref needed)\n"
"  --rounds N         --overlap rounds (default 1000)\n"
"  --lanes N          --overlap lanes of 16 KiB, 2 threads each (default 8,\n"
"                     at most 64)\n"
"\n"
"Exit status: 0 files agree, 1 difference found, 2 usage or setup error.\n",
	      stdout);
}

/* Decimal number, optionally with a binary K/M/G suffix. */
static int
parse_u64(const char *s, bool suffix, uint64_t *out)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -errno;
	if (suffix && *end) {
		switch (*end++) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		default: return -EINVAL;
		}
	}
	if (*end || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int
parse_args(int argc, char **argv, struct config *c)
{
	enum { OPT_SEED = 256, OPT_OPS, OPT_BATCH, OPT_MAXSZ, OPT_DIRECT,
	       OPT_DSYNC, OPT_FSYNC, OPT_VERBOSE, OPT_INJECT, OPT_HELP,
	       OPT_OVERLAP, OPT_ROUNDS, OPT_LANES };
	static const struct option longopts[] = {
		{ "test", required_argument, NULL, 't' },
		{ "ref", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "ops", required_argument, NULL, OPT_OPS },
		{ "batch", required_argument, NULL, OPT_BATCH },
		{ "max-size", required_argument, NULL, OPT_MAXSZ },
		{ "direct", no_argument, NULL, OPT_DIRECT },
		{ "dsync", no_argument, NULL, OPT_DSYNC },
		{ "fsync-every", required_argument, NULL, OPT_FSYNC },
		{ "verbose", no_argument, NULL, OPT_VERBOSE },
		{ "inject-fault", required_argument, NULL, OPT_INJECT },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "overlap", no_argument, NULL, OPT_OVERLAP },
		{ "rounds", required_argument, NULL, OPT_ROUNDS },
		{ "lanes", required_argument, NULL, OPT_LANES },
		{ NULL, 0, NULL, 0 },
	};
	bool have_seed = false;
	int ch, r = 0;

	*c = (struct config){ .ops = 4000, .batch = 50, .max_size = 8 * MIB,
			      .rounds = 1000, .lanes = 8 };
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 't': c->test_path = optarg; break;
		case 'r': c->ref_path = optarg; break;
		case OPT_SEED:
			r = parse_u64(optarg, false, &c->seed);
			have_seed = true;
			break;
		case OPT_OPS:
			r = parse_u64(optarg, false, &c->ops);
			break;
		case OPT_BATCH:
			r = parse_u64(optarg, false, &c->batch);
			break;
		case OPT_MAXSZ:
			r = parse_u64(optarg, true, &c->max_size);
			break;
		case OPT_DIRECT: c->direct = true; break;
		case OPT_DSYNC: c->dsync = true; break;
		case OPT_FSYNC:
			r = parse_u64(optarg, false, &c->fsync_every);
			break;
		case OPT_VERBOSE: c->verbose = true; break;
		case OPT_INJECT:
			r = parse_u64(optarg, false, &c->inject_step);
			if (r == 0 && c->inject_step == 0)
				r = -EINVAL;
			break;
		case OPT_OVERLAP: c->overlap = true; break;
		case OPT_ROUNDS:
			r = parse_u64(optarg, false, &c->rounds);
			break;
		case OPT_LANES:
			r = parse_u64(optarg, false, &c->lanes);
			if (r == 0 && (c->lanes == 0 || c->lanes > OV_MAX_LANES))
				r = -EINVAL;
			break;
		case OPT_HELP:
			usage();
			exit(0);
		default:
			return -EINVAL;
		}
		if (r < 0) {
			fprintf(stderr, "difftest: bad number '%s'\n", optarg);
			return r;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "difftest: unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	if (!c->test_path || (!c->ref_path && !c->overlap)) {
		fprintf(stderr, "difftest: --test and --ref are required\n");
		return -EINVAL;
	}
	if (c->overlap && (c->ref_path || c->inject_step)) {
		fprintf(stderr, "difftest: --overlap takes no --ref or"
			" --inject-fault\n");
		return -EINVAL;
	}
	if (c->batch == 0 || c->max_size == 0 ||
	    c->max_size > (uint64_t)INT64_MAX / 2) {
		fprintf(stderr, "difftest: --batch and --max-size must be"
			" positive (and --max-size sane)\n");
		return -EINVAL;
	}
	if (!have_seed) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		c->seed = (uint64_t)ts.tv_sec * 1000000000ULL +
			  (uint64_t)ts.tv_nsec + ((uint64_t)getpid() << 40);
	}
	return 0;
}

static int
open_files(struct dt *d)
{
	int tflags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
	struct stat ts, rs;

	d->rfd = d->cfg.overlap ? -1 : open(d->cfg.ref_path,
		      O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (d->rfd < 0 && !d->cfg.overlap) {
		fprintf(stderr, "difftest: open %s: %s\n", d->cfg.ref_path,
			strerror(errno));
		return -errno;
	}
	if (d->cfg.direct)
		tflags |= O_DIRECT;
	if (d->cfg.dsync)
		tflags |= O_DSYNC;
	d->tfd = open(d->cfg.test_path, tflags, 0644);
	if (d->tfd < 0) {
		int e = errno;

		if (e == EINVAL && d->cfg.direct)
			fprintf(stderr, "difftest: open %s with O_DIRECT: %s"
				" (O_DIRECT not supported there)\n",
				d->cfg.test_path, strerror(e));
		else
			fprintf(stderr, "difftest: open %s: %s\n",
				d->cfg.test_path, strerror(e));
		return -e;
	}
	/* The same file twice would agree with itself and prove nothing. */
	if (d->rfd >= 0 && fstat(d->tfd, &ts) == 0 && fstat(d->rfd, &rs) == 0 &&
	    ts.st_dev == rs.st_dev && ts.st_ino == rs.st_ino) {
		fprintf(stderr, "difftest: --test and --ref are the same"
			" file\n");
		return -EINVAL;
	}
	return 0;
}

static int
alloc_buffers(struct dt *d)
{
	void *p[3];

	for (int i = 0; i < 3; i++) {
		if (posix_memalign(&p[i], ALIGN, MAX_IO) != 0) {
			fprintf(stderr, "difftest: out of memory\n");
			return -ENOMEM;
		}
		memset(p[i], 0, MAX_IO);
	}
	d->wbuf = p[0];
	d->tbuf = p[1];
	d->rbuf = p[2];
	return 0;
}

int
main(int argc, char **argv)
{
	struct dt d = { .tfd = -1, .rfd = -1 };
	enum verdict v;

	if (parse_args(argc, argv, &d.cfg) < 0) {
		fputs(synopsis, stderr);
		return DT_ERROR;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("difftest: seed %" PRIu64 "\n", d.cfg.seed);
	d.rng = d.cfg.seed;

	if (alloc_buffers(&d) < 0 || open_files(&d) < 0)
		return DT_ERROR;

	v = d.cfg.overlap ? run_overlap(&d) : run(&d);
	/* close() reports deferred write errors (FUSE flush): check it. */
	if (v == DT_OK && close(d.tfd) < 0) {
		char eb[32];

		v = fail(&d, d.cfg.ops, "close", "failed on test file (%s)",
			 fmt_res(-(long long)errno, eb, sizeof(eb)));
	}
	if (v == DT_OK && d.cfg.overlap)
		printf("difftest: seed %" PRIu64 ": overlap: %" PRIu64
		       " rounds x %" PRIu64 " lanes, OK\n", d.cfg.seed,
		       d.cfg.rounds, d.cfg.lanes);
	else if (v == DT_OK)
		printf("difftest: seed %" PRIu64 ": %" PRIu64 " ops, %" PRIu64
		       " comparisons, OK\n", d.cfg.seed, d.cfg.ops,
		       d.compares);
	free(d.wbuf);
	free(d.tbuf);
	free(d.rbuf);
	return v;
}
