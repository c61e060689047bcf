/*
 * test_ctlproto.c - pins the control protocol of ctlproto.c (TAP output):
 * request parsing, percent-encoding, socket names as systemd-escape
 * --path gives them, and reply records.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"
#include "tap.h"

static struct ctl_req test_req;

static int
test_parse(const char *line, char *err, size_t errlen)
{
	return ctl_parse(line, strlen(line), &test_req, err, errlen);
}

static void
test_requests(void)
{
	char err[256], big[CTL_REQ_MAX + 10];
	int r;

	test_ok(test_parse("status", err, sizeof(err)) == 0 &&
	    test_req.cmd == CTL_STATUS && test_req.nargs == 0, "status");
	test_ok(test_parse("status\r", err, sizeof(err)) == 0,
	    "a trailing CR is allowed (socat crlf)");
	test_ok(test_parse("  stats   --reset  a.img  b%20c.qcow2 ", err,
	    sizeof(err)) == 0 && test_req.cmd == CTL_STATS && test_req.reset &&
	    test_req.nargs == 2 && strcmp(test_req.args[0], "a.img") == 0 &&
	    strcmp(test_req.args[1], "b c.qcow2") == 0,
	    "stats --reset with names, spaces collapsed, %%20 decoded");
	test_ok(test_parse("flush --all", err, sizeof(err)) == 0 &&
	    test_req.all && test_req.nargs == 0, "flush --all");
	r = test_parse("flush", err, sizeof(err));
	test_ok(r == -EINVAL && strstr(err, "--all") != NULL,
	    "flush without --all or names: %s", err);
	r = test_parse("flush --all a.img", err, sizeof(err));
	test_ok(r == -EINVAL, "flush --all with names refused");
	test_ok(test_parse("drop-cache dir/x%25y.img", err, sizeof(err)) == 0 &&
	    test_req.cmd == CTL_DROP_CACHE &&
	    strcmp(test_req.args[0], "dir/x%y.img") == 0, "drop-cache, %%25");
	test_ok(test_parse("drop-cache", err, sizeof(err)) == -EINVAL,
	    "drop-cache needs names");
	test_ok(test_parse("stats -- --reset", err, sizeof(err)) == 0 &&
	    !test_req.reset && test_req.nargs == 1 &&
	    strcmp(test_req.args[0], "--reset") == 0,
	    "-- ends options: an image named --reset");
	test_ok(test_parse("reload", err, sizeof(err)) == 0 &&
	    test_req.cmd == CTL_RELOAD, "reload");
	test_ok(test_parse("reload now", err, sizeof(err)) == -EINVAL,
	    "reload takes no arguments");
	test_ok(test_parse("", err, sizeof(err)) == -EINVAL &&
	    strcmp(err, "empty request") == 0, "empty request");
	r = test_parse("hello world", err, sizeof(err));
	test_ok(r == -EINVAL && strstr(err, "unknown command 'hello'") != NULL,
	    "unknown command: %s", err);
	r = test_parse("stats --fast", err, sizeof(err));
	test_ok(r == -EINVAL && strstr(err, "--fast") != NULL,
	    "unknown option: %s", err);
	r = test_parse("status\x01", err, sizeof(err));
	test_ok(r == -EINVAL && strstr(err, "control byte") != NULL,
	    "control bytes refused: %s", err);
	r = ctl_parse("stats a\0b", 9, &test_req, err, sizeof(err));
	test_ok(r == -EINVAL, "a NUL byte in a request is refused");
	test_ok(test_parse("stats a%00b", err, sizeof(err)) == -EINVAL,
	    "an encoded NUL is refused");
	test_ok(test_parse("stats a%4", err, sizeof(err)) == -EINVAL &&
	    test_parse("stats a%zz", err, sizeof(err)) == -EINVAL,
	    "broken escapes refused");
	memset(big, 'a', sizeof(big));
	memcpy(big, "stats ", 6);
	r = ctl_parse(big, CTL_REQ_MAX, &test_req, err, sizeof(err));
	test_ok(r == -EINVAL && strstr(err, "longer") != NULL,
	    "a 4096-byte line (no room for its newline) is refused");
	r = ctl_parse(big, CTL_REQ_MAX - 1, &test_req, err, sizeof(err));
	test_ok(r == 0 && test_req.nargs == 1, "4095 bytes and a newline fit");
	/* 300 one-letter names: more than CTL_MAX_ARGS. */
	strcpy(big, "stats");
	for (int i = 0; i < 300; i++)
		strcat(big, " x");
	test_ok(test_parse(big, err, sizeof(err)) == -EINVAL,
	    "more than %d names refused", CTL_MAX_ARGS);
	/* errlen 0: no message, no write. */
	test_ok(test_parse("nope", NULL, 0) == -EINVAL, "errlen 0 is allowed");
}

static void
test_encoding(void)
{
	char out[64], back[64];
	int n;

	n = ctl_encode("a b%c=d\n\xc3\xa4[x]/y", out, sizeof(out));
	test_ok(n > 0 && strcmp(out, "a%20b%25c%3Dd%0A%C3%A4[x]/y") == 0,
	    "encode: %s", out);
	n = ctl_decode(out, strlen(out), back);
	test_ok(n > 0 && strcmp(back, "a b%c=d\n\xc3\xa4[x]/y") == 0,
	    "decode round trip");
	test_ok(ctl_encode("%%%%", out, 8) == -1 && strlen(out) < 8,
	    "encode reports truncation, output terminated");
	test_ok(ctl_decode("abc", 3, back) == 3 && strcmp(back, "abc") == 0,
	    "plain text decodes to itself");
	test_ok(ctl_decode("%41%6a", 6, back) == 2 && strcmp(back, "Aj") == 0,
	    "either hex case");
}

static void
test_escape(void)
{
	static const struct { const char *in, *out; } cases[] = {
		/* What systemd-escape --path printed on Debian 12. */
		{ "/", "-" },
		{ "/var/lib/images", "var-lib-images" },
		{ "/a b/c-d/.x", "a\\x20b-c\\x2dd-.x" },
		{ "/mnt//x/", "mnt-x" },
		{ "/\xc3\xa4", "\\xc3\\xa4" },
		{ "/.x", "\\x2ex" },
		{ "/x:y_z", "x:y_z" },
		{ "/x/./y", "x-y" },
	};
	char out[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		test_ok(ctl_escape_path(cases[i].in, out, sizeof(out)) == 0 &&
		    strcmp(out, cases[i].out) == 0,
		    "escape '%s' -> '%s' (got '%s')", cases[i].in, cases[i].out,
		    out);
	test_ok(ctl_escape_path("/abcdefgh", out, 5) == -ENAMETOOLONG,
	    "escape: too long for the buffer");
	test_ok(ctl_default_socket("/var/lib/libvirt/images", out,
	    sizeof(out)) == 0 &&
	    strcmp(out, "/run/vcachefs/var-lib-libvirt-images.sock") == 0,
	    "default socket: %s", out);
}

static void
test_records(void)
{
	struct ctl_buf b = { 0 };
	struct ctl_record rec;
	char line[256];

	ctl_buf_printf(&b, "image");
	ctl_buf_kv(&b, "name", "my disk=1.img");
	ctl_buf_kvu(&b, "size", 1234567890123ull);
	ctl_buf_kvi(&b, "inflight", -1);
	ctl_buf_kv(&b, "empty", "");
	test_ok(!b.failed && strcmp(b.p, "image name=my%20disk%3D1.img "
	    "size=1234567890123 inflight=-1 empty=") == 0, "record: %s", b.p);
	snprintf(line, sizeof(line), "%s", b.p);
	test_ok(ctl_record_parse(line, &rec) == 0 && rec.n == 4 &&
	    strcmp(rec.type, "image") == 0 &&
	    strcmp(ctl_record_get(&rec, "name"), "my disk=1.img") == 0 &&
	    strcmp(ctl_record_get(&rec, "size"), "1234567890123") == 0 &&
	    strcmp(ctl_record_get(&rec, "empty"), "") == 0 &&
	    ctl_record_get(&rec, "nope") == NULL, "record parse round trip");
	snprintf(line, sizeof(line), "error no open image x y");
	test_ok(ctl_record_parse(line, &rec) == 0 &&
	    strcmp(rec.type, "error") == 0 &&
	    strcmp(rec.message, "no open image x y") == 0, "error line");
	snprintf(line, sizeof(line), "ok");
	test_ok(ctl_record_parse(line, &rec) == 0 && strcmp(rec.type, "ok") == 0
	    && rec.n == 0, "ok line");
	snprintf(line, sizeof(line), "image novalue");
	test_ok(ctl_record_parse(line, &rec) == -EINVAL, "a word without = refused");
	snprintf(line, sizeof(line), "image a=%%zz");
	test_ok(ctl_record_parse(line, &rec) == -EINVAL, "a bad value refused");
	ctl_buf_free(&b);
}

int
main(void)
{
	printf("1..43\n");
	test_requests();
	test_encoding();
	test_escape();
	test_records();
	return test_failed ? 1 : 0;
}
