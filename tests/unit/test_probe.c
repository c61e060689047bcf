/*
 * test_probe.c - probe_image() on real images made with qemu-img, on odd
 * files, and on every file of the crafted corpus in tests/images/bad/
 * (TAP output). Run from the repository root.
 *
 * Each corpus file has FILE.note (written by tests/images/make-bad.py)
 * saying what probing it must give; see that script for the keys.
 * Without qemu-img the real-image cases say "skip".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "probe.h"
#include "qcow2.h"
#include "tap.h"

#define TEST_CORPUS	"tests/images/bad"
#define TEST_MNT	"/mnt/vm"
#define TEST_SRC	"/srv/vm"
#define TEST_TMPFS	0x01021994	/* TMPFS_MAGIC */
#define TEST_CHAIN_MAX	16

static char test_dir[] = "/tmp/vcachefs-probe.XXXXXX";


/* NUL-terminated within size; with printable, also one printable line. */
static int
test_bounded(const char *s, size_t size, int printable)
{
	const char *nul = memchr(s, '\0', size);

	if (nul == NULL)
		return 0;
	for (; printable && s < nul; s++)
		if (*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* Every string of a probe result is bounded, the one-liners printable. */
static int
test_probe_bounded(const struct vc_probe *p)
{
	return test_bounded(p->backing, sizeof(p->backing), 0) &&
	    test_bounded(p->backing_fmt, sizeof(p->backing_fmt), 0) &&
	    test_bounded(p->data_file, sizeof(p->data_file), 0) &&
	    test_bounded(p->warning, sizeof(p->warning), 1) &&
	    test_bounded(p->libqcow_error, sizeof(p->libqcow_error), 1) &&
	    p->source != NULL && (strcmp(p->source, "libqcow") == 0 ||
	    strcmp(p->source, "header") == 0 || strcmp(p->source, "none") == 0);
}

#include "testsh.h"

static int
test_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

/* Bytes this process has read so far (/proc/self/io rchar), or -1. */
static long long
test_rchar(void)
{
	char line[128];
	long long v = -1;
	FILE *f = fopen("/proc/self/io", "re");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "rchar: %lld", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* Pages of name in dirfd that are in the page cache, or -1. */
static long
test_resident(int dirfd, const char *name)
{
	struct stat st;
	unsigned char *vec = NULL;
	void *map = MAP_FAILED;
	long n = -1, pages, page = sysconf(_SC_PAGESIZE);
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0)
		goto out;
	pages = (st.st_size + page - 1) / page;
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	vec = malloc((size_t)pages);
	if (map == MAP_FAILED || vec == NULL ||
	    mincore(map, (size_t)st.st_size, vec) < 0)
		goto out;
	n = 0;
	for (long i = 0; i < pages; i++)
		n += vec[i] & 1;
out:
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	free(vec);
	if (fd >= 0)
		close(fd);
	return n;
}

/* Write back and read all of name, so its clean pages are cached. */
static int
test_cache_file(int dirfd, const char *name)
{
	char buf[65536];
	ssize_t n;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (fsync(fd) < 0) {
		close(fd);
		return -1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	close(fd);
	return n < 0 ? -1 : 0;
}

/* ---- images made by qemu-img ---- */

static const struct {
	const char *name;
	const char *create;	/* qemu-img arguments, run in test_dir */
	enum qcow2_format format;
	uint32_t version;
	uint64_t size;
	uint32_t crypt, snapshots;
	uint64_t incompat;
	const char *backing, *backing_fmt, *data_file;
	const char *source;
} test_images[] = {
	{ "base.qcow2", "create -f qcow2 base.qcow2 64M",
	  QCOW2_FORMAT_QCOW2, 3, 64 << 20, 0, 0, 0, "", "", "", "libqcow" },
	{ "v2.qcow2", "create -f qcow2 -o compat=0.10 v2.qcow2 64M",
	  QCOW2_FORMAT_QCOW2, 2, 64 << 20, 0, 0, 0, "", "", "", "libqcow" },
	{ "overlay.qcow2", "create -f qcow2 -b base.qcow2 -F qcow2 "
	  "overlay.qcow2", QCOW2_FORMAT_QCOW2, 3, 64 << 20, 0, 0, 0,
	  "base.qcow2", "qcow2", "", "libqcow" },
	{ "luks.qcow2", "create -f qcow2 --object secret,id=s0,data=pass "
	  "-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "
	  "luks.qcow2 16M", QCOW2_FORMAT_QCOW2, 3, 16 << 20,
	  QCOW2_CRYPT_LUKS, 0, 0, "", "", "", "libqcow" },
	/* libqcow refuses the next three: the backing chain must survive. */
	{ "zstd.qcow2", "create -f qcow2 -o compression_type=zstd "
	  "-b base.qcow2 -F qcow2 zstd.qcow2", QCOW2_FORMAT_QCOW2, 3,
	  64 << 20, 0, 0, QCOW2_INCOMPAT_COMPRESSION, "base.qcow2", "qcow2",
	  "", "header" },
	{ "extl2.qcow2", "create -f qcow2 -o extended_l2=on "
	  "-b base.qcow2 -F qcow2 extl2.qcow2", QCOW2_FORMAT_QCOW2, 3,
	  64 << 20, 0, 0, QCOW2_INCOMPAT_EXTL2, "base.qcow2", "qcow2", "",
	  "header" },
	{ "datafile.qcow2", "create -f qcow2 -o data_file=datafile.raw "
	  "datafile.qcow2 16M", QCOW2_FORMAT_QCOW2, 3, 16 << 20, 0, 0,
	  QCOW2_INCOMPAT_DATA_FILE, "", "", "datafile.raw", "header" },
	{ "snap.qcow2", "create -f qcow2 snap.qcow2 16M && qemu-img "
	  "snapshot -c s1 snap.qcow2 && qemu-img snapshot -c s2 snap.qcow2",
	  QCOW2_FORMAT_QCOW2, 3, 16 << 20, 0, 2, 0, "", "", "", "libqcow" },
	{ "v1.qcow", "create -f qcow v1.qcow 16M",
	  QCOW2_FORMAT_QCOW1, 1, 16 << 20, 0, 0, 0, "", "", "", "libqcow" },
	{ "v1-overlay.qcow", "create -f qcow -b v1.qcow -F qcow "
	  "v1-overlay.qcow", QCOW2_FORMAT_QCOW1, 1, 16 << 20, 0, 0, 0,
	  "v1.qcow", "", "", "libqcow" },
	{ "raw.img", "create -f raw raw.img 1M",
	  QCOW2_FORMAT_RAW, 0, 1 << 20, 0, 0, 0, "", "", "", "header" },
};

#define TEST_NIMAGES (sizeof(test_images) / sizeof(test_images[0]))

static void
test_images_probe(int dirfd)
{
	struct vc_probe p;
	char rel[PATH_MAX], reason[QCOW2_REASON_MAX];
	size_t i;
	int r;

	for (i = 0; i < TEST_NIMAGES; i++) {
		if (test_qemu_img("", test_images[i].create) != 0) {
			test_ok(0, "%s: qemu-img %s", test_images[i].name,
			    test_images[i].create);
			continue;
		}
		r = probe_image(dirfd, test_images[i].name, true, &p);
		test_ok(r == 0 && test_probe_bounded(&p) &&
		    p.format == test_images[i].format &&
		    p.version == test_images[i].version &&
		    p.virtual_size == test_images[i].size &&
		    p.crypt_method == test_images[i].crypt &&
		    p.nb_snapshots == test_images[i].snapshots &&
		    p.incompat == test_images[i].incompat &&
		    strcmp(p.backing, test_images[i].backing) == 0 &&
		    strcmp(p.backing_fmt, test_images[i].backing_fmt) == 0 &&
		    strcmp(p.data_file, test_images[i].data_file) == 0 &&
		    strcmp(p.source, test_images[i].source) == 0 &&
		    p.warning[0] == '\0' &&
		    (strcmp(p.source, "libqcow") == 0 ||
		    p.format == QCOW2_FORMAT_RAW) ==
		    (p.libqcow_error[0] == '\0'),
		    "%s: %s v%u, %llu bytes, crypt %u, %u snapshots, backing "
		    "\"%s\", from %s%s%s", test_images[i].name,
		    qcow2_format_name(p.format), p.version,
		    (unsigned long long)p.virtual_size, p.crypt_method,
		    p.nb_snapshots, p.backing, p.source,
		    p.libqcow_error[0] != '\0' ? "; " : "", p.libqcow_error);
	}

	/* The chain of a zstd overlay, which libqcow cannot open, resolves. */
	r = probe_image(dirfd, "zstd.qcow2", true, &p);
	test_ok(r == 0 && strstr(p.libqcow_error,
	    "unsupported incompatible features") != NULL &&
	    qcow2_resolve_backing("zstd.qcow2", p.backing, TEST_MNT, TEST_SRC,
	    rel, sizeof(rel), reason, sizeof(reason)) == 0 &&
	    strcmp(rel, "base.qcow2") == 0,
	    "zstd.qcow2: libqcow refused (%s), backing still resolves to "
	    "\"%s\"", p.libqcow_error, rel);
}

/*
 * A raw image whose guest wrote a qcow2 header naming another file. The
 * parser reads it as qcow2 (it is one, byte for byte); keeping it raw is
 * the caller's policy, through want_qcow = false, which reads nothing.
 */
static void
test_guest_header(int dirfd)
{
	struct vc_probe p;
	long long before, base, after;
	int r;

	if (test_sh("qemu-img create -q -f raw guest.img 4M && "
	    "qemu-img create -q -f qcow2 -u -b /etc/shadow -F raw evil.qcow2 "
	    "4M && dd if=evil.qcow2 of=guest.img bs=64k count=1 "
	    "conv=notrunc") != 0) {
		test_ok(0, "guest.img: made with qemu-img and dd");
		return;
	}
	r = probe_image(dirfd, "guest.img", true, &p);
	test_ok(r == 0 && p.format == QCOW2_FORMAT_QCOW2 &&
	    strcmp(p.backing, "/etc/shadow") == 0,
	    "guest.img, want_qcow: the header is parsed (backing \"%s\")",
	    p.backing);

	/* What reading /proc/self/io costs by itself, then with a probe. */
	before = test_rchar();
	base = test_rchar() - before;
	before = test_rchar();
	r = probe_image(dirfd, "guest.img", false, &p);
	after = test_rchar() - before;
	test_ok(r == 0 && p.format == QCOW2_FORMAT_RAW &&
	    p.backing[0] == '\0' && p.virtual_size == 4 << 20 &&
	    strcmp(p.source, "none") == 0 && before >= 0 &&
	    after - base < 4096,
	    "guest.img, want_qcow false: raw, 4 MiB, nothing read "
	    "(%lld bytes)", after - base);
	before = test_rchar();
	r = probe_image(dirfd, "guest.img", true, &p);
	after = test_rchar() - before;
	test_ok(r == 0 && after - base >= QCOW2_PROBE_BYTES &&
	    after - base < 4 * QCOW2_PROBE_BYTES,
	    "guest.img, want_qcow: one bounded read (%lld bytes)",
	    after - base);
}

/* Files that are not plain images, and names that leave the directory. */
static void
test_odd_files(int dirfd)
{
	struct vc_probe p;
	int r, r2;

	if (test_sh("mkdir sub && ln -s base.qcow2 link.qcow2 && "
	    "ln -s sub lnkdir && mkfifo fifo.img && "
	    "cp overlay.qcow2 sub/overlay.qcow2") != 0) {
		test_ok(0, "odd files: made");
		return;
	}
	r = probe_image(dirfd, "link.qcow2", true, &p);
	r2 = probe_image(dirfd, "link.qcow2", false, &p);
	test_ok(r == -ELOOP && r2 == -ELOOP, "symlink: -ELOOP (%d, %d)", r,
	    r2);
	r = probe_image(dirfd, "fifo.img", true, &p);
	r2 = probe_image(dirfd, "fifo.img", false, &p);
	test_ok(r == -EINVAL && r2 == -EINVAL,
	    "FIFO: -EINVAL without blocking (%d, %d)", r, r2);
	r = probe_image(dirfd, "sub", true, &p);
	test_ok(r == -EINVAL, "directory: -EINVAL (%d)", r);
	r = probe_image(dirfd, "missing.qcow2", true, &p);
	test_ok(r == -ENOENT, "missing file: -ENOENT (%d)", r);
	r = probe_image(dirfd, "sub/overlay.qcow2", true, &p);
	test_ok(r == 0 && p.format == QCOW2_FORMAT_QCOW2 &&
	    strcmp(p.backing, "base.qcow2") == 0,
	    "sub/overlay.qcow2: a path below dirfd works (%d)", r);
	r = probe_image(dirfd, "lnkdir/overlay.qcow2", true, &p);
	test_ok(r == -ELOOP, "symlinked directory in the path: -ELOOP (%d)",
	    r);
	r = probe_image(dirfd, "../etc/passwd", true, &p);
	r2 = probe_image(dirfd, "/etc/passwd", true, &p);
	test_ok(r == -EXDEV && r2 == -EXDEV &&
	    probe_image(dirfd, "../etc/passwd", false, &p) == -EXDEV &&
	    probe_image(dirfd, "lnkdir/overlay.qcow2", false, &p) == -ELOOP,
	    "\"..\" and absolute names: -EXDEV (%d, %d), also without "
	    "want_qcow", r, r2);
}

/* PROBE_DROP_CACHE leaves none of the image in the page cache. */
static void
test_drop_cache(int dirfd)
{
	struct vc_probe p;
	struct statfs sfs;
	long before, after;
	int r;

	if (fstatfs(dirfd, &sfs) == 0 && sfs.f_type == TEST_TMPFS) {
		test_skip("PROBE_DROP_CACHE", "tmpfs has no page cache to drop");
		test_skip("no flag keeps the cache", "tmpfs");
		return;
	}
	if (test_cache_file(dirfd, "base.qcow2") < 0 ||
	    (before = test_resident(dirfd, "base.qcow2")) <= 0) {
		test_ok(0, "base.qcow2: cached before the probe");
		return;
	}
	r = probe_image_flags(dirfd, "base.qcow2", true, PROBE_DROP_CACHE, &p);
	after = test_resident(dirfd, "base.qcow2");
	test_ok(r == 0 && strcmp(p.source, "libqcow") == 0 && after == 0,
	    "PROBE_DROP_CACHE: %ld cached pages before, %ld after", before,
	    after);
	test_cache_file(dirfd, "base.qcow2");
	r = probe_image(dirfd, "base.qcow2", true, &p);
	after = test_resident(dirfd, "base.qcow2");
	test_ok(r == 0 && after > 0, "no flag: the cache is left alone "
	    "(%ld pages)", after);
}

static void
test_real_images(void)
{
	int dirfd;

	if (system("qemu-img --version >/dev/null 2>&1") != 0) {
		for (size_t i = 0; i < TEST_NIMAGES + 1 + 3 + 7 + 2; i++)
			test_skip("qemu-img images", "qemu-img not found");
		return;
	}
	if (mkdtemp(test_dir) == NULL ||
	    (dirfd = open(test_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		test_ok(0, "temporary directory %s: %s", test_dir,
		    strerror(errno));
		return;
	}
	test_images_probe(dirfd);
	test_guest_header(dirfd);
	test_odd_files(dirfd);
	test_drop_cache(dirfd);
	close(dirfd);
	test_sh("rm -rf %s", test_dir);
}

/* ---- the corpus ---- */

struct test_note {
	char expect[256], reason[256], source[256], backing[256];
};

/* Read NAME.note; 0 or -1 when missing or without "expect:". */
static int
test_read_note(int dirfd, const char *name, struct test_note *n)
{
	char path[NAME_MAX + 8], line[256];
	FILE *f;
	int fd;

	memset(n, 0, sizeof(*n));
	snprintf(path, sizeof(path), "%s.note", name);
	if ((fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	if ((f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "expect: ", 8) == 0)
			snprintf(n->expect, sizeof(n->expect), "%s", line + 8);
		else if (strncmp(line, "reason: ", 8) == 0)
			snprintf(n->reason, sizeof(n->reason), "%s", line + 8);
		else if (strncmp(line, "source: ", 8) == 0)
			snprintf(n->source, sizeof(n->source), "%s", line + 8);
		else if (strncmp(line, "backing: ", 9) == 0)
			snprintf(n->backing, sizeof(n->backing), "%s",
			    line + 9);
	}
	fclose(f);
	return n->expect[0] != '\0' ? 0 : -1;
}

/* Does probing name give what its note says? */
static void
test_corpus_file(int dirfd, const char *name)
{
	struct test_note n;
	struct vc_probe p;
	struct stat st;
	char rel[PATH_MAX], reason[QCOW2_REASON_MAX];
	int r, rr = 0, ok;

	if (test_read_note(dirfd, name, &n) < 0) {
		test_ok(0, "%s: has a note with \"expect:\"", name);
		return;
	}
	r = probe_image(dirfd, name, true, &p);
	test_ok(r == 0 && test_probe_bounded(&p) &&
	    fstatat(dirfd, name, &st, 0) == 0 && st.st_size < 8192,
	    "%s: probed, bounded result, file under 8 KiB", name);

	rel[0] = reason[0] = '\0';
	if (p.backing[0] != '\0')
		rr = qcow2_resolve_backing(name, p.backing, TEST_MNT, TEST_SRC,
		    rel, sizeof(rel), reason, sizeof(reason));
	if (strcmp(n.expect, "raw") == 0)
		ok = p.format == QCOW2_FORMAT_RAW && p.warning[0] == '\0';
	else if (strcmp(n.expect, "raw-warning") == 0)
		ok = p.format == QCOW2_FORMAT_RAW && p.backing[0] == '\0' &&
		    p.warning[0] != '\0' && strstr(p.warning, n.reason) != NULL;
	else if (strcmp(n.expect, "qcow2") == 0)
		ok = p.format != QCOW2_FORMAT_RAW && p.warning[0] == '\0' &&
		    rr == 0 && strcmp(rel, n.backing) == 0;
	else if (strcmp(n.expect, "qcow2-refused-backing") == 0)
		ok = p.format != QCOW2_FORMAT_RAW && p.warning[0] == '\0' &&
		    p.backing[0] != '\0' && rr < 0 && rel[0] == '\0' &&
		    strstr(reason, n.reason) != NULL &&
		    test_bounded(reason, sizeof(reason), 1);
	else
		ok = 0;
	if (n.source[0] != '\0' && strcmp(p.source, n.source) != 0)
		ok = 0;
	test_ok(ok, "%s: %s%s%s (got %s from %s%s%s%s%s)", name, n.expect,
	    n.reason[0] != '\0' ? ", " : "", n.reason,
	    qcow2_format_name(p.format), p.source,
	    p.warning[0] != '\0' ? ", warning: " : "", p.warning,
	    reason[0] != '\0' ? ", resolver: " : "", reason);
}

/*
 * Follow a backing chain the way a caller should: resolve every name,
 * stop at a name already seen (a loop) or after TEST_CHAIN_MAX links.
 * Returns the number of images walked, or -ELOOP.
 */
static int
test_walk_chain(int dirfd, const char *start)
{
	char seen[TEST_CHAIN_MAX][PATH_MAX], reason[QCOW2_REASON_MAX];
	struct vc_probe p;
	int n, i;

	snprintf(seen[0], sizeof(seen[0]), "%s", start);
	for (n = 1; n < TEST_CHAIN_MAX; n++) {
		if (probe_image(dirfd, seen[n - 1], true, &p) < 0 ||
		    p.backing[0] == '\0')
			return n;
		if (qcow2_resolve_backing(seen[n - 1], p.backing, TEST_MNT,
		    TEST_SRC, seen[n], sizeof(seen[n]), reason,
		    sizeof(reason)) < 0)
			return n;
		for (i = 0; i < n; i++)
			if (strcmp(seen[i], seen[n]) == 0)
				return -ELOOP;
	}
	return -ELOOP;
}

static void
test_corpus(void)
{
	struct dirent **ents = NULL;
	size_t len;
	int dirfd, n, files = 0, fds;

	dirfd = open(TEST_CORPUS, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	n = scandir(TEST_CORPUS, &ents, NULL, alphasort);
	if (dirfd < 0 || n < 0) {
		test_ok(0, "%s: readable (run from the repository root)",
		    TEST_CORPUS);
		if (dirfd >= 0)
			close(dirfd);
		return;
	}
	fds = test_count_fds();
	for (int i = 0; i < n; i++) {
		len = strlen(ents[i]->d_name);
		if (ents[i]->d_name[0] != '.' && !(len > 5 &&
		    strcmp(ents[i]->d_name + len - 5, ".note") == 0)) {
			test_corpus_file(dirfd, ents[i]->d_name);
			files++;
		}
		free(ents[i]);
	}
	free(ents);
	test_ok(files >= 30, "corpus: %d files", files);
	test_ok(test_count_fds() == fds,
	    "corpus: no descriptor left open (%d before)", fds);
	test_ok(test_walk_chain(dirfd, "loop-a.qcow2") == -ELOOP,
	    "loop-a.qcow2 -> loop-b.qcow2 -> loop-a.qcow2: a chain walker "
	    "sees the loop");
	test_ok(test_walk_chain(dirfd, "valid-v3.qcow2") == 1,
	    "valid-v3.qcow2: a chain of one");
	close(dirfd);
}

int
main(void)
{
	test_real_images();
	test_corpus();
	printf("1..%d\n", test_n);
	return test_failed ? 1 : 0;
}
