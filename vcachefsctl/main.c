/*
 * vcachefsctl - look at and steer a running vcachefs through its control
 * socket (vcachefsctl(8)). Exit status: 0 done, 1 refused or failed,
 * 2 bad usage. Every error is one line on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctlproto.h"

#define VCTL_OK		0
#define VCTL_FAIL	1
#define VCTL_USAGE	2

static const char *vctl_prog = "vcachefsctl";

static void vctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
vctl_err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", vctl_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
vctl_usage(FILE *out)
{
	fprintf(out,
"usage: vcachefsctl [-m MOUNTPOINT | -s SOCKET] COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  status                      the mount and every open image: effective\n"
"                              cache/aio/readonly, the rule, format, size,\n"
"                              opens, host page cache resident and dirty\n"
"  stats [IMAGE...] [--json | --prometheus] [--reset] [--interval N [--count C]]\n"
"                              counters and latency percentiles per image;\n"
"                              --interval prints rates every N seconds\n"
"  top                         live view, refreshed every second; keys: r w f\n"
"                              n d i sort by read, write, flush, name, dirty,\n"
"                              in flight; q quits\n"
"  reload                      re-read the configuration (as SIGHUP does)\n"
"  flush [IMAGE... | --all]    make data durable now, even in unsafe mode\n"
"  drop-cache IMAGE...         flush, then evict from the host page cache\n"
"  fdstore                     hand the mount to systemd's fd store and let\n"
"                              the daemon exit without unmounting (restart)\n"
"  check-migration [IMAGE...] [--json]\n"
"                              whether each image (default: every open one)\n"
"                              may be live-migrated without copying storage;\n"
"                              exit 0 only if all are safe\n"
"\n"
"  -m, --mount MOUNTPOINT      the mount (default socket %s/<escaped>.sock)\n"
"  -s, --socket SOCKET         the control socket itself\n"
"  -h, --help                  this help\n"
"  -V, --version               the version\n"
"Without -m or -s, the only socket in %s is used.\n"
"Exit status: 0 done, 1 refused or failed, 2 bad usage. See vcachefsctl(8).\n",
	    CTL_SOCKET_DIR, CTL_SOCKET_DIR);
}

/* --- connection --- */

struct vctl_conn {
	int fd;
	const char *path;
	char buf[65536];
	size_t len, off;
};

static int
vctl_connect(struct vctl_conn *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(c, 0, sizeof(*c));
	c->path = path;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		vctl_err("%s: socket path too long", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd == -1 || connect(c->fd, (struct sockaddr *)&sa,
	    sizeof(sa)) == -1) {
		int e = errno;

		if (e == ENOENT || e == ECONNREFUSED)
			vctl_err("%s: %s (is vcachefs running with this control "
			    "socket?)", path, strerror(e));
		else
			vctl_err("%s: %s", path, strerror(e));
		return -1;
	}
	return 0;
}

static char *vctl_line_q(struct vctl_conn *c, bool quiet);

/* The next reply line (NUL-terminated, no newline) or NULL at EOF/error. */
static char *
vctl_line(struct vctl_conn *c)
{
	return vctl_line_q(c, false);
}

static char *
vctl_line_quiet(struct vctl_conn *c)
{
	return vctl_line_q(c, true);
}

static char *
vctl_line_q(struct vctl_conn *c, bool quiet)
{
	for (;;) {
		char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
		ssize_t n;

		if (nl != NULL) {
			char *line = c->buf + c->off;

			*nl = '\0';
			c->off = (size_t)(nl + 1 - c->buf);
			return line;
		}
		if (c->off > 0) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		}
		if (c->len == sizeof(c->buf) - 1) {
			vctl_err("reply line too long");
			return NULL;
		}
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
		if (n <= 0) {
			if (quiet)
				return NULL;
			if (n < 0)
				vctl_err("%s: read: %s", c->path, strerror(errno));
			else
				vctl_err("%s: the daemon closed the connection",
				    c->path);
			return NULL;
		}
		c->len += (size_t)n;
	}
}

/* All records of one reply. */
struct vctl_reply {
	struct ctl_record *rec;
	char **lines;		/* owned copies the records point into */
	unsigned n;
	bool ok;
	char error[512];
};

static void
vctl_reply_free(struct vctl_reply *r)
{
	for (unsigned i = 0; i < r->n; i++)
		free(r->lines[i]);
	free(r->lines);
	free(r->rec);
	memset(r, 0, sizeof(*r));
}

/*
 * Send a request (words, image names percent-encoded by the caller) and
 * read its reply. Returns 0 when the reply came (r->ok tells which), -1
 * when the connection failed (said).
 */
static int
vctl_request(struct vctl_conn *c, const char *req, struct vctl_reply *r)
{
	size_t len = strlen(req), off = 0;
	char *line;

	memset(r, 0, sizeof(*r));
	while (off < len) {
		ssize_t n = send(c->fd, req + off, len - off, MSG_NOSIGNAL);

		if (n < 0) {
			int e = errno;
			struct ctl_record rec;

			/* A refusing daemon says why before it closes. */
			if ((e == EPIPE || e == ECONNRESET) &&
			    (line = vctl_line_quiet(c)) != NULL &&
			    ctl_record_parse(line, &rec) == 0 &&
			    strcmp(rec.type, "error") == 0) {
				snprintf(r->error, sizeof(r->error), "%s",
				    rec.message);
				return 0;
			}
			vctl_err("%s: send: %s", c->path, strerror(e));
			return -1;
		}
		off += (size_t)n;
	}
	while ((line = vctl_line(c)) != NULL) {
		struct ctl_record rec;
		char *copy = strdup(line);

		if (copy == NULL || ctl_record_parse(copy, &rec) < 0) {
			vctl_err("malformed reply line: %.80s", line);
			free(copy);
			vctl_reply_free(r);
			return -1;
		}
		if (strcmp(rec.type, "ok") == 0) {
			free(copy);
			r->ok = true;
			return 0;
		}
		if (strcmp(rec.type, "error") == 0) {
			snprintf(r->error, sizeof(r->error), "%s", rec.message);
			free(copy);
			return 0;
		}
		r->lines = realloc(r->lines, (r->n + 1) * sizeof(*r->lines));
		r->rec = realloc(r->rec, (r->n + 1) * sizeof(*r->rec));
		if (r->lines == NULL || r->rec == NULL) {
			vctl_err("out of memory");
			exit(VCTL_FAIL);
		}
		r->lines[r->n] = copy;
		r->rec[r->n] = rec;
		r->n++;
	}
	vctl_reply_free(r);
	return -1;
}

/* Build "CMD [opts] name..." with names percent-encoded. */
static char *
vctl_build(const char *cmd, const char *opts, char **names, int n)
{
	char *out;
	size_t len = strlen(cmd) + (opts ? strlen(opts) : 0) + 4, o;
	char enc[CTL_REQ_MAX * 3];

	for (int i = 0; i < n; i++)
		len += strlen(names[i]) * 3 + 1;
	out = malloc(len);
	if (out == NULL)
		return NULL;
	o = (size_t)sprintf(out, "%s%s%s", cmd, opts && *opts ? " " : "",
	    opts ? opts : "");
	for (int i = 0; i < n; i++) {
		if (ctl_encode(names[i], enc, sizeof(enc)) < 0) {
			free(out);
			return NULL;
		}
		o += (size_t)sprintf(out + o, " %s", enc);
	}
	strcpy(out + o, "\n");
	if (o + 1 > CTL_REQ_MAX) {
		vctl_err("request longer than %d bytes: name fewer images",
		    CTL_REQ_MAX);
		free(out);
		return NULL;
	}
	return out;
}

static const char *
vctl_get(const struct ctl_record *rec, const char *key)
{
	const char *v = ctl_record_get(rec, key);

	return v != NULL ? v : "";
}

static uint64_t
vctl_getu(const struct ctl_record *rec, const char *key)
{
	const char *v = ctl_record_get(rec, key);

	return v != NULL ? strtoull(v, NULL, 10) : 0;
}

/* --- formatting --- */

static const char *
vctl_bytes(uint64_t b, char *out, size_t len)
{
	static const char units[] = "KMGTPE";
	double v = (double)b;
	int u = -1;

	if (b < 1024) {
		snprintf(out, len, "%" PRIu64, b);
		return out;
	}
	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, "%.1f%c", v, units[u]);
	return out;
}

static const char *
vctl_ns(uint64_t ns, char *out, size_t len)
{
	if (ns == 0)
		snprintf(out, len, "-");
	else if (ns < 10000)
		snprintf(out, len, "%" PRIu64 "ns", ns);
	else if (ns < 10000000)
		snprintf(out, len, "%.1fus", ns / 1e3);
	else if (ns < 10000000000ull)
		snprintf(out, len, "%.1fms", ns / 1e6);
	else
		snprintf(out, len, "%.1fs", ns / 1e9);
	return out;
}

static const char *
vctl_duration(uint64_t s, char *out, size_t len)
{
	if (s >= 86400)
		snprintf(out, len, "%" PRIu64 "d %02" PRIu64 "h %02" PRIu64 "m",
		    s / 86400, s / 3600 % 24, s / 60 % 60);
	else if (s >= 3600)
		snprintf(out, len, "%" PRIu64 "h %02" PRIu64 "m %02" PRIu64 "s",
		    s / 3600, s / 60 % 60, s % 60);
	else if (s >= 60)
		snprintf(out, len, "%" PRIu64 "m %02" PRIu64 "s", s / 60, s % 60);
	else
		snprintf(out, len, "%" PRIu64 "s", s);
	return out;
}

static bool
vctl_is_number(const char *v)
{
	if (*v == '-')
		v++;
	/* JSON has no leading zeros: "02140002" (octal flags) stays a string. */
	if (*v == '\0' || (v[0] == '0' && v[1] != '\0'))
		return false;
	for (; *v; v++)
		if (*v < '0' || *v > '9')
			return false;
	return true;
}

static void
vctl_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void
vctl_json_record(const struct ctl_record *rec, const char *indent)
{
	printf("%s{", indent);
	for (unsigned i = 0; i < rec->n; i++) {
		printf("%s", i ? ", " : "");
		vctl_json_string(rec->key[i]);
		printf(": ");
		if (vctl_is_number(rec->val[i]))
			printf("%s", rec->val[i]);
		else
			vctl_json_string(rec->val[i]);
	}
	printf("}");
}

/* {"<head type>": {...}, "images": [{...}, ...]} */
static void
vctl_json(const struct vctl_reply *r)
{
	bool first = true, head = false;

	printf("{");
	for (unsigned i = 0; i < r->n; i++) {
		if (strcmp(r->rec[i].type, "image") == 0)
			continue;
		printf("%s\n  ", head ? "," : "");
		vctl_json_string(r->rec[i].type);
		printf(": ");
		vctl_json_record(&r->rec[i], "");
		head = true;
	}
	printf("%s\n  \"images\": [", head ? "," : "");
	for (unsigned i = 0; i < r->n; i++) {
		if (strcmp(r->rec[i].type, "image") != 0)
			continue;
		printf("%s\n", first ? "" : ",");
		vctl_json_record(&r->rec[i], "    ");
		first = false;
	}
	printf("%s]\n}\n", first ? "" : "\n  ");
}

/* --- commands --- */

static int
vctl_simple(struct vctl_conn *c, const char *req, struct vctl_reply *r)
{
	if (vctl_request(c, req, r) < 0)
		return VCTL_FAIL;
	if (!r->ok) {
		vctl_err("%s", r->error);
		vctl_reply_free(r);
		return VCTL_FAIL;
	}
	return VCTL_OK;
}

static int
vctl_status(struct vctl_conn *c, bool json)
{
	struct vctl_reply r;
	char b1[32], b2[32], b3[32], up[64];
	int st = vctl_simple(c, "status\n", &r);
	const char *pid = "?";
	size_t w = 5;
	bool any_pending = false, any_image = false;

	if (st != VCTL_OK)
		return st;
	if (json) {
		vctl_json(&r);
		vctl_reply_free(&r);
		return VCTL_OK;
	}
	for (unsigned i = 0; i < r.n; i++) {
		const struct ctl_record *m = &r.rec[i];

		if (strcmp(m->type, "mount") == 0) {
			printf("mount point  %s\n", vctl_get(m, "mountpoint"));
			printf("source       %s\n", vctl_get(m, "source"));
			printf("config       %s\n", vctl_get(m, "config"));
			printf("transport    %s\n", vctl_get(m, "transport"));
			printf("uptime       %s (since %s, pid %s)\n",
			    vctl_duration(vctl_getu(m, "uptime_s"), up, sizeof(up)),
			    vctl_get(m, "started"), vctl_get(m, "pid"));
			printf("page cache   from %s\n", vctl_get(m, "pagecache"));
			pid = vctl_get(m, "pid");
		} else if (strcmp(m->type, "image") == 0) {
			size_t l = strlen(vctl_get(m, "name"));

			w = l > w ? l : w;
			any_image = true;
		}
	}
	printf("\n%-*s %-12s %-8s %-3s %-6s %8s %4s %9s %9s  %s\n", (int)w,
	    "IMAGE", "CACHE", "AIO", "RO", "FORMAT", "SIZE", "OPEN", "RESIDENT",
	    "DIRTY", "RULE");
	for (unsigned i = 0; i < r.n; i++) {
		const struct ctl_record *m = &r.rec[i];
		const char *dirty = vctl_get(m, "dirty");

		if (strcmp(m->type, "image") != 0)
			continue;
		printf("%-*s %-12s %-8s %-3s %-6s %8s %4s %9s %9s  %s\n", (int)w,
		    vctl_get(m, "name"), vctl_get(m, "cache"), vctl_get(m, "aio"),
		    vctl_get(m, "readonly"), vctl_get(m, "format"),
		    vctl_bytes(vctl_getu(m, "virtual_size"), b1, sizeof(b1)),
		    vctl_get(m, "opencount"),
		    vctl_is_number(vctl_get(m, "resident")) ?
		    vctl_bytes(vctl_getu(m, "resident"), b2, sizeof(b2)) :
		    vctl_get(m, "resident"),
		    vctl_is_number(dirty) ?
		    vctl_bytes(vctl_getu(m, "dirty"), b3, sizeof(b3)) : dirty,
		    vctl_get(m, "rule"));
		if (ctl_record_get(m, "want_cache") != NULL)
			any_pending = true;
	}
	if (any_image) {
		/* What /proc/PID/fdinfo/FD says: the mode as the kernel has it. */
		printf("\nI/O descriptors (in /proc/%s/fdinfo):\n", pid);
		for (unsigned i = 0; i < r.n; i++) {
			const struct ctl_record *m = &r.rec[i];

			if (strcmp(m->type, "image") != 0)
				continue;
			printf("  %-*s fd %-5s %s\n", (int)w, vctl_get(m, "name"),
			    vctl_get(m, "backing_fd"),
			    vctl_get(m, "backing_flag_names"));
		}
	}
	/* Declared shared for migration (vcachefs.conf(5) shareable). */
	unsigned nshare = 0;

	for (unsigned i = 0; i < r.n; i++) {
		const struct ctl_record *m = &r.rec[i];

		if (strcmp(m->type, "image") == 0 &&
		    strcmp(vctl_get(m, "shareable"), "yes") == 0)
			printf("%s%s", nshare++ ? ", " : "\nshareable = yes: ",
			    vctl_get(m, "name"));
	}
	if (nshare > 0)
		printf("\n");
	if (any_pending) {
		printf("\nNot yet in effect:\n");
		for (unsigned i = 0; i < r.n; i++) {
			const struct ctl_record *m = &r.rec[i];

			if (strcmp(m->type, "image") != 0 ||
			    ctl_record_get(m, "want_cache") == NULL)
				continue;
			printf("  %s: the config says cache=%s aio=%s readonly=%s"
			    "%s%s\n", vctl_get(m, "name"),
			    vctl_get(m, "want_cache"), vctl_get(m, "want_aio"),
			    vctl_get(m, "want_readonly"),
			    *vctl_get(m, "pending") ? ": " : "",
			    vctl_get(m, "pending"));
		}
	}
	vctl_reply_free(&r);
	return VCTL_OK;
}

static const char *const vctl_ops[] = { "read", "write", "flush",
    "fallocate", "discard" };
#define VCTL_NOPS	5
#define VCTL_NLAT	3

static void
vctl_stats_text(const struct vctl_reply *r)
{
	char b[32], p[5][32];
	bool first = true;

	for (unsigned i = 0; i < r->n; i++) {
		const struct ctl_record *m = &r->rec[i];

		if (strcmp(m->type, "image") != 0)
			continue;
		printf("%s%s (cache=%s)\n", first ? "" : "\n",
		    vctl_get(m, "name"), vctl_get(m, "cache"));
		first = false;
		printf("  %-9s %10s %9s %8s %8s %8s %8s %8s\n", "OP", "OPS",
		    "BYTES", "P50", "P90", "P99", "P99.9", "MAX");
		for (int op = 0; op < VCTL_NOPS; op++) {
			char key[40];

			snprintf(key, sizeof(key), "%s_ops", vctl_ops[op]);
			printf("  %-9s %10" PRIu64, vctl_ops[op], vctl_getu(m, key));
			snprintf(key, sizeof(key), "%s_bytes", vctl_ops[op]);
			printf(" %9s", op == 2 ? "-" :
			    vctl_bytes(vctl_getu(m, key), b, sizeof(b)));
			if (op < VCTL_NLAT) {
				static const char *q[] = { "p50", "p90", "p99",
				    "p999", "max" };

				for (int k = 0; k < 5; k++) {
					snprintf(key, sizeof(key), "%s_%s_ns",
					    vctl_ops[op], q[k]);
					vctl_ns(vctl_getu(m, key), p[k],
					    sizeof(p[k]));
				}
				printf(" %8s %8s %8s %8s %8s", p[0], p[1], p[2],
				    p[3], p[4]);
			}
			printf("\n");
		}
		printf("  flushes ignored %" PRIu64 ", FUA writes %" PRIu64
		    ", bounced %" PRIu64 ", in flight %s, errors %" PRIu64 "%s%s%s\n",
		    vctl_getu(m, "flush_ignored"), vctl_getu(m, "fua_writes"),
		    vctl_getu(m, "bounced"), vctl_get(m, "inflight"),
		    vctl_getu(m, "errors"), *vctl_get(m, "errno") ? " (" : "",
		    vctl_get(m, "errno"), *vctl_get(m, "errno") ? ")" : "");
	}
	if (first)
		printf("no open image\n");
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void
vctl_prom_label(const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			printf("\\%c", *s);
		else if (*s == '\n')
			printf("\\n");
		else
			putchar(*s);
	}
}

static void
vctl_prom_labels(const struct ctl_record *m, const char *extra_k,
    const char *extra_v, const char *extra2_k, const char *extra2_v)
{
	printf("{image=\"");
	vctl_prom_label(vctl_get(m, "name"));
	printf("\",cache_mode=\"");
	vctl_prom_label(vctl_get(m, "cache"));
	printf("\"");
	if (extra_k != NULL) {
		printf(",%s=\"", extra_k);
		vctl_prom_label(extra_v);
		printf("\"");
	}
	if (extra2_k != NULL) {
		printf(",%s=\"", extra2_k);
		vctl_prom_label(extra2_v);
		printf("\"");
	}
	printf("}");
}

static void
vctl_prom_head(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One metric per image from key, scaled by div (1 for counts). */
static void
vctl_prom_simple(const struct vctl_reply *r, const char *name,
    const char *type, const char *help, const char *key)
{
	vctl_prom_head(name, type, help);
	for (unsigned i = 0; i < r->n; i++) {
		const struct ctl_record *m = &r->rec[i];

		if (strcmp(m->type, "image") != 0 || ctl_record_get(m, key) == NULL)
			continue;
		printf("%s", name);
		vctl_prom_labels(m, NULL, NULL, NULL, NULL);
		printf(" %s\n", vctl_get(m, key));
	}
}

static void
vctl_prometheus(const struct vctl_reply *r, const struct vctl_reply *st)
{
	static const char *q[] = { "p50", "p90", "p99", "p999" };
	static const char *qv[] = { "0.5", "0.9", "0.99", "0.999" };
	char key[48];

	vctl_prom_head("vcachefs_ops_total", "counter",
	    "Requests completed by the backing store, by operation.");
	for (unsigned i = 0; i < r->n; i++)
		for (int op = 0; op < VCTL_NOPS; op++) {
			if (strcmp(r->rec[i].type, "image") != 0)
				break;
			snprintf(key, sizeof(key), "%s_ops", vctl_ops[op]);
			printf("vcachefs_ops_total");
			vctl_prom_labels(&r->rec[i], "op", vctl_ops[op], NULL, NULL);
			printf(" %s\n", vctl_get(&r->rec[i], key));
		}
	vctl_prom_head("vcachefs_bytes_total", "counter",
	    "Bytes read, written, allocated or discarded, by operation.");
	for (unsigned i = 0; i < r->n; i++)
		for (int op = 0; op < VCTL_NOPS; op++) {
			if (strcmp(r->rec[i].type, "image") != 0)
				break;
			if (op == 2)
				continue;
			snprintf(key, sizeof(key), "%s_bytes", vctl_ops[op]);
			printf("vcachefs_bytes_total");
			vctl_prom_labels(&r->rec[i], "op", vctl_ops[op], NULL, NULL);
			printf(" %s\n", vctl_get(&r->rec[i], key));
		}
	vctl_prom_simple(r, "vcachefs_flushes_ignored_total", "counter",
	    "Guest flushes the cache mode dropped (unsafe).", "flush_ignored");
	vctl_prom_simple(r, "vcachefs_fua_writes_total", "counter",
	    "Writes the client asked to be durable (O_DSYNC, FUA).",
	    "fua_writes");
	vctl_prom_simple(r, "vcachefs_bounced_total", "counter",
	    "Unaligned O_DIRECT requests served through a bounce buffer.",
	    "bounced");
	vctl_prom_simple(r, "vcachefs_inflight_requests", "gauge",
	    "Requests taken and not yet answered.", "inflight");
	vctl_prom_head("vcachefs_errors_total", "counter",
	    "Requests that failed, by errno.");
	for (unsigned i = 0; i < r->n; i++) {
		const struct ctl_record *m = &r->rec[i];
		char list[1024], *save = NULL, *tok;

		if (strcmp(m->type, "image") != 0)
			continue;
		snprintf(list, sizeof(list), "%s", vctl_get(m, "errno"));
		for (tok = strtok_r(list, ",", &save); tok != NULL;
		    tok = strtok_r(NULL, ",", &save)) {
			char *colon = strrchr(tok, ':');

			if (colon == NULL)
				continue;
			*colon = '\0';
			printf("vcachefs_errors_total");
			vctl_prom_labels(m, "errno", tok, NULL, NULL);
			printf(" %s\n", colon + 1);
		}
	}
	vctl_prom_head("vcachefs_latency_seconds", "summary",
	    "Latency quantiles since the last reset, from a log-bucketed "
	    "histogram (bucket upper bounds).");
	for (unsigned i = 0; i < r->n; i++) {
		const struct ctl_record *m = &r->rec[i];

		if (strcmp(m->type, "image") != 0)
			continue;
		for (int op = 0; op < VCTL_NLAT; op++)
			for (int k = 0; k < 4; k++) {
				snprintf(key, sizeof(key), "%s_%s_ns", vctl_ops[op],
				    q[k]);
				printf("vcachefs_latency_seconds");
				vctl_prom_labels(m, "op", vctl_ops[op], "quantile",
				    qv[k]);
				printf(" %.9f\n", vctl_getu(m, key) / 1e9);
			}
		for (int op = 0; op < VCTL_NLAT; op++) {
			snprintf(key, sizeof(key), "%s_ops", vctl_ops[op]);
			printf("vcachefs_latency_seconds_count");
			vctl_prom_labels(m, "op", vctl_ops[op], NULL, NULL);
			printf(" %s\n", vctl_get(m, key));
		}
	}
	vctl_prom_head("vcachefs_latency_max_seconds", "gauge",
	    "Highest latency since the last reset.");
	for (unsigned i = 0; i < r->n; i++) {
		const struct ctl_record *m = &r->rec[i];

		if (strcmp(m->type, "image") != 0)
			continue;
		for (int op = 0; op < VCTL_NLAT; op++) {
			snprintf(key, sizeof(key), "%s_max_ns", vctl_ops[op]);
			printf("vcachefs_latency_max_seconds");
			vctl_prom_labels(m, "op", vctl_ops[op], NULL, NULL);
			printf(" %.9f\n", vctl_getu(m, key) / 1e9);
		}
	}
	if (st == NULL)
		return;
	vctl_prom_simple(st, "vcachefs_pagecache_resident_bytes", "gauge",
	    "Bytes of the image in the host page cache.", "resident");
	vctl_prom_head("vcachefs_pagecache_dirty_bytes", "gauge",
	    "Bytes of the image dirty in the host page cache: what a host "
	    "crash loses in writeback and unsafe.");
	for (unsigned i = 0; i < st->n; i++) {
		const struct ctl_record *m = &st->rec[i];

		if (strcmp(m->type, "image") != 0 ||
		    !vctl_is_number(vctl_get(m, "dirty")))
			continue;
		printf("vcachefs_pagecache_dirty_bytes");
		vctl_prom_labels(m, NULL, NULL, NULL, NULL);
		printf(" %s\n", vctl_get(m, "dirty"));
	}
	vctl_prom_simple(st, "vcachefs_opens", "gauge",
	    "Opens of the image through the mount.", "opencount");
}

/* --- rates: stats --interval and top --- */

struct vctl_row {
	char name[4096];
	char cache[16];
	double rps, wps, rmib, wmib, fps;
	uint64_t p99r, p99w, p99f;	/* ns, over the whole run */
	uint64_t dirty;
	bool dirty_known;
	int64_t inflight;
};

struct vctl_prev {
	char **names;
	uint64_t *vals;		/* per name: read_ops, write_ops, read_bytes, write_bytes, flush_ops */
	unsigned n;
	uint64_t t_ns;
};

#define VCTL_NV	5
static const char *const vctl_rate_keys[VCTL_NV] = { "read_ops", "write_ops",
    "read_bytes", "write_bytes", "flush_ops" };

static void
vctl_prev_free(struct vctl_prev *p)
{
	for (unsigned i = 0; i < p->n; i++)
		free(p->names[i]);
	free(p->names);
	free(p->vals);
	memset(p, 0, sizeof(*p));
}

/*
 * Turn a stats reply (and a status reply for dirty bytes) into rows of
 * rates since prev, then make it the new prev. Returns the row count.
 */
static unsigned
vctl_rates(const struct vctl_reply *sr, const struct vctl_reply *st,
    struct vctl_prev *prev, struct vctl_row **rowsp)
{
	struct vctl_prev next = { 0 };
	struct vctl_row *rows;
	uint64_t t = 0;
	double dt;
	unsigned n = 0;

	for (unsigned i = 0; i < sr->n; i++)
		if (strcmp(sr->rec[i].type, "stats") == 0)
			t = vctl_getu(&sr->rec[i], "time_ns");
	dt = prev->t_ns && t > prev->t_ns ? (t - prev->t_ns) / 1e9 : 0;
	rows = calloc(sr->n + 1, sizeof(*rows));
	next.names = calloc(sr->n + 1, sizeof(*next.names));
	next.vals = calloc((sr->n + 1) * VCTL_NV, sizeof(*next.vals));
	if (rows == NULL || next.names == NULL || next.vals == NULL) {
		vctl_err("out of memory");
		exit(VCTL_FAIL);
	}
	for (unsigned i = 0; i < sr->n; i++) {
		const struct ctl_record *m = &sr->rec[i];
		struct vctl_row *row = &rows[n];
		const uint64_t *old = NULL;
		uint64_t v[VCTL_NV];

		if (strcmp(m->type, "image") != 0)
			continue;
		snprintf(row->name, sizeof(row->name), "%s", vctl_get(m, "name"));
		snprintf(row->cache, sizeof(row->cache), "%s", vctl_get(m, "cache"));
		for (int k = 0; k < VCTL_NV; k++)
			v[k] = vctl_getu(m, vctl_rate_keys[k]);
		for (unsigned j = 0; j < prev->n; j++)
			if (strcmp(prev->names[j], row->name) == 0)
				old = &prev->vals[j * VCTL_NV];
		if (old != NULL && dt > 0) {
			double d[VCTL_NV];

			for (int k = 0; k < VCTL_NV; k++)
				d[k] = v[k] >= old[k] ? (double)(v[k] - old[k]) / dt : 0;
			row->rps = d[0];
			row->wps = d[1];
			row->rmib = d[2] / 1048576.0;
			row->wmib = d[3] / 1048576.0;
			row->fps = d[4];
		}
		row->p99r = vctl_getu(m, "read_p99_ns");
		row->p99w = vctl_getu(m, "write_p99_ns");
		row->p99f = vctl_getu(m, "flush_p99_ns");
		row->inflight = strtoll(vctl_get(m, "inflight"), NULL, 10);
		for (unsigned j = 0; st != NULL && j < st->n; j++)
			if (strcmp(st->rec[j].type, "image") == 0 &&
			    strcmp(vctl_get(&st->rec[j], "name"), row->name) == 0 &&
			    vctl_is_number(vctl_get(&st->rec[j], "dirty"))) {
				row->dirty = vctl_getu(&st->rec[j], "dirty");
				row->dirty_known = true;
			}
		next.names[n] = strdup(row->name);
		memcpy(&next.vals[n * VCTL_NV], v, sizeof(v));
		n++;
	}
	next.n = n;
	next.t_ns = t;
	vctl_prev_free(prev);
	*prev = next;
	*rowsp = rows;
	return n;
}

static char vctl_sort = 'r';

static int
vctl_row_cmp(const void *a, const void *b)
{
	const struct vctl_row *x = a, *y = b;
	double dx = 0, dy = 0;

	switch (vctl_sort) {
	case 'n':
		return strcmp(x->name, y->name);
	case 'w':
		dx = x->wps + x->wmib; dy = y->wps + y->wmib;
		break;
	case 'f':
		dx = x->fps; dy = y->fps;
		break;
	case 'd':
		dx = (double)x->dirty; dy = (double)y->dirty;
		break;
	case 'i':
		dx = (double)x->inflight; dy = (double)y->inflight;
		break;
	default:
		dx = x->rps + x->rmib; dy = y->rps + y->rmib;
		break;
	}
	if (dx != dy)
		return dx < dy ? 1 : -1;
	return strcmp(x->name, y->name);
}

static const char vctl_rate_head[] =
    "%-*s %-12s %9s %9s %8s %8s %8s %8s %8s %9s %5s";

static void
vctl_row_line(FILE *out, const struct vctl_row *row, int w)
{
	char d[32], pr[32], pw[32];

	fprintf(out, "%-*.*s %-12s %9.1f %9.1f %8.2f %8.2f %8.1f %8s %8s %9s "
	    "%5" PRId64, w, w, row->name, row->cache, row->rps, row->wps,
	    row->rmib, row->wmib, row->fps, vctl_ns(row->p99r, pr, sizeof(pr)),
	    vctl_ns(row->p99w, pw, sizeof(pw)), row->dirty_known ?
	    vctl_bytes(row->dirty, d, sizeof(d)) : "?", row->inflight);
}

static int
vctl_name_width(const struct vctl_row *rows, unsigned n, int max)
{
	int w = 5;

	for (unsigned i = 0; i < n; i++) {
		int l = (int)strlen(rows[i].name);

		w = l > w ? l : w;
	}
	return w > max ? max : w;
}

/* stats and status for one refresh; false when the connection failed. */
static bool
vctl_poll_stats(struct vctl_conn *c, const char *stats_req,
    struct vctl_reply *sr, struct vctl_reply *st, int *status)
{
	if (vctl_request(c, stats_req, sr) < 0 ||
	    vctl_request(c, "status\n", st) < 0) {
		*status = VCTL_FAIL;
		return false;
	}
	if (!sr->ok || !st->ok) {
		vctl_err("%s", !sr->ok ? sr->error : st->error);
		*status = VCTL_FAIL;
		return false;
	}
	return true;
}

static volatile sig_atomic_t vctl_stop;

static void
vctl_on_signal(int sig)
{
	(void)sig;
	vctl_stop = 1;
}

static int
vctl_interval(struct vctl_conn *c, const char *stats_req, unsigned secs,
    long count)
{
	struct vctl_prev prev = { 0 };
	struct vctl_reply sr, st;
	struct vctl_row *rows;
	int status = VCTL_OK;
	long done = 0;

	signal(SIGINT, vctl_on_signal);
	signal(SIGTERM, vctl_on_signal);
	/* The first sample only sets the base of the rates. */
	while (!vctl_stop) {
		unsigned n;
		char now[16];
		time_t t = time(NULL);
		struct tm tm;

		if (!vctl_poll_stats(c, stats_req, &sr, &st, &status))
			break;
		n = vctl_rates(&sr, &st, &prev, &rows);
		qsort(rows, n, sizeof(*rows), vctl_row_cmp);
		if (done > 0) {
			int w = vctl_name_width(rows, n, 40);

			localtime_r(&t, &tm);
			strftime(now, sizeof(now), "%H:%M:%S", &tm);
			printf("%-8s ", "TIME");
			printf(vctl_rate_head, w, "IMAGE", "MODE", "R/s", "W/s",
			    "RMiB/s", "WMiB/s", "FLUSH/s", "P99R", "P99W", "DIRTY",
			    "INFL");
			printf("\n");
			for (unsigned i = 0; i < n; i++) {
				printf("%-8s ", now);
				vctl_row_line(stdout, &rows[i], w);
				printf("\n");
			}
			fflush(stdout);
		}
		free(rows);
		vctl_reply_free(&sr);
		vctl_reply_free(&st);
		if (count > 0 && done == count)
			break;
		done++;
		for (unsigned i = 0; i < secs * 10 && !vctl_stop; i++)
			usleep(100000);
	}
	vctl_prev_free(&prev);
	return status;
}

static struct termios vctl_tio;
static bool vctl_tio_saved;

static void
vctl_term_restore(void)
{
	if (vctl_tio_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &vctl_tio);
		/* Cursor back, normal screen. */
		fputs("\033[?25h\033[?1049l", stdout);
		fflush(stdout);
		vctl_tio_saved = false;
	}
}

static int
vctl_top(struct vctl_conn *c)
{
	struct vctl_prev prev = { 0 };
	struct vctl_reply sr, st;
	struct termios raw;
	int status = VCTL_OK;
	char mnt[4096] = "", transport[32] = "";

	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		vctl_err("top needs a terminal (use stats --interval N in scripts)");
		return VCTL_USAGE;
	}
	if (tcgetattr(STDIN_FILENO, &vctl_tio) == -1) {
		vctl_err("tcgetattr: %s", strerror(errno));
		return VCTL_FAIL;
	}
	raw = vctl_tio;
	raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
	raw.c_cc[VMIN] = 0;
	raw.c_cc[VTIME] = 0;
	tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	vctl_tio_saved = true;
	atexit(vctl_term_restore);
	signal(SIGINT, vctl_on_signal);
	signal(SIGTERM, vctl_on_signal);
	fputs("\033[?1049h\033[?25l", stdout);	/* alternate screen, no cursor */
	while (!vctl_stop) {
		struct winsize ws = { .ws_row = 24, .ws_col = 80 };
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		struct vctl_row *rows;
		unsigned n, shown;
		char now[16], up[64];
		uint64_t uptime = 0;
		time_t t = time(NULL);
		struct tm tm;
		int w;

		if (!vctl_poll_stats(c, "stats\n", &sr, &st, &status))
			break;
		for (unsigned i = 0; i < st.n; i++)
			if (strcmp(st.rec[i].type, "mount") == 0) {
				snprintf(mnt, sizeof(mnt), "%s",
				    vctl_get(&st.rec[i], "mountpoint"));
				snprintf(transport, sizeof(transport), "%s",
				    vctl_get(&st.rec[i], "transport"));
				uptime = vctl_getu(&st.rec[i], "uptime_s");
			}
		n = vctl_rates(&sr, &st, &prev, &rows);
		qsort(rows, n, sizeof(*rows), vctl_row_cmp);
		ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws);
		localtime_r(&t, &tm);
		strftime(now, sizeof(now), "%H:%M:%S", &tm);
		w = vctl_name_width(rows, n, ws.ws_col > 110 ?
		    ws.ws_col - 95 : 15);
		fputs("\033[H\033[2J", stdout);
		printf("vcachefs top - %s - %s - %s, up %s - %u images - sort: %c\n",
		    now, mnt, transport, vctl_duration(uptime, up, sizeof(up)), n,
		    vctl_sort);
		printf("keys: r read  w write  f flush  n name  d dirty  i in "
		    "flight  q quit\n\n\033[7m");
		printf(vctl_rate_head, w, "IMAGE", "MODE", "R/s", "W/s", "RMiB/s",
		    "WMiB/s", "FLUSH/s", "P99R", "P99W", "DIRTY", "INFL");
		printf("\033[0m\n");
		shown = ws.ws_row > 5 ? ws.ws_row - 5 : 1;
		for (unsigned i = 0; i < n && i < shown; i++) {
			vctl_row_line(stdout, &rows[i], w);
			printf("\n");
		}
		fflush(stdout);
		free(rows);
		vctl_reply_free(&sr);
		vctl_reply_free(&st);
		/* Wait a second, or less when a key comes. */
		for (int waited = 0; waited < 1000 && !vctl_stop;) {
			char key;
			struct timespec a, b;

			clock_gettime(CLOCK_MONOTONIC, &a);
			if (poll(&pfd, 1, 1000 - waited) > 0 &&
			    read(STDIN_FILENO, &key, 1) == 1) {
				if (key == 'q' || key == 'Q') {
					vctl_stop = 1;
					break;
				}
				if (strchr("rwfndi", key) != NULL) {
					vctl_sort = key;
					break;	/* redraw now, sorted anew */
				}
			}
			clock_gettime(CLOCK_MONOTONIC, &b);
			waited += (int)((b.tv_sec - a.tv_sec) * 1000 +
			    (b.tv_nsec - a.tv_nsec) / 1000000);
		}
	}
	vctl_term_restore();
	vctl_prev_free(&prev);
	return status;
}

static int
vctl_flush(struct vctl_conn *c, int argc, char **argv, bool drop)
{
	struct vctl_reply r;
	char *req;
	bool all = false;
	int n = 0, st;
	char b1[32], b2[32];

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0 && !drop)
			all = true;
		else if (argv[i][0] == '-' && argv[i][1] == '-' && argv[i][2]) {
			vctl_err("%s: unknown option %s", drop ? "drop-cache" :
			    "flush", argv[i]);
			return VCTL_USAGE;
		} else
			argv[n++] = argv[i];
	}
	if (drop && n == 0) {
		vctl_err("drop-cache needs IMAGE... (see --help)");
		return VCTL_USAGE;
	}
	if (all && n > 0) {
		vctl_err("flush: --all or IMAGE..., not both");
		return VCTL_USAGE;
	}
	if (c == NULL)
		return VCTL_OK;		/* only checking the usage */
	req = vctl_build(drop ? "drop-cache" : "flush", n == 0 ? "--all" : "",
	    argv, n);
	if (req == NULL)
		return VCTL_USAGE;
	if (vctl_request(c, req, &r) < 0) {
		free(req);
		return VCTL_FAIL;
	}
	free(req);
	for (unsigned i = 0; i < r.n; i++) {
		const struct ctl_record *m = &r.rec[i];

		if (strcmp(vctl_get(m, "result"), "ok") != 0)
			continue;
		if (drop)
			printf("%s: flushed; page cache %s -> %s\n",
			    vctl_get(m, "name"),
			    vctl_bytes(vctl_getu(m, "resident_before"), b1,
			    sizeof(b1)), vctl_bytes(vctl_getu(m,
			    "resident_after"), b2, sizeof(b2)));
		else
			printf("%s: flushed\n", vctl_get(m, "name"));
	}
	st = r.ok ? VCTL_OK : VCTL_FAIL;
	if (!r.ok)
		vctl_err("%s", r.error);
	else if (r.n == 0)
		printf("no open image\n");
	vctl_reply_free(&r);
	return st;
}

static int
vctl_fdstore(struct vctl_conn *c)
{
	struct vctl_reply r;

	if (vctl_request(c, "fdstore\n", &r) < 0)
		return VCTL_FAIL;
	if (!r.ok) {
		vctl_err("%s", r.error);
		vctl_reply_free(&r);
		return VCTL_FAIL;
	}
	printf("connection stored; the daemon exits without unmounting\n");
	vctl_reply_free(&r);
	return VCTL_OK;
}

static int
vctl_reload(struct vctl_conn *c)
{
	struct vctl_reply r;

	if (vctl_request(c, "reload\n", &r) < 0)
		return VCTL_FAIL;
	for (unsigned i = 0; i < r.n; i++)
		fprintf(r.ok ? stdout : stderr, "%s\n", vctl_get(&r.rec[i], "text"));
	if (!r.ok) {
		vctl_err("%s", r.error);
		vctl_reply_free(&r);
		return VCTL_FAIL;
	}
	printf("configuration reloaded\n");
	vctl_reply_free(&r);
	return VCTL_OK;
}

static int
vctl_stats(struct vctl_conn *c, int argc, char **argv)
{
	bool json = false, prom = false, reset = false;
	unsigned interval = 0;
	long count = 0;
	int n = 0, st;
	struct vctl_reply r, s;
	char *req, *end;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--json") == 0)
			json = true;
		else if (strcmp(a, "--prometheus") == 0)
			prom = true;
		else if (strcmp(a, "--reset") == 0)
			reset = true;
		else if (strcmp(a, "--interval") == 0 || strcmp(a, "--count") == 0) {
			long v;

			if (i + 1 == argc) {
				vctl_err("stats: %s needs a number", a);
				return VCTL_USAGE;
			}
			errno = 0;
			v = strtol(argv[++i], &end, 10);
			if (errno || *end || v < 1 || v > 86400) {
				vctl_err("stats: %s: '%s' is not a number from 1 "
				    "to 86400", a, argv[i]);
				return VCTL_USAGE;
			}
			if (a[2] == 'i')
				interval = (unsigned)v;
			else
				count = v;
		} else if (a[0] == '-' && a[1] == '-' && a[2] != '\0') {
			vctl_err("stats: unknown option %s (see --help)", a);
			return VCTL_USAGE;
		} else {
			argv[n++] = argv[i];
		}
	}
	if (json + prom + (interval > 0) > 1) {
		vctl_err("stats: --json, --prometheus and --interval exclude "
		    "each other");
		return VCTL_USAGE;
	}
	if (count > 0 && interval == 0) {
		vctl_err("stats: --count needs --interval");
		return VCTL_USAGE;
	}
	if (interval > 0 && reset) {
		vctl_err("stats: --reset and --interval exclude each other");
		return VCTL_USAGE;
	}
	if (c == NULL)
		return VCTL_OK;		/* only checking the usage */
	req = vctl_build("stats", reset ? "--reset" : "", argv, n);
	if (req == NULL)
		return VCTL_USAGE;
	if (interval > 0) {
		st = vctl_interval(c, req, interval, count);
		free(req);
		return st;
	}
	st = vctl_simple(c, req, &r);
	free(req);
	if (st != VCTL_OK)
		return st;
	if (json) {
		vctl_json(&r);
	} else if (prom) {
		if (vctl_simple(c, "status\n", &s) != VCTL_OK) {
			vctl_reply_free(&r);
			return VCTL_FAIL;
		}
		vctl_prometheus(&r, &s);
		vctl_reply_free(&s);
	} else {
		vctl_stats_text(&r);
	}
	vctl_reply_free(&r);
	return VCTL_OK;
}

/*
 * One line per image, "NAME: safe|unsafe|unknown: REASON". Returns
 * VCTL_OK only if every image is safe.
 */
static int
vctl_check_migration(struct vctl_conn *c, int argc, char **argv)
{
	struct vctl_reply r;
	bool json = false;
	int n = 0, st = VCTL_OK;
	char *req;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (argv[i][0] == '-' && argv[i][1] == '-' && argv[i][2]) {
			vctl_err("check-migration: unknown option %s (see --help)",
			    argv[i]);
			return VCTL_USAGE;
		} else
			argv[n++] = argv[i];
	}
	if (c == NULL)
		return VCTL_OK;		/* only checking the usage */
	req = vctl_build("check-migration", "", argv, n);
	if (req == NULL)
		return VCTL_USAGE;
	st = vctl_simple(c, req, &r);
	free(req);
	if (st != VCTL_OK)
		return st;
	for (unsigned i = 0; i < r.n; i++)
		if (strcmp(vctl_get(&r.rec[i], "verdict"), "safe") != 0)
			st = VCTL_FAIL;
	if (json) {
		vctl_json(&r);
	} else {
		for (unsigned i = 0; i < r.n; i++)
			printf("%s: %s: %s\n", vctl_get(&r.rec[i], "name"),
			    vctl_get(&r.rec[i], "verdict"),
			    vctl_get(&r.rec[i], "reason"));
		if (r.n == 0)
			printf("no open image\n");
	}
	vctl_reply_free(&r);
	return st;
}

/* Without -m or -s: the one socket in CTL_SOCKET_DIR. */
static int
vctl_find_socket(char *out, size_t len)
{
	glob_t g;
	int r;

	r = glob(CTL_SOCKET_DIR "/*.sock", 0, NULL, &g);
	if (r != 0 || g.gl_pathc == 0) {
		vctl_err("no control socket in %s: is vcachefs running? (or use "
		    "-m MOUNTPOINT, -s SOCKET)", CTL_SOCKET_DIR);
		if (r == 0)
			globfree(&g);
		return -1;
	}
	if (g.gl_pathc > 1) {
		vctl_err("%zu control sockets in %s: say which with -m "
		    "MOUNTPOINT or -s SOCKET", g.gl_pathc, CTL_SOCKET_DIR);
		globfree(&g);
		return -1;
	}
	snprintf(out, len, "%s", g.gl_pathv[0]);
	globfree(&g);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mount",   required_argument, NULL, 'm' },
		{ "socket",  required_argument, NULL, 's' },
		{ "help",    no_argument,	NULL, 'h' },
		{ "version", no_argument,	NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *mnt = NULL, *sock = NULL, *cmd;
	char path[PATH_MAX], real[PATH_MAX];
	struct vctl_conn conn;
	int c, st;

	opterr = 0;
	/* "+": options end at the command; its own options follow it. */
	while ((c = getopt_long(argc, argv, "+m:s:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mnt = optarg;
			break;
		case 's':
			sock = optarg;
			break;
		case 'h':
			vctl_usage(stdout);
			return VCTL_OK;
		case 'V':
			printf("vcachefsctl %s\n", VC_VERSION);
			return VCTL_OK;
		case '?':
		default:
			if (optopt == 'm' || optopt == 's')
				vctl_err("option -%c needs an argument (see --help)",
				    optopt);
			else
				vctl_err("unknown option %s (see --help)",
				    argv[optind - 1]);
			return VCTL_USAGE;
		}
	}
	if (mnt != NULL && sock != NULL) {
		vctl_err("-m and -s exclude each other");
		return VCTL_USAGE;
	}
	if (optind == argc) {
		vctl_err("missing COMMAND (see --help)");
		return VCTL_USAGE;
	}
	cmd = argv[optind++];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "help") == 0) {
		vctl_usage(stdout);
		return VCTL_OK;
	}
	if (strcmp(cmd, "status") && strcmp(cmd, "stats") && strcmp(cmd, "top") &&
	    strcmp(cmd, "reload") && strcmp(cmd, "flush") &&
	    strcmp(cmd, "drop-cache") && strcmp(cmd, "fdstore") &&
	    strcmp(cmd, "check-migration")) {
		vctl_err("unknown command '%s' (see --help)", cmd);
		return VCTL_USAGE;
	}
	if ((strcmp(cmd, "top") == 0 || strcmp(cmd, "reload") == 0 ||
	    strcmp(cmd, "fdstore") == 0 ||
	    (strcmp(cmd, "status") == 0 && !(argc == 1 &&
	    strcmp(argv[0], "--json") == 0))) && argc > 0) {
		vctl_err("%s takes no arguments (see --help)", cmd);
		return VCTL_USAGE;
	}
	if (strcmp(cmd, "stats") == 0 || strcmp(cmd, "flush") == 0 ||
	    strcmp(cmd, "drop-cache") == 0 ||
	    strcmp(cmd, "check-migration") == 0) {
		/* Bad usage is told before any connection is tried. */
		char **copy = calloc((size_t)argc + 1, sizeof(*copy));

		if (copy == NULL)
			return VCTL_FAIL;
		memcpy(copy, argv, (size_t)argc * sizeof(*copy));
		st = cmd[0] == 'c' ? vctl_check_migration(NULL, argc, copy) :
		    cmd[1] == 't' ? vctl_stats(NULL, argc, copy) :
		    vctl_flush(NULL, argc, copy, cmd[0] == 'd');
		free(copy);
		if (st != VCTL_OK)
			return st;
	}
	if (sock == NULL && mnt != NULL) {
		if (realpath(mnt, real) == NULL) {
			vctl_err("%s: %s", mnt, strerror(errno));
			return VCTL_FAIL;
		}
		if (ctl_default_socket(real, path, sizeof(path)) < 0) {
			vctl_err("%s: mount point too long for a socket name; "
			    "use -s SOCKET", mnt);
			return VCTL_FAIL;
		}
		sock = path;
	} else if (sock == NULL) {
		if (vctl_find_socket(path, sizeof(path)) < 0)
			return VCTL_FAIL;
		sock = path;
	}
	if (vctl_connect(&conn, sock) < 0)
		return VCTL_FAIL;
	if (strcmp(cmd, "status") == 0)
		st = vctl_status(&conn, argc == 1);
	else if (strcmp(cmd, "stats") == 0)
		st = vctl_stats(&conn, argc, argv);
	else if (strcmp(cmd, "top") == 0)
		st = vctl_top(&conn);
	else if (strcmp(cmd, "reload") == 0)
		st = vctl_reload(&conn);
	else if (strcmp(cmd, "fdstore") == 0)
		st = vctl_fdstore(&conn);
	else if (strcmp(cmd, "check-migration") == 0)
		st = vctl_check_migration(&conn, argc, argv);
	else
		st = vctl_flush(&conn, argc, argv, strcmp(cmd, "drop-cache") == 0);
	close(conn.fd);
	if (fflush(stdout) == EOF && st == VCTL_OK) {
		vctl_err("stdout: %s", strerror(errno));
		st = VCTL_FAIL;
	}
	return st;
}
