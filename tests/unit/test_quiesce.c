/*
 * test_quiesce.c - io_quiesce() waits for the I/O in flight of an image
 * and holds back new I/O until io_resume() (TAP output).
 *
 * On real images opened as the daemon opens them: one with the threads
 * engine (writeback), one with the io_uring engine (none, O_DIRECT, so
 * reads go through the ring). I/O is held in flight with the test fault
 * hook: a flush delay (threads), failing ring submits (io_uring).
 *   1. quiesce does not return while a request is in flight, and returns
 *      once it is finished;
 *   2. while quiesced, a new request from an ordinary thread waits, and
 *      one from a thread that must not block (a FUSE ring queue thread)
 *      returns at once without being done; other images go on;
 *   3. resume lets both go, with the right bytes.
 * A hang fails through a watchdog (alarm).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fault.h"
#include "image.h"
#include "inode.h"
#include "io.h"
#include "tap.h"
#include "uring.h"
#include "workpool.h"

#define TEST_LEN	4096
#define TEST_HOLD_MS	200	/* how long something must not happen */
#define TEST_WAIT_MS	10000	/* bound of every wait */

static char test_dir[] = "/var/tmp/vcachefs-quiesce.XXXXXX";

static void
test_alarm(int sig)
{
	(void)sig;
	printf("not ok - watchdog: the test hung (a quiesce or resume that "
	    "never returns)\n");
	_exit(1);
}

static void
test_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
	    .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Wait up to ms for *flag (set by another thread). */
static bool
test_wait_flag(const bool *flag, unsigned ms)
{
	for (unsigned i = 0; i < ms; i++) {
		if (__atomic_load_n(flag, __ATOMIC_ACQUIRE))
			return true;
		test_sleep_ms(1);
	}
	return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}

/* Whether *flag stays false for ms. */
static bool
test_stays_false(const bool *flag, unsigned ms)
{
	return !test_wait_flag(flag, ms);
}

static int64_t
test_inflight(struct vc_image *img)
{
	return __atomic_load_n(&img->stats.inflight, __ATOMIC_RELAXED);
}

static bool
test_wait_inflight(struct vc_image *img, int64_t n)
{
	for (unsigned i = 0; i < TEST_WAIT_MS; i++) {
		if (test_inflight(img) == n)
			return true;
		test_sleep_ms(1);
	}
	return false;
}

/* ---- one request and its result ---- */

struct test_req {
	struct vc_image *img;
	int op;			/* 'r', 'w', 'f' */
	off_t off;
	char wbuf[TEST_LEN];
	bool submitted;		/* io_submit_* returned */
	bool done;		/* the done callback ran */
	ssize_t res;
	char rbuf[TEST_LEN];
	pthread_t th;
};

static void
test_done(void *arg, ssize_t res, const void *data)
{
	struct test_req *t = arg;

	t->res = res;
	if (res > 0 && data != NULL)
		memcpy(t->rbuf, data, (size_t)res < TEST_LEN ? (size_t)res :
		    TEST_LEN);
	__atomic_store_n(&t->done, true, __ATOMIC_RELEASE);
}

static void
test_submit(struct test_req *t)
{
	switch (t->op) {
	case 'r':
		io_submit_read(t->img, TEST_LEN, t->off, test_done, t);
		break;
	case 'w':
		io_submit_write(t->img, t->wbuf, TEST_LEN, t->off, false,
		    test_done, t);
		break;
	default:
		io_submit_fsync(t->img, true, test_done, t);
		break;
	}
	__atomic_store_n(&t->submitted, true, __ATOMIC_RELEASE);
}

static void *
test_submit_main(void *arg)
{
	test_submit(arg);
	return NULL;
}

/* A FUSE ring queue thread: marked as one that must not block. */
static bool
test_always_busy(void)
{
	return true;
}

static void *
test_submit_nonblocking_main(void *arg)
{
	workpool_set_nonblocking(test_always_busy);
	test_submit(arg);
	workpool_set_nonblocking(NULL);
	return NULL;
}

static void
test_start(struct test_req *t, struct vc_image *img, int op, off_t off,
    bool nonblocking)
{
	memset(t, 0, sizeof(*t));
	t->img = img;
	t->op = op;
	t->off = off;
	memset(t->wbuf, 'W', sizeof(t->wbuf));
	pthread_create(&t->th, NULL, nonblocking ?
	    test_submit_nonblocking_main : test_submit_main, t);
}

/* ---- quiesce in a thread of its own ---- */

struct test_q {
	struct vc_image *img;
	bool returned;
	int64_t inflight_at_return;
	pthread_t th;
};

static void *
test_quiesce_main(void *arg)
{
	struct test_q *q = arg;

	io_quiesce(q->img);
	q->inflight_at_return = test_inflight(q->img);
	__atomic_store_n(&q->returned, true, __ATOMIC_RELEASE);
	return NULL;
}

static void
test_quiesce_start(struct test_q *q, struct vc_image *img)
{
	memset(q, 0, sizeof(*q));
	q->img = img;
	pthread_create(&q->th, NULL, test_quiesce_main, q);
}

static bool
test_all(const char *buf, char c, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != c)
			return false;
	return true;
}

/*
 * The body, for one engine. hold() puts a request of img in flight that
 * stays until release() is called.
 */
static void
test_engine(const char *name, struct vc_image *img, struct vc_image *other,
    struct test_req *held, void (*release)(void))
{
	struct test_q q;
	struct test_req rd, wr, oth;
	bool ok;

	test_ok(test_wait_inflight(img, 1), "%s: a request is in flight",
	    name);
	test_quiesce_start(&q, img);
	test_ok(test_stays_false(&q.returned, TEST_HOLD_MS),
	    "%s: quiesce does not return while it is in flight", name);
	/* An image not quiesced goes on meanwhile. */
	test_start(&oth, other, 'r', 0, false);
	ok = test_wait_flag(&oth.done, TEST_WAIT_MS) && oth.res == TEST_LEN;
	test_ok(ok, "%s: another image's read is done meanwhile (res %zd)", name,
	    oth.res);
	pthread_join(oth.th, NULL);

	release();
	ok = test_wait_flag(&q.returned, TEST_WAIT_MS) &&
	    q.inflight_at_return == 0;
	test_ok(ok, "%s: quiesce returns once it is "
	    "finished, with none in flight (%lld)", name,
	    (long long)q.inflight_at_return);
	pthread_join(q.th, NULL);
	ok = test_wait_flag(&held->done, TEST_WAIT_MS) && held->res >= 0;
	test_ok(ok, "%s: the held request succeeded (res %zd)", name, held->res);

	/* Quiesced: new I/O is held back. */
	test_start(&rd, img, 'r', 0, false);
	test_ok(test_stays_false(&rd.done, TEST_HOLD_MS) && !rd.submitted,
	    "%s: while quiesced, a read from an ordinary thread waits", name);
	test_start(&wr, img, 'w', TEST_LEN, true);
	test_ok(test_wait_flag(&wr.submitted, TEST_WAIT_MS),
	    "%s: while quiesced, a thread that must not block is not held",
	    name);
	test_ok(!wr.done && test_inflight(img) == 0, "%s: ... and its write "
	    "is not done (in flight %lld)", name, (long long)test_inflight(img));
	pthread_join(wr.th, NULL);

	io_resume(img);
	ok = test_wait_flag(&rd.done, TEST_WAIT_MS) && rd.res == TEST_LEN &&
	    test_all(rd.rbuf, 'I', TEST_LEN);
	test_ok(ok, "%s: after resume the read is "
	    "done with the image's bytes (res %zd)", name, rd.res);
	pthread_join(rd.th, NULL);
	ok = test_wait_flag(&wr.done, TEST_WAIT_MS) && wr.res == TEST_LEN;
	test_ok(ok, "%s: after resume the parked write is done (res %zd)", name,
	    wr.res);
	/* Read back what the parked write wrote. */
	test_start(&rd, img, 'r', TEST_LEN, false);
	test_ok(test_wait_flag(&rd.done, TEST_WAIT_MS) &&
	    test_all(rd.rbuf, 'W', TEST_LEN), "%s: the parked write's bytes "
	    "are in the image", name);
	pthread_join(rd.th, NULL);
}

static void
test_release_threads(void)
{
	fault_init(NULL);	/* later flushes: no delay (this one sleeps on) */
}

static void
test_release_uring(void)
{
	fault_init(NULL);	/* submits work again */
}

static int
test_make(const char *name, char c)
{
	char path[128], buf[16 * TEST_LEN];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", test_dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	memset(buf, c, sizeof(buf));
	if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int
main(void)
{
	static struct vc_itable itable;
	static struct vc_registry reg;
	static struct vc_uring u;
	struct vc_config *cfg;
	struct vc_inode *ia, *ib, *ic;
	struct vc_image *a, *b, *c;
	struct test_req held;
	struct stat st;
	char path[128];
	int rootfd, r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, test_alarm);
	alarm(120);
	if (mkdtemp(test_dir) == NULL || test_make("a", 'I') < 0 ||
	    test_make("b", 'I') < 0 || test_make("c", 'C') < 0) {
		printf("Bail out! set-up of %s\n", test_dir);
		return 1;
	}
	rootfd = open(test_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0 || itable_init(&itable, rootfd) < 0 ||
	    cfg_defaults(&cfg) < 0 || workpool_start(2) < 0) {
		printf("Bail out! set-up\n");
		return 1;
	}
	registry_init(&reg, &itable, cfg);
	/* Before the engine starts: it reads the rules from its first submit. */
	fault_init("uring_submit:1+:EBUSY");
	r = uring_init(&u);
	reg.uring = r == 0 ? &u : NULL;
	if (r == 0)
		fault_init(NULL);

	/* a: threads engine; c: another image, never quiesced. */
	cfg->global.cache = VC_CACHE_WRITEBACK;
	cfg->global.aio = VC_AIO_THREADS;
	if (itable_lookup(&itable, &itable.root, "a", &ia, &st) < 0 ||
	    image_open(&reg, ia, O_RDWR, &a) < 0 ||
	    itable_lookup(&itable, &itable.root, "c", &ic, &st) < 0 ||
	    image_open(&reg, ic, O_RDWR, &c) < 0) {
		printf("Bail out! open images\n");
		return 1;
	}
	/* A flush held in the backing sync (the fault hook's delay). */
	fault_init("fsync:*:delay=1000");
	test_start(&held, a, 'f', 0, false);
	test_engine("threads", a, c, &held, test_release_threads);
	pthread_join(held.th, NULL);

	/* b: io_uring engine, O_DIRECT: reads go through the ring. */
	if (reg.uring == NULL) {
		test_skip("io_uring engine", "io_uring is not available here");
	} else {
		cfg->global.cache = VC_CACHE_NONE;
		cfg->global.aio = VC_AIO_IO_URING;
		if (itable_lookup(&itable, &itable.root, "b", &ib, &st) < 0 ||
		    image_open(&reg, ib, O_RDWR, &b) < 0) {
			printf("Bail out! open b (O_DIRECT under %s?)\n", test_dir);
			return 1;
		}
		test_ok(b->uring == &u, "uring: the image uses the engine");
		/* A read held on the ring: its submits fail until released. */
		fault_init("uring_submit:1+:EBUSY");
		test_start(&held, b, 'r', 0, false);
		test_engine("uring", b, c, &held, test_release_uring);
		pthread_join(held.th, NULL);
		image_release(&reg, b);
		itable_forget(&itable, ib, 1);
	}

	image_release(&reg, a);
	image_release(&reg, c);
	itable_forget(&itable, ia, 1);
	itable_forget(&itable, ic, 1);
	if (reg.uring != NULL)
		uring_exit(&u);
	workpool_stop();
	registry_exit(&reg);
	itable_exit(&itable);
	cfg_free(cfg);
	for (const char *n = "abc"; *n != '\0'; n++) {
		snprintf(path, sizeof(path), "%s/%c", test_dir, *n);
		unlink(path);
	}
	rmdir(test_dir);
	printf("1..%d\n", test_n);
	return test_failed ? 1 : 0;
}
