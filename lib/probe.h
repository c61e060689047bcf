/*
 * probe.h - what an image file is: raw, qcow or qcow2, its virtual size
 * and its raw backing name, found safely.
 *
 * The probe reads one bounded block with our own parser (qcow2.h) and,
 * when that accepts the header, asks libqcow for a second opinion. Images
 * libqcow cannot open (zstd, extended_l2, external data file, corrupt bit)
 * keep our parser's answer, so their backing chain is not lost. A header
 * with the magic that our parser refuses is reported as raw, with one
 * warning line: it will be served as a plain file.
 */
#ifndef VC_PROBE_H
#define VC_PROBE_H

#include <stdbool.h>
#include <stdint.h>

#include "qcow2.h"

/* flags of probe_image_flags() */
#define PROBE_DROP_CACHE	0x1	/* fadvise DONTNEED afterwards, for
					   cache=none/directsync images */

/*
 * libqcow is skipped (the header's answer stands) when opening it would
 * read or allocate an L1 table larger than this, or one past the end of
 * the file: libqcow reads the whole L1 table at open.
 */
#define PROBE_LIBQCOW_L1_MAX	(4u * 1024 * 1024)

#define PROBE_WARNING_MAX	(QCOW2_REASON_MAX + 64)
#define PROBE_LIBQCOW_ERR_MAX	128

struct vc_probe {
	enum qcow2_format format;	/* RAW unless a qcow header was accepted */
	uint32_t version;		/* qcow version; 0 for RAW */
	uint64_t virtual_size;		/* RAW: the file size */
	uint32_t crypt_method;		/* QCOW2_CRYPT_* */
	uint32_t nb_snapshots;
	uint64_t incompat;		/* QCOW2_INCOMPAT_* (the corrupt bit
					   does not make the image RAW) */
	/*
	 * The backing name exactly as stored, "" if none. It is not a path
	 * yet: resolve it with qcow2_resolve_backing() before use.
	 */
	char backing[QCOW2_NAME_MAX + 1];
	char backing_fmt[QCOW2_FMT_MAX + 1];	/* "" without the extension */
	char data_file[QCOW2_NAME_MAX + 1];	/* external data file, "" if none */
	/*
	 * One printable line when a qcow magic was found but the header was
	 * refused (the image is reported RAW and will be served as a plain
	 * file); "" otherwise.
	 */
	char warning[PROBE_WARNING_MAX];
	/* Who answered: "libqcow", "header" (our parser), or "none" (not read). */
	const char *source;
	/* Why libqcow did not answer, one line; "" when it did or was not asked. */
	char libqcow_error[PROBE_LIBQCOW_ERR_MAX];
};

/*
 * Probe name, a path relative to dirfd, which must be the daemon's own
 * descriptor of the backing directory, never a path through the mount.
 * The file is opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS),
 * O_RDONLY|O_NONBLOCK|O_NOATIME: a symlink anywhere in name is -ELOOP, a
 * name leaving dirfd is -EXDEV, and a FIFO cannot block us. It must be a
 * regular file (else -EINVAL) and is read with one pread of at most
 * QCOW2_PROBE_BYTES. (Kernels before 5.6 lack openat2: then name must be
 * a single component, opened O_NOFOLLOW, or the answer is -ENOSYS.)
 *
 * With want_qcow false the file is only opened O_PATH, for its size;
 * nothing is read: the answer is RAW. This is how the caller keeps a raw
 * image raw even when its guest wrote a qcow2 header naming some other
 * file into it.
 *
 * Returns 0 with *out filled (also for RAW and refused headers), or -errno
 * when the file could not be probed.
 */
int probe_image(int dirfd, const char *name, bool want_qcow,
    struct vc_probe *out);

/* The same, with PROBE_* flags. */
int probe_image_flags(int dirfd, const char *name, bool want_qcow,
    unsigned flags, struct vc_probe *out);

/*
 * Open name beneath dirfd as probe_image() does, following no symlink
 * anywhere in it (-ELOOP) and never leaving dirfd (-EXDEV): for reading,
 * never blocking (a FIFO) and without touching its atime; or, with
 * path_only, as O_PATH, which reads nothing and cannot block at all.
 * Without openat2 (before Linux 5.6) name must be one component, opened
 * O_NOFOLLOW, or the answer is -ENOSYS. Returns the descriptor or -errno.
 */
int probe_open(int dirfd, const char *name, bool path_only);

#endif
