/*
 * qcow2.h - a bounded parser for the headers of qcow (v1) and qcow2 (v2,
 * v3) images, and the lexical resolver for the backing names they carry.
 *
 * The parser works on bytes the caller has already read (the probe reads
 * the first QCOW2_PROBE_BYTES of a file); it never does I/O, never
 * allocates, and every loop is capped by a small constant, so a hostile
 * header costs the same as a good one. Its checks follow what QEMU 7.2
 * itself refuses at open time (block/qcow2.c qcow2_do_open, block/qcow.c
 * qcow_open), plus a few of our own where a header is legal for QEMU but
 * only a crafted file would have it (a backing name overlapping the header,
 * more than QCOW2_MAX_EXTENSIONS header extensions).
 *
 * Nothing here decides policy: whether a raw image may be read as qcow2,
 * and what to do with a refused image, is the caller's business.
 */
#ifndef VC_QCOW2_H
#define VC_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QCOW2_MAGIC		0x514649fbu	/* "QFI\xfb" */
#define QCOW2_PROBE_BYTES	(64 * 1024)	/* what probe_image() reads */
#define QCOW2_NAME_MAX		1023	/* QEMU's cap on a backing name */
#define QCOW2_FMT_MAX		15	/* QEMU keeps format names in char[16] */
#define QCOW2_REASON_MAX	128
#define QCOW2_MAX_EXTENSIONS	64	/* qemu-img writes at most a handful */

enum qcow2_format {
	QCOW2_FORMAT_RAW = 0,	/* no magic, or a version we do not know */
	QCOW2_FORMAT_QCOW1,
	QCOW2_FORMAT_QCOW2,
};

enum qcow2_status {
	QCOW2_STATUS_OK = 0,
	QCOW2_STATUS_NOT_QCOW,	/* no "QFI\xfb" magic: a raw image */
	QCOW2_STATUS_CORRUPT,	/* magic found, header refused: see reason */
};

/* qcow2 v3 incompatible_features bits. */
#define QCOW2_INCOMPAT_DIRTY		(1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT		(1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE	(1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION	(1ull << 3)
#define QCOW2_INCOMPAT_EXTL2		(1ull << 4)
#define QCOW2_INCOMPAT_KNOWN		0x1full

/* crypt_method values. */
#define QCOW2_CRYPT_NONE	0
#define QCOW2_CRYPT_AES		1
#define QCOW2_CRYPT_LUKS	2	/* qcow2 only */

#define QCOW2_COMPRESSION_ZLIB	0
#define QCOW2_COMPRESSION_ZSTD	1

/*
 * What a header says. All strings are NUL-terminated within their arrays.
 * With status CORRUPT, backing, backing_fmt and data_file are always empty
 * (a name from a refused header is never handed out) and the other fields
 * hold whatever was read before the problem was found: do not use them.
 */
struct qcow2_info {
	enum qcow2_status status;
	enum qcow2_format format;	/* RAW for NOT_QCOW and unknown versions */
	uint32_t version;	/* as stored (1, 2, 3; anything when CORRUPT) */
	uint64_t size;		/* virtual disk size in bytes */
	uint32_t cluster_bits;
	uint32_t l2_bits;	/* qcow v1 only; qcow2 derives it */
	uint32_t mtime;		/* qcow v1 only */
	uint32_t crypt_method;	/* QCOW2_CRYPT_* */
	uint32_t nb_snapshots;	/* 0 for qcow v1 */
	uint64_t incompat;	/* QCOW2_INCOMPAT_* bits; 0 before v3 */
	uint32_t header_length;	/* 48 (v1), 72 (v2) or the v3 field */
	uint8_t compression_type; /* QCOW2_COMPRESSION_* */
	uint32_t l1_size;	/* L1 entries; computed from size for v1 */
	uint64_t l1_table_offset;
	bool has_crypto_header;	/* the LUKS header extension is present */
	char backing[QCOW2_NAME_MAX + 1];	/* raw backing name, "" if none */
	char backing_fmt[QCOW2_FMT_MAX + 1];	/* "" without the extension */
	char data_file[QCOW2_NAME_MAX + 1];	/* external data file, "" if none */
	char reason[QCOW2_REASON_MAX];	/* CORRUPT: one printable line */
};

/*
 * Parse the header in buf. len is how many bytes of the file buf holds
 * (from offset 0); file_size is the file's size, so that a header cut
 * short by the end of the file ("file shorter than its header") is told
 * apart from one that lies beyond what the caller read. Bytes past
 * min(len, file_size) are never looked at.
 *
 * Returns 0 with status OK or NOT_QCOW, or -EINVAL with status CORRUPT and
 * a one-line reason (e.g. "backing name length 70000 exceeds 1023").
 */
int qcow2_parse(const void *buf, size_t len, uint64_t file_size,
    struct qcow2_info *out);

/* "raw", "qcow", "qcow2". */
const char *qcow2_format_name(enum qcow2_format format);

/*
 * Map a backing name to a path relative to the mount root. Pure string
 * work, no file system access:
 *
 *   overlay	the image's own path relative to the mount root ("vm/a.qcow2")
 *   backing	the backing name as stored in the image
 *   mountpoint	absolute path of the mount (may be NULL)
 *   source	absolute path of the source directory (may be NULL; equal
 *		to mountpoint for an in-place overmount)
 *
 * A relative name resolves against the overlay's directory, as QEMU does.
 * An absolute name under mountpoint or source maps to the path inside.
 * The result is normalized: no ".", "..", empty components or leading '/'.
 *
 * Refused, with a one-line printable reason:
 *   -EINVAL	empty or overlong names, "json:" names, protocol names (any
 *		':' before the first '/', as QEMU's path_has_protocol()),
 *		names of the mount root or of the image itself
 *   -EXDEV	absolute names outside the mount, ".." escaping the mount
 *   -ENAMETOOLONG	the result does not fit in outlen
 *
 * Resolution is lexical: "a/../b" is "b" even if a is a symlink. The
 * caller must therefore open the result without following symlinks
 * (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or O_NOFOLLOW per
 * component) so that what it opens is what was checked.
 * Returns 0 and the path in out, or -errno and the reason.
 */
int qcow2_resolve_backing(const char *overlay, const char *backing,
    const char *mountpoint, const char *source, char *out, size_t outlen,
    char *reason, size_t reasonlen);

#endif
