/*
 * test_rmw.c - concurrent O_DIRECT writes through io_write() on a real
 * cache=none image (TAP output): the edge-block locking of io.c.
 *
 * 1. More unaligned writers than the old table had lock slots (64), each
 *    needing two edge blocks, must all finish (they used to deadlock,
 *    each holding its head block while waiting for a slot for its tail),
 *    with their bytes in place.
 * 2. An aligned write and an unaligned write overlapping it must leave each
 *    aligned block as one of the two writes' results, never with old
 *    bytes inside the aligned write's range.
 *
 * A hang fails the test through a watchdog instead of blocking the run.
 * The image lives under /var/tmp: tmpfs may refuse O_DIRECT.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "image.h"
#include "inode.h"
#include "io.h"
#include "tap.h"

#define TEST_WRITERS	128	/* twice the old 64 slots */
#define TEST_ROUNDS	200	/* writes per writer */
#define TEST_LEN	3000	/* crosses one block boundary, see test_span */
#define TEST_SPAN	8192	/* each writer's own two blocks ... */
#define TEST_SKEW	2000	/* ... from here: head and tail block differ */
#define TEST_TIMEOUT	30	/* seconds before a hang counts as a deadlock */

#define TEST_LANES	8	/* overlap test: independent block groups */
#define TEST_LANE_BLKS	4
#define TEST_OROUNDS	400

static char test_dir[] = "/var/tmp/vcachefs-rmw.XXXXXX";
static char test_path[sizeof(test_dir) + 16];
static struct vc_image *test_img;

/* Leave no image behind, even when giving up on hung threads. */
static void
test_cleanup(void)
{
	unlink(test_path);
	rmdir(test_dir);
}
static unsigned test_blk;	/* the image's O_DIRECT alignment */

/* ---- watchdog: a deadlock must fail, not hang the run ---- */

static pthread_mutex_t test_wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t test_wd_cond = PTHREAD_COND_INITIALIZER;
static int test_wd_done;

static void
test_wd_finish(void)
{
	pthread_mutex_lock(&test_wd_lock);
	test_wd_done++;
	pthread_cond_broadcast(&test_wd_cond);
	pthread_mutex_unlock(&test_wd_lock);
}

/* Wait until n threads called test_wd_finish(); false after timeout s. */
static bool
test_wd_wait(int n, int timeout)
{
	struct timespec ts;
	bool ok = true;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout;
	pthread_mutex_lock(&test_wd_lock);
	while (test_wd_done < n && ok)
		ok = pthread_cond_timedwait(&test_wd_cond, &test_wd_lock,
		    &ts) != ETIMEDOUT || test_wd_done >= n;
	test_wd_done = 0;
	pthread_mutex_unlock(&test_wd_lock);
	return ok;
}

/* A hang anywhere else (the overlap rounds wait on barriers) fails too. */
static void
test_alarm(int sig)
{
	static const char msg[] = "not ok - timed out: a writer hangs\n";

	(void)sig;
	test_cleanup();
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

/* ---- 1: many unaligned writers, two edge blocks each ---- */

struct test_writer {
	pthread_t tid;
	int id;
	ssize_t err;		/* first failure, or 0 */
	pthread_barrier_t *start;
};

static unsigned char
test_fill(int id, int round)
{
	return (unsigned char)(1 + (id * 7 + round) % 251);
}

static void *
test_edge_writer(void *arg)
{
	struct test_writer *w = arg;
	unsigned char buf[TEST_LEN];
	off_t off = (off_t)w->id * TEST_SPAN + TEST_SKEW;

	pthread_barrier_wait(w->start);
	for (int r = 0; r < TEST_ROUNDS && w->err == 0; r++) {
		ssize_t n;

		memset(buf, test_fill(w->id, r), sizeof(buf));
		n = io_write(test_img, buf, sizeof(buf), off, false);
		if (n != (ssize_t)sizeof(buf))
			w->err = n < 0 ? n : -EIO;
	}
	test_wd_finish();
	return NULL;
}

/* Read len bytes at off through the image (O_DIRECT, bounce buffer). */
static bool
test_read(void *dst, size_t len, off_t off)
{
	const void *data;
	ssize_t n = io_read(test_img, len, off, &data);

	if (n != (ssize_t)len)
		return false;
	memcpy(dst, data, len);
	return true;
}

static void
test_many_edge_writers(void)
{
	static struct test_writer w[TEST_WRITERS];
	pthread_barrier_t start;
	unsigned char got[TEST_SPAN], want[TEST_SPAN];
	bool finished, ok = true, data_ok = true;

	pthread_barrier_init(&start, NULL, TEST_WRITERS);
	for (int i = 0; i < TEST_WRITERS; i++) {
		w[i].id = i;
		w[i].err = 0;
		w[i].start = &start;
		if (pthread_create(&w[i].tid, NULL, test_edge_writer, &w[i]) != 0) {
			printf("Bail out! pthread_create\n");
			exit(1);
		}
	}
	finished = test_wd_wait(TEST_WRITERS, TEST_TIMEOUT);
	test_ok(finished, "%d unaligned writers (two edge blocks each) all "
	    "finish within %d s", TEST_WRITERS, TEST_TIMEOUT);
	if (!finished) {
		/* Deadlocked threads cannot be joined: stop here. */
		printf("# deadlock: writers still blocked; giving up\n");
		fflush(stdout);
		test_cleanup();
		_exit(1);
	}
	for (int i = 0; i < TEST_WRITERS; i++) {
		pthread_join(w[i].tid, NULL);
		if (w[i].err != 0)
			ok = false;
	}
	test_ok(ok, "every unaligned write returned its length");

	/* Writer i owns its bytes alone; the rest of its blocks stay zero. */
	for (int i = 0; i < TEST_WRITERS && data_ok; i++) {
		memset(want, 0, sizeof(want));
		memset(want + TEST_SKEW, test_fill(i, TEST_ROUNDS - 1), TEST_LEN);
		if (!test_read(got, sizeof(got), (off_t)i * TEST_SPAN) ||
		    memcmp(got, want, sizeof(got)) != 0) {
			printf("# writer %d: its blocks hold other bytes\n", i);
			data_ok = false;
		}
	}
	test_ok(data_ok, "each writer's last bytes are in place and the rest "
	    "of its edge blocks untouched");
	pthread_barrier_destroy(&start);
}

/* ---- 2: an aligned and an unaligned write overlapping ---- */

struct test_lane_write {
	off_t off;
	size_t len;
	unsigned char fill;
};

struct test_overlap {
	pthread_t tid;
	int lane;
	bool aligned;
	pthread_barrier_t *go, *done;
	struct test_lane_write *plan;	/* [round] */
	ssize_t err;
};

static void *
test_overlap_writer(void *arg)
{
	struct test_overlap *o = arg;
	unsigned char *buf = malloc(TEST_LANE_BLKS * test_blk);

	if (buf == NULL)
		o->err = -ENOMEM;
	for (int r = 0; r < TEST_OROUNDS; r++) {
		struct test_lane_write *p = &o->plan[r];
		ssize_t n;

		pthread_barrier_wait(o->go);
		if (buf != NULL) {
			memset(buf, p->fill, p->len);
			n = io_write(test_img, buf, p->len, p->off, false);
			if (n != (ssize_t)p->len && o->err == 0)
				o->err = n < 0 ? n : -EIO;
		}
		pthread_barrier_wait(o->done);
	}
	free(buf);
	test_wd_finish();
	return NULL;
}

static uint64_t test_rng = 0x5eed;

static uint64_t
test_rand(uint64_t n)
{
	uint64_t z = (test_rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (z ^ (z >> 31)) % n;
}

/*
 * Per lane and round: an aligned write of 1..4 blocks and an unaligned
 * write inside the lane that overlaps it. Check every block afterwards.
 */
static void
test_aligned_vs_edge(void)
{
	enum { NW = 2 * TEST_LANES };
	static struct test_overlap o[NW];
	static struct test_lane_write plan[NW][TEST_OROUNDS];
	static unsigned char old[TEST_LANES * TEST_LANE_BLKS * VC_IO_MAXALIGN];
	static unsigned char got[sizeof(old)];
	const size_t lane_bytes = TEST_LANE_BLKS * test_blk;
	const size_t total = TEST_LANES * lane_bytes;
	pthread_barrier_t go, done;
	int bad_rounds = 0, errs = 0;
	off_t base = (off_t)TEST_WRITERS * TEST_SPAN;

	for (int r = 0; r < TEST_OROUNDS; r++) {
		for (int l = 0; l < TEST_LANES; l++) {
			struct test_lane_write *a = &plan[2 * l][r];
			struct test_lane_write *u = &plan[2 * l + 1][r];
			size_t ab = 1 + test_rand(TEST_LANE_BLKS);
			size_t as = test_rand(TEST_LANE_BLKS - ab + 1);
			off_t lane = base + (off_t)(l * lane_bytes);
			off_t us, ue;

			a->off = lane + (off_t)(as * test_blk);
			a->len = ab * test_blk;
			a->fill = 0xa0 + (unsigned char)(r % 16);
			/* unaligned start and end, touching the aligned range */
			do {
				us = lane + 1 + (off_t)test_rand(lane_bytes - 2);
				ue = lane + 1 + (off_t)test_rand(lane_bytes - 2);
			} while (ue <= us || (us % test_blk) == 0 ||
			    (ue % test_blk) == 0 || ue <= a->off ||
			    us >= a->off + (off_t)a->len);
			u->off = us;
			u->len = (size_t)(ue - us);
			u->fill = 0x50 + (unsigned char)(r % 16);
		}
	}
	pthread_barrier_init(&go, NULL, NW + 1);
	pthread_barrier_init(&done, NULL, NW + 1);
	for (int i = 0; i < NW; i++) {
		o[i].lane = i / 2;
		o[i].aligned = i % 2 == 0;
		o[i].go = &go;
		o[i].done = &done;
		o[i].plan = plan[i];
		o[i].err = 0;
		if (pthread_create(&o[i].tid, NULL, test_overlap_writer, &o[i]) != 0) {
			printf("Bail out! pthread_create\n");
			exit(1);
		}
	}
	for (int r = 0; r < TEST_OROUNDS; r++) {
		bool round_bad = false;

		/* Old content: a byte no write of this test uses. */
		memset(old, 0x0f, total);
		if (io_write(test_img, old, total, base, false) !=
		    (ssize_t)total)
			errs++;
		pthread_barrier_wait(&go);
		pthread_barrier_wait(&done);
		if (!test_read(got, total, base)) {
			errs++;
			continue;
		}
		for (int l = 0; l < TEST_LANES; l++) {
			const struct test_lane_write *a = &plan[2 * l][r];
			const struct test_lane_write *u = &plan[2 * l + 1][r];

			for (int b = 0; b < TEST_LANE_BLKS; b++) {
				off_t bo = base + (off_t)(l * lane_bytes) +
				    (off_t)b * test_blk;
				const unsigned char *g = got + (bo - base);
				unsigned char x[VC_IO_MAXALIGN], y[VC_IO_MAXALIGN];
				bool in_a = bo >= a->off &&
				    bo < a->off + (off_t)a->len;

				/* x: without u (or u first); y: u last */
				memset(x, in_a ? a->fill : 0x0f, test_blk);
				memcpy(y, x, test_blk);
				for (off_t i = 0; i < test_blk; i++)
					if (bo + i >= u->off &&
					    bo + i < u->off + (off_t)u->len)
						y[i] = u->fill;
				if (in_a ? (memcmp(g, x, test_blk) != 0 &&
				    memcmp(g, y, test_blk) != 0) :
				    memcmp(g, y, test_blk) != 0) {
					if (!round_bad)
						printf("# round %d lane %d block "
						    "%d: neither outcome\n", r,
						    l, b);
					round_bad = true;
				}
			}
		}
		bad_rounds += round_bad;
	}
	test_ok(test_wd_wait(NW, TEST_TIMEOUT), "overlap writers finish");
	for (int i = 0; i < NW; i++) {
		pthread_join(o[i].tid, NULL);
		errs += o[i].err != 0;
	}
	test_ok(errs == 0, "overlapping writes and reads succeed");
	test_ok(bad_rounds == 0, "%d rounds x %d lanes of an aligned write and "
	    "an overlapping unaligned one: every block is one of the two "
	    "orders (%d rounds were not)", TEST_OROUNDS, TEST_LANES,
	    bad_rounds);
	pthread_barrier_destroy(&go);
	pthread_barrier_destroy(&done);
}

/* ---- set-up: a real image opened as the daemon opens one ---- */

int
main(void)
{
	static struct vc_itable itable;
	static struct vc_registry reg;
	struct vc_config *cfg;
	struct vc_inode *ino;
	struct stat st;
	int fd, rootfd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, test_alarm);
	alarm(3 * TEST_TIMEOUT);
	if (mkdtemp(test_dir) == NULL) {
		printf("Bail out! mkdtemp %s\n", test_dir);
		return 1;
	}
	snprintf(test_path, sizeof(test_path), "%s/img", test_dir);
	fd = open(test_path, O_RDWR | O_CREAT, 0644);
	/* Sized up front: no write here extends it (that takes another path). */
	if (fd < 0 || ftruncate(fd, 16 << 20) < 0) {
		printf("Bail out! create %s\n", test_path);
		return 1;
	}
	close(fd);
	rootfd = open(test_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0 || itable_init(&itable, rootfd) < 0 ||
	    cfg_defaults(&cfg) < 0) {
		printf("Bail out! set-up\n");
		return 1;
	}
	cfg->global.cache = VC_CACHE_NONE;
	cfg->global.aio = VC_AIO_THREADS;
	registry_init(&reg, &itable, cfg);
	if (itable_lookup(&itable, &itable.root, "img", &ino, &st) < 0 ||
	    image_open(&reg, ino, O_RDWR, &test_img) < 0) {
		printf("Bail out! open image (O_DIRECT under %s?)\n", test_dir);
		return 1;
	}
	test_blk = test_img->dio_align;
	printf("# backing O_DIRECT alignment: %u bytes\n", test_blk);

	test_many_edge_writers();
	test_aligned_vs_edge();

	image_release(&reg, test_img);
	itable_forget(&itable, ino, 1);
	registry_exit(&reg);
	itable_exit(&itable);
	cfg_free(cfg);
	test_cleanup();
	printf("1..%d\n", test_n);
	return test_failed ? 1 : 0;
}
