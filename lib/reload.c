/*
 * reload.c - re-read the configuration and apply it (see reload.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkconf.h"
#include "config.h"
#include "image.h"
#include "log.h"
#include "reload.h"

void
reload_init(struct vc_reload *rl, const char *path, bool named,
    struct vc_config **cfg, struct vc_registry *registry,
    struct vc_resolver *resolver, int srcfd, const char *source)
{
	memset(rl, 0, sizeof(*rl));
	rl->path = path;
	rl->named = named;
	rl->cfg = cfg;
	rl->registry = registry;
	rl->resolver = resolver;
	rl->srcfd = srcfd;
	rl->source = source;
	pthread_mutex_init(&rl->lock, NULL);
	rl->ready = true;
}

void
reload_exit(struct vc_reload *rl)
{
	if (!rl->ready)
		return;
	for (size_t i = 0; i < rl->nold; i++)
		cfg_free(rl->old[i]);
	free(rl->old);
	rl->old = NULL;
	rl->nold = 0;
	pthread_mutex_destroy(&rl->lock);
	rl->ready = false;
}

/*
 * Every line a reload produces goes to the log and to the caller's say
 * (a control client); SIGHUP passes no say and reads the log.
 */
struct reload_said {
	void (*say)(const char *line, void *arg);
	void *arg;
	unsigned lines;
	char *verdict;			/* NULL: the verdict goes to say */
	size_t verdict_len;
};

static void
reload_say_error(const char *line, void *arg)
{
	struct reload_said *s = arg;

	s->lines++;
	log_warnx("%s", line);
	if (s->say != NULL)
		s->say(line, s->arg);
}

/* What a line is: an info or a warning, or the verdict of a rejection. */
enum reload_kind { RELOAD_INFO, RELOAD_WARN, RELOAD_VERDICT };

static void reload_say(struct reload_said *s, enum reload_kind kind,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Log the line and pass it on: the verdict to s->verdict when given. */
static void
reload_say(struct reload_said *s, enum reload_kind kind, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (kind == RELOAD_INFO)
		log_info("%s", line);
	else
		log_warnx("%s", line);
	if (kind == RELOAD_VERDICT && s->verdict != NULL)
		snprintf(s->verdict, s->verdict_len, "%s", line);
	else if (s->say != NULL)
		s->say(line, s->arg);
}

int
reload_config(struct vc_reload *rl, void (*say)(const char *line, void *arg),
    void *arg, char *verdict, size_t len)
{
	struct reload_said s = { .say = say, .arg = arg, .verdict = verdict,
	    .verdict_len = len };
	struct vc_config *cfg, **old;
	struct stat st;
	unsigned switched;
	int err;

	pthread_mutex_lock(&rl->lock);
	/*
	 * Never block here (the signal or the control thread): a FIFO or a
	 * device in the file's place would wait for a writer forever.
	 */
	if (stat(rl->path, &st) == 0 && !S_ISREG(st.st_mode)) {
		reload_say(&s, RELOAD_WARN, "%s: not a regular file", rl->path);
		reload_say(&s, RELOAD_VERDICT, "reload rejected: 1 error(s); "
		    "the old configuration stays");
		pthread_mutex_unlock(&rl->lock);
		return -EINVAL;
	}
	err = cfg_load_say(rl->path, rl->named, &cfg, reload_say_error, &s);
	if (err < 0) {
		/* A file that cannot be read at all is one error. */
		reload_say(&s, RELOAD_VERDICT, "reload rejected: %u error(s); "
		    "the old configuration stays", s.lines > 0 ? s.lines : 1);
		pthread_mutex_unlock(&rl->lock);
		return err;
	}
	old = realloc(rl->old, (rl->nold + 1) * sizeof(*old));
	if (old == NULL) {
		cfg_free(cfg);
		reload_say(&s, RELOAD_VERDICT, "reload rejected: out of memory; "
		    "the old configuration stays");
		pthread_mutex_unlock(&rl->lock);
		return -ENOMEM;
	}
	rl->old = old;
	/* A warning only: the configuration is still accepted. */
	if (rl->srcfd >= 0)
		checkconf_unmatched(cfg, rl->srcfd, rl->source,
		    reload_say_error, &s);
	/* Kept until exit: openers may still read the one replaced. */
	rl->old[rl->nold++] = *rl->cfg;
	*rl->cfg = cfg;
	registry_set_config(rl->registry, cfg);
	/* It logs each switch itself. */
	switched = registry_recompute(rl->registry, say, arg);
	reload_say(&s, RELOAD_INFO, "reload: %u image(s) switched", switched);
	pthread_mutex_unlock(&rl->lock);
	return 0;
}
