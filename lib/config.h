/*
 * config.h - the INI configuration: [global] and one section per image
 * name or glob. Parsed with inih through a line reader of our own that
 * counts lines and rejects what inih would silently mangle.
 */
#ifndef VC_CONFIG_H
#define VC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "policy.h"

#define VC_CONFIG_DEFAULT_PATH "/etc/vcachefs.conf"

/*
 * How an image's format is found. auto: only *.qcow2 and *.qcow names are
 * probed for a qcow header; raw: never probed; qcow2: always probed. A raw
 * image is never promoted because of its content: its guest owns it.
 */
enum vc_format {
	VC_FORMAT_AUTO = 0,
	VC_FORMAT_RAW,
	VC_FORMAT_QCOW2,
};

/* What the config decides for one image. */
struct vc_image_conf {
	enum vc_cache_mode cache;
	enum vc_aio_mode aio;
	bool readonly;
	enum vc_format format;
	bool shareable;		/* declared shared across hosts (migration.h) */
};

/* One [section] other than [global], in file order. */
struct vc_rule {
	char *pattern;		/* path relative to the mount root, or a glob */
	bool is_glob;		/* pattern holds * or ? */
	bool is_format;		/* [format:raw] or [format:qcow2]: matches no path */
	enum vc_format format;	/* which, for a format section */
	int line;		/* line of the [section] header */
	unsigned set;		/* VC_KEY_* bits of the keys the section sets */
	struct vc_image_conf conf; /* keys it leaves out hold [global]'s */
};

#define VC_KEY_CACHE	(1u << 0)
#define VC_KEY_AIO	(1u << 1)
#define VC_KEY_READONLY	(1u << 2)
#define VC_KEY_FORMAT	(1u << 3)
#define VC_KEY_SHAREABLE (1u << 4)

struct vc_config {
	char *path;		/* NULL when built-in defaults are used */
	struct vc_image_conf global;
	struct vc_rule *rules;
	size_t nrules;
};

/*
 * Load path. With must_exist false, a missing file yields the built-in
 * defaults. Every error in the file is logged with log_warnx() as
 * "FILE:LINE: message"; then -EINVAL is returned. Returns 0 or -errno and
 * sets *cfgp (owned by the caller, free with cfg_free()).
 */
int cfg_load(const char *path, bool must_exist, struct vc_config **cfgp);

/* Where a loader's message lines go (a reload collects them). */
typedef void (*vc_cfg_say)(const char *line, void *arg);
/*
 * cfg_load(), with every message line ("FILE:LINE: message", or
 * "FILE: error" when the file cannot be read) passed to say(line, arg)
 * instead of the log; say NULL logs them as cfg_load() does.
 */
int cfg_load_say(const char *path, bool must_exist, struct vc_config **cfgp,
    vc_cfg_say say, void *say_arg);
void cfg_free(struct vc_config *cfg);

/* Built-in defaults only; never fails except -ENOMEM. */
int cfg_defaults(struct vc_config **cfgp);

/*
 * The settings for an image at relpath (relative to the mount root, no
 * leading slash). An exact name beats any glob; among globs the first in
 * the file wins; otherwise [global]. *rule (may be NULL) gets the rule
 * that matched or NULL for [global].
 */
void cfg_lookup(const struct vc_config *cfg, const char *relpath,
    struct vc_image_conf *out, const struct vc_rule **rule);

/* The [format:raw] or [format:qcow2] section, or NULL. */
const struct vc_rule *cfg_format_rule(const struct vc_config *cfg,
    enum vc_format format);

/* Whether an exact name or a glob section names relpath (not [global],
 * not a format section). */
const struct vc_rule *cfg_name_rule(const struct vc_config *cfg,
    const char *relpath);

const char *cfg_format_name(enum vc_format format);

#endif
