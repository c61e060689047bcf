/*
 * ctlproto.c - parsing and encoding for the control protocol (ctlproto.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"

static const char *const ctl_cmd_names[CTL_NCMDS] = {
	[CTL_STATUS] = "status",
	[CTL_STATS] = "stats",
	[CTL_RELOAD] = "reload",
	[CTL_FLUSH] = "flush",
	[CTL_DROP_CACHE] = "drop-cache",
	[CTL_TAKEOVER] = "takeover",
	[CTL_FDSTORE] = "fdstore",
	[CTL_CHECK_MIGRATION] = "check-migration",
};

const char *
ctl_cmd_name(enum ctl_cmd cmd)
{
	return cmd < CTL_NCMDS ? ctl_cmd_names[cmd] : "?";
}

static int
ctl_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool
ctl_must_encode(unsigned char c)
{
	return c <= ' ' || c >= 0x7f || c == '%' || c == '=';
}

int
ctl_encode(const char *s, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (len == 0)
		return -1;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		size_t need = ctl_must_encode(c) ? 3 : 1;

		if (o + need >= len) {
			out[o] = '\0';
			return -1;
		}
		if (need == 3) {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	return (int)o;
}

int
ctl_decode(const char *s, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '\0')
			return -1;
		if (s[i] != '%') {
			out[o++] = s[i];
			continue;
		}
		if (n - i < 3)
			return -1;
		int hi = ctl_hexval(s[i + 1]), lo = ctl_hexval(s[i + 2]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -1;
		out[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[o] = '\0';
	return (int)o;
}

int
ctl_escape_path(const char *path, char *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	const char *p = path;
	bool first = true;

	if (len < 2)
		return -ENAMETOOLONG;
	for (;;) {
		const char *end;

		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		end = strchrnul(p, '/');
		if (end - p == 1 && *p == '.') {	/* "/./" */
			p = end;
			continue;
		}
		if (!first) {
			if (o + 1 >= len)
				return -ENAMETOOLONG;
			out[o++] = '-';
		}
		for (; p < end; p++) {
			unsigned char c = (unsigned char)*p;
			bool plain = (c >= 'a' && c <= 'z') ||
			    (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			    c == ':' || c == '_' || (c == '.' && o > 0);

			if (o + (plain ? 1 : 4) >= len)
				return -ENAMETOOLONG;
			if (plain) {
				out[o++] = (char)c;
			} else {
				out[o++] = '\\';
				out[o++] = 'x';
				out[o++] = hex[c >> 4];
				out[o++] = hex[c & 15];
			}
		}
		first = false;
	}
	if (o == 0)
		out[o++] = '-';		/* the root */
	out[o] = '\0';
	return 0;
}

int
ctl_default_socket(const char *mountpoint, char *out, size_t len)
{
	char esc[256];
	int r = ctl_escape_path(mountpoint, esc, sizeof(esc));

	if (r < 0)
		return r;
	if (snprintf(out, len, "%s/%s.sock", CTL_SOCKET_DIR, esc) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

static void
ctl_reason(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
ctl_reason(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int
ctl_parse(const char *line, size_t len, struct ctl_req *req, char *err,
    size_t errlen)
{
	char *words[CTL_MAX_ARGS + 8];
	unsigned nw = 0, i;
	char *p;
	bool opts_done = false;

	memset(req, 0, offsetof(struct ctl_req, buf));
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len >= CTL_REQ_MAX) {
		ctl_reason(err, errlen, "request longer than %d bytes",
		    CTL_REQ_MAX);
		return -EINVAL;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c < ' ' || c == 0x7f) {
			ctl_reason(err, errlen, "malformed request: control "
			    "byte 0x%02x at offset %u", c, i);
			return -EINVAL;
		}
	}
	memcpy(req->buf, line, len);
	req->buf[len] = '\0';
	for (p = req->buf; *p != '\0';) {
		while (*p == ' ')
			*p++ = '\0';
		if (*p == '\0')
			break;
		if (nw == sizeof(words) / sizeof(words[0])) {
			ctl_reason(err, errlen, "too many words (at most %d "
			    "images)", CTL_MAX_ARGS);
			return -EINVAL;
		}
		words[nw++] = p;
		while (*p != ' ' && *p != '\0')
			p++;
	}
	if (nw == 0) {
		ctl_reason(err, errlen, "empty request");
		return -EINVAL;
	}
	for (i = 0; i < CTL_NCMDS; i++)
		if (strcmp(words[0], ctl_cmd_names[i]) == 0)
			break;
	if (i == CTL_NCMDS) {
		char name[40];

		if (ctl_encode(words[0], name, sizeof(name)) < 0)
			snprintf(name + sizeof(name) - 4, 4, "...");
		ctl_reason(err, errlen, "unknown command '%s' (status, stats, "
		    "reload, flush, drop-cache, check-migration)", name);
		return -EINVAL;
	}
	req->cmd = (enum ctl_cmd)i;
	for (i = 1; i < nw; i++) {
		char *w = words[i];

		if (!opts_done && strcmp(w, "--") == 0) {
			opts_done = true;
			continue;
		}
		if (!opts_done && w[0] == '-' && w[1] == '-') {
			if (req->cmd == CTL_STATS && strcmp(w, "--reset") == 0) {
				req->reset = true;
				continue;
			}
			if (req->cmd == CTL_FLUSH && strcmp(w, "--all") == 0) {
				req->all = true;
				continue;
			}
			char name[40];

			if (ctl_encode(w, name, sizeof(name)) < 0)
				snprintf(name + sizeof(name) - 4, 4, "...");
			ctl_reason(err, errlen, "%s: unknown option '%s'",
			    ctl_cmd_name(req->cmd), name);
			return -EINVAL;
		}
		if (req->nargs == CTL_MAX_ARGS) {
			ctl_reason(err, errlen, "too many images (at most %d)",
			    CTL_MAX_ARGS);
			return -EINVAL;
		}
		if (ctl_decode(w, strlen(w), w) <= 0) {
			ctl_reason(err, errlen, "%s: bad percent-encoding in "
			    "argument %u", ctl_cmd_name(req->cmd), i);
			return -EINVAL;
		}
		req->args[req->nargs++] = w;
	}
	switch (req->cmd) {
	case CTL_STATUS:
	case CTL_RELOAD:
	case CTL_TAKEOVER:
	case CTL_FDSTORE:
		if (req->nargs > 0) {
			ctl_reason(err, errlen, "%s takes no arguments",
			    ctl_cmd_name(req->cmd));
			return -EINVAL;
		}
		break;
	case CTL_FLUSH:
		if (req->all == (req->nargs > 0)) {
			ctl_reason(err, errlen, "flush needs --all or IMAGE... "
			    "(not both)");
			return -EINVAL;
		}
		break;
	case CTL_DROP_CACHE:
		if (req->nargs == 0) {
			ctl_reason(err, errlen, "drop-cache needs IMAGE...");
			return -EINVAL;
		}
		break;
	default:
		break;
	}
	return 0;
}

void
ctl_buf_free(struct ctl_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static bool
ctl_buf_reserve(struct ctl_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->failed)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 1024;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void
ctl_buf_printf(struct ctl_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !ctl_buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
ctl_buf_kv(struct ctl_buf *b, const char *key, const char *value)
{
	size_t need = strlen(key) + 2 + 3 * strlen(value) + 1;

	if (!ctl_buf_reserve(b, need))
		return;
	b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len, " %s=", key);
	b->len += (size_t)ctl_encode(value, b->p + b->len, b->cap - b->len);
}

void
ctl_buf_kvu(struct ctl_buf *b, const char *key, uint64_t value)
{
	ctl_buf_printf(b, " %s=%" PRIu64, key, value);
}

void
ctl_buf_kvi(struct ctl_buf *b, const char *key, int64_t value)
{
	ctl_buf_printf(b, " %s=%" PRId64, key, value);
}

int
ctl_record_parse(char *line, struct ctl_record *rec)
{
	char *p = line, *w, *eq;
	int n;

	memset(rec, 0, sizeof(*rec));
	while (*p == ' ')
		p++;
	w = p;
	while (*p != ' ' && *p != '\0')
		p++;
	if (p == w)
		return -EINVAL;
	if (*p != '\0')
		*p++ = '\0';
	rec->type = w;
	if (strcmp(w, "error") == 0) {
		rec->message = p;
		return 0;
	}
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		w = p;
		while (*p != ' ' && *p != '\0')
			p++;
		if (*p != '\0')
			*p++ = '\0';
		eq = strchr(w, '=');
		if (eq == NULL || eq == w || rec->n == CTL_MAX_PAIRS)
			return -EINVAL;
		*eq = '\0';
		n = ctl_decode(eq + 1, strlen(eq + 1), eq + 1);
		if (n < 0)
			return -EINVAL;
		rec->key[rec->n] = w;
		rec->val[rec->n] = eq + 1;
		rec->n++;
	}
	return 0;
}

const char *
ctl_record_get(const struct ctl_record *rec, const char *key)
{
	for (unsigned i = 0; i < rec->n; i++)
		if (strcmp(rec->key[i], key) == 0)
			return rec->val[i];
	return NULL;
}
