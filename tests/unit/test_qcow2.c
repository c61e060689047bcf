/*
 * test_qcow2.c - the qcow/qcow2 header parser and the backing name
 * resolver (TAP output). Run from the repository root.
 *
 * Headers are built here byte by byte for the cases the corpus in
 * tests/images/bad/ does not cover (test_probe runs that one), and real
 * images are made with qemu-img in a temporary directory; without
 * qemu-img those cases say "skip".
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"
#include "tap.h"


/* A string is NUL-terminated within its array and printable on one line. */
static int
test_printable(const char *s, size_t size)
{
	const char *nul = memchr(s, '\0', size);

	if (nul == NULL)
		return 0;
	for (; s < nul; s++)
		if (*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* ---- headers built by hand ---- */

struct test_img {
	uint8_t b[4096];
	size_t len;
	size_t ext;		/* where the next extension goes */
};

static void
test_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
test_put64(uint8_t *p, uint64_t v)
{
	test_put32(p, (uint32_t)(v >> 32));
	test_put32(p + 4, (uint32_t)v);
}

/*
 * A valid qcow2 v3 image of 1 MiB with 512-byte clusters: header,
 * refcount table, refcount block, L1 table. No extensions yet: the zeros
 * after the header read as the end marker.
 */
static void
test_v3(struct test_img *t)
{
	memset(t, 0, sizeof(*t));
	test_put32(t->b, QCOW2_MAGIC);
	test_put32(t->b + 4, 3);
	test_put32(t->b + 20, 9);		/* cluster_bits */
	test_put64(t->b + 24, 1 << 20);		/* size */
	test_put32(t->b + 36, 32);		/* l1_size */
	test_put64(t->b + 40, 0x600);		/* l1_table_offset */
	test_put64(t->b + 48, 0x200);		/* refcount_table_offset */
	test_put32(t->b + 56, 1);		/* refcount_table_clusters */
	test_put32(t->b + 96, 4);		/* refcount_order */
	test_put32(t->b + 100, 112);		/* header_length */
	t->len = 2048;
	t->ext = 112;
}

static void
test_add_ext(struct test_img *t, uint32_t type, const void *data,
    uint32_t len)
{
	test_put32(t->b + t->ext, type);
	test_put32(t->b + t->ext + 4, len);
	memcpy(t->b + t->ext + 8, data, len);
	t->ext += 8 + ((len + 7) & ~7u);
}

/* Put the backing name after the extensions and an end marker. */
static void
test_add_backing(struct test_img *t, const char *name, size_t len)
{
	t->ext += 8;		/* end marker: zeros */
	test_put64(t->b + 8, t->ext);
	test_put32(t->b + 16, (uint32_t)len);
	memcpy(t->b + t->ext, name, len);
	t->ext += len;
}

static int
test_parse(const struct test_img *t, struct qcow2_info *h)
{
	return qcow2_parse(t->b, t->len, t->len, h);
}

/* Expect CORRUPT with reason containing want, and no names handed out. */
static void
test_corrupt(const struct test_img *t, const char *want, const char *name)
{
	struct qcow2_info h;
	int r = test_parse(t, &h);

	test_ok(r == -EINVAL && h.status == QCOW2_STATUS_CORRUPT &&
	    strstr(h.reason, want) != NULL && h.backing[0] == '\0' &&
	    h.data_file[0] == '\0' && h.backing_fmt[0] == '\0' &&
	    test_printable(h.reason, sizeof(h.reason)),
	    "%s: corrupt, \"%s\" (got %d \"%s\")", name, want, r, h.reason);
}

static void
test_built(void)
{
	struct test_img t;
	struct qcow2_info h;
	static const uint8_t crypto[16];
	char name[QCOW2_NAME_MAX + 2];
	int r;

	/* Not qcow at all. */
	r = qcow2_parse("", 0, 0, &h);
	test_ok(r == 0 && h.status == QCOW2_STATUS_NOT_QCOW &&
	    h.format == QCOW2_FORMAT_RAW, "empty buffer: raw");
	r = qcow2_parse("QFI", 3, 3, &h);
	test_ok(r == 0 && h.status == QCOW2_STATUS_NOT_QCOW,
	    "three bytes of magic: raw");
	r = qcow2_parse("\xeb\x63\x90\x10 boot sector", 16, 1 << 20, &h);
	test_ok(r == 0 && h.status == QCOW2_STATUS_NOT_QCOW,
	    "MBR bytes: raw");

	test_v3(&t);
	r = test_parse(&t, &h);
	test_ok(r == 0 && h.status == QCOW2_STATUS_OK &&
	    h.format == QCOW2_FORMAT_QCOW2 && h.version == 3 &&
	    h.size == 1 << 20 && h.cluster_bits == 9 && h.l1_size == 32 &&
	    h.header_length == 112 && h.backing[0] == '\0' &&
	    h.compression_type == QCOW2_COMPRESSION_ZLIB,
	    "hand-made v3 image parses");

	/* The older v3 header without the compression byte. */
	test_v3(&t);
	test_put32(t.b + 100, 104);
	r = test_parse(&t, &h);
	test_ok(r == 0 && h.header_length == 104, "v3 header_length 104 ok");
	test_put64(t.b + 72, QCOW2_INCOMPAT_COMPRESSION);
	test_corrupt(&t, "disagrees with incompatible feature bit 3",
	    "compression bit without a compression type");

	/* Names and formats. */
	test_v3(&t);
	test_add_ext(&t, 0xe2792aca, "qcow2", 5);
	test_add_ext(&t, 0x44415441, "data.raw", 8);
	test_add_ext(&t, 0x6803f857, "feature table, skipped..........", 32);
	test_add_backing(&t, "base.qcow2", 10);
	r = test_parse(&t, &h);
	test_ok(r == 0 && strcmp(h.backing, "base.qcow2") == 0 &&
	    strcmp(h.backing_fmt, "qcow2") == 0 &&
	    strcmp(h.data_file, "data.raw") == 0,
	    "backing name, backing format, data file (got \"%s\" \"%s\" "
	    "\"%s\")", h.backing, h.backing_fmt, h.data_file);

	test_v3(&t);
	test_add_backing(&t, "base\0hidden", 11);
	r = test_parse(&t, &h);
	test_ok(r == 0 && strcmp(h.backing, "base") == 0,
	    "an embedded NUL ends the backing name, as in QEMU");

	test_v3(&t);
	test_add_backing(&t, "", 0);
	r = test_parse(&t, &h);
	test_ok(r == 0 && h.backing[0] == '\0', "zero-length backing name");

	/* QEMU ignores the length when the offset is 0. */
	test_v3(&t);
	test_put32(t.b + 16, 70000);
	r = test_parse(&t, &h);
	test_ok(r == 0 && h.backing[0] == '\0',
	    "backing length without an offset is ignored");

	/* The largest name QEMU allows, and one byte more. */
	memset(name, 'n', sizeof(name));
	test_v3(&t);
	test_put32(t.b + 20, 12);	/* 4 KiB clusters: room for the name */
	test_put32(t.b + 36, 1);
	test_put64(t.b + 40, 0x3000);
	test_put64(t.b + 48, 0x1000);
	t.len = 4096;
	test_add_backing(&t, name, QCOW2_NAME_MAX);
	r = test_parse(&t, &h);
	test_ok(r == 0 && strlen(h.backing) == QCOW2_NAME_MAX,
	    "backing name of 1023 bytes accepted");
	test_put32(t.b + 16, QCOW2_NAME_MAX + 1);
	test_corrupt(&t, "backing name length 1024 exceeds 1023",
	    "backing name of 1024 bytes");

	/* A name found before the problem must not leak out. */
	test_v3(&t);
	test_add_ext(&t, 0x44415441, "data.raw", 8);
	test_add_ext(&t, 0x0537be77, crypto, sizeof(crypto));
	test_corrupt(&t, "crypto header extension without LUKS",
	    "crypto extension on an unencrypted image");
	test_v3(&t);
	test_put32(t.b + 32, QCOW2_CRYPT_LUKS);
	test_add_ext(&t, 0x0537be77, crypto, 8);
	test_corrupt(&t, "crypto header extension length 8, expected 16",
	    "short crypto extension");
	test_v3(&t);
	test_put32(t.b + 32, QCOW2_CRYPT_LUKS);
	test_add_ext(&t, 0x0537be77, crypto, sizeof(crypto));
	r = test_parse(&t, &h);
	test_ok(r == 0 && h.has_crypto_header &&
	    h.crypt_method == QCOW2_CRYPT_LUKS, "LUKS with its crypto header");
	test_v3(&t);
	test_put32(t.b + 32, 3);
	test_corrupt(&t, "unknown encryption method 3", "crypt_method 3");

	/* Fields QEMU checks that the corpus leaves alone. */
	test_v3(&t);
	test_put64(t.b + 72, QCOW2_INCOMPAT_EXTL2);
	test_corrupt(&t, "extended_l2 with cluster_bits 9 below 14",
	    "extended_l2 with 512-byte clusters");
	test_v3(&t);
	test_put32(t.b + 96, 7);
	test_corrupt(&t, "refcount_order 7 out of range 0..6",
	    "refcount_order 7");
	test_v3(&t);
	test_put32(t.b + 56, 0);
	test_corrupt(&t, "no reference count table", "no refcount table");
	test_v3(&t);
	test_put64(t.b + 48, 0x201);
	test_corrupt(&t, "reference count table of 1 clusters at 0x201",
	    "unaligned refcount table");
	test_v3(&t);
	test_put32(t.b + 36, 31);
	test_corrupt(&t, "L1 table of 31 entries too small for virtual size",
	    "L1 table smaller than the disk");
	test_v3(&t);
	test_put64(t.b + 24, UINT64_MAX);
	test_corrupt(&t, "virtual size 18446744073709551615 too large",
	    "virtual size 2^64-1");
	test_v3(&t);
	test_put32(t.b + 36, 64);		/* 512 bytes, to 2^63 */
	test_put64(t.b + 40, 0x7ffffffffffffe00ull);
	test_corrupt(&t, "L1 table of 64 entries at 0x7ffffffffffffe00",
	    "L1 table ending past INT64_MAX");
	test_v3(&t);
	test_put32(t.b + 60, 1);
	test_put64(t.b + 64, 0x10);
	test_corrupt(&t, "snapshot table offset 0x10 invalid",
	    "unaligned snapshot table");
	test_v3(&t);
	test_put32(t.b + 60, 65536);
	test_put64(t.b + 64, 0x800);
	r = test_parse(&t, &h);
	test_ok(r == 0 && h.nb_snapshots == 65536, "65536 snapshots allowed");
	test_v3(&t);
	test_put32(t.b + 4, 0);
	test_corrupt(&t, "unsupported qcow version 0", "version 0");

	/* Extensions end where the backing name begins. */
	test_v3(&t);
	test_add_ext(&t, 0x12345678, "0123456789abcdef", 16);
	test_put64(t.b + 8, 120);	/* inside that extension */
	test_put32(t.b + 16, 4);
	test_corrupt(&t, "header extension 0x12345678 length 16 too large",
	    "extension running into the backing name");

	/* What the caller read, versus the file. */
	test_v3(&t);
	test_add_backing(&t, "base.qcow2", 10);
	r = qcow2_parse(t.b, 100, 1 << 20, &h);
	test_ok(r == -EINVAL && strstr(h.reason,
	    "header beyond the first 100 bytes read") != NULL,
	    "header past the bytes read (got \"%s\")", h.reason);
	r = qcow2_parse(t.b, 125, 1 << 20, &h);
	test_ok(r == -EINVAL && strstr(h.reason,
	    "backing name beyond the first 125 bytes read") != NULL,
	    "backing name past the bytes read (got \"%s\")", h.reason);
	r = qcow2_parse(t.b, sizeof(t.b), 60, &h);
	test_ok(r == -EINVAL && strstr(h.reason,
	    "file shorter than its header (60 bytes)") != NULL,
	    "bytes past file_size are not used");

	/* qcow v1 */
	memset(&t, 0, sizeof(t));
	test_put32(t.b, QCOW2_MAGIC);
	test_put32(t.b + 4, 1);
	test_put32(t.b + 20, 1234567);		/* mtime */
	test_put64(t.b + 24, 16 << 20);
	t.b[32] = 12;
	t.b[33] = 9;
	test_put64(t.b + 40, 512);
	t.len = 1024;
	r = test_parse(&t, &h);
	test_ok(r == 0 && h.format == QCOW2_FORMAT_QCOW1 && h.version == 1 &&
	    h.size == 16 << 20 && h.cluster_bits == 12 && h.l2_bits == 9 &&
	    h.mtime == 1234567 && h.l1_size == 8,
	    "hand-made qcow v1 parses (l1_size %u)", h.l1_size);
	test_put64(t.b + 8, 48);
	test_put32(t.b + 16, 7);
	memcpy(t.b + 48, "v1.qcow", 7);
	r = test_parse(&t, &h);
	test_ok(r == 0 && strcmp(h.backing, "v1.qcow") == 0,
	    "qcow v1 backing name");
	test_put64(t.b + 8, 2000);
	test_corrupt(&t, "backing name beyond end of file",
	    "qcow v1 backing name past the end");
	test_put64(t.b + 8, 0);
	test_put64(t.b + 24, 1);
	test_corrupt(&t, "virtual size 1 too small", "qcow v1 of 1 byte");
	test_put64(t.b + 24, 16 << 20);
	t.b[33] = 14;
	test_corrupt(&t, "l2_bits 14 out of range 6..13", "qcow v1 l2_bits 14");
	t.b[33] = 9;
	test_put32(t.b + 36, 2);
	test_corrupt(&t, "unknown encryption method 2", "qcow v1 with LUKS");
}

/* ---- real images ---- */

static char test_dir[] = "/tmp/vcachefs-qcow2.XXXXXX";

#include "testsh.h"

/* Parse the first QCOW2_PROBE_BYTES of name in test_dir. */
static int
test_parse_file(const char *name, struct qcow2_info *h)
{
	static uint8_t buf[QCOW2_PROBE_BYTES];
	char path[256];
	struct stat st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", test_dir, name);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	n = pread(fd, buf, sizeof(buf), 0);
	if (n < 0 || fstat(fd, &st) < 0) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return qcow2_parse(buf, (size_t)n, (uint64_t)st.st_size, h);
}

static const struct {
	const char *name;
	const char *create;	/* qemu-img arguments */
	enum qcow2_format format;
	uint32_t version;
	uint64_t size;
	uint32_t crypt;
	uint64_t incompat;
	uint8_t compression;
	const char *backing, *backing_fmt, *data_file;
} test_images[] = {
	{ "v2.qcow2", "-f qcow2 -o compat=0.10 v2.qcow2 64M",
	  QCOW2_FORMAT_QCOW2, 2, 64 << 20, 0, 0, 0, "", "", "" },
	{ "v3.qcow2", "-f qcow2 -o compat=1.1 v3.qcow2 1G",
	  QCOW2_FORMAT_QCOW2, 3, 1 << 30, 0, 0, 0, "", "", "" },
	{ "overlay.qcow2", "-f qcow2 -b v3.qcow2 -F qcow2 overlay.qcow2",
	  QCOW2_FORMAT_QCOW2, 3, 1 << 30, 0, 0, 0, "v3.qcow2", "qcow2", "" },
	{ "overlay-v2.qcow2",
	  "-f qcow2 -o compat=0.10 -b v2.qcow2 -F qcow2 overlay-v2.qcow2",
	  QCOW2_FORMAT_QCOW2, 2, 64 << 20, 0, 0, 0, "v2.qcow2", "qcow2", "" },
	{ "luks.qcow2", "-f qcow2 --object secret,id=s0,data=pass "
	  "-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "
	  "luks.qcow2 16M",
	  QCOW2_FORMAT_QCOW2, 3, 16 << 20, QCOW2_CRYPT_LUKS, 0, 0,
	  "", "", "" },
	{ "zstd.qcow2", "-f qcow2 -o compression_type=zstd zstd.qcow2 16M",
	  QCOW2_FORMAT_QCOW2, 3, 16 << 20, 0, QCOW2_INCOMPAT_COMPRESSION,
	  QCOW2_COMPRESSION_ZSTD, "", "", "" },
	{ "extl2.qcow2", "-f qcow2 -o extended_l2=on extl2.qcow2 16M",
	  QCOW2_FORMAT_QCOW2, 3, 16 << 20, 0, QCOW2_INCOMPAT_EXTL2, 0,
	  "", "", "" },
	{ "datafile.qcow2",
	  "-f qcow2 -o data_file=datafile.raw datafile.qcow2 16M",
	  QCOW2_FORMAT_QCOW2, 3, 16 << 20, 0, QCOW2_INCOMPAT_DATA_FILE, 0,
	  "", "", "datafile.raw" },
	{ "v1.qcow", "-f qcow v1.qcow 16M",
	  QCOW2_FORMAT_QCOW1, 1, 16 << 20, 0, 0, 0, "", "", "" },
	{ "v1-overlay.qcow", "-f qcow -b v1.qcow -F qcow v1-overlay.qcow",
	  QCOW2_FORMAT_QCOW1, 1, 16 << 20, 0, 0, 0, "v1.qcow", "", "" },
	{ "raw.img", "-f raw raw.img 1M",
	  QCOW2_FORMAT_RAW, 0, 0, 0, 0, 0, "", "", "" },
};

#define TEST_NIMAGES (sizeof(test_images) / sizeof(test_images[0]))

static void
test_real(void)
{
	struct qcow2_info h;
	size_t i;
	int r;

	if (system("qemu-img --version >/dev/null 2>&1") != 0) {
		for (i = 0; i < TEST_NIMAGES; i++)
			test_skip(test_images[i].name, "qemu-img not found");
		return;
	}
	if (mkdtemp(test_dir) == NULL) {
		test_ok(0, "mkdtemp %s: %s", test_dir, strerror(errno));
		return;
	}
	for (i = 0; i < TEST_NIMAGES; i++) {
		if (test_qemu_img("create -q ", test_images[i].create)) {
			test_ok(0, "%s: qemu-img create %s", test_images[i].name,
			    test_images[i].create);
			continue;
		}
		r = test_parse_file(test_images[i].name, &h);
		if (test_images[i].format == QCOW2_FORMAT_RAW) {
			test_ok(r == 0 && h.status == QCOW2_STATUS_NOT_QCOW,
			    "%s: raw", test_images[i].name);
			continue;
		}
		test_ok(r == 0 && h.status == QCOW2_STATUS_OK &&
		    h.format == test_images[i].format &&
		    h.version == test_images[i].version &&
		    h.size == test_images[i].size &&
		    h.crypt_method == test_images[i].crypt &&
		    h.incompat == test_images[i].incompat &&
		    h.compression_type == test_images[i].compression &&
		    h.nb_snapshots == 0 &&
		    strcmp(h.backing, test_images[i].backing) == 0 &&
		    strcmp(h.backing_fmt, test_images[i].backing_fmt) == 0 &&
		    strcmp(h.data_file, test_images[i].data_file) == 0 &&
		    h.has_crypto_header ==
		    (test_images[i].crypt == QCOW2_CRYPT_LUKS),
		    "%s: v%u %llu bytes crypt %u incompat 0x%llx backing "
		    "\"%s\" (%s) data file \"%s\"%s%s", test_images[i].name,
		    h.version, (unsigned long long)h.size, h.crypt_method,
		    (unsigned long long)h.incompat, h.backing, h.backing_fmt,
		    h.data_file, r != 0 ? ": " : "", r != 0 ? h.reason : "");
	}

	/* A snapshot is counted. */
	if (test_sh("qemu-img snapshot -c snap1 v3.qcow2") == 0) {
		r = test_parse_file("v3.qcow2", &h);
		test_ok(r == 0 && h.nb_snapshots == 1, "v3.qcow2: one snapshot");
	} else {
		test_ok(0, "qemu-img snapshot -c");
	}
	test_sh("rm -rf %s", test_dir);
}

/* ---- the resolver ---- */

#define TEST_MNT "/mnt/vm"
#define TEST_SRC "/srv/vm"

static const struct {
	const char *overlay, *backing, *mnt, *src;
	int ret;
	const char *want;	/* the path, or a piece of the reason */
} test_paths[] = {
	{ "a.qcow2", "base.qcow2", TEST_MNT, TEST_SRC, 0, "base.qcow2" },
	{ "vms/a.qcow2", "base.qcow2", TEST_MNT, TEST_SRC, 0,
	  "vms/base.qcow2" },
	{ "vms/a.qcow2", "../base.qcow2", TEST_MNT, TEST_SRC, 0,
	  "base.qcow2" },
	{ "vms/a.qcow2", "./x/./y//z.qcow2", TEST_MNT, TEST_SRC, 0,
	  "vms/x/y/z.qcow2" },
	{ "vms//sub/./a.qcow2", "b", TEST_MNT, TEST_SRC, 0, "vms/sub/b" },
	{ "vms/a.qcow2", "../../base.qcow2", TEST_MNT, TEST_SRC, -EXDEV,
	  "escapes the mount" },
	{ "vms/a.qcow2", "x/../../../y", TEST_MNT, TEST_SRC, -EXDEV,
	  "escapes the mount" },
	{ "a.qcow2", "..", TEST_MNT, TEST_SRC, -EXDEV, "escapes the mount" },
	{ "a.qcow2", "../../etc/passwd", TEST_MNT, TEST_SRC, -EXDEV,
	  "escapes the mount" },
	{ "a.qcow2", "/mnt/vm/base.qcow2", TEST_MNT, TEST_SRC, 0,
	  "base.qcow2" },
	{ "a.qcow2", "/srv/vm/sub/base.qcow2", TEST_MNT, TEST_SRC, 0,
	  "sub/base.qcow2" },
	{ "a.qcow2", "//mnt//vm//./b", TEST_MNT, TEST_SRC, 0, "b" },
	{ "a.qcow2", "/mnt/vm/../vm/b", TEST_MNT, TEST_SRC, 0, "b" },
	{ "a.qcow2", "/../../mnt/vm/b", TEST_MNT, TEST_SRC, 0, "b" },
	{ "a.qcow2", "/mnt/vm/b", "/mnt/vm/", TEST_SRC, 0, "b" },
	{ "a.qcow2", "/mnt/vm2/b", TEST_MNT, TEST_SRC, -EXDEV,
	  "outside the mount" },
	{ "a.qcow2", "/mnt/vm/../etc/passwd", TEST_MNT, TEST_SRC, -EXDEV,
	  "outside the mount" },
	{ "a.qcow2", "/etc/passwd", TEST_MNT, TEST_SRC, -EXDEV,
	  "outside the mount" },
	{ "a.qcow2", "/mnt/vm/b", NULL, TEST_SRC, -EXDEV,
	  "outside the mount" },
	{ "a.qcow2", "/srv/vm/b", NULL, TEST_SRC, 0, "b" },
	{ "a.qcow2", "/srv/vm/b", TEST_SRC, TEST_SRC, 0, "b" },
	{ "a.qcow2", "/mnt/vm/b", "mnt/vm", NULL, -EXDEV,
	  "outside the mount" },
	{ "a.qcow2", "/etc/x", "/", NULL, 0, "etc/x" },
	{ "a.qcow2", "/mnt/vm", TEST_MNT, TEST_SRC, -EINVAL, "mount root" },
	{ "a.qcow2", "/srv/vm/", TEST_MNT, TEST_SRC, -EINVAL, "mount root" },
	{ "a.qcow2", ".", TEST_MNT, TEST_SRC, -EINVAL, "mount root" },
	{ "a.qcow2", "a.qcow2", TEST_MNT, TEST_SRC, -EINVAL,
	  "the image itself" },
	{ "vms/a.qcow2", "../vms/./a.qcow2", TEST_MNT, TEST_SRC, -EINVAL,
	  "the image itself" },
	{ "vms/a.qcow2", "/mnt/vm/vms/a.qcow2", TEST_MNT, TEST_SRC, -EINVAL,
	  "the image itself" },
	{ "a.qcow2", "", TEST_MNT, TEST_SRC, -EINVAL, "empty" },
	{ "a.qcow2", "json:{\"file.filename\":\"/etc/shadow\"}", TEST_MNT,
	  TEST_SRC, -EINVAL, "json: backing names are refused" },
	{ "a.qcow2", "nbd:localhost:10809", TEST_MNT, TEST_SRC, -EINVAL,
	  "protocol backing name \"nbd:\" refused" },
	{ "a.qcow2", "nbd+unix:///disk?socket=/tmp/s", TEST_MNT, TEST_SRC,
	  -EINVAL, "\"nbd+unix:\"" },
	{ "a.qcow2", "http://example.com/base.qcow2", TEST_MNT, TEST_SRC,
	  -EINVAL, "\"http:\"" },
	{ "a.qcow2", "https://example.com/base.qcow2", TEST_MNT, TEST_SRC,
	  -EINVAL, "\"https:\"" },
	{ "a.qcow2", "iscsi://target/iqn.x/0", TEST_MNT, TEST_SRC, -EINVAL,
	  "\"iscsi:\"" },
	{ "a.qcow2", "rbd:pool/image", TEST_MNT, TEST_SRC, -EINVAL,
	  "\"rbd:\"" },
	{ "a.qcow2", "gluster://host/vol/img", TEST_MNT, TEST_SRC, -EINVAL,
	  "\"gluster:\"" },
	{ "a.qcow2", "ssh://user@host/img", TEST_MNT, TEST_SRC, -EINVAL,
	  "\"ssh:\"" },
	{ "a.qcow2", "file:base.qcow2", TEST_MNT, TEST_SRC, -EINVAL,
	  "\"file:\"" },
	{ "a.qcow2", "vvfat:/srv", TEST_MNT, TEST_SRC, -EINVAL,
	  "\"vvfat:\"" },
	{ "a.qcow2", "\x1b[31m:x", TEST_MNT, TEST_SRC, -EINVAL,
	  "\"?[31m:\"" },
	/* A ':' after a '/' is an ordinary file name, as in QEMU. */
	{ "a.qcow2", "./nbd:x", TEST_MNT, TEST_SRC, 0, "nbd:x" },
	{ "a.qcow2", "dir/nbd:x", TEST_MNT, TEST_SRC, 0, "dir/nbd:x" },
	{ "a.qcow2", "/mnt/vm/x:y", TEST_MNT, TEST_SRC, 0, "x:y" },
	{ "..", "b", TEST_MNT, TEST_SRC, -EINVAL, "invalid image path" },
	{ "", "b", TEST_MNT, TEST_SRC, -EINVAL, "invalid image path" },
};

#define TEST_NPATHS (sizeof(test_paths) / sizeof(test_paths[0]))

static void
test_resolve(void)
{
	char out[PATH_MAX], reason[QCOW2_REASON_MAX], longname[1100];
	size_t i;
	int r, ok;

	for (i = 0; i < TEST_NPATHS; i++) {
		memset(out, 'X', sizeof(out));
		r = qcow2_resolve_backing(test_paths[i].overlay,
		    test_paths[i].backing, test_paths[i].mnt, test_paths[i].src,
		    out, sizeof(out), reason, sizeof(reason));
		if (test_paths[i].ret == 0)
			ok = r == 0 && strcmp(out, test_paths[i].want) == 0 &&
			    reason[0] == '\0';
		else
			ok = r == test_paths[i].ret && out[0] == '\0' &&
			    strstr(reason, test_paths[i].want) != NULL &&
			    test_printable(reason, sizeof(reason));
		test_ok(ok, "resolve %s + %s: %s%s (got %d \"%s\" \"%s\")",
		    test_paths[i].overlay, test_paths[i].backing[0] == '\x1b' ?
		    "<ESC>..." : test_paths[i].backing,
		    test_paths[i].ret == 0 ? "" : "refused, ",
		    test_paths[i].want, r, r == 0 ? out : "", reason);
	}

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	r = qcow2_resolve_backing("a.qcow2", longname, TEST_MNT, TEST_SRC, out,
	    sizeof(out), reason, sizeof(reason));
	test_ok(r == -EINVAL && strstr(reason, "longer than 1023") != NULL,
	    "resolve: a name over 1023 bytes is refused");
	r = qcow2_resolve_backing("a.qcow2", "base.qcow2", TEST_MNT, TEST_SRC,
	    out, 5, reason, sizeof(reason));
	test_ok(r == -ENAMETOOLONG && out[0] == '\0',
	    "resolve: a result too long for out is -ENAMETOOLONG");
	r = qcow2_resolve_backing("a.qcow2", "nbd:x", TEST_MNT, TEST_SRC, out,
	    sizeof(out), NULL, 0);
	test_ok(r == -EINVAL, "resolve: reason may be NULL");
}

int
main(void)
{
	test_built();
	test_real();
	test_resolve();
	printf("1..%d\n", test_n);
	return test_failed ? 1 : 0;
}
