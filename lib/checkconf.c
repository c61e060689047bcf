/*
 * checkconf.c - vcachefs --check-config (see checkconf.h), in the manner
 * of "nginx -t": say the file is valid, then show what it decides.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkconf.h"
#include "resolve.h"
#include "config.h"
#include "log.h"
#include "policy.h"

/* The regular files found so far. */
struct checkconf_walk {
	const char *srcname;	/* for messages */
	char **paths;		/* relative paths, owned */
	size_t npaths, cap;
	int err;		/* first -errno met, or 0 */
};

static void
checkconf_note(struct checkconf_walk *w, int err, const char *rel)
{
	if (rel[0] == '\0')
		log_warnc(err, "%s", w->srcname);
	else
		log_warnc(err, "%s/%s", w->srcname, rel);
	if (w->err == 0)
		w->err = err;
}

/* Take ownership of path. Returns 0 or -ENOMEM (path freed). */
static int
checkconf_add(struct checkconf_walk *w, char *path)
{
	char **p;

	if (w->npaths == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 64;

		p = realloc(w->paths, cap * sizeof(*p));
		if (p == NULL) {
			free(path);
			return -ENOMEM;
		}
		w->paths = p;
		w->cap = cap;
	}
	w->paths[w->npaths++] = path;
	return 0;
}

static char *
checkconf_join(const char *dir, const char *name)
{
	char *s;

	if (dir[0] == '\0')
		return strdup(name);
	return asprintf(&s, "%s/%s", dir, name) < 0 ? NULL : s;
}

/*
 * Collect the regular files under fd (the directory rel), which this
 * takes ownership of. Errors other than -ENOMEM are noted in w and the
 * walk goes on; returns 0 or -ENOMEM.
 */
static int
checkconf_walk_dir(struct checkconf_walk *w, int fd, const char *rel)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	char *path;
	int sub, err = 0;

	d = fdopendir(fd);
	if (d == NULL) {
		err = -errno;
		close(fd);
		checkconf_note(w, err, rel);
		return 0;
	}
	while (err == 0 && (errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		path = checkconf_join(rel, de->d_name);
		if (path == NULL) {
			err = -ENOMEM;
			break;
		}
		if (fstatat(dirfd(d), de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) == -1) {
			if (errno != ENOENT)	/* gone since readdir: fine */
				checkconf_note(w, -errno, path);
			free(path);
		} else if (S_ISREG(st.st_mode)) {
			err = checkconf_add(w, path);
		} else if (S_ISDIR(st.st_mode)) {
			sub = openat(dirfd(d), de->d_name, O_RDONLY |
			    O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub == -1)
				checkconf_note(w, -errno, path);
			else
				err = checkconf_walk_dir(w, sub, path);
			free(path);
		} else {
			free(path);	/* symlinks, devices, fifos: not images */
		}
	}
	if (err == 0 && errno != 0)
		checkconf_note(w, -errno, rel);
	closedir(d);
	return err;
}

static int
checkconf_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * One image: its settings and what chose them, then what probing found:
 * format, virtual size and backing chain, and any warning.
 */
static void
checkconf_line(const struct vc_config *cfg, struct vc_resolver *rs,
    const char *rel, FILE *out)
{
	struct vc_decision *d = calloc(1, sizeof(*d));
	const struct vc_rule *rule;
	enum vc_aio_mode aio;
	bool fellback;

	if (d == NULL)
		return;
	if (rs != NULL) {
		resolve_image(rs, rel, d);
	} else {
		cfg_lookup(cfg, rel, &d->conf, &rule);
		snprintf(d->rule, sizeof(d->rule), "[%s]",
		    rule != NULL ? rule->pattern : "global");
	}
	aio = policy_effective_aio(d->conf.cache, d->conf.aio, &fellback);
	/* shareable only when set: the common line stays as it was. */
	fprintf(out, "%s: cache=%s aio=%s%s readonly=%s%s (from %s)\n", rel,
	    policy_get(d->conf.cache)->name, policy_aio_name(aio),
	    fellback ? " (native needs O_DIRECT: cache=none or directsync)" :
	    "", d->conf.readonly ? "yes" : "no",
	    d->conf.shareable ? " shareable=yes" : "", d->rule);
	if (d->probed) {
		fprintf(out, "    format=%s", qcow2_format_name(d->probe.format));
		if (d->probe.format != QCOW2_FORMAT_RAW)
			fprintf(out, " virtual-size=%llu chain: %s",
			    (unsigned long long)d->probe.virtual_size, d->chain);
		fprintf(out, "\n");
	}
	if (d->probe.warning[0] != '\0')
		fprintf(out, "    warning: %s\n", d->probe.warning);
	if (d->note[0] != '\0')
		fprintf(out, "    note: %s\n", d->note);
	free(d);
}

/*
 * The regular files under srcfd, sorted, into w. Returns 0 or the -errno
 * that stopped the walk (-ENOMEM); unreadable parts are in w->err.
 */
static int
checkconf_collect(struct checkconf_walk *w, int srcfd)
{
	int fd, err = 0;

	/* A descriptor of our own: readdir() must not move the caller's. */
	fd = openat(srcfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		checkconf_note(w, -errno, "");
	else
		err = checkconf_walk_dir(w, fd, "");
	if (err != 0)
		log_warnc(err, "%s", w->srcname);
	else if (w->npaths > 0)	/* none (an empty directory): paths is NULL */
		qsort(w->paths, w->npaths, sizeof(*w->paths), checkconf_cmp);
	return err;
}

static void
checkconf_walk_free(struct checkconf_walk *w)
{
	for (size_t i = 0; i < w->npaths; i++)
		free(w->paths[i]);
	free(w->paths);
	w->paths = NULL;
	w->npaths = w->cap = 0;
}

/* Whether rule names one of the files (as an exact name or a glob). */
static bool
checkconf_rule_matches(const struct vc_rule *r, const struct checkconf_walk *w)
{
	for (size_t i = 0; i < w->npaths; i++) {
		if (r->is_glob ? fnmatch(r->pattern, w->paths[i],
		    FNM_PATHNAME | FNM_PERIOD) == 0 :
		    strcmp(r->pattern, w->paths[i]) == 0)
			return true;
	}
	return false;
}

static unsigned
checkconf_warn_unmatched(const struct vc_config *cfg,
    const struct checkconf_walk *w, const char *srcname,
    void (*say)(const char *line, void *arg), void *arg)
{
	char line[PATH_MAX + 256];
	unsigned n = 0;

	for (size_t i = 0; i < cfg->nrules; i++) {
		const struct vc_rule *r = &cfg->rules[i];

		if (r->is_format || checkconf_rule_matches(r, w))
			continue;
		snprintf(line, sizeof(line), "%s:%d: warning: [%s] matches no "
		    "file under %s", cfg->path != NULL ? cfg->path :
		    "built-in defaults", r->line, r->pattern, srcname);
		if (say != NULL)
			say(line, arg);
		else
			log_warnx("%s", line);
		n++;
	}
	return n;
}

int
checkconf_unmatched(const struct vc_config *cfg, int srcfd,
    const char *srcname, void (*say)(const char *line, void *arg), void *arg)
{
	struct checkconf_walk w = { .srcname = srcname };
	int err;

	if (cfg->nrules == 0)
		return 0;
	err = checkconf_collect(&w, srcfd);
	if (err == 0)
		err = (int)checkconf_warn_unmatched(cfg, &w, srcname, say, arg);
	checkconf_walk_free(&w);
	return err;
}

int
checkconf_print(const struct vc_config *cfg, struct vc_resolver *rs,
    int srcfd, const char *srcname,
    FILE *out)
{
	struct checkconf_walk w = { .srcname = srcname };
	int err;

	err = checkconf_collect(&w, srcfd);
	/* A typo in a section name would otherwise pass unnoticed. */
	if (err == 0)
		checkconf_warn_unmatched(cfg, &w, srcname, NULL, NULL);
	fprintf(out, "%s: configuration OK\n",
	    cfg->path != NULL ? cfg->path : "built-in defaults");
	if (err == 0) {
		for (size_t i = 0; i < w.npaths; i++)
			checkconf_line(cfg, rs, w.paths[i], out);
	}
	checkconf_walk_free(&w);
	if (err == 0)
		err = w.err;
	if (fflush(out) == EOF || ferror(out))
		err = err ? err : -EIO;
	return err;
}
