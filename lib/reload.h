/*
 * reload.h - re-read the configuration file and apply it to the running
 * mount: SIGHUP (vcachefs/stop.c) and vcachefsctl reload (the control
 * thread) both call reload_config().
 *
 * The file is parsed by the same strict parser as at start. A file with
 * any error is rejected whole and the configuration in effect stays. A
 * good one is installed, then every open image is decided again (names,
 * then chains) and each image whose cache or aio changed is switched
 * live (image_switch(): its dirty data made durable first when it leaves
 * writeback or unsafe, the backing descriptor swapped while only that
 * image is paused). readonly: an image becomes readonly at once if it
 * never had a writer; otherwise new write opens are refused and its open
 * writers go on (status shows it as pending). Old configurations are kept
 * until reload_exit(): openers and the resolver may still read them.
 */
#ifndef VC_RELOAD_H
#define VC_RELOAD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct vc_config;
struct vc_registry;
struct vc_resolver;

struct vc_reload {
	const char *path;		/* the configuration file */
	bool named;			/* -c given: the file must exist */
	struct vc_config **cfg;		/* where the config in effect is
					   kept (fs->cfg); protected by lock */
	struct vc_registry *registry;
	struct vc_resolver *resolver;	/* may be NULL */
	int srcfd;			/* the source directory (any kind of
					   descriptor), for unmatched sections */
	const char *source;		/* its name, for messages */
	pthread_mutex_t lock;		/* one reload at a time */
	struct vc_config **old;		/* replaced configs, freed at exit;
					   protected by lock */
	size_t nold;
	bool ready;			/* reload_init() was called */
};

/* Set up rl; the pointers must outlive it. Never fails. */
void reload_init(struct vc_reload *rl, const char *path, bool named,
    struct vc_config **cfg, struct vc_registry *registry,
    struct vc_resolver *resolver, int srcfd, const char *source);
/* Free the replaced configurations (not *rl->cfg: its owner frees it). */
void reload_exit(struct vc_reload *rl);

/* Re-read the configuration file of fs and apply it to every open image.
 * On a bad file nothing changes; each error line "FILE:LINE: message"
 * (and warnings) is passed to say(line, arg). The verdict of a rejected
 * file ("reload rejected: N error(s); ...") is logged, and copied to
 * verdict (len bytes) when not NULL rather than said, so that a client
 * can report it as its one error line. Returns 0 or -errno. */
int reload_config(struct vc_reload *rl, void (*say)(const char *line, void *arg),
    void *arg, char *verdict, size_t len);

#endif
