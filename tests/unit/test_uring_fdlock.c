/*
 * test_uring_fdlock.c - a request queued on an io_uring ring but not yet
 * consumed by the kernel keeps its image's fdlock, so no descriptor swap
 * can close the number its SQE names (TAP output).
 *
 * The fault hook makes every submit fail as a real -EBUSY would: the SQE
 * stays queued. While it is, the image's fdlock must refuse a writer;
 * once the fault is gone the read must complete with the image's bytes.
 * If the writer gets the lock (the defect), the test swaps descriptors
 * the way image_upgrade does while another open reuses the old number,
 * and the read then returns that other file's bytes.
 *
 * Covers the engine's ring (requests handed over to its thread) and a
 * ring the calling thread drives itself, as a FUSE queue thread does.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "image.h"
#include "uring.h"
#include "tap.h"

#define TEST_LEN	4096
#define TEST_HOLD_MS	200	/* how long the lock must stay refused */
#define TEST_WAIT_MS	5000	/* bound of every wait */

static char test_dir[] = "/var/tmp/vcachefs-fdlock.XXXXXX";
static char test_img[64], test_decoy[64];

struct test_read {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	ssize_t res;
	char buf[TEST_LEN];
};

static void
test_read_init(struct test_read *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
}

static void
test_read_done(void *arg, ssize_t res, const void *data)
{
	struct test_read *t = arg;

	pthread_mutex_lock(&t->lock);
	t->res = res;
	if (res > 0)
		memcpy(t->buf, data, (size_t)res < TEST_LEN ? (size_t)res : TEST_LEN);
	t->done = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

/* Wait for the callback; false after TEST_WAIT_MS. */
static bool
test_read_wait(struct test_read *t)
{
	struct timespec dl;
	bool done;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += TEST_WAIT_MS / 1000;
	pthread_mutex_lock(&t->lock);
	while (!t->done && pthread_cond_timedwait(&t->cond, &t->lock, &dl) == 0)
		;
	done = t->done;
	pthread_mutex_unlock(&t->lock);
	return done;
}

static bool
test_all(const char *buf, char c, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != c)
			return false;
	return true;
}

static void
test_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)ms * 1000000L };

	nanosleep(&ts, NULL);
}

/* pthread_rwlock_trywrlock from a thread that holds nothing, as a
 * descriptor swap would run. */
static void *
test_trywr_main(void *arg)
{
	pthread_rwlock_t *l = arg;
	int r = pthread_rwlock_trywrlock(l);

	if (r == 0)
		pthread_rwlock_unlock(l);
	return (void *)(intptr_t)r;
}

static int
test_trywr(struct vc_image *img)
{
	pthread_t th;
	void *r;

	pthread_create(&th, NULL, test_trywr_main, &img->fdlock);
	pthread_join(th, &r);
	return (int)(intptr_t)r;
}

/*
 * The writer must be refused for TEST_HOLD_MS. If it gets the lock, do
 * what a swap does meanwhile, with the old number reused by another
 * open: close, open the decoy (lowest free number: the old one), give
 * the image a new descriptor. Returns true when the lock was refused.
 */
static bool
test_hold_or_swap(struct vc_image *img, const char *what)
{
	for (unsigned ms = 0; ms < TEST_HOLD_MS; ms++) {
		int old, decoy;

		if (pthread_rwlock_trywrlock(&img->fdlock) != 0) {
			test_sleep_ms(1);
			continue;
		}
		old = img->fd;
		close(old);
		decoy = open(test_decoy, O_RDONLY);
		img->fd = open(test_img, O_RDWR);
		pthread_rwlock_unlock(&img->fdlock);
		test_ok(0, "%s: fdlock refused a writer while the SQE was "
		    "queued (got it after %u ms; fd %d closed, reused: %s)",
		    what, ms, old, decoy == old ? "yes" : "no");
		return false;
	}
	test_ok(1, "%s: fdlock refused a writer for %u ms while the SQE was "
	    "queued", what, TEST_HOLD_MS);
	return true;
}

static bool
test_wait_sq(struct io_uring *ring, unsigned n)
{
	for (unsigned ms = 0; ms < TEST_WAIT_MS; ms++) {
		if (io_uring_sq_ready(ring) >= n)
			return true;
		test_sleep_ms(1);
	}
	return false;
}

static bool
test_wait_unlocked(struct vc_image *img)
{
	for (unsigned ms = 0; ms < TEST_WAIT_MS; ms++) {
		if (test_trywr(img) == 0)
			return true;
		test_sleep_ms(1);
	}
	return false;
}

static void
test_engine(struct vc_uring *u, struct vc_image *img)
{
	struct test_read t;

	test_read_init(&t);
	gate_shared(&img->iogate);	/* as io.c does; the engine leaves it */
	test_ok(uring_read(u, img, TEST_LEN, 0, test_read_done, &t) == 0,
	    "engine: read taken by the engine");
	/* Queued: the engine's eventfd poll and our read. */
	test_ok(test_wait_sq(&u->ring, 2), "engine: the read's SQE is queued, "
	    "not submitted (submits fail)");
	test_hold_or_swap(img, "engine");
	test_ok(!t.done, "engine: no completion while the submit fails");
	fault_init(NULL);	/* submits work again */
	test_ok(test_read_wait(&t), "engine: the read completes once submits "
	    "work");
	test_ok(t.res == TEST_LEN && test_all(t.buf, 'I', TEST_LEN),
	    "engine: the read returns the image's bytes (res %zd, first byte "
	    "'%c')", t.res, t.res > 0 ? t.buf[0] : '?');
	test_ok(test_wait_unlocked(img), "engine: fdlock free for a writer "
	    "after the submit");
}

/* Reap this thread's ring until t is done; bounded. */
static void
test_reap(struct io_uring *ring, struct test_read *t)
{
	for (unsigned i = 0; i < TEST_WAIT_MS / 10 && !t->done; i++) {
		struct __kernel_timespec ts = { .tv_nsec = 10 * 1000000L };
		struct io_uring_cqe *cqe;

		if (io_uring_wait_cqe_timeout(ring, &cqe, &ts) == 0) {
			void *data = io_uring_cqe_get_data(cqe);
			int res = cqe->res;

			io_uring_cqe_seen(ring, cqe);
			uring_local_complete(data, res);
		}
	}
}

/* A ring this thread drives, as a FUSE queue thread does (tag 1). */
static void
test_local(struct vc_uring *u, struct vc_image *img)
{
	struct io_uring ring;
	struct vc_uring_local rc;
	struct test_read t;
	int r;

	memset(&rc, 0, sizeof(rc));
	r = io_uring_queue_init(16, &ring, 0);
	test_ok(r == 0, "local: ring set up (%d)", r);
	if (r < 0)
		return;
	rc.ring = &ring;
	rc.tag = 1;
	uring_local_set(&rc);

	/* 1: the thread's loop submits again and calls uring_local_flushed. */
	test_read_init(&t);
	fault_init("uring_submit:1+:EBUSY");
	gate_shared(&img->iogate);
	test_ok(uring_read(u, img, TEST_LEN, TEST_LEN, test_read_done, &t) == 0,
	    "local: read prepared on the thread's ring");
	test_ok(io_uring_sq_ready(&ring) == 1, "local: its SQE is still "
	    "queued after the failed submit");
	test_ok(test_trywr(img) != 0, "local: fdlock refuses a writer while "
	    "the SQE is queued");
	fault_init(NULL);
	r = io_uring_submit(&ring);
	uring_local_flushed(&rc);
	test_ok(r == 1 && rc.nbatch == 0 && test_trywr(img) == 0,
	    "local: the next submit releases the lock, before the completion "
	    "(submitted %d, held %u)", r, rc.nbatch);
	test_reap(&ring, &t);
	test_ok(t.done && t.res == TEST_LEN && test_all(t.buf, 'J', TEST_LEN),
	    "local: the read returns the image's bytes");

	/* 2: a submit not followed by uring_local_flushed (a make-room
	 * submit): the completion must release the lock. */
	test_read_init(&t);
	fault_init("uring_submit:1+:EBUSY");
	gate_shared(&img->iogate);
	test_ok(uring_read(u, img, TEST_LEN, TEST_LEN, test_read_done, &t) == 0 &&
	    test_trywr(img) != 0, "local: a second read holds the lock again");
	fault_init(NULL);
	io_uring_submit(&ring);
	test_reap(&ring, &t);
	test_ok(t.done && t.res == TEST_LEN && test_all(t.buf, 'J', TEST_LEN) &&
	    rc.nbatch == 0 && test_trywr(img) == 0, "local: its completion "
	    "releases the lock (held %u)", rc.nbatch);

	/* 3: more requests than the ring has entries while submits fail:
	 * those with no SQE are served at once with plain system calls,
	 * with the image's bytes, never with the ring's -EBUSY. */
	{
		enum { N = 20 };	/* the ring has 16 */
		static struct test_read many[N];
		unsigned sync_ok = 0, queued = 0, ok = 0;

		fault_init("uring_submit:1+:EBUSY");
		for (unsigned i = 0; i < N; i++) {
			test_read_init(&many[i]);
			gate_shared(&img->iogate);
			uring_read(u, img, TEST_LEN, 0, test_read_done, &many[i]);
			if (many[i].done && many[i].res == TEST_LEN &&
			    test_all(many[i].buf, 'I', TEST_LEN))
				sync_ok++;
		}
		queued = io_uring_sq_ready(&ring);
		test_ok(queued == 16 && sync_ok == N - 16, "local: with the ring "
		    "full, the requests beyond it are served at once (%u of %u "
		    "with the image's bytes; %u queued)", sync_ok, N - 16, queued);
		fault_init(NULL);
		io_uring_submit(&ring);
		uring_local_flushed(&rc);
		for (unsigned i = 0; i < N; i++) {
			test_reap(&ring, &many[i]);
			ok += many[i].done && many[i].res == TEST_LEN &&
			    test_all(many[i].buf, 'I', TEST_LEN);
		}
		test_ok(ok == N && rc.nbatch == 0 && test_trywr(img) == 0,
		    "local: all %u reads return the image's bytes (%u did; held "
		    "%u)", N, ok, rc.nbatch);
	}

	uring_local_set(NULL);
	io_uring_queue_exit(&ring);
}

static int
test_write_file(const char *path, char c0, char c1)
{
	char buf[2 * TEST_LEN];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
		return -1;
	memset(buf, c0, TEST_LEN);
	memset(buf + TEST_LEN, c1, TEST_LEN);
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
	struct vc_uring u;
	struct vc_image *img;
	int r;

	if (mkdtemp(test_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(test_img, sizeof(test_img), "%s/img", test_dir);
	snprintf(test_decoy, sizeof(test_decoy), "%s/decoy", test_dir);
	if (test_write_file(test_img, 'I', 'J') < 0 ||
	    test_write_file(test_decoy, 'D', 'D') < 0) {
		perror("test files");
		return 1;
	}

	/* A minimal open image, as image_create makes one: writeback. */
	img = calloc(1, sizeof(*img));
	img->relpath = strdup("img");
	img->policy = policy_get(VC_CACHE_WRITEBACK);
	img->aio = VC_AIO_IO_URING;
	img->fd = open(test_img, O_RDWR | O_CLOEXEC);
	img->fd_writable = true;
	pthread_rwlock_init(&img->fdlock, NULL);
	gate_init(&img->sizelock);
	gate_init(&img->iogate);
	rangelock_init(&img->rmw);

	/* Before the engine starts: it reads the rules from its first submit. */
	fault_init("uring_submit:1+:EBUSY");
	r = uring_init(&u);
	if (r < 0) {
		test_skip("io_uring engine", "io_uring is not available here");
	} else {
		img->uring = &u;
		test_engine(&u, img);
		test_local(&u, img);
		fault_init(NULL);
		uring_exit(&u);
	}

	close(img->fd);
	pthread_rwlock_destroy(&img->fdlock);
	gate_destroy(&img->sizelock);
	gate_destroy(&img->iogate);
	rangelock_destroy(&img->rmw);
	free(img->relpath);
	free(img);
	unlink(test_img);
	unlink(test_decoy);
	rmdir(test_dir);
	printf("1..%d\n", test_n);
	return test_failed != 0;
}
