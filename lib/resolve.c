/*
 * resolve.c - settings of an image from its names and its chain
 * (see resolve.h for the precedence).
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "qcow2.h"
#include "resolve.h"

#define RESOLVE_CACHE_MAX 128

/* A probe result, valid while the file's identity and stamp hold. */
struct resolve_cached {
	char relpath[PATH_MAX];
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	bool want_qcow;
	struct vc_probe probe;
};

/* Set a note; long names are cut, which a note may be. */
static void resolve_note(char *note, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
resolve_note(char *note, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(note, len, fmt, ap);
	va_end(ap);
}

/* A backing chain below an image: relpaths, top excluded. */
struct resolve_chain {
	char name[VC_CHAIN_MAX][PATH_MAX];
	unsigned n;
};

int
resolver_init(struct vc_resolver *rs, const struct vc_config *cfg,
    int rootfd, const char *source, const char *mountpoint)
{
	memset(rs, 0, sizeof(*rs));
	rs->cfg = cfg;
	rs->rootfd = rootfd;
	rs->source = source;
	rs->mountpoint = mountpoint;
	rs->cache = calloc(RESOLVE_CACHE_MAX, sizeof(*rs->cache));
	if (rs->cache == NULL)
		return -ENOMEM;
	pthread_mutex_init(&rs->lock, NULL);
	return 0;
}

void
resolver_exit(struct vc_resolver *rs)
{
	free(rs->cache);
	rs->cache = NULL;
	pthread_mutex_destroy(&rs->lock);
}

/* The config now: a reload replaces it (resolver_set_config()). */
static const struct vc_config *
resolve_cfg(const struct vc_resolver *rs)
{
	return __atomic_load_n(&rs->cfg, __ATOMIC_ACQUIRE);
}

void
resolver_set_config(struct vc_resolver *rs, const struct vc_config *cfg)
{
	__atomic_store_n(&rs->cfg, cfg, __ATOMIC_RELEASE);
}

/* The settings the names give relpath: its section, or [global]. */
static const struct vc_image_conf *
resolve_named_conf(const struct vc_resolver *rs, const char *relpath,
    const struct vc_rule **rule)
{
	const struct vc_config *cfg = resolve_cfg(rs);
	const struct vc_rule *r = cfg_name_rule(cfg, relpath);

	if (rule != NULL)
		*rule = r;
	return r != NULL ? &r->conf : &cfg->global;
}

static bool
resolve_has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Whether relpath may be read as a qcow image (format key, then name). */
static bool
resolve_want_qcow(const struct vc_resolver *rs, const char *relpath)
{
	switch (resolve_named_conf(rs, relpath, NULL)->format) {
	case VC_FORMAT_QCOW2:
		return true;
	case VC_FORMAT_RAW:
		return false;
	default:
		return resolve_has_suffix(relpath, ".qcow2") ||
		    resolve_has_suffix(relpath, ".qcow");
	}
}

/*
 * Probe relpath, or reuse the result while the file is unchanged.
 * Returns 0 or -errno (missing, not a regular file).
 */
static int
resolve_probe(struct vc_resolver *rs, const char *relpath, struct vc_probe *out)
{
	bool want = resolve_want_qcow(rs, relpath);
	struct resolve_cached *c;
	struct stat st;
	int fd, err;

	/*
	 * Stat through an O_PATH descriptor opened beneath the root with no
	 * symlink anywhere in the name: fstatat() would follow a symlinked
	 * directory in its middle out of the tree.
	 */
	fd = probe_open(rs->rootfd, relpath, true);
	if (fd < 0)
		return fd;
	err = fstat(fd, &st) == -1 ? -errno : 0;
	close(fd);
	if (err < 0)
		return err;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	pthread_mutex_lock(&rs->lock);
	for (unsigned i = 0; i < rs->ncache; i++) {
		c = &rs->cache[i];
		if (c->dev == st.st_dev && c->ino == st.st_ino &&
		    c->size == st.st_size && c->want_qcow == want &&
		    c->mtime.tv_sec == st.st_mtim.tv_sec &&
		    c->mtime.tv_nsec == st.st_mtim.tv_nsec &&
		    strcmp(c->relpath, relpath) == 0) {
			*out = c->probe;
			pthread_mutex_unlock(&rs->lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&rs->lock);

	/* Probing takes bounded time; do it outside the lock. */
	err = probe_image(rs->rootfd, relpath, want, out);
	if (err < 0)
		return err;
	if (out->warning[0] != '\0')
		log_warnx("%s: %s", relpath, out->warning);

	pthread_mutex_lock(&rs->lock);
	if (rs->ncache < RESOLVE_CACHE_MAX)
		c = &rs->cache[rs->ncache++];
	else
		c = &rs->cache[rs->next_evict++ % RESOLVE_CACHE_MAX];
	snprintf(c->relpath, sizeof(c->relpath), "%s", relpath);
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->size = st.st_size;
	c->mtime = st.st_mtim;
	c->want_qcow = want;
	c->probe = *out;
	pthread_mutex_unlock(&rs->lock);
	return 0;
}

/* The relpath of the backing file named in p, or "" (reason in note). */
static void
resolve_backing(struct vc_resolver *rs, const char *relpath,
    const struct vc_probe *p, char *out, size_t len, char *note,
    size_t nlen)
{
	char why[256] = "";

	out[0] = '\0';
	if (p->backing[0] == '\0')
		return;
	if (qcow2_resolve_backing(relpath, p->backing, rs->mountpoint,
	    rs->source, out, len, why, sizeof(why)) < 0) {
		out[0] = '\0';
		/* why quotes the name with control bytes made printable. */
		if (note[0] == '\0')
			resolve_note(note, nlen, "%s: backing file ignored: %s",
			    relpath, why);
	}
}

/*
 * The chain below relpath (top probed as *top). Follows at most
 * VC_CHAIN_MAX links; a loop, a missing file or a refused name ends it and
 * is described in note.
 */
static void
resolve_chain(struct vc_resolver *rs, const char *relpath,
    const struct vc_probe *top, struct resolve_chain *ch, char *note,
    size_t nlen)
{
	char next[PATH_MAX];
	struct vc_probe p = *top;
	const char *cur = relpath;
	int err;

	ch->n = 0;
	for (;;) {
		resolve_backing(rs, cur, &p, next, sizeof(next), note, nlen);
		if (next[0] == '\0')
			return;
		if (strcmp(next, relpath) == 0)
			goto loop;
		for (unsigned i = 0; i < ch->n; i++)
			if (strcmp(ch->name[i], next) == 0)
				goto loop;
		if (ch->n == VC_CHAIN_MAX) {
			resolve_note(note, nlen, "%s: backing chain longer than %d; "
			    "not followed further", relpath, VC_CHAIN_MAX);
			return;
		}
		snprintf(ch->name[ch->n], PATH_MAX, "%s", next);
		cur = ch->name[ch->n++];
		err = resolve_probe(rs, cur, &p);
		if (err == -ELOOP || err == -EXDEV) {
			resolve_note(note, nlen, "%s: backing file %s refused: "
			    "a symlink on its path, or it leaves the source tree",
			    relpath, cur);
			return;
		}
		if (err < 0) {
			resolve_note(note, nlen, "%s: backing file %s is missing",
			    relpath, cur);
			return;
		}
	}
loop:
	resolve_note(note, nlen, "%s: backing chain loops at %s", relpath, next);
}

/* Downward inheritance: the overlays above an image. */
struct resolve_down {
	struct vc_resolver *rs;
	const char *target;
	bool found;
	enum vc_cache_mode safest;
	char from[PATH_MAX];
};

/* If overlay's chain holds the target, weigh overlay's mode. */
static void
resolve_down_visit(const char *overlay, enum vc_cache_mode cache, void *arg)
{
	struct resolve_down *dn = arg;
	struct resolve_chain *ch;
	struct vc_probe p;
	char note[512] = "";

	if (strcmp(overlay, dn->target) == 0 ||
	    resolve_probe(dn->rs, overlay, &p) < 0 || p.backing[0] == '\0')
		return;
	ch = malloc(sizeof(*ch));
	if (ch == NULL)
		return;
	resolve_chain(dn->rs, overlay, &p, ch, note, sizeof(note));
	for (unsigned i = 0; i < ch->n; i++) {
		if (strcmp(ch->name[i], dn->target) != 0)
			continue;
		if (!dn->found || policy_get(cache)->safety >
		    policy_get(dn->safest)->safety) {
			dn->safest = cache;
			snprintf(dn->from, sizeof(dn->from), "%s", overlay);
		}
		dn->found = true;
		break;
	}
	free(ch);
}

static void
resolve_downward(struct vc_resolver *rs, const char *relpath,
    struct resolve_down *dn)
{
	memset(dn, 0, sizeof(*dn));
	dn->rs = rs;
	dn->target = relpath;
	if (rs->open_walk != NULL)
		rs->open_walk(rs->open_arg, resolve_down_visit, dn);
	/* Configured overlays: images named exactly by a section. */
	const struct vc_config *cfg = resolve_cfg(rs);

	for (size_t i = 0; i < cfg->nrules; i++) {
		const struct vc_rule *r = &cfg->rules[i];

		if (!r->is_glob && !r->is_format)
			resolve_down_visit(r->pattern, r->conf.cache, dn);
	}
}

static void
resolve_chain_text(const char *relpath, const struct resolve_chain *ch,
    char *out, size_t len)
{
	size_t n = (size_t)snprintf(out, len, "%s", relpath);

	for (unsigned i = 0; i < ch->n && n < len; i++)
		n += (size_t)snprintf(out + n, len - n, " -> %s", ch->name[i]);
}

int
resolve_image(struct vc_resolver *rs, const char *relpath,
    struct vc_decision *d)
{
	const struct vc_rule *rule;
	const struct vc_image_conf *named;
	struct resolve_chain *ch;
	struct resolve_down dn;
	int err;

	memset(d, 0, sizeof(*d));
	named = resolve_named_conf(rs, relpath, &rule);
	d->conf = *named;
	resolve_note(d->rule, sizeof(d->rule), "[%s]",
	    rule != NULL ? rule->pattern : "global");
	snprintf(d->chain, sizeof(d->chain), "%s", relpath);
	if (relpath[0] == '\0')
		return 0;
	err = resolve_probe(rs, relpath, &d->probe);
	if (err < 0)
		return err;
	d->probed = true;
	ch = malloc(sizeof(*ch));
	if (ch == NULL)
		return -ENOMEM;
	resolve_chain(rs, relpath, &d->probe, ch, d->note, sizeof(d->note));
	resolve_chain_text(relpath, ch, d->chain, sizeof(d->chain));
	if (rule != NULL)
		goto out;

	/* Format sections. */
	rule = cfg_format_rule(resolve_cfg(rs), d->probe.format == QCOW2_FORMAT_RAW ?
	    VC_FORMAT_RAW : VC_FORMAT_QCOW2);
	if (rule != NULL) {
		d->conf = rule->conf;
		resolve_note(d->rule, sizeof(d->rule), "[%s]", rule->pattern);
		goto out;
	}

	/*
	 * Below an open or configured overlay, the image is a base: the
	 * safest overlay above, never below [global]. Otherwise it is a top
	 * layer (a new snapshot, a blockcopy target): the nearest image
	 * below it that a section names.
	 */
	resolve_downward(rs, relpath, &dn);
	if (dn.found) {
		if (policy_get(dn.safest)->safety >
		    policy_get(d->conf.cache)->safety) {
			d->conf.cache = dn.safest;
			resolve_note(d->rule, sizeof(d->rule),
			    "inherited down from %s", dn.from);
		} else {
			resolve_note(d->rule, sizeof(d->rule), "[global] (as "
			    "safe as its overlay %s)", dn.from);
		}
		goto out;
	}
	for (unsigned i = 0; i < ch->n; i++) {
		const struct vc_rule *below = cfg_name_rule(resolve_cfg(rs),
		    ch->name[i]);

		if (below == NULL)
			continue;
		d->conf.cache = below->conf.cache;
		d->conf.aio = below->conf.aio;
		resolve_note(d->rule, sizeof(d->rule),
		    "inherited up from %s [%s]", ch->name[i], below->pattern);
		goto out;
	}
out:
	free(ch);
	return 0;
}

void
resolve_foreach_below(struct vc_resolver *rs, const char *relpath,
    void (*fn)(const char *below, void *arg), void *arg)
{
	struct resolve_chain *ch;
	struct vc_probe p;
	char note[512] = "";

	if (resolve_probe(rs, relpath, &p) < 0 || p.backing[0] == '\0')
		return;
	ch = malloc(sizeof(*ch));
	if (ch == NULL)
		return;
	resolve_chain(rs, relpath, &p, ch, note, sizeof(note));
	for (unsigned i = 0; i < ch->n; i++)
		fn(ch->name[i], arg);
	free(ch);
}
