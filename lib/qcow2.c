/*
 * qcow2.c - the bounded qcow/qcow2 header parser and the backing name
 * resolver (see qcow2.h).
 *
 * Every offset and length read from a header is untrusted. They are only
 * compared, never added or multiplied before being bounded, and every read
 * of buf goes through qcow2_span() first. The one loop over header data
 * (the extensions) stops after QCOW2_MAX_EXTENSIONS rounds.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "qcow2.h"

/* What QEMU 7.2 refuses at open (block/qcow2.h, block/qcow2.c). */
#define QCOW2_MIN_CLUSTER_BITS	9
#define QCOW2_MAX_CLUSTER_BITS	21
#define QCOW2_EXTL2_MIN_BITS	14	/* 32 subclusters of >= 512 bytes */
#define QCOW2_MAX_L1_BYTES	(32u * 1024 * 1024)	/* QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_RT_BYTES	(8u * 1024 * 1024)	/* QCOW_MAX_REFTABLE_SIZE */
#define QCOW2_MAX_SNAPSHOTS	65536			/* QCOW_MAX_SNAPSHOTS */
#define QCOW2_SNAPSHOT_BYTES	40	/* sizeof(QCowSnapshotHeader) */
#define QCOW2_MAX_REFCOUNT_ORDER 6
#define QCOW2_V2_HEADER		72
#define QCOW2_V3_HEADER		104
#define QCOW2_V3_COMPRESSION	104	/* offset of compression_type */

/* ... and what it refuses for qcow v1 (block/qcow.c). */
#define QCOW1_HEADER		48
#define QCOW1_MIN_CLUSTER_BITS	9
#define QCOW1_MAX_CLUSTER_BITS	16
#define QCOW1_MIN_L2_BITS	6
#define QCOW1_MAX_L2_BITS	13

/* Header extension types. */
#define QCOW2_EXT_END		0x00000000u
#define QCOW2_EXT_BACKING_FMT	0xe2792acau
#define QCOW2_EXT_DATA_FILE	0x44415441u
#define QCOW2_EXT_CRYPTO	0x0537be77u
#define QCOW2_EXT_CRYPTO_LEN	16	/* offset and length, two u64 */

/* The bytes of the file the parser may look at. */
struct qcow2_buf {
	const uint8_t *p;
	uint64_t avail;		/* min(len, file_size): readable bytes of p */
	uint64_t file_size;
};

static uint32_t
qcow2_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t
qcow2_be64(const uint8_t *p)
{
	return (uint64_t)qcow2_be32(p) << 32 | qcow2_be32(p + 4);
}

/* Does [off, off + n) fit in [0, limit)? Written so that nothing wraps. */
static bool
qcow2_span(uint64_t off, uint64_t n, uint64_t limit)
{
	return off <= limit && n <= limit - off;
}

/* Mark out CORRUPT with a reason; never hand out a name from it. */
static int qcow2_corrupt(struct qcow2_info *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
qcow2_corrupt(struct qcow2_info *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
	va_end(ap);
	out->status = QCOW2_STATUS_CORRUPT;
	out->backing[0] = '\0';
	out->backing_fmt[0] = '\0';
	out->data_file[0] = '\0';
	return -EINVAL;
}

/* The header bytes [off, off + n), called what, must be readable. */
static int
qcow2_need(const struct qcow2_buf *b, struct qcow2_info *out, uint64_t off,
    uint64_t n, const char *what)
{
	if (!qcow2_span(off, n, b->file_size))
		return qcow2_corrupt(out, "%s beyond end of file", what);
	if (!qcow2_span(off, n, b->avail))
		return qcow2_corrupt(out, "%s beyond the first %llu bytes read",
		    what, (unsigned long long)b->avail);
	return 0;
}

/* The fixed header of hdr bytes must be in the file and in buf. */
static int
qcow2_need_header(const struct qcow2_buf *b, struct qcow2_info *out,
    uint64_t hdr)
{
	if (b->file_size < hdr)
		return qcow2_corrupt(out,
		    "file shorter than its header (%llu bytes)",
		    (unsigned long long)b->file_size);
	return qcow2_need(b, out, 0, hdr, "header");
}

/*
 * Copy a name of n bytes (n < dstsz, checked by the caller). QEMU reads it
 * into a C string, so an embedded NUL ends it.
 */
static void
qcow2_copy_name(char *dst, size_t dstsz, const uint8_t *src, size_t n)
{
	const uint8_t *nul = memchr(src, '\0', n);

	if (nul != NULL)
		n = (size_t)(nul - src);
	if (n >= dstsz)
		n = dstsz - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/*
 * A table at off of entries * entry_len bytes, as qcow2_validate_table():
 * at most max_bytes, cluster-aligned, and ending below INT64_MAX.
 */
static bool
qcow2_table_ok(uint64_t off, uint64_t entries, uint64_t entry_len,
    uint64_t max_bytes, uint64_t cluster_size)
{
	if (entries > max_bytes / entry_len)
		return false;
	if ((uint64_t)INT64_MAX - entries * entry_len < off)
		return false;
	return (off & (cluster_size - 1)) == 0;
}

/*
 * Walk the header extensions in [off, end), as qcow2_read_extensions().
 * QEMU reads past the end of a short file as zeros, which is an end
 * marker; so do we.
 */
static int
qcow2_parse_extensions(const struct qcow2_buf *b, struct qcow2_info *out,
    uint64_t off, uint64_t end)
{
	uint32_t type, len;
	const uint8_t *d;
	int err;

	for (unsigned n = 0; off < end; n++) {
		if (n == QCOW2_MAX_EXTENSIONS)
			return qcow2_corrupt(out,
			    "more than %d header extensions",
			    QCOW2_MAX_EXTENSIONS);
		if (!qcow2_span(off, 8, end))
			return qcow2_corrupt(out,
			    "header extension at %llu crosses offset %llu",
			    (unsigned long long)off, (unsigned long long)end);
		if (!qcow2_span(off, 8, b->file_size))
			break;
		if ((err = qcow2_need(b, out, off, 8, "header extension")) < 0)
			return err;
		type = qcow2_be32(b->p + off);
		len = qcow2_be32(b->p + off + 4);
		off += 8;
		if (type == QCOW2_EXT_END)
			break;
		if (len > end - off)
			return qcow2_corrupt(out,
			    "header extension 0x%08x length %u too large",
			    type, len);
		if ((err = qcow2_need(b, out, off, len,
		    "header extension")) < 0)
			return err;
		d = b->p + off;
		switch (type) {
		case QCOW2_EXT_BACKING_FMT:
			if (len > QCOW2_FMT_MAX)
				return qcow2_corrupt(out, "backing format name "
				    "length %u exceeds %d", len, QCOW2_FMT_MAX);
			qcow2_copy_name(out->backing_fmt,
			    sizeof(out->backing_fmt), d, len);
			break;
		case QCOW2_EXT_DATA_FILE:
			if (len > QCOW2_NAME_MAX)
				return qcow2_corrupt(out, "data file name "
				    "length %u exceeds %d", len, QCOW2_NAME_MAX);
			qcow2_copy_name(out->data_file,
			    sizeof(out->data_file), d, len);
			break;
		case QCOW2_EXT_CRYPTO:
			if (len != QCOW2_EXT_CRYPTO_LEN)
				return qcow2_corrupt(out, "crypto header "
				    "extension length %u, expected %d", len,
				    QCOW2_EXT_CRYPTO_LEN);
			if (out->crypt_method != QCOW2_CRYPT_LUKS)
				return qcow2_corrupt(out, "crypto header "
				    "extension without LUKS encryption");
			out->has_crypto_header = true;
			break;
		default:	/* feature table, bitmaps, unknown: skipped */
			break;
		}
		/* len <= end - off <= 2 MiB: no wrap. */
		off += ((uint64_t)len + 7) & ~7ull;
	}
	return 0;
}

static int
qcow2_parse_v2(const struct qcow2_buf *b, struct qcow2_info *out)
{
	const uint8_t *p = b->p;
	uint64_t cluster_size, backing_off, rt_off, snap_off, l1_need;
	uint32_t backing_len, rt_clusters, refcount_order, l2_bits, shift;
	int err;

	if ((err = qcow2_need_header(b, out, out->version == 2 ?
	    QCOW2_V2_HEADER : QCOW2_V3_HEADER)) < 0)
		return err;
	backing_off = qcow2_be64(p + 8);
	backing_len = qcow2_be32(p + 16);
	out->cluster_bits = qcow2_be32(p + 20);
	out->size = qcow2_be64(p + 24);
	out->crypt_method = qcow2_be32(p + 32);
	out->l1_size = qcow2_be32(p + 36);
	out->l1_table_offset = qcow2_be64(p + 40);
	rt_off = qcow2_be64(p + 48);
	rt_clusters = qcow2_be32(p + 56);
	out->nb_snapshots = qcow2_be32(p + 60);
	snap_off = qcow2_be64(p + 64);

	if (out->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
	    out->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return qcow2_corrupt(out, "cluster_bits %u out of range %d..%d",
		    out->cluster_bits, QCOW2_MIN_CLUSTER_BITS,
		    QCOW2_MAX_CLUSTER_BITS);
	cluster_size = 1ull << out->cluster_bits;

	if (out->version == 2) {
		out->header_length = QCOW2_V2_HEADER;
		refcount_order = 4;
	} else {
		out->incompat = qcow2_be64(p + 72);
		refcount_order = qcow2_be32(p + 96);
		out->header_length = qcow2_be32(p + 100);
		if (out->header_length < QCOW2_V3_HEADER)
			return qcow2_corrupt(out,
			    "header_length %u smaller than %d",
			    out->header_length, QCOW2_V3_HEADER);
		if (out->header_length > cluster_size)
			return qcow2_corrupt(out, "header_length %u exceeds "
			    "the cluster size %llu", out->header_length,
			    (unsigned long long)cluster_size);
		if ((err = qcow2_need_header(b, out, out->header_length)) < 0)
			return err;
		if (out->incompat & ~QCOW2_INCOMPAT_KNOWN)
			return qcow2_corrupt(out, "unknown incompatible "
			    "features 0x%llx", (unsigned long long)
			    (out->incompat & ~QCOW2_INCOMPAT_KNOWN));
		if (refcount_order > QCOW2_MAX_REFCOUNT_ORDER)
			return qcow2_corrupt(out, "refcount_order %u out of "
			    "range 0..%d", refcount_order,
			    QCOW2_MAX_REFCOUNT_ORDER);
		if (out->header_length > QCOW2_V3_COMPRESSION)
			out->compression_type = p[QCOW2_V3_COMPRESSION];
		if (out->compression_type > QCOW2_COMPRESSION_ZSTD)
			return qcow2_corrupt(out, "unknown compression type %u",
			    out->compression_type);
		if ((out->compression_type != QCOW2_COMPRESSION_ZLIB) !=
		    ((out->incompat & QCOW2_INCOMPAT_COMPRESSION) != 0))
			return qcow2_corrupt(out, "compression type %u "
			    "disagrees with incompatible feature bit 3",
			    out->compression_type);
		if ((out->incompat & QCOW2_INCOMPAT_EXTL2) &&
		    out->cluster_bits < QCOW2_EXTL2_MIN_BITS)
			return qcow2_corrupt(out, "extended_l2 with "
			    "cluster_bits %u below %d", out->cluster_bits,
			    QCOW2_EXTL2_MIN_BITS);
	}
	if (out->crypt_method > QCOW2_CRYPT_LUKS)
		return qcow2_corrupt(out, "unknown encryption method %u",
		    out->crypt_method);

	/* The L1 table, and whether it covers the virtual size. */
	if (!qcow2_table_ok(out->l1_table_offset, out->l1_size, 8,
	    QCOW2_MAX_L1_BYTES, cluster_size))
		return qcow2_corrupt(out, "L1 table of %u entries at 0x%llx "
		    "invalid", out->l1_size,
		    (unsigned long long)out->l1_table_offset);
	l2_bits = out->cluster_bits - 3 -
	    ((out->incompat & QCOW2_INCOMPAT_EXTL2) ? 1 : 0);
	shift = out->cluster_bits + l2_bits;	/* <= 39 */
	l1_need = (out->size >> shift) +
	    ((out->size & ((1ull << shift) - 1)) != 0);
	if (l1_need > INT_MAX)
		return qcow2_corrupt(out, "virtual size %llu too large",
		    (unsigned long long)out->size);
	if (out->l1_size < l1_need)
		return qcow2_corrupt(out, "L1 table of %u entries too small "
		    "for virtual size %llu", out->l1_size,
		    (unsigned long long)out->size);

	if (rt_clusters == 0)
		return qcow2_corrupt(out, "no reference count table");
	if (!qcow2_table_ok(rt_off, rt_clusters, cluster_size,
	    QCOW2_MAX_RT_BYTES, cluster_size))
		return qcow2_corrupt(out, "reference count table of %u "
		    "clusters at 0x%llx invalid", rt_clusters,
		    (unsigned long long)rt_off);

	if (out->nb_snapshots > QCOW2_MAX_SNAPSHOTS)
		return qcow2_corrupt(out, "nb_snapshots %u exceeds %d",
		    out->nb_snapshots, QCOW2_MAX_SNAPSHOTS);
	if (!qcow2_table_ok(snap_off, out->nb_snapshots, QCOW2_SNAPSHOT_BYTES,
	    (uint64_t)QCOW2_SNAPSHOT_BYTES * QCOW2_MAX_SNAPSHOTS,
	    cluster_size))
		return qcow2_corrupt(out, "snapshot table offset 0x%llx "
		    "invalid", (unsigned long long)snap_off);

	/*
	 * QEMU only looks at the name when its offset is not 0, and wants it
	 * within the first cluster; the overlap test is ours.
	 */
	if (backing_off != 0) {
		if (backing_off > cluster_size)
			return qcow2_corrupt(out, "backing name offset %llu "
			    "outside the first cluster",
			    (unsigned long long)backing_off);
		if (backing_len > QCOW2_NAME_MAX)
			return qcow2_corrupt(out, "backing name length %u "
			    "exceeds %d", backing_len, QCOW2_NAME_MAX);
		if (backing_len > cluster_size - backing_off)
			return qcow2_corrupt(out,
			    "backing name crosses the first cluster");
		if (backing_off < out->header_length)
			return qcow2_corrupt(out, "backing name at %llu "
			    "overlaps the header",
			    (unsigned long long)backing_off);
		if ((err = qcow2_need(b, out, backing_off, backing_len,
		    "backing name")) < 0)
			return err;
	}
	/* Extensions end where the backing name starts, or at the cluster. */
	if ((err = qcow2_parse_extensions(b, out, out->header_length,
	    backing_off != 0 ? backing_off : cluster_size)) < 0)
		return err;
	if (backing_off != 0)
		qcow2_copy_name(out->backing, sizeof(out->backing),
		    p + backing_off, backing_len);
	return 0;
}

static int
qcow2_parse_v1(const struct qcow2_buf *b, struct qcow2_info *out)
{
	const uint8_t *p = b->p;
	uint64_t backing_off, l1_size;
	uint32_t backing_len, shift;
	int err;

	if ((err = qcow2_need_header(b, out, QCOW1_HEADER)) < 0)
		return err;
	backing_off = qcow2_be64(p + 8);
	backing_len = qcow2_be32(p + 16);
	out->mtime = qcow2_be32(p + 20);
	out->size = qcow2_be64(p + 24);
	out->cluster_bits = p[32];
	out->l2_bits = p[33];
	out->crypt_method = qcow2_be32(p + 36);
	out->l1_table_offset = qcow2_be64(p + 40);
	out->header_length = QCOW1_HEADER;

	if (out->size <= 1)
		return qcow2_corrupt(out, "virtual size %llu too small",
		    (unsigned long long)out->size);
	if (out->cluster_bits < QCOW1_MIN_CLUSTER_BITS ||
	    out->cluster_bits > QCOW1_MAX_CLUSTER_BITS)
		return qcow2_corrupt(out, "cluster_bits %u out of range %d..%d",
		    out->cluster_bits, QCOW1_MIN_CLUSTER_BITS,
		    QCOW1_MAX_CLUSTER_BITS);
	if (out->l2_bits < QCOW1_MIN_L2_BITS ||
	    out->l2_bits > QCOW1_MAX_L2_BITS)
		return qcow2_corrupt(out, "l2_bits %u out of range %d..%d",
		    out->l2_bits, QCOW1_MIN_L2_BITS, QCOW1_MAX_L2_BITS);
	if (out->crypt_method > QCOW2_CRYPT_AES)
		return qcow2_corrupt(out, "unknown encryption method %u",
		    out->crypt_method);
	shift = out->cluster_bits + out->l2_bits;	/* <= 29 */
	if (out->size > UINT64_MAX - (1ull << shift))
		return qcow2_corrupt(out, "virtual size %llu too large",
		    (unsigned long long)out->size);
	l1_size = (out->size + (1ull << shift) - 1) >> shift;
	if (l1_size > INT_MAX / 8)
		return qcow2_corrupt(out, "virtual size %llu too large",
		    (unsigned long long)out->size);
	out->l1_size = (uint32_t)l1_size;

	if (backing_off != 0) {
		if (backing_len > QCOW2_NAME_MAX)
			return qcow2_corrupt(out, "backing name length %u "
			    "exceeds %d", backing_len, QCOW2_NAME_MAX);
		if (backing_off < QCOW1_HEADER)
			return qcow2_corrupt(out, "backing name at %llu "
			    "overlaps the header",
			    (unsigned long long)backing_off);
		if ((err = qcow2_need(b, out, backing_off, backing_len,
		    "backing name")) < 0)
			return err;
		qcow2_copy_name(out->backing, sizeof(out->backing),
		    p + backing_off, backing_len);
	}
	return 0;
}

int
qcow2_parse(const void *buf, size_t len, uint64_t file_size,
    struct qcow2_info *out)
{
	struct qcow2_buf b = { .p = buf, .avail = len, .file_size = file_size };

	memset(out, 0, sizeof(*out));
	out->status = QCOW2_STATUS_OK;
	out->format = QCOW2_FORMAT_RAW;
	if (b.avail > b.file_size)
		b.avail = b.file_size;
	if (b.avail < 4 || qcow2_be32(b.p) != QCOW2_MAGIC) {
		out->status = QCOW2_STATUS_NOT_QCOW;
		return 0;
	}
	if (b.file_size < 8)
		return qcow2_need_header(&b, out, 8);
	if (b.avail < 8)
		return qcow2_need(&b, out, 0, 8, "header");
	out->version = qcow2_be32(b.p + 4);
	switch (out->version) {
	case 1:
		out->format = QCOW2_FORMAT_QCOW1;
		return qcow2_parse_v1(&b, out);
	case 2:
	case 3:
		out->format = QCOW2_FORMAT_QCOW2;
		return qcow2_parse_v2(&b, out);
	default:
		return qcow2_corrupt(out, "unsupported qcow version %u",
		    out->version);
	}
}

const char *
qcow2_format_name(enum qcow2_format format)
{
	switch (format) {
	case QCOW2_FORMAT_QCOW1:
		return "qcow";
	case QCOW2_FORMAT_QCOW2:
		return "qcow2";
	default:
		return "raw";
	}
}

/* ---- backing name resolution ---- */

/*
 * A path being built in a caller's buffer: components joined by '/', no
 * leading or trailing '/', "" for the starting directory. Always
 * NUL-terminated.
 */
struct qcow2_path {
	char *buf;
	size_t cap;		/* size of buf, NUL included */
	size_t len;
};

static void
qcow2_path_init(struct qcow2_path *p, char *buf, size_t cap)
{
	p->buf = buf;
	p->cap = cap;
	p->len = 0;
	buf[0] = '\0';
}

/* Drop the last component; a no-op on "". */
static void
qcow2_path_pop(struct qcow2_path *p)
{
	char *slash = memrchr(p->buf, '/', p->len);

	p->len = slash != NULL ? (size_t)(slash - p->buf) : 0;
	p->buf[p->len] = '\0';
}

/*
 * Append the components of s, resolving "." and ".." lexically. A ".."
 * above the start is -EXDEV, unless absolute (POSIX: "/.." is "/").
 * -ENAMETOOLONG when the result would not fit.
 */
static int
qcow2_path_push(struct qcow2_path *p, const char *s, bool absolute)
{
	const char *c;
	size_t n;

	for (;;) {
		while (*s == '/')
			s++;
		if (*s == '\0')
			return 0;
		c = s;
		n = strcspn(s, "/");
		s += n;
		if (n == 1 && c[0] == '.')
			continue;
		if (n == 2 && c[0] == '.' && c[1] == '.') {
			if (p->len == 0 && !absolute)
				return -EXDEV;
			qcow2_path_pop(p);
			continue;
		}
		if ((p->len > 0 ? p->len + 1 : 0) + n >= p->cap)
			return -ENAMETOOLONG;
		if (p->len > 0)
			p->buf[p->len++] = '/';
		memcpy(p->buf + p->len, c, n);
		p->len += n;
		p->buf[p->len] = '\0';
	}
}

/*
 * Copy at most max bytes of untrusted text into dst for a reason line:
 * printable ASCII only, '?' for anything else, "..." when cut.
 */
static void
qcow2_quote(char *dst, size_t dstsz, const char *src, size_t max)
{
	size_t i, o = 0;

	for (i = 0; i < max && src[i] != '\0' && o + 4 < dstsz; i++)
		dst[o++] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	if (i < max && src[i] != '\0' && o + 3 < dstsz) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
}

static int qcow2_refuse(char *reason, size_t reasonlen, int err,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
qcow2_refuse(char *reason, size_t reasonlen, int err, const char *fmt, ...)
{
	va_list ap;

	if (reason != NULL && reasonlen > 0) {
		va_start(ap, fmt);
		vsnprintf(reason, reasonlen, fmt, ap);
		va_end(ap);
	}
	return err;
}

/*
 * If abs (normalized, no leading '/') lies under the absolute directory
 * root, return the part of abs inside it; else NULL.
 */
static const char *
qcow2_under(const char *abs, const char *root, char *tmp, size_t tmpsz)
{
	struct qcow2_path r;
	size_t n;

	if (root == NULL || root[0] != '/')
		return NULL;
	qcow2_path_init(&r, tmp, tmpsz);
	if (qcow2_path_push(&r, root, true) < 0)
		return NULL;
	n = r.len;
	if (n == 0)		/* mounted on "/" */
		return abs;
	if (strncmp(abs, r.buf, n) != 0)
		return NULL;
	if (abs[n] == '\0')
		return abs + n;
	return abs[n] == '/' ? abs + n + 1 : NULL;
}

int
qcow2_resolve_backing(const char *overlay, const char *backing,
    const char *mountpoint, const char *source, char *out, size_t outlen,
    char *reason, size_t reasonlen)
{
	char abs[PATH_MAX], tmp[PATH_MAX], q[40];
	struct qcow2_path r, a;
	const char *rel, *colon;
	int err;

	if (reason != NULL && reasonlen > 0)
		reason[0] = '\0';
	if (out == NULL || outlen == 0)
		return qcow2_refuse(reason, reasonlen, -EINVAL,
		    "no room for the result");
	qcow2_path_init(&r, out, outlen);
	if (overlay == NULL || backing == NULL || backing[0] == '\0')
		return qcow2_refuse(reason, reasonlen, -EINVAL,
		    "empty backing name");
	if (strnlen(backing, QCOW2_NAME_MAX + 1) > QCOW2_NAME_MAX)
		return qcow2_refuse(reason, reasonlen, -EINVAL,
		    "backing name longer than %d bytes", QCOW2_NAME_MAX);

	/* QEMU's path_has_protocol(): a ':' before any '/'. */
	colon = backing + strcspn(backing, ":/");
	if (*colon == ':') {
		if (colon - backing == 4 && strncmp(backing, "json", 4) == 0)
			return qcow2_refuse(reason, reasonlen, -EINVAL,
			    "json: backing names are refused");
		qcow2_quote(q, sizeof(q), backing, (size_t)(colon - backing));
		return qcow2_refuse(reason, reasonlen, -EINVAL,
		    "protocol backing name \"%s:\" refused", q);
	}

	if (backing[0] == '/') {
		qcow2_path_init(&a, abs, sizeof(abs));
		if (qcow2_path_push(&a, backing, true) < 0)
			return qcow2_refuse(reason, reasonlen, -EINVAL,
			    "backing name too long");
		rel = qcow2_under(abs, mountpoint, tmp, sizeof(tmp));
		if (rel == NULL)
			rel = qcow2_under(abs, source, tmp, sizeof(tmp));
		if (rel == NULL)
			return qcow2_refuse(reason, reasonlen, -EXDEV,
			    "absolute backing name outside the mount");
		err = qcow2_path_push(&r, rel, false);
	} else {
		/* Relative: against the directory of the overlay. */
		err = qcow2_path_push(&r, overlay, false);
		if (err == -EXDEV || (err == 0 && r.len == 0)) {
			out[0] = '\0';
			return qcow2_refuse(reason, reasonlen, -EINVAL,
			    "invalid image path");
		}
		if (err == 0) {
			qcow2_path_pop(&r);
			err = qcow2_path_push(&r, backing, false);
		}
		if (err == -EXDEV) {
			out[0] = '\0';
			return qcow2_refuse(reason, reasonlen, -EXDEV,
			    "backing name escapes the mount");
		}
	}
	if (err < 0) {
		out[0] = '\0';
		return qcow2_refuse(reason, reasonlen, -ENAMETOOLONG,
		    "resolved backing name too long");
	}
	if (r.len == 0)
		return qcow2_refuse(reason, reasonlen, -EINVAL,
		    "backing name is the mount root");

	/* The image as its own backing file: the shortest loop. */
	qcow2_path_init(&a, tmp, sizeof(tmp));
	if (qcow2_path_push(&a, overlay, false) == 0 &&
	    strcmp(a.buf, out) == 0) {
		out[0] = '\0';
		return qcow2_refuse(reason, reasonlen, -EINVAL,
		    "backing name is the image itself");
	}
	return 0;
}
