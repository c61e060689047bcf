/*
 * fuzz_qcow2.c - libFuzzer target for qcow2_parse() and
 * qcow2_resolve_backing(). Besides the sanitizers' own checks it traps
 * when a result breaks the contracts in qcow2.h.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 \
 *       -D_GNU_SOURCE -Ilib tests/fuzz/fuzz_qcow2.c lib/qcow2.c -o fuzz_qcow2
 *   ./fuzz_qcow2 NEW_CORPUS_DIR tests/images/bad -max_total_time=60
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qcow2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* NUL-terminated within size, and only printable characters before it. */
static void
fuzz_check_line(const char *s, size_t size)
{
	const char *nul = memchr(s, '\0', size);

	FUZZ_CHECK(nul != NULL);
	for (; s < nul; s++)
		FUZZ_CHECK(*s >= 0x20 && *s != 0x7f);
}

/* A resolved path: relative, normalized, non-empty. */
static void
fuzz_check_path(const char *p, size_t size)
{
	const char *c = p;
	size_t n;

	FUZZ_CHECK(memchr(p, '\0', size) != NULL);
	FUZZ_CHECK(p[0] != '\0' && p[0] != '/');
	for (;;) {
		n = strcspn(c, "/");
		FUZZ_CHECK(n > 0);			/* no "//", no trailing '/' */
		FUZZ_CHECK(!(n == 1 && c[0] == '.'));
		FUZZ_CHECK(!(n == 2 && c[0] == '.' && c[1] == '.'));
		if (c[n] == '\0')
			break;
		c += n + 1;
	}
}

static void
fuzz_resolve(const char *overlay, const char *backing, const char *mnt,
    const char *src, size_t outlen)
{
	char out[PATH_MAX], reason[QCOW2_REASON_MAX];
	int r;

	if (outlen == 0 || outlen > sizeof(out))
		outlen = sizeof(out);
	r = qcow2_resolve_backing(overlay, backing, mnt, src, out, outlen,
	    reason, sizeof(reason));
	fuzz_check_line(reason, sizeof(reason));
	if (r == 0) {
		FUZZ_CHECK(reason[0] == '\0');
		fuzz_check_path(out, outlen);
	} else {
		FUZZ_CHECK(r == -EINVAL || r == -EXDEV || r == -ENAMETOOLONG);
		FUZZ_CHECK(out[0] == '\0' && reason[0] != '\0');
	}
}

static void
fuzz_parse(const uint8_t *data, size_t len, uint64_t file_size)
{
	struct qcow2_info h;
	int r = qcow2_parse(data, len, file_size, &h);

	FUZZ_CHECK(memchr(h.backing, '\0', sizeof(h.backing)) != NULL);
	FUZZ_CHECK(memchr(h.backing_fmt, '\0', sizeof(h.backing_fmt)) != NULL);
	FUZZ_CHECK(memchr(h.data_file, '\0', sizeof(h.data_file)) != NULL);
	fuzz_check_line(h.reason, sizeof(h.reason));
	switch (h.status) {
	case QCOW2_STATUS_OK:
		FUZZ_CHECK(r == 0 && h.format != QCOW2_FORMAT_RAW);
		FUZZ_CHECK(h.reason[0] == '\0');
		FUZZ_CHECK(h.cluster_bits >= 9 && h.cluster_bits <= 21);
		FUZZ_CHECK(h.nb_snapshots <= 65536);
		if (h.backing[0] != '\0') {
			fuzz_resolve("img.qcow2", h.backing, "/mnt/vm",
			    "/srv/vm", 0);
			fuzz_resolve("a/b/img.qcow2", h.backing, "/", NULL, 0);
		}
		break;
	case QCOW2_STATUS_NOT_QCOW:
		FUZZ_CHECK(r == 0 && h.format == QCOW2_FORMAT_RAW);
		break;
	case QCOW2_STATUS_CORRUPT:
		FUZZ_CHECK(r == -EINVAL && h.reason[0] != '\0');
		FUZZ_CHECK(h.backing[0] == '\0' && h.data_file[0] == '\0' &&
		    h.backing_fmt[0] == '\0');
		break;
	default:
		FUZZ_CHECK(0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char buf[4 * 1024 + 4];
	const char *s[4] = { "", "", NULL, NULL };
	size_t n, i, k;

	/*
	 * The input as a whole file, as the first part of a larger one, and
	 * with a file_size smaller than the buffer (bytes past it unused).
	 */
	fuzz_parse(data, size, size);
	fuzz_parse(data, size / 2, (uint64_t)size * 3);
	fuzz_parse(data, size, size / 3);

	/*
	 * The resolver on raw strings: the input split at NULs into overlay,
	 * backing, mountpoint and source; the last byte picks out's size.
	 */
	n = size < sizeof(buf) - 4 ? size : sizeof(buf) - 4;
	memcpy(buf, data, n);
	memset(buf + n, 0, 4);
	for (i = 0, k = 0; k < 4 && i <= n; k++) {
		s[k] = buf + i;
		i += strlen(buf + i) + 1;
	}
	fuzz_resolve(s[0], s[1], s[2], s[3], size > 0 ? data[size - 1] : 0);
	return 0;
}
