/*
 * config.c - the INI configuration (see config.h).
 *
 * inih splits "key = value" lines and strips comments, but as Debian builds
 * it (r55) it mangles some lines without a word: a section name is cut to
 * 49 characters, a ']' inside a name ends it, text after the ']' is
 * dropped, a line longer than its buffer is split in two, and an indented
 * line continues the previous value. Its handler gets no line number and
 * ini_parse_stream() returns the line of the first error only.
 *
 * So inih reads through cfg_reader(), which counts lines, checks each line
 * before inih sees it and hands inih a blank line in place of a rejected
 * one. Section headers are taken here too: the reader knows which section
 * is current, so the handler knows it without trusting inih's copy of the
 * name. Every error is logged as "FILE:LINE: message" and counted; parsing
 * goes on and cfg_load() fails at the end.
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "config.h"
#include "log.h"

/* inih keeps a section name in char[50] (MAX_SECTION in ini.c). */
#define CFG_MAX_SECTION	49
#define CFG_GLOBAL	"global"
#define CFG_FORMAT_PREFIX "format:"

/* The defaults, named once; applied when a config object is created. */
static const struct vc_image_conf cfg_default_conf = {
	.cache = VC_CACHE_WRITEBACK,
	.aio = VC_AIO_THREADS,
	.readonly = false,
	.shareable = false,
};

/* Boolean spellings, in the order error messages list them. */
static const struct {
	const char *name;
	bool value;
} cfg_bools[] = {
	{ "yes", true }, { "no", false },
	{ "true", true }, { "false", false },
	{ "on", true }, { "off", false },
	{ "1", true }, { "0", false },
};

static int
cfg_parse_cache(const char *value, void *field)
{
	return policy_parse_cache(value, field);
}

static int
cfg_parse_aio(const char *value, void *field)
{
	return policy_parse_aio(value, field);
}

static int
cfg_parse_bool(const char *value, void *field)
{
	for (size_t i = 0; i < sizeof(cfg_bools) / sizeof(cfg_bools[0]); i++) {
		if (strcmp(value, cfg_bools[i].name) == 0) {
			*(bool *)field = cfg_bools[i].value;
			return 0;
		}
	}
	return -EINVAL;
}

static const char *
cfg_bool_names(void)
{
	return "yes, no, true, false, on, off, 1, 0";
}

static const char *const cfg_formats[] = {
	[VC_FORMAT_AUTO] = "auto",
	[VC_FORMAT_RAW] = "raw",
	[VC_FORMAT_QCOW2] = "qcow2",
};

const char *
cfg_format_name(enum vc_format format)
{
	if ((unsigned)format >= sizeof(cfg_formats) / sizeof(cfg_formats[0]))
		format = VC_FORMAT_AUTO;
	return cfg_formats[format];
}

static int
cfg_parse_format(const char *value, void *field)
{
	for (size_t i = 0; i < sizeof(cfg_formats) / sizeof(cfg_formats[0]); i++) {
		if (strcmp(value, cfg_formats[i]) == 0) {
			*(enum vc_format *)field = (enum vc_format)i;
			return 0;
		}
	}
	return -EINVAL;
}

static const char *
cfg_format_names(void)
{
	return "auto, raw, qcow2";
}

/* One row per key: where it lives in vc_image_conf and how to parse it. */
struct cfg_key {
	const char *name;
	unsigned bit;			/* VC_KEY_* */
	size_t off, size;		/* the field in struct vc_image_conf */
	int (*parse)(const char *value, void *field);	/* 0 or -EINVAL */
	const char *bad;		/* what a wrong value is, for errors */
	const char *(*allowed)(void);	/* the values it takes, for errors */
};

#define CFG_FIELD(f) \
	offsetof(struct vc_image_conf, f), sizeof(((struct vc_image_conf *)0)->f)

static const struct cfg_key cfg_keys[] = {
	{ "cache", VC_KEY_CACHE, CFG_FIELD(cache), cfg_parse_cache,
	    "unknown mode", policy_cache_names },
	{ "aio", VC_KEY_AIO, CFG_FIELD(aio), cfg_parse_aio,
	    "unknown engine", policy_aio_names },
	{ "readonly", VC_KEY_READONLY, CFG_FIELD(readonly), cfg_parse_bool,
	    "not a boolean", cfg_bool_names },
	{ "format", VC_KEY_FORMAT, CFG_FIELD(format), cfg_parse_format,
	    "unknown format", cfg_format_names },
	{ "shareable", VC_KEY_SHAREABLE, CFG_FIELD(shareable), cfg_parse_bool,
	    "not a boolean", cfg_bool_names },
};

#define CFG_NKEYS (sizeof(cfg_keys) / sizeof(cfg_keys[0]))

/* Where the keys of the current section go. */
struct cfg_section {
	struct vc_image_conf *conf;	/* NULL before the first header */
	unsigned *set;			/* VC_KEY_* bits seen so far */
	int keyline[CFG_NKEYS];		/* line each key was set on */
};

struct cfg_parser {
	struct vc_config *cfg;
	const char *path;		/* for messages, as the caller gave it */
	vc_cfg_say say;			/* where messages go; NULL: log_warnx() */
	void *say_arg;
	FILE *fp;
	char *line;			/* getline() buffer, owned */
	size_t linecap;
	int lineno;			/* of the line being parsed */
	int nerrors;
	int err;			/* -errno that stops parsing, or 0 */
	int global_line;		/* line of [global], 0 if none yet */
	unsigned global_set;
	/* Keys of a rejected section are checked here and then dropped. */
	struct vc_image_conf scratch;
	unsigned scratch_set;
	struct cfg_section cur;
};

static void cfg_error(struct cfg_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void cfg_say(vc_cfg_say say, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One message line: to say, or to the log as it always went. */
static void
cfg_say(vc_cfg_say say, void *arg, const char *fmt, ...)
{
	char line[PATH_MAX + 600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (say != NULL)
		say(line, arg);
	else
		log_warnx("%s", line);
}

/* Log "FILE:LINE: message" for the current line and count it. */
static void
cfg_error(struct cfg_parser *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cfg_say(p->say, p->say_arg, "%s:%d: %s", p->path, p->lineno, msg);
	p->nerrors++;
}

static struct vc_config *
cfg_new(void)
{
	struct vc_config *cfg = calloc(1, sizeof(*cfg));

	if (cfg != NULL)
		cfg->global = cfg_default_conf;
	return cfg;
}

int
cfg_defaults(struct vc_config **cfgp)
{
	*cfgp = cfg_new();
	return *cfgp == NULL ? -ENOMEM : 0;
}

void
cfg_free(struct vc_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nrules; i++)
		free(cfg->rules[i].pattern);
	free(cfg->rules);
	free(cfg->path);
	free(cfg);
}

/* "cache, aio, readonly", for the unknown key message. */
static const char *
cfg_key_names(char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < CFG_NKEYS && n < len; i++)
		n += snprintf(buf + n, len - n, "%s%s", i ? ", " : "",
		    cfg_keys[i].name);
	return buf;
}

static const struct cfg_key *
cfg_find_key(const char *name)
{
	for (size_t i = 0; i < CFG_NKEYS; i++)
		if (strcmp(name, cfg_keys[i].name) == 0)
			return &cfg_keys[i];
	return NULL;
}

/* Keys after this header go to conf (tracked in *set); NULL: nowhere. */
static void
cfg_enter(struct cfg_parser *p, struct vc_image_conf *conf, unsigned *set)
{
	memset(&p->cur, 0, sizeof(p->cur));
	p->cur.conf = conf;
	p->cur.set = set;
}

static void
cfg_enter_scratch(struct cfg_parser *p)
{
	p->scratch = cfg_default_conf;
	p->scratch_set = 0;
	cfg_enter(p, &p->scratch, &p->scratch_set);
}

/*
 * The inih handler, called for one "key = value" line: the line cfg_reader()
 * returned last, so p->lineno is its number. It always returns nonzero:
 * errors are counted here, and inih's own return value is left to report
 * only what inih alone found.
 */
static int
cfg_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct cfg_parser *p = user;
	const struct cfg_key *k;
	char names[96];
	size_t i;

	if (*name == '\0') {
		cfg_error(p, "missing key name before '='");
		return 1;
	}
	if (p->cur.conf == NULL) {
		cfg_error(p, "key '%s' before any [section]", name);
		return 1;
	}
	k = cfg_find_key(name);
	if (k == NULL) {
		cfg_error(p, "unknown key '%s' (expected %s)", name,
		    cfg_key_names(names, sizeof(names)));
		return 1;
	}
	i = (size_t)(k - cfg_keys);
	if (*p->cur.set & k->bit) {
		cfg_error(p, "duplicate key '%s' (first at line %d)", name,
		    p->cur.keyline[i]);
		return 1;
	}
	*p->cur.set |= k->bit;
	p->cur.keyline[i] = p->lineno;
	if (*value == '\0')
		cfg_error(p, "%s: missing value (expected %s)", k->name,
		    k->allowed());
	else if (k->parse(value, (char *)p->cur.conf + k->off) < 0)
		cfg_error(p, "%s: %s '%s' (expected %s)", k->name, k->bad,
		    value, k->allowed());
	return 1;
}

/*
 * Where inih stops reading a line: at an inline comment, a ';' that
 * follows whitespace (INI_INLINE_COMMENT_PREFIXES; '#' only starts a
 * comment at the start of a line).
 */
static char *
cfg_comment_start(char *s)
{
	bool was_space = false;

	for (; *s != '\0'; s++) {
		if (was_space && *s == ';')
			break;
		was_space = isspace((unsigned char)*s);
	}
	return s;
}

static char *
cfg_strip(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

/*
 * A section name is matched against paths relative to the mount root, so
 * it must be one too: no leading '/', no empty, "." or ".." component.
 * Returns NULL or what is wrong with it.
 */
static const char *
cfg_check_relpath(const char *name)
{
	const char *c = name, *slash;
	size_t len;

	if (name[0] == '/')
		return "absolute section name (names are relative to the "
		    "mount root)";
	for (;;) {
		slash = strchr(c, '/');
		len = slash ? (size_t)(slash - c) : strlen(c);
		if (len == 0 || (len == 1 && c[0] == '.') ||
		    (len == 2 && c[0] == '.' && c[1] == '.'))
			return "'.', '..' or empty component in section name";
		if (slash == NULL)
			return NULL;
		c = slash + 1;
	}
}

static const struct vc_rule *
cfg_find_rule(const struct vc_config *cfg, const char *pattern)
{
	for (size_t i = 0; i < cfg->nrules; i++)
		if (strcmp(cfg->rules[i].pattern, pattern) == 0)
			return &cfg->rules[i];
	return NULL;
}

/* Append a rule for [name] and make it current. Returns 0 or -ENOMEM. */
static int
cfg_add_rule(struct cfg_parser *p, const char *name)
{
	struct vc_config *cfg = p->cfg;
	struct vc_rule *rules, *r;

	rules = realloc(cfg->rules, (cfg->nrules + 1) * sizeof(*rules));
	if (rules == NULL)
		return -ENOMEM;
	cfg->rules = rules;
	r = &rules[cfg->nrules];
	memset(r, 0, sizeof(*r));
	r->pattern = strdup(name);
	if (r->pattern == NULL)
		return -ENOMEM;
	r->is_format = strncmp(name, CFG_FORMAT_PREFIX,
	    strlen(CFG_FORMAT_PREFIX)) == 0;
	if (r->is_format)
		cfg_parse_format(name + strlen(CFG_FORMAT_PREFIX), &r->format);
	r->is_glob = !r->is_format && strpbrk(name, "*?") != NULL;
	r->line = p->lineno;
	cfg->nrules++;
	/* Stays valid while current: rules only grow at the next header. */
	cfg_enter(p, &r->conf, &r->set);
	return 0;
}

/* Checks [name] other than its brackets; NULL or what is wrong. */
static const char *
cfg_check_name(struct cfg_parser *p, const char *name, char *msg, size_t len)
{
	const struct vc_rule *dup;
	const char *why;

	if (*name == '\0')
		return "empty section name";
	if (strpbrk(name, "[]") != NULL)
		return "'[' or ']' in section name (glob classes like [0-9] "
		    "are not supported)";
	if (strlen(name) > CFG_MAX_SECTION) {
		snprintf(msg, len, "section name too long (%zu characters, "
		    "at most %d)", strlen(name), CFG_MAX_SECTION);
		return msg;
	}
	if (strcmp(name, CFG_GLOBAL) == 0) {
		if (p->global_line == 0)
			return NULL;
		snprintf(msg, len, "duplicate section [%s] (first at line %d)",
		    name, p->global_line);
		return msg;
	}
	if (strncmp(name, CFG_FORMAT_PREFIX, strlen(CFG_FORMAT_PREFIX)) == 0) {
		enum vc_format f;

		if (cfg_parse_format(name + strlen(CFG_FORMAT_PREFIX), &f) < 0 ||
		    f == VC_FORMAT_AUTO)
			return "unknown format section (expected [format:raw] or "
			    "[format:qcow2])";
	} else {
		why = cfg_check_relpath(name);
		if (why != NULL)
			return why;
	}
	dup = cfg_find_rule(p->cfg, name);
	if (dup != NULL) {
		snprintf(msg, len, "duplicate section [%s] (first at line %d)",
		    name, dup->line);
		return msg;
	}
	return NULL;
}

/*
 * The ']' that closes a header: the first one followed by nothing but
 * white space or a comment (';' or '#'). Taking the first ']' would hide
 * "[disk[0-9].qcow2]" as "disk[0-9"; this finds the outer one, so that
 * the bracket inside is reported. NULL if there is no such ']'.
 */
static char *
cfg_header_end(char *s)
{
	char *rest;

	for (s = strchr(s, ']'); s != NULL; s = strchr(s + 1, ']')) {
		rest = s + 1;
		while (isspace((unsigned char)*rest))
			rest++;
		if (*rest == '\0' || *rest == ';' || *rest == '#')
			return s;
	}
	return NULL;
}

/*
 * A "[name]" line (s is stripped and starts with '['). Makes the section
 * current, or a scratch one when the header is rejected, so that its keys
 * are still checked. Writes "[name]" for inih into buf (which has room for
 * the whole line), or leaves buf empty when the header is rejected.
 */
static void
cfg_header(struct cfg_parser *p, char *s, char *buf, size_t size)
{
	char msg[128];
	const char *why;
	char *close, *name;

	cfg_enter_scratch(p);
	*cfg_comment_start(s + 1) = '\0';
	close = cfg_header_end(s + 1);
	if (close == NULL) {
		cfg_error(p, strchr(s + 1, ']') == NULL ?
		    "section header has no closing ']'" :
		    "text after ']' in section header");
		return;
	}
	*close = '\0';
	name = cfg_strip(s + 1);
	why = cfg_check_name(p, name, msg, sizeof(msg));
	if (why != NULL) {
		cfg_error(p, "%s", why);
		return;
	}
	if (strcmp(name, CFG_GLOBAL) == 0) {
		p->global_line = p->lineno;
		cfg_enter(p, &p->cfg->global, &p->global_set);
	} else if (cfg_add_rule(p, name) < 0) {
		p->err = -ENOMEM;
		return;
	}
	snprintf(buf, size, "[%s]", name);
}

/* Whether a key line has the '=' (or ':') inih needs before any comment. */
static bool
cfg_has_separator(char *s)
{
	char *end = cfg_comment_start(s);

	return strcspn(s, "=:") < (size_t)(end - s);
}

/*
 * Check the line just read (p->line, n bytes) and put what inih should
 * parse in buf (size bytes): the line stripped of leading white space, so
 * that inih never takes it for a continuation, or "" when it is a comment
 * or was rejected.
 */
static void
cfg_prepare_line(struct cfg_parser *p, size_t n, char *buf, size_t size)
{
	char *s = p->line;

	buf[0] = '\0';
	if (n > 0 && s[n - 1] == '\n')
		s[--n] = '\0';
	if (n > 0 && s[n - 1] == '\r')
		s[--n] = '\0';
	if (strlen(s) != n) {
		cfg_error(p, "NUL byte in line");
		return;
	}
	/* ini.h: the buffer must be 3 more than the longest line (\r\n\0). */
	if (n + 3 > size) {
		cfg_error(p, "line too long (%zu characters, at most %zu)", n,
		    size - 3);
		return;
	}
	if (p->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;		/* UTF-8 byte order mark */
	s = cfg_strip(s);
	if (*s == '\0' || *s == ';' || *s == '#')
		return;
	if (*s == '[') {
		cfg_header(p, s, buf, size);
		return;
	}
	if (!cfg_has_separator(s)) {
		cfg_error(p, "expected 'key = value'");
		return;
	}
	memcpy(buf, s, strlen(s) + 1);
}

/*
 * The ini_reader: one line per call, so inih's line numbers are ours.
 * Returns NULL at the end of the file, on a read error or once p->err is
 * set; the caller tells these apart by p->err.
 */
static char *
cfg_reader(char *buf, int size, void *stream)
{
	struct cfg_parser *p = stream;
	ssize_t n;

	if (p->err != 0 || size < 4)
		return NULL;
	errno = 0;
	n = getline(&p->line, &p->linecap, p->fp);
	if (n < 0) {
		if (ferror(p->fp) || errno != 0)
			p->err = errno != 0 ? -errno : -EIO;
		return NULL;
	}
	p->lineno++;
	cfg_prepare_line(p, (size_t)n, buf, (size_t)size);
	return buf;
}

/* Keys a rule leaves out come from [global], wherever [global] was. */
static void
cfg_inherit(struct vc_config *cfg)
{
	for (size_t i = 0; i < cfg->nrules; i++) {
		struct vc_rule *r = &cfg->rules[i];

		for (size_t k = 0; k < CFG_NKEYS; k++) {
			if (r->set & cfg_keys[k].bit)
				continue;
			memcpy((char *)&r->conf + cfg_keys[k].off,
			    (const char *)&cfg->global + cfg_keys[k].off,
			    cfg_keys[k].size);
		}
	}
}

/* Parse fp into cfg. Returns 0, -EINVAL after logging errors, or -errno. */
static int
cfg_parse(struct vc_config *cfg, const char *path, FILE *fp, vc_cfg_say say,
    void *say_arg)
{
	struct cfg_parser p = { .cfg = cfg, .path = path, .fp = fp,
	    .say = say, .say_arg = say_arg };
	int line;

	line = ini_parse_stream(cfg_reader, &p, cfg_handler, &p);
	free(p.line);
	if (p.err == 0 && line == -2)
		p.err = -ENOMEM;
	if (p.err != 0) {
		cfg_say(say, say_arg, "%s: %s", path, strerror(-p.err));
		return p.err;
	}
	if (line > 0) {
		/* The reader passes no line inih rejects; but never hide one. */
		p.lineno = line;
		cfg_error(&p, "syntax error");
	}
	if (p.nerrors > 0)
		return -EINVAL;
	cfg_inherit(cfg);
	return 0;
}

int
cfg_load(const char *path, bool must_exist, struct vc_config **cfgp)
{
	return cfg_load_say(path, must_exist, cfgp, NULL, NULL);
}

int
cfg_load_say(const char *path, bool must_exist, struct vc_config **cfgp,
    vc_cfg_say say, void *say_arg)
{
	struct vc_config *cfg;
	FILE *fp;
	int err;

	*cfgp = NULL;
	cfg = cfg_new();
	if (cfg == NULL) {
		cfg_say(say, say_arg, "%s: %s", path, strerror(ENOMEM));
		return -ENOMEM;
	}
	fp = fopen(path, "re");
	if (fp == NULL) {
		err = -errno;
		if (err == -ENOENT && !must_exist) {
			*cfgp = cfg;
			return 0;
		}
		cfg_say(say, say_arg, "%s: %s", path, strerror(-err));
		cfg_free(cfg);
		return err;
	}
	cfg->path = strdup(path);
	if (cfg->path == NULL) {
		err = -ENOMEM;
		cfg_say(say, say_arg, "%s: %s", path, strerror(-err));
	} else {
		err = cfg_parse(cfg, path, fp, say, say_arg);
	}
	fclose(fp);
	if (err < 0) {
		cfg_free(cfg);
		return err;
	}
	*cfgp = cfg;
	return 0;
}

const struct vc_rule *
cfg_name_rule(const struct vc_config *cfg, const char *relpath)
{
	/* No name (an unlinked file): even [*] must not claim it. */
	if (relpath[0] == '\0')
		return NULL;
	for (size_t i = 0; i < cfg->nrules; i++)
		if (!cfg->rules[i].is_glob && !cfg->rules[i].is_format &&
		    strcmp(cfg->rules[i].pattern, relpath) == 0)
			return &cfg->rules[i];
	/* '*' stays within one component and skips dot files, like sh. */
	for (size_t i = 0; i < cfg->nrules; i++)
		if (cfg->rules[i].is_glob && fnmatch(cfg->rules[i].pattern,
		    relpath, FNM_PATHNAME | FNM_PERIOD) == 0)
			return &cfg->rules[i];
	return NULL;
}

const struct vc_rule *
cfg_format_rule(const struct vc_config *cfg, enum vc_format format)
{
	for (size_t i = 0; i < cfg->nrules; i++)
		if (cfg->rules[i].is_format && cfg->rules[i].format == format)
			return &cfg->rules[i];
	return NULL;
}

void
cfg_lookup(const struct vc_config *cfg, const char *relpath,
    struct vc_image_conf *out, const struct vc_rule **rule)
{
	const struct vc_rule *r = cfg_name_rule(cfg, relpath);

	*out = r != NULL ? r->conf : cfg->global;
	if (rule != NULL)
		*rule = r;
}
