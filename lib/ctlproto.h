/*
 * ctlproto.h - the control socket's line protocol, shared by the daemon
 * (vcachefs/control.c) and vcachefsctl. Pure functions: no I/O, no
 * global state, so the parser can be fuzzed (tests/fuzz/fuzz_ctlproto.c).
 *
 * A request is one line of at most CTL_REQ_MAX bytes with its newline:
 * words separated by spaces, image names percent-encoded. A reply is zero
 * or more record lines "TYPE key=value key=value ..." (values
 * percent-encoded), then "ok" or "error MESSAGE". See vcachefsctl(8).
 */
#ifndef VC_CTLPROTO_H
#define VC_CTLPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_SOCKET_DIR	"/run/vcachefs"	/* where default sockets live */
#define CTL_REQ_MAX	4096	/* bytes of a request line, newline included */
#define CTL_MAX_ARGS	256	/* image names in one request */
#define CTL_MAX_PAIRS	96	/* key=value pairs in one reply record */

enum ctl_cmd {
	CTL_STATUS,
	CTL_STATS,
	CTL_RELOAD,
	CTL_FLUSH,
	CTL_DROP_CACHE,
	CTL_TAKEOVER,		/* vcachefs --takeover (takeover.c), not vcachefsctl */
	CTL_FDSTORE,		/* into systemd's fd store (fdstore.c) */
	CTL_CHECK_MIGRATION,
	CTL_NCMDS
};

struct ctl_req {
	enum ctl_cmd cmd;
	bool reset;		/* stats --reset */
	bool all;		/* flush --all */
	unsigned nargs;
	char *args[CTL_MAX_ARGS];	/* decoded image names, into buf */
	char buf[CTL_REQ_MAX + 1];
};

/*
 * Parse one request line of len bytes (without its newline; a trailing
 * '\r' is allowed). Returns 0, or -EINVAL with a one-line reason in err.
 */
int ctl_parse(const char *line, size_t len, struct ctl_req *req, char *err,
    size_t errlen);

const char *ctl_cmd_name(enum ctl_cmd cmd);

/*
 * Percent-encode s into out (len bytes): '%', '=', space, control bytes
 * and bytes from 0x7f up become %XX. Returns the length written, or -1
 * (out truncated, still terminated) when it does not fit.
 */
int ctl_encode(const char *s, char *out, size_t len);
/*
 * Decode %XX sequences of s (n bytes) into out, which may be s itself and
 * gets at most n + 1 bytes. Returns the decoded length, or -1 on a bad
 * escape or an encoded NUL.
 */
int ctl_decode(const char *s, size_t n, char *out);

/*
 * The socket name systemd-escape --path gives path: the leading and
 * trailing '/' dropped, '/' -> '-', bytes outside [A-Za-z0-9:_.] and a
 * leading '.' -> \xNN; "/" -> "-". Returns 0, or -ENAMETOOLONG.
 */
int ctl_escape_path(const char *path, char *out, size_t len);

/* The default socket of a mount point (absolute, normalized):
 * CTL_SOCKET_DIR/<ctl_escape_path>.sock. Returns 0 or -ENAMETOOLONG. */
int ctl_default_socket(const char *mountpoint, char *out, size_t len);

/* A growing output buffer for replies and records. */
struct ctl_buf {
	char *p;
	size_t len, cap;
	bool failed;		/* an allocation failed: p holds what fit */
};

void ctl_buf_free(struct ctl_buf *b);
void ctl_buf_printf(struct ctl_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* " key=VALUE" with value percent-encoded. */
void ctl_buf_kv(struct ctl_buf *b, const char *key, const char *value);
void ctl_buf_kvu(struct ctl_buf *b, const char *key, uint64_t value);
void ctl_buf_kvi(struct ctl_buf *b, const char *key, int64_t value);

/* One reply line, split in place. */
struct ctl_record {
	const char *type;	/* "ok", "error", or a record type */
	const char *message;	/* for "error": the rest of the line */
	unsigned n;
	const char *key[CTL_MAX_PAIRS];
	const char *val[CTL_MAX_PAIRS];	/* decoded */
};

/*
 * Split a reply line (no newline; modified in place). Returns 0, or
 * -EINVAL when it is not a well-formed line.
 */
int ctl_record_parse(char *line, struct ctl_record *rec);
/* The value of key in rec, or NULL. */
const char *ctl_record_get(const struct ctl_record *rec, const char *key);

#endif
