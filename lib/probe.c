/*
 * probe.c - find what an image file is, with our bounded header parser
 * and libqcow (see probe.h).
 *
 * Our parser always runs first and alone decides whether the file is
 * looked at any further: libqcow trusts header sizes (it allocates the
 * backing name and the whole L1 table as the header says), so it is only
 * given headers we have already bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <libqcow.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "probe.h"

#define PROBE_LIBQCOW_MIN_FILE	512	/* libqcow reads a 512-byte header */

/* Copy the first line of src, printable ASCII only. */
static void
probe_oneline(char *dst, size_t dstsz, const char *src)
{
	size_t o = 0;

	for (; *src != '\0' && *src != '\n' && o + 1 < dstsz; src++)
		dst[o++] = (*src >= 0x20 && *src < 0x7f) ? *src : '?';
	dst[o] = '\0';
}

/*
 * Record why libqcow failed and free its error. The innermost cause is
 * the first line of libqcow's backtrace, after its "function: " prefix.
 */
static void
probe_libqcow_fail(struct vc_probe *out, libqcow_error_t **err,
    const char *what)
{
	char buf[512];
	const char *msg = buf, *sep;
	size_t sz = sizeof(out->libqcow_error);
	int k;

	buf[0] = '\0';
	if (*err != NULL &&
	    libqcow_error_backtrace_sprint(*err, buf, sizeof(buf)) > 0) {
		sep = strstr(buf, ": ");
		if (sep != NULL && sep < buf + strcspn(buf, "\n"))
			msg = sep + 2;
	}
	k = snprintf(out->libqcow_error, sz, "libqcow %s: ", what);
	if (k > 0 && (size_t)k < sz)
		probe_oneline(out->libqcow_error + k, sz - (size_t)k,
		    msg[0] != '\0' ? msg : "failed");
	libqcow_error_free(err);
}

/*
 * Ask libqcow about the open image fd, whose header h our parser has
 * accepted. Returns 0 when libqcow opened it and agrees with h, else -1
 * with out->libqcow_error saying why; h's answer then stands.
 */
static int
probe_libqcow(int fd, const struct qcow2_info *h, struct vc_probe *out)
{
	libqcow_file_t *file = NULL;
	libqcow_error_t *err = NULL;
	char path[32];
	uint8_t name[QCOW2_NAME_MAX + 1];
	size64_t size = 0;
	uint32_t crypt = 0;
	int nsnap = 0, r, ret = -1;
	size_t namesz = 0;
	const char *differs = NULL;

	if (libqcow_file_initialize(&file, &err) != 1) {
		probe_libqcow_fail(out, &err, "initialize");
		return -1;
	}
	/*
	 * This libqcow has no file-descriptor entry point (it is built
	 * without libbfio's public API), so it opens the magic link: that
	 * reaches the very inode fd holds, never a path through the mount.
	 */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (libqcow_file_open(file, path, LIBQCOW_OPEN_READ, &err) != 1) {
		probe_libqcow_fail(out, &err, "open");
		goto out_free;
	}
	if (libqcow_file_get_media_size(file, &size, &err) != 1 ||
	    libqcow_file_get_encryption_method(file, &crypt, &err) != 1 ||
	    libqcow_file_get_number_of_snapshots(file, &nsnap, &err) != 1) {
		probe_libqcow_fail(out, &err, "header");
		goto out_close;
	}
	name[0] = '\0';
	r = libqcow_file_get_utf8_backing_filename_size(file, &namesz, &err);
	if (r == 1 && namesz > sizeof(name)) {
		snprintf(out->libqcow_error, sizeof(out->libqcow_error),
		    "libqcow backing name: %zu bytes", namesz);
		goto out_close;
	}
	if (r == 1)
		r = libqcow_file_get_utf8_backing_filename(file, name,
		    sizeof(name), &err);
	if (r < 0) {
		probe_libqcow_fail(out, &err, "backing name");
		goto out_close;
	}

	if (size != h->size)
		differs = "virtual size";
	else if (crypt != h->crypt_method)
		differs = "encryption method";
	else if (nsnap < 0 || (uint32_t)nsnap != h->nb_snapshots)
		differs = "snapshot count";
	else if (strcmp((const char *)name, h->backing) != 0)
		differs = "backing name";
	if (differs != NULL)
		snprintf(out->libqcow_error, sizeof(out->libqcow_error),
		    "libqcow disagrees on the %s", differs);
	else
		ret = 0;
out_close:
	if (libqcow_file_close(file, &err) != 0)
		libqcow_error_free(&err);
out_free:
	if (libqcow_file_free(&file, &err) != 1)
		libqcow_error_free(&err);
	return ret;
}

/*
 * Whether handing the file to libqcow is bounded: it reads a 512-byte
 * header and the whole L1 table at open. Sets out->libqcow_error if not.
 */
static bool
probe_libqcow_bounded(const struct qcow2_info *h, uint64_t file_size,
    struct vc_probe *out)
{
	uint64_t l1_bytes = (uint64_t)h->l1_size * 8;
	const char *why = NULL;

	if (file_size < PROBE_LIBQCOW_MIN_FILE)
		why = "file shorter than 512 bytes";
	else if (l1_bytes > PROBE_LIBQCOW_L1_MAX)
		why = "L1 table larger than 4 MiB";
	else if (h->l1_table_offset > file_size ||
	    l1_bytes > file_size - h->l1_table_offset)
		why = "L1 table beyond end of file";
	if (why != NULL)
		snprintf(out->libqcow_error, sizeof(out->libqcow_error),
		    "libqcow not asked: %s", why);
	return why == NULL;
}

int
probe_open(int dirfd, const char *name, bool path_only)
{
	struct open_how how = {
		/* openat2() refuses O_PATH with any flag but these. */
		.flags = path_only ? O_PATH | O_CLOEXEC | O_NOFOLLOW :
		    O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
		    O_NOATIME,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
		    RESOLVE_NO_MAGICLINKS,
	};
	int fd;

	fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
	if (fd < 0 && errno == EPERM && (how.flags & O_NOATIME)) {
		/* O_NOATIME on a file we neither own nor may override */
		how.flags &= ~(uint64_t)O_NOATIME;
		fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
	}
	if (fd >= 0 || errno != ENOSYS)
		return fd >= 0 ? fd : -errno;

	/* Before Linux 5.6: O_NOFOLLOW only guards the last component. */
	if (strchr(name, '/') != NULL)
		return -ENOSYS;
	fd = openat(dirfd, name, (int)how.flags);
	if (fd < 0 && errno == EPERM && (how.flags & O_NOATIME))
		fd = openat(dirfd, name, (int)how.flags & ~O_NOATIME);
	return fd >= 0 ? fd : -errno;
}

int
probe_image(int dirfd, const char *name, bool want_qcow,
    struct vc_probe *out)
{
	return probe_image_flags(dirfd, name, want_qcow, 0, out);
}

int
probe_image_flags(int dirfd, const char *name, bool want_qcow,
    unsigned flags, struct vc_probe *out)
{
	struct qcow2_info *h = NULL;
	uint8_t *buf = NULL;
	struct stat st;
	uint64_t file_size;
	ssize_t n;
	int fd, err = 0;

	memset(out, 0, sizeof(*out));
	out->format = QCOW2_FORMAT_RAW;
	out->source = "none";

	/* Policy may keep this image raw: then its content is not read. */
	if ((fd = probe_open(dirfd, name, !want_qcow)) < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {	/* a symlink only without openat2 */
		err = S_ISLNK(st.st_mode) ? -ELOOP : -EINVAL;
		goto out;
	}
	if (!want_qcow) {
		out->virtual_size = (uint64_t)st.st_size;
		goto out;
	}
	/* Fixed sizes, not the header's: 64 KiB is too much for a stack. */
	buf = malloc(QCOW2_PROBE_BYTES);
	h = malloc(sizeof(*h));
	if (buf == NULL || h == NULL) {
		err = -ENOMEM;
		goto out;
	}
	/* One read: a file growing meanwhile cannot keep us here. */
	do
		n = pread(fd, buf, QCOW2_PROBE_BYTES, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		err = -errno;
		goto drop;
	}
	file_size = (uint64_t)st.st_size > (uint64_t)n ?
	    (uint64_t)st.st_size : (uint64_t)n;

	out->virtual_size = file_size;
	out->source = "header";
	qcow2_parse(buf, (size_t)n, file_size, h);
	if (h->status == QCOW2_STATUS_NOT_QCOW)
		goto drop;
	if (h->status == QCOW2_STATUS_CORRUPT) {
		snprintf(out->warning, sizeof(out->warning),
		    "%s header refused, served as raw: %s",
		    h->format == QCOW2_FORMAT_QCOW1 ? "qcow" : "qcow2",
		    h->reason);
		goto drop;
	}
	out->format = h->format;
	out->version = h->version;
	out->virtual_size = h->size;
	out->crypt_method = h->crypt_method;
	out->nb_snapshots = h->nb_snapshots;
	out->incompat = h->incompat;
	memcpy(out->backing, h->backing, sizeof(out->backing));
	memcpy(out->backing_fmt, h->backing_fmt, sizeof(out->backing_fmt));
	memcpy(out->data_file, h->data_file, sizeof(out->data_file));
	if (probe_libqcow_bounded(h, file_size, out) &&
	    probe_libqcow(fd, h, out) == 0)
		out->source = "libqcow";
drop:
	/*
	 * The whole file's cached pages go, ours and libqcow's alike: probing
	 * a none/directsync image leaves nothing in the page cache.
	 */
	if (flags & PROBE_DROP_CACHE)
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
out:
	free(h);
	free(buf);
	close(fd);
	return err;
}
