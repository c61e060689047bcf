/*
 * test_config.c - the config parser, lookups and --check-config listing
 * (TAP output). Run from the repository root: messages name files by the
 * relative paths under tests/config/, and the golden files pin them.
 *
 *   tests/config/good/NAME.conf       must load without a word on stderr
 *   tests/config/bad/NAME.conf        must fail ...
 *   tests/config/bad/NAME.expected    ... printing exactly these lines
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkconf.h"
#include "config.h"
#include "log.h"
#include "tap.h"

#define TEST_GOOD	"tests/config/good/"
#define TEST_BAD	"tests/config/bad/"
#define TEST_NOBODY	65534	/* uid and gid for tests that need EACCES */


/* Print text as TAP comment lines, for a failure's diagnosis. */
static void
test_diag(const char *label, const char *text)
{
	const char *nl;

	printf("# %s:\n", label);
	for (; text != NULL && *text != '\0'; text = nl + 1) {
		nl = strchr(text, '\n');
		if (nl == NULL) {
			printf("#   %s\n", text);
			break;
		}
		printf("#   %.*s\n", (int)(nl - text), text);
	}
}

/* The whole of fp from its start, NUL-terminated; malloc'd. */
static char *
test_slurp(FILE *fp)
{
	char *buf = NULL;
	size_t len = 0, n;
	char chunk[4096];

	rewind(fp);
	buf = calloc(1, 1);
	while (buf != NULL && (n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		char *b = realloc(buf, len + n + 1);

		if (b == NULL) {
			free(buf);
			return NULL;
		}
		buf = b;
		memcpy(buf + len, chunk, n);
		len += n;
		buf[len] = '\0';
	}
	return buf;
}

static char *
test_read_file(const char *path)
{
	FILE *fp = fopen(path, "re");
	char *s;

	if (fp == NULL)
		return NULL;
	s = test_slurp(fp);
	fclose(fp);
	return s;
}

/* cfg_load() with fd 2 going to a temporary file; *errp gets what it said. */
static int
test_load(const char *path, bool must_exist, struct vc_config **cfgp,
    char **errp)
{
	FILE *tmp = tmpfile();
	int saved, r;

	if (tmp == NULL)
		abort();
	fflush(stderr);
	saved = dup(2);
	dup2(fileno(tmp), 2);
	r = cfg_load(path, must_exist, cfgp);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	*errp = test_slurp(tmp);
	fclose(tmp);
	return r;
}

/* ---- broken configs against their golden stderr ---- */

static const struct {
	const char *name;	/* tests/config/bad/NAME.expected */
	const char *path;	/* NULL: tests/config/bad/NAME.conf */
	int ret;		/* what cfg_load() returns */
} test_bad[] = {
	{ "unknown-mode", NULL, -EINVAL },
	{ "unknown-aio", NULL, -EINVAL },
	{ "unknown-format", NULL, -EINVAL },
	{ "unknown-key", NULL, -EINVAL },
	{ "bad-boolean", NULL, -EINVAL },
	{ "missing-value", NULL, -EINVAL },
	{ "duplicate-section", NULL, -EINVAL },
	{ "duplicate-key", NULL, -EINVAL },
	{ "key-before-section", NULL, -EINVAL },
	{ "name-too-long", NULL, -EINVAL },
	{ "stray-bracket", NULL, -EINVAL },
	{ "no-closing-bracket", NULL, -EINVAL },
	{ "text-after-bracket", NULL, -EINVAL },
	{ "bad-name", NULL, -EINVAL },
	{ "long-line", NULL, -EINVAL },
	{ "no-equals", NULL, -EINVAL },
	{ "continuation", NULL, -EINVAL },
	{ "nul-byte", NULL, -EINVAL },
	{ "two-errors", NULL, -EINVAL },
	{ "many-errors", NULL, -EINVAL },
	/* Unreadable even for root: a directory reads as EISDIR. */
	{ "unreadable", "tests/config/bad", -EISDIR },
	/* A file named with -c must exist; missing.conf does not. */
	{ "missing", NULL, -ENOENT },
};

#define TEST_NBAD (sizeof(test_bad) / sizeof(test_bad[0]))

static void
test_bad_config(size_t i)
{
	char path[256], exp_path[256];
	struct vc_config *cfg = (struct vc_config *)&cfg;	/* not NULL */
	char *err, *expected;
	int r;

	snprintf(path, sizeof(path), "%s%s.conf", TEST_BAD, test_bad[i].name);
	snprintf(exp_path, sizeof(exp_path), "%s%s.expected", TEST_BAD,
	    test_bad[i].name);
	r = test_load(test_bad[i].path ? test_bad[i].path : path, true, &cfg,
	    &err);
	expected = test_read_file(exp_path);
	test_ok(r == test_bad[i].ret && cfg == NULL && expected != NULL &&
	    err != NULL && strcmp(err, expected) == 0, "bad/%s: returns %d, "
	    "stderr as in %s", test_bad[i].name, test_bad[i].ret, exp_path);
	if (r != test_bad[i].ret)
		printf("# returned %d (%s)\n", r, strerror(-r));
	if (expected == NULL || err == NULL || strcmp(err, expected) != 0) {
		test_diag("expected", expected ? expected : "(no such file)");
		test_diag("got", err);
	}
	cfg_free(cfg);
	free(err);
	free(expected);
}

/*
 * Every file in dir (bad/ or good/) belongs to a case named in names[]:
 * none goes unchecked.
 */
static void
test_all_listed(const char *dir, const char *const *names, size_t nnames)
{
	char pattern[256];
	size_t unlisted = 0;
	glob_t g;

	snprintf(pattern, sizeof(pattern), "%s*", dir);
	if (glob(pattern, 0, NULL, &g) != 0) {
		test_ok(0, "%s has files", dir);
		return;
	}
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *base = g.gl_pathv[i] + strlen(dir);
		size_t len = strcspn(base, ".");
		bool found = false;

		for (size_t k = 0; k < nnames; k++)
			if (strlen(names[k]) == len &&
			    strncmp(names[k], base, len) == 0)
				found = true;
		if (!found) {
			printf("# %s belongs to no test case\n",
			    g.gl_pathv[i]);
			unlisted++;
		}
	}
	globfree(&g);
	test_ok(unlisted == 0, "%s: every file belongs to a test case", dir);
}

static void
test_bad_all_listed(void)
{
	const char *names[TEST_NBAD];

	for (size_t i = 0; i < TEST_NBAD; i++)
		names[i] = test_bad[i].name;
	test_all_listed(TEST_BAD, names, TEST_NBAD);
}

/* ---- good configs ---- */

static struct vc_config *
test_good_load(const char *name)
{
	char path[256];
	struct vc_config *cfg = NULL;
	char *err;
	int r;

	snprintf(path, sizeof(path), "%s%s.conf", TEST_GOOD, name);
	r = test_load(path, true, &cfg, &err);
	test_ok(r == 0 && cfg != NULL && err != NULL && *err == '\0' &&
	    cfg->path != NULL && strcmp(cfg->path, path) == 0,
	    "good/%s: loads, says nothing", name);
	if (r != 0 || err == NULL || *err != '\0')
		test_diag("stderr", err);
	free(err);
	return cfg;
}

/* Lookup of relpath gives cache/aio/readonly from the section named. */
struct test_expect {
	const char *relpath;
	enum vc_cache_mode cache;
	enum vc_aio_mode aio;
	bool readonly;
	const char *from;	/* rule pattern, or NULL for [global] */
};

static void
test_good_config(const char *conf, const struct test_expect *e, size_t n)
{
	struct vc_config *cfg = test_good_load(conf);

	for (size_t i = 0; i < n; i++) {
		struct vc_image_conf c = { VC_CACHE_NMODES, VC_AIO_NMODES,
		    true, VC_FORMAT_AUTO, true };
		const struct vc_rule *rule = (const struct vc_rule *)&c;
		bool from_ok;

		if (cfg == NULL) {
			test_ok(0, "%s: '%s' (config did not load)", conf,
			    e[i].relpath);
			continue;
		}
		cfg_lookup(cfg, e[i].relpath, &c, &rule);
		from_ok = e[i].from == NULL ? rule == NULL :
		    rule != NULL && strcmp(rule->pattern, e[i].from) == 0;
		test_ok(c.cache == e[i].cache && c.aio == e[i].aio &&
		    c.readonly == e[i].readonly && from_ok,
		    "%s: '%s' gets cache=%s aio=%s readonly=%s from [%s]",
		    conf, e[i].relpath, policy_get(e[i].cache)->name,
		    policy_aio_name(e[i].aio), e[i].readonly ? "yes" : "no",
		    e[i].from ? e[i].from : "global");
		if (!(c.cache == e[i].cache && c.aio == e[i].aio &&
		    c.readonly == e[i].readonly && from_ok))
			printf("# got cache=%d aio=%d readonly=%d from [%s]\n",
			    c.cache, c.aio, c.readonly,
			    rule ? rule->pattern : "global");
	}
	cfg_free(cfg);
}

#define WB	VC_CACHE_WRITEBACK
#define WT	VC_CACHE_WRITETHROUGH
#define NONE	VC_CACHE_NONE
#define DS	VC_CACHE_DIRECTSYNC
#define UNS	VC_CACHE_UNSAFE
#define THR	VC_AIO_THREADS
#define NAT	VC_AIO_NATIVE
#define URI	VC_AIO_IO_URING

static const struct test_expect test_sample[] = {
	{ "win10.qcow2", NONE, THR, false, "win10.qcow2" },
	{ "build-7.qcow2", UNS, THR, false, "build-*.qcow2" },
	{ "build-.qcow2", UNS, THR, false, "build-*.qcow2" },
	{ "debian.iso", WB, THR, true, "*.iso" },
	{ "other.raw", WB, THR, false, NULL },
	{ "sub/debian.iso", WB, THR, false, NULL },	/* FNM_PATHNAME */
	{ ".debian.iso", WB, THR, false, NULL },	/* FNM_PERIOD */
	{ "Win10.qcow2", WB, THR, false, NULL },	/* case matters */
};

static const struct test_expect test_precedence[] = {
	{ "win10.qcow2", UNS, THR, false, "win10.qcow2" },
	{ "w1.qcow2", NONE, THR, false, "*.qcow2" },
	{ "sub/a.qcow2", WB, NAT, false, "sub/*.qcow2" },
	{ "sub/deeper/a.qcow2", WB, THR, false, NULL },
	{ ".h.qcow2", WB, THR, false, NULL },
	{ "readme", WB, THR, true, "*" },
	{ "", WB, THR, false, NULL },	/* no name: [global], even with [*] */
};

static const struct test_expect test_global_after[] = {
	{ "db.qcow2", DS, NAT, true, "db.qcow2" },
	{ "vm/a.raw", DS, URI, true, "vm/*.raw" },
	{ "other", DS, URI, true, NULL },
};

static const struct test_expect test_syntax[] = {
	{ "x", WT, THR, false, NULL },
	{ "spaced name.img", NONE, NAT, false, "spaced name.img" },
	{ "ab.img", WT, THR, false, "a?.img" },
	{ "a.img", WT, THR, false, NULL },
	{ ".hidden.img", WT, THR, true, ".hidden.img" },
};

static const struct test_expect test_bom_crlf[] = {
	{ "x", UNS, THR, false, NULL },
};

static const struct test_expect test_empty[] = {
	{ "x", WB, THR, false, NULL },
};

#define TEST_TAB(tab) tab, sizeof(tab) / sizeof(tab[0])

/* Every good/NAME.conf, with the lookups it answers. */
static const struct {
	const char *name;
	const struct test_expect *expect;
	size_t n;
} test_good[] = {
	{ "sample", TEST_TAB(test_sample) },
	{ "precedence", TEST_TAB(test_precedence) },
	{ "global-after", TEST_TAB(test_global_after) },
	{ "syntax", TEST_TAB(test_syntax) },
	{ "bom-crlf", TEST_TAB(test_bom_crlf) },
	{ "empty", TEST_TAB(test_empty) },
	{ "checkconf", NULL, 0 },	/* its lookups: the listing below */
};

#define TEST_NGOOD (sizeof(test_good) / sizeof(test_good[0]))

static size_t
test_good_count(void)
{
	size_t n = TEST_NGOOD;

	for (size_t i = 0; i < TEST_NGOOD; i++)
		n += test_good[i].n;
	return n;
}

static void
test_good_all_listed(void)
{
	const char *names[TEST_NGOOD];

	for (size_t i = 0; i < TEST_NGOOD; i++)
		names[i] = test_good[i].name;
	test_all_listed(TEST_GOOD, names, TEST_NGOOD);
}

/* ---- defaults ---- */

static bool
test_is_default(const struct vc_config *cfg)
{
	return cfg != NULL && cfg->global.cache == VC_CACHE_WRITEBACK &&
	    cfg->global.aio == VC_AIO_THREADS && !cfg->global.readonly &&
	    cfg->nrules == 0;
}

static void
test_defaults(void)
{
	struct vc_config *cfg = NULL;
	char *err;
	int r;

	r = cfg_defaults(&cfg);
	test_ok(r == 0 && test_is_default(cfg) && cfg->path == NULL,
	    "cfg_defaults: writeback, threads, readonly no, no path");
	cfg_free(cfg);

	cfg = NULL;
	r = test_load(TEST_BAD "missing.conf", false, &cfg, &err);
	test_ok(r == 0 && test_is_default(cfg) && cfg->path == NULL &&
	    err != NULL && *err == '\0',
	    "missing file, must_exist false: defaults, silently");
	cfg_free(cfg);
	free(err);
	cfg_free(NULL);
	test_ok(1, "cfg_free(NULL) is a no-op");
}

/* ---- what needs a user other than root ---- */

/*
 * Run fn in a child that is not root (dropping to nobody if we are root),
 * so that mode 000 means something. Returns fn's status: 0 pass, 1 fail,
 * or 2 when privileges could not be dropped.
 */
static int
test_as_nobody(int (*fn)(void *), void *arg)
{
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid == -1)
		return 2;
	if (pid == 0) {
		if (geteuid() == 0 && (setgroups(0, NULL) == -1 ||
		    setresgid(TEST_NOBODY, TEST_NOBODY, TEST_NOBODY) == -1 ||
		    setresuid(TEST_NOBODY, TEST_NOBODY, TEST_NOBODY) == -1))
			_exit(2);
		_exit(fn(arg));
	}
	if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status))
		return 1;
	return WEXITSTATUS(status);
}

static int
test_eacces_child(void *arg)
{
	const char *path = arg;
	struct vc_config *cfg = NULL;
	char *err, want[512];
	int r;

	r = test_load(path, true, &cfg, &err);
	snprintf(want, sizeof(want), "vcachefs: %s: Permission denied\n", path);
	if (r == -EACCES && cfg == NULL && err && strcmp(err, want) == 0)
		return 0;
	printf("# returned %d\n", r);
	test_diag("got", err);
	return 1;
}

static void
test_eacces(void)
{
	char path[] = "/tmp/vcachefs-test-conf.XXXXXX";
	const char *name = "mode 000 file: -EACCES, 'FILE: Permission denied'";
	int fd, r;

	fd = mkstemp(path);
	if (fd == -1 || fchmod(fd, 0) == -1) {
		test_skip(name, "cannot make a temporary file");
		if (fd != -1)
			close(fd);
		return;
	}
	close(fd);
	r = test_as_nobody(test_eacces_child, path);
	if (r == 2)
		test_skip(name, "cannot drop root privileges to nobody");
	else
		test_ok(r == 0, "%s", name);
	unlink(path);
}

/* ---- --check-config listing ---- */

/* A source tree with files the listing shows and things it skips. */
static const char *const test_tree_files[] = {
	"win10.qcow2", "build-1.qcow2", "a.iso", ".hidden.iso", "sub.iso",
	"sub/b.iso", "sub/deep/c.qcow2",
};

static int
test_make_tree(char *dir)
{
	char p[512];

	if (mkdtemp(dir) == NULL || chmod(dir, 0755) == -1)
		return -1;
	snprintf(p, sizeof(p), "%s/sub", dir);
	if (mkdir(p, 0755) == -1)
		return -1;
	snprintf(p, sizeof(p), "%s/sub/deep", dir);
	if (mkdir(p, 0755) == -1)
		return -1;
	for (size_t i = 0; i < sizeof(test_tree_files) /
	    sizeof(test_tree_files[0]); i++) {
		int fd;

		snprintf(p, sizeof(p), "%s/%s", dir, test_tree_files[i]);
		fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		if (fd == -1)
			return -1;
		close(fd);
	}
	/* Not listed: links (not even to a file), a fifo, empty dirs. */
	snprintf(p, sizeof(p), "%s/link.qcow2", dir);
	if (symlink("win10.qcow2", p) == -1)
		return -1;
	snprintf(p, sizeof(p), "%s/linkdir", dir);
	if (symlink("sub", p) == -1)
		return -1;
	snprintf(p, sizeof(p), "%s/fifo.qcow2", dir);
	if (mkfifo(p, 0644) == -1)
		return -1;
	snprintf(p, sizeof(p), "%s/empty", dir);
	return mkdir(p, 0755);
}

static void
test_rm_tree(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
}

/* checkconf_print() of cfg over dir, stdout and stderr captured. */
static int
test_check(const struct vc_config *cfg, const char *dir, char **outp,
    char **errp)
{
	FILE *out = tmpfile(), *errf = tmpfile();
	int fd, saved, r;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1 || out == NULL || errf == NULL)
		abort();
	fflush(stderr);
	saved = dup(2);
	dup2(fileno(errf), 2);
	r = checkconf_print(cfg, NULL, fd, "src", out);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	*outp = test_slurp(out);
	*errp = test_slurp(errf);
	fclose(out);
	fclose(errf);
	return r;
}

static void
test_checkconf(const char *dir)
{
	struct vc_config *cfg = NULL;
	char *out, *err, *expected;
	int r;

	if (test_load(TEST_GOOD "checkconf.conf", true, &cfg, &err) != 0) {
		test_ok(0, "checkconf: good/checkconf.conf loads");
		test_diag("stderr", err);
		free(err);
		return;
	}
	free(err);
	r = test_check(cfg, dir, &out, &err);
	expected = test_read_file(TEST_GOOD "checkconf.expected");
	test_ok(r == 0 && err && *err == '\0' && expected && out &&
	    strcmp(out, expected) == 0,
	    "checkconf: listing as in good/checkconf.expected");
	if (!expected || !out || strcmp(out, expected) != 0) {
		test_diag("expected", expected);
		test_diag("got", out);
	}
	if (err && *err)
		test_diag("stderr", err);
	free(out);
	free(err);
	free(expected);
	cfg_free(cfg);

	cfg_defaults(&cfg);
	r = test_check(cfg, dir, &out, &err);
	test_ok(r == 0 && out && strncmp(out, "built-in defaults: "
	    "configuration OK\n.hidden.iso: cache=writeback aio=threads "
	    "readonly=no (from [global])\n", 99) == 0,
	    "checkconf: built-in defaults");
	if (r != 0 || !out || strncmp(out, "built-in defaults: ", 19) != 0)
		test_diag("got", out);
	free(out);
	free(err);
	cfg_free(cfg);
}

static int
test_locked_child(void *arg)
{
	const char *dir = arg;
	struct vc_config *cfg = NULL;
	char *out, *err;
	int r, ok;

	cfg_defaults(&cfg);
	r = test_check(cfg, dir, &out, &err);
	ok = r == -EACCES && err &&
	    strcmp(err, "vcachefs: src/sub/locked: Permission denied\n") == 0 &&
	    out && strstr(out, "\nsub/deep/c.qcow2: ") != NULL &&
	    strstr(out, "\nwin10.qcow2: ") != NULL;
	if (!ok) {
		printf("# returned %d\n", r);
		test_diag("stdout", out);
		test_diag("stderr", err);
	}
	free(out);
	free(err);
	cfg_free(cfg);
	return ok ? 0 : 1;
}

static void
test_checkconf_locked(const char *dir)
{
	const char *name = "checkconf: an unreadable directory is reported, "
	    "the rest listed, -EACCES returned";
	char p[512];
	int r;

	snprintf(p, sizeof(p), "%s/sub/locked", dir);
	if (mkdir(p, 0) == -1) {
		test_skip(name, "cannot make the directory");
		return;
	}
	r = test_as_nobody(test_locked_child, (void *)dir);
	if (r == 2)
		test_skip(name, "cannot drop root privileges to nobody");
	else
		test_ok(r == 0, "%s", name);
	rmdir(p);
}

int
main(void)
{
	char dir[] = "/tmp/vcachefs-test-tree.XXXXXX";

	log_init("vcachefs", false);
	if (access(TEST_BAD, R_OK | X_OK) != 0) {
		printf("Bail out! no %s: run from the repository root\n",
		    TEST_BAD);
		return 1;
	}
	printf("1..%zu\n", 3 + TEST_NBAD + 1 + test_good_count() + 1 + 1 + 3);

	test_defaults();
	for (size_t i = 0; i < TEST_NBAD; i++)
		test_bad_config(i);
	test_bad_all_listed();
	for (size_t i = 0; i < TEST_NGOOD; i++)
		test_good_config(test_good[i].name, test_good[i].expect,
		    test_good[i].n);
	test_good_all_listed();

	test_eacces();
	if (test_make_tree(dir) == 0) {
		test_checkconf(dir);
		test_checkconf_locked(dir);
	} else {
		printf("# cannot build a tree in %s: %s\n", dir,
		    strerror(errno));
		test_ok(0, "checkconf: listing as in good/checkconf.expected");
		test_ok(0, "checkconf: built-in defaults");
		test_ok(0, "checkconf: unreadable directory");
	}
	test_rm_tree(dir);
	return test_failed ? 1 : 0;
}
