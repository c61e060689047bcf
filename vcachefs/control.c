/*
 * control.c - the control socket thread (control.h, vcachefsctl(8)).
 *
 * Requests are served one at a time by this thread. A command that waits
 * for the store (flush, drop-cache) holds up other control clients, never
 * the data path: it takes an image reference and the image's descriptor
 * the way any opener would.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "ctlproto.h"
#include "io.h"
#include "fault.h"
#include "log.h"
#include "migration.h"
#include "oflags.h"
#include "pagecache.h"
#include "probe.h"
#include "stats.h"
#include "notify.h"
#include "reload.h"
#include "fdstore.h"
#include "takeover.h"

#define CTL_MAX_CLIENTS	32
#define CTL_TIMEOUT_MS	3000	/* to finish a request once it has begun */

struct ctl_client {
	int fd;
	pid_t pid;
	uid_t uid;
	char in[CTL_REQ_MAX];
	size_t inlen;
	uint64_t deadline;	/* ms, monotonic: a partial request must end by then; 0 none */
	struct ctl_buf out;
	size_t outoff;
	bool closing;		/* close once out is sent */
	bool eof;		/* the peer has sent all it will */
	bool lingering;		/* closing: reply sent, input discarded until EOF */
};

static struct {
	struct vc_fs *fs;
	int lfd;		/* -1: no socket */
	int wake[2];		/* control_stop writes to wake[1] */
	pthread_t thread;
	bool running;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct ctl_client *clients[CTL_MAX_CLIENTS];
	struct ctl_req req;	/* the one being served */
	bool handed_over;	/* takeover done: the thread ends */
} ctl = { .lfd = -1, .wake = { -1, -1 } };

static uint64_t
ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * What is at path: 0 nothing (or a stale socket, now removed), or -errno
 * (EADDRINUSE: a daemon answers there; EEXIST: not a socket).
 */
static int
ctl_clear_path(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, r;

	if (lstat(sa->sun_path, &st) == -1)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (r == 0)
		return -EADDRINUSE;
	if (errno != ECONNREFUSED)
		return -errno;
	/* Nobody listens: a daemon that died without cleaning up. */
	if (unlink(sa->sun_path) == -1 && errno != ENOENT)
		return -errno;
	log_info("control: replaced the stale socket %s", sa->sun_path);
	return 0;
}

static int
ctl_bind(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	r = ctl_clear_path(&sa);
	if (r < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	/* Called before any other thread runs: the umask is ours to change. */
	old = umask(0177);
	r = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r == -1 || chmod(path, 0600) == -1 || listen(fd, 16) == -1) {
		r = -errno;
		if (r != -EADDRINUSE)
			(void)unlink(path);
		close(fd);
		return r;
	}
	return fd;
}

int
control_open(struct vc_fs *fs, const char *path)
{
	char def[sizeof(ctl.path)];
	int fd, r;

	ctl.fs = fs;
	if (path == NULL) {
		r = ctl_default_socket(fs->mountpoint, def, sizeof(def));
		if (r < 0) {
			log_warnc(r, "control: no socket for %s (use --control "
			    "PATH)", fs->mountpoint);
			return 1;
		}
		if (mkdir(VC_CONTROL_DIR, 0700) == -1 && errno != EEXIST) {
			log_warn("control: no socket: mkdir %s (use --control "
			    "PATH)", VC_CONTROL_DIR);
			return 1;
		}
		path = def;
	}
	fd = fault_hit(VC_FAULT_CONTROL_OPEN);
	if (fd == 0)
		fd = ctl_bind(path);
	if (fd == -EADDRINUSE || fd == -EEXIST) {
		log_warnx("control: %s %s; use --control PATH", path,
		    fd == -EEXIST ? "exists and is not a socket" :
		    "is in use by another daemon");
		return fd;
	}
	if (fd < 0) {
		log_warnc(fd, "control: socket %s%s", path,
		    path == def ? " (use --control PATH)" : "");
		return path == def ? 1 : fd;
	}
	snprintf(ctl.path, sizeof(ctl.path), "%s", path);
	ctl.lfd = fd;
	fs->control_path = ctl.path;
	return 0;
}

static void
ctl_client_free(struct ctl_client *c)
{
	close(c->fd);
	ctl_buf_free(&c->out);
	free(c);
}

/* The request is served: its reply ends with this line. */
static void
ctl_error(struct ctl_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
ctl_error(struct ctl_client *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	ctl_buf_printf(&c->out, "error %s\n", msg);
}

/* A fatal protocol error: say why and close the connection. */
static void
ctl_refuse(struct ctl_client *c, const char *msg)
{
	ctl_error(c, "%s", msg);
	c->closing = true;
	c->inlen = 0;
	log_info("control: closed connection of pid %d uid %u: %s",
	    (int)c->pid, (unsigned)c->uid, msg);
}

/* --- status --- */

static void
ctl_conf_kv(struct ctl_buf *b, const char *prefix,
    const struct vc_image_conf *conf, enum vc_aio_mode aio)
{
	char key[32];

	snprintf(key, sizeof(key), "%scache", prefix);
	ctl_buf_kv(b, key, policy_get(conf->cache)->name);
	snprintf(key, sizeof(key), "%saio", prefix);
	ctl_buf_kv(b, key, policy_aio_name(aio));
	snprintf(key, sizeof(key), "%sreadonly", prefix);
	ctl_buf_kv(b, key, conf->readonly ? "yes" : "no");
	snprintf(key, sizeof(key), "%sshareable", prefix);
	ctl_buf_kv(b, key, conf->shareable ? "yes" : "no");
}

/*
 * The image's descriptor, used the way the I/O path uses it: entered
 * (a live switch swaps it while the image is quiesced), and under fdlock
 * (an upgrade swaps it under that). Only the control thread waits.
 */
static int
ctl_pagecache(struct vc_image *img, uint64_t *res, uint64_t *dirty, bool *known)
{
	int r;

	gate_shared(&img->iogate);
	pthread_rwlock_rdlock(&img->fdlock);
	r = pagecache_usage(img->fd, res, dirty, known);
	pthread_rwlock_unlock(&img->fdlock);
	gate_release_shared(&img->iogate);
	return r;
}

/*
 * The number and fdinfo flags of the descriptor the image's I/O goes
 * through (not the inode's O_PATH handle), held as ctl_pagecache() holds
 * it. Returns 0 or -errno.
 */
static int
ctl_backing_io(struct vc_image *img, int *fd, unsigned *flags)
{
	int r;

	gate_shared(&img->iogate);
	pthread_rwlock_rdlock(&img->fdlock);
	*fd = img->fd;
	r = *fd < 0 ? -EBADF : oflags_fdinfo(*fd, flags);
	pthread_rwlock_unlock(&img->fdlock);
	gate_release_shared(&img->iogate);
	return r;
}

static int
ctl_status_image(struct vc_image *img, void *arg)
{
	struct ctl_buf *b = arg;
	struct vc_image_info *info;
	uint64_t res, dirty;
	char names[256];
	unsigned flags;
	bool known;
	int r, fd;

	info = malloc(sizeof(*info));
	if (info == NULL)
		return -ENOMEM;
	image_info(img, info);
	ctl_buf_printf(b, "image");
	ctl_buf_kv(b, "name", info->relpath);
	ctl_conf_kv(b, "", &info->conf, info->aio);
	ctl_buf_kv(b, "rule", info->rule);
	if (memcmp(&info->want, &info->conf, sizeof(info->want)) != 0 ||
	    info->pending[0] != '\0') {
		bool fb;

		ctl_conf_kv(b, "want_", &info->want, policy_effective_aio(
		    info->want.cache, info->want.aio, &fb));
		ctl_buf_kv(b, "pending", info->pending);
	}
	ctl_buf_kv(b, "format", info->format);
	ctl_buf_kvu(b, "virtual_size", info->virtual_size);
	ctl_buf_kvu(b, "opencount", info->opencount);
	r = ctl_pagecache(img, &res, &dirty, &known);
	if (r < 0) {
		ctl_buf_kv(b, "resident", "unknown");
		ctl_buf_kv(b, "dirty", "unknown");
	} else {
		ctl_buf_kvu(b, "resident", res);
		if (known)
			ctl_buf_kvu(b, "dirty", dirty);
		else
			ctl_buf_kv(b, "dirty", "unknown");
	}
	r = ctl_backing_io(img, &fd, &flags);
	if (r < 0) {
		ctl_buf_kv(b, "backing_fd", "unknown");
	} else {
		ctl_buf_kvu(b, "backing_fd", (uint64_t)fd);
		snprintf(names, sizeof(names), "0%o", flags);
		ctl_buf_kv(b, "backing_flags", names);
		ctl_buf_kv(b, "backing_flag_names", oflags_names(flags, names,
		    sizeof(names)));
	}
	ctl_buf_printf(b, "\n");
	free(info);
	return 0;
}

static void
ctl_status(struct ctl_client *c)
{
	struct vc_fs *fs = ctl.fs;
	struct ctl_buf imgs = { 0 };
	struct timespec now;
	char started[64];
	struct tm tm;
	int r;

	/* Images first: the mount record says which page cache method they used. */
	r = registry_each(&fs->registry, ctl_status_image, &imgs);
	if (r < 0) {
		ctl_buf_free(&imgs);
		ctl_error(c, "status: %s", strerror(-r));
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	localtime_r(&fs->started_wall, &tm);
	strftime(started, sizeof(started), "%Y-%m-%dT%H:%M:%S%z", &tm);
	ctl_buf_printf(&c->out, "mount");
	ctl_buf_kv(&c->out, "mountpoint", fs->mountpoint);
	ctl_buf_kv(&c->out, "source", fs->source);
	ctl_buf_kv(&c->out, "config", fs->config_path != NULL ?
	    fs->config_path : "(built-in defaults)");
	ctl_buf_kv(&c->out, "transport", fs->fuse_uring ? "io_uring" :
	    "/dev/fuse");
	ctl_buf_kvu(&c->out, "uptime_s", (uint64_t)(now.tv_sec -
	    fs->started.tv_sec));
	ctl_buf_kv(&c->out, "started", started);
	ctl_buf_kvu(&c->out, "pid", (uint64_t)getpid());
	ctl_buf_kv(&c->out, "version", VC_VERSION);
	ctl_buf_kv(&c->out, "pagecache", pagecache_method());
	ctl_buf_kvu(&c->out, "images", (uint64_t)r);
	ctl_buf_printf(&c->out, "\n%s", imgs.p != NULL ? imgs.p : "");
	if (imgs.failed)
		c->out.failed = true;
	ctl_buf_free(&imgs);
	ctl_buf_printf(&c->out, "ok\n");
}

/* --- stats --- */

static const struct { const char *key; double q; } ctl_quantiles[] = {
	{ "p50", 0.5 }, { "p90", 0.9 }, { "p99", 0.99 }, { "p999", 0.999 },
};

static void
ctl_errno_list(struct ctl_buf *b, const struct vc_stats_snap *s)
{
	char list[1024];
	size_t o = 0;
	uint64_t total = 0;

	list[0] = '\0';
	for (int e = 1; e <= VC_STAT_ERRNO_MAX; e++) {
		const char *name;
		char num[16];

		if (s->errors[e] == 0)
			continue;
		total += s->errors[e];
		name = e == VC_STAT_ERRNO_MAX ? "other" : strerrorname_np(e);
		if (name == NULL) {
			snprintf(num, sizeof(num), "E%d", e);
			name = num;
		}
		o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s:%" PRIu64,
		    o ? "," : "", name, s->errors[e]);
		if (o >= sizeof(list))
			o = sizeof(list) - 1;
	}
	ctl_buf_kvu(b, "errors", total);
	ctl_buf_kv(b, "errno", list);
}

static void
ctl_stats_one(struct ctl_buf *b, struct vc_image *img, bool reset)
{
	struct vc_stats_snap *s = malloc(sizeof(*s));
	char key[40];

	if (s == NULL) {
		b->failed = true;
		return;
	}
	stats_snapshot(&img->stats, s);
	if (reset)
		stats_reset(&img->stats);
	ctl_buf_printf(b, "image");
	ctl_buf_kv(b, "name", img->relpath);
	ctl_buf_kv(b, "cache", policy_get(image_conf_now(img).cache)->name);
	for (unsigned op = 0; op < VC_STAT_NOPS; op++) {
		snprintf(key, sizeof(key), "%s_ops", stats_op_name(op));
		ctl_buf_kvu(b, key, s->ops[op]);
		snprintf(key, sizeof(key), "%s_bytes", stats_op_name(op));
		ctl_buf_kvu(b, key, s->bytes[op]);
	}
	ctl_buf_kvu(b, "flush_ignored", s->flush_ignored);
	ctl_buf_kvu(b, "fua_writes", s->fua_writes);
	ctl_buf_kvu(b, "bounced", s->bounced);
	ctl_buf_kvi(b, "inflight", s->inflight);
	ctl_errno_list(b, s);
	for (unsigned lat = 0; lat < VC_STAT_NLAT; lat++) {
		for (size_t i = 0; i < sizeof(ctl_quantiles) /
		    sizeof(ctl_quantiles[0]); i++) {
			snprintf(key, sizeof(key), "%s_%s_ns", stats_op_name(lat),
			    ctl_quantiles[i].key);
			ctl_buf_kvu(b, key, stats_percentile(s, lat,
			    ctl_quantiles[i].q));
		}
		snprintf(key, sizeof(key), "%s_max_ns", stats_op_name(lat));
		ctl_buf_kvu(b, key, s->max_ns[lat]);
	}
	ctl_buf_printf(b, "\n");
	free(s);
}

static int
ctl_stats_each(struct vc_image *img, void *arg)
{
	struct ctl_buf *b = arg;

	ctl_stats_one(b, img, ctl.req.reset);
	return b->failed ? -ENOMEM : 0;
}

/* The open images req->args name, with a reference each, or NULL after
 * an error reply. */
static struct vc_image **
ctl_find_all(struct ctl_client *c, const struct ctl_req *req)
{
	struct vc_image **imgs = calloc(req->nargs, sizeof(*imgs));

	if (imgs == NULL) {
		ctl_error(c, "out of memory");
		return NULL;
	}
	for (unsigned i = 0; i < req->nargs; i++) {
		imgs[i] = registry_find(&ctl.fs->registry, req->args[i]);
		if (imgs[i] != NULL)
			continue;
		char name[200];

		if (ctl_encode(req->args[i], name, sizeof(name)) < 0)
			snprintf(name + sizeof(name) - 4, 4, "...");
		ctl_error(c, "%s: no open image %s", ctl_cmd_name(req->cmd),
		    name);
		while (i-- > 0)
			image_release(&ctl.fs->registry, imgs[i]);
		free(imgs);
		return NULL;
	}
	return imgs;
}

static void
ctl_put_all(struct vc_image **imgs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		image_release(&ctl.fs->registry, imgs[i]);
	free(imgs);
}

static void
ctl_stats(struct ctl_client *c, const struct ctl_req *req)
{
	struct vc_image **imgs;
	int r;

	ctl_buf_printf(&c->out, "stats");
	ctl_buf_kvu(&c->out, "time_ns", stats_now());
	ctl_buf_printf(&c->out, "\n");
	if (req->nargs == 0) {
		r = registry_each(&ctl.fs->registry, ctl_stats_each, &c->out);
		if (r < 0)
			ctl_error(c, "stats: %s", strerror(-r));
		else
			ctl_buf_printf(&c->out, "ok\n");
		return;
	}
	imgs = ctl_find_all(c, req);
	if (imgs == NULL)
		return;
	for (unsigned i = 0; i < req->nargs; i++)
		ctl_stats_one(&c->out, imgs[i], req->reset);
	ctl_put_all(imgs, req->nargs);
	ctl_buf_printf(&c->out, "ok\n");
}

/* --- flush, drop-cache --- */

struct ctl_flush {
	struct ctl_client *c;
	bool drop;
	int failed;		/* how many failed */
	char first[256];	/* the first failure */
};

static int
ctl_flush_one(struct vc_image *img, void *arg)
{
	struct ctl_flush *f = arg;
	uint64_t before = 0, after = 0, dirty;
	bool known;
	int r;

	if (f->drop)
		(void)ctl_pagecache(img, &before, &dirty, &known);
	r = f->drop ? io_drop_cache(img) : io_flush_now(img);
	ctl_buf_printf(&f->c->out, "%s", f->drop ? "drop-cache" : "flush");
	ctl_buf_kv(&f->c->out, "name", img->relpath);
	if (r < 0) {
		ctl_buf_kv(&f->c->out, "result", strerror(-r));
		if (f->failed++ == 0)
			snprintf(f->first, sizeof(f->first), "%s %s: %s",
			    f->drop ? "drop-cache" : "flush", img->relpath,
			    strerror(-r));
		log_warnc(r, "control: %s %s", f->drop ? "drop-cache" : "flush",
		    img->relpath);
	} else {
		ctl_buf_kv(&f->c->out, "result", "ok");
		if (f->drop) {
			(void)ctl_pagecache(img, &after, &dirty, &known);
			ctl_buf_kvu(&f->c->out, "resident_before", before);
			ctl_buf_kvu(&f->c->out, "resident_after", after);
		}
		log_info("control: %s %s", f->drop ? "dropped the cache of" :
		    "flushed", img->relpath);
	}
	ctl_buf_printf(&f->c->out, "\n");
	return 0;
}

static bool ctl_mig_name_ok(const char *rel);

/*
 * The backing file of an image that is not open, for a flush or a drop:
 * opened read-only beneath the daemon's own descriptor of SOURCE, no
 * symbolic link followed. Never by path: with SOURCE == MOUNTPOINT the
 * path is the FUSE mount itself (this thread a client of its own daemon,
 * the fadvise on a FUSE inode with no pages). Its page cache is the
 * file's, whoever opened it: a host that served the image before keeps
 * its pages after the close (the stale pages a migration's destination
 * must not read). Returns the descriptor or -errno.
 */
static int
ctl_flush_closed_fd(const char *rel)
{
	if (!ctl_mig_name_ok(rel))
		return -EINVAL;
	return probe_open(ctl.fs->itable.root.fd, rel, false);
}

static void
ctl_flush_closed(struct ctl_flush *f, const char *rel)
{
	uint64_t before = 0, after = 0, dirty;
	bool known;
	int fd, r;

	fd = ctl_flush_closed_fd(rel);
	r = fd < 0 ? fd : 0;
	if (r == 0 && f->drop)
		(void)pagecache_usage(fd, &before, &dirty, &known);
	/* fdatasync works on a read-only descriptor: the file's data goes. */
	if (r == 0 && fdatasync(fd) == -1)
		r = -errno;
	if (r == 0 && f->drop) {
		r = -posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		(void)pagecache_usage(fd, &after, &dirty, &known);
	}
	if (fd >= 0)
		close(fd);
	ctl_buf_printf(&f->c->out, "%s", f->drop ? "drop-cache" : "flush");
	ctl_buf_kv(&f->c->out, "name", rel);
	ctl_buf_kv(&f->c->out, "open", "no");
	if (r < 0) {
		ctl_buf_kv(&f->c->out, "result", strerror(-r));
		if (f->failed++ == 0)
			snprintf(f->first, sizeof(f->first), "%s %s: %s",
			    f->drop ? "drop-cache" : "flush", rel,
			    r == -EINVAL ? "not a name under the mount" :
			    strerror(-r));
	} else {
		ctl_buf_kv(&f->c->out, "result", "ok");
		if (f->drop) {
			ctl_buf_kvu(&f->c->out, "resident_before", before);
			ctl_buf_kvu(&f->c->out, "resident_after", after);
		}
		log_info("control: %s %s (not open)", f->drop ?
		    "dropped the cache of" : "flushed", rel);
	}
	ctl_buf_printf(&f->c->out, "\n");
}

static void
ctl_flush(struct ctl_client *c, const struct ctl_req *req, bool drop)
{
	struct ctl_flush f = { .c = c, .drop = drop };
	int r;

	if (req->all) {
		r = registry_each(&ctl.fs->registry, ctl_flush_one, &f);
		if (r < 0) {
			ctl_error(c, "flush: %s", strerror(-r));
			return;
		}
	} else {
		/* An image that is not open is flushed through its own file. */
		for (unsigned i = 0; i < req->nargs; i++) {
			struct vc_image *img = registry_find(&ctl.fs->registry,
			    req->args[i]);

			if (img == NULL) {
				ctl_flush_closed(&f, req->args[i]);
				continue;
			}
			ctl_flush_one(img, &f);
			image_release(&ctl.fs->registry, img);
		}
	}
	if (f.failed > 1)
		ctl_error(c, "%s (and %d more)", f.first, f.failed - 1);
	else if (f.failed == 1)
		ctl_error(c, "%s", f.first);
	else
		ctl_buf_printf(&c->out, "ok\n");
}

/* --- check-migration --- */

/*
 * One "image" record: the settings in effect (open) or those the config
 * gives it now (not open), the filesystem under SOURCE, the verdict and
 * why. Returns whether the image is safe to migrate.
 */
static bool
ctl_mig_one(struct ctl_buf *b, const char *rel,
    const struct vc_image_conf *conf, bool open)
{
	char why[512];
	struct mig_image mi = { .cache = conf->cache,
	    .readonly = conf->readonly, .shareable = conf->shareable };
	struct mig_fs fs;
	bool safe = false;
	int r;

	ctl_buf_printf(b, "image");
	ctl_buf_kv(b, "name", rel);
	ctl_buf_kv(b, "cache", policy_get(conf->cache)->name);
	ctl_buf_kv(b, "readonly", conf->readonly ? "yes" : "no");
	ctl_buf_kv(b, "shareable", conf->shareable ? "yes" : "no");
	ctl_buf_kv(b, "open", open ? "yes" : "no");
	r = mig_detect_at(ctl.fs->itable.root.fd, rel, &fs);
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot tell the filesystem under "
		    "%s: %s", ctl.fs->source, strerror(-r));
		ctl_buf_kv(b, "verdict", "unknown");
	} else {
		safe = mig_verdict(&fs, &mi, why, sizeof(why));
		ctl_buf_kv(b, "fs", fs.type);
		ctl_buf_kv(b, "class", mig_class_name(fs.cls));
		ctl_buf_kv(b, "verdict", safe ? "safe" : "unsafe");
	}
	ctl_buf_kv(b, "reason", why);
	ctl_buf_printf(b, "\n");
	return safe;
}

static int
ctl_mig_each(struct vc_image *img, void *arg)
{
	struct vc_image_conf conf = image_conf_now(img);

	(void)ctl_mig_one(arg, img->relpath, &conf, true);
	return ((struct ctl_buf *)arg)->failed ? -ENOMEM : 0;
}

/* A name that stays under SOURCE: relative, no "." or ".." component. */
static bool
ctl_mig_name_ok(const char *rel)
{
	const char *p = rel;

	if (*rel == '\0' || *rel == '/')
		return false;
	while (*p != '\0') {
		size_t n = strcspn(p, "/");

		if (n == 0 || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

/* An image that is not open: the config decides, as for an opener. */
static void
ctl_mig_closed(struct ctl_buf *b, const char *rel)
{
	struct vc_decision *d;
	const struct vc_rule *rule;
	struct stat st;
	int fd;
	const char *why = NULL;
	char msg[128];

	if (!ctl_mig_name_ok(rel))
		why = "not a name under the mount";
	else if ((fd = probe_open(ctl.fs->itable.root.fd, rel, true)) < 0) {
		/* By the daemon's descriptor of SOURCE, not through the mount. */
		snprintf(msg, sizeof(msg), "not found under SOURCE: %s",
		    fd == -ELOOP ? "a symbolic link on the way" :
		    strerror(-fd));
		why = msg;
	} else {
		if (fstat(fd, &st) == -1) {
			snprintf(msg, sizeof(msg), "cannot stat: %s",
			    strerror(errno));
			why = msg;
		} else if (!S_ISREG(st.st_mode)) {
			why = "not a regular file";
		}
		close(fd);
	}
	if (why != NULL) {
		ctl_buf_printf(b, "image");
		ctl_buf_kv(b, "name", rel);
		ctl_buf_kv(b, "open", "no");
		ctl_buf_kv(b, "verdict", "unknown");
		ctl_buf_kv(b, "reason", why);
		ctl_buf_printf(b, "\n");
		return;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		b->failed = true;
		return;
	}
	if (ctl.fs->resolver_ok)
		(void)resolve_image(&ctl.fs->resolver, rel, d);
	else
		cfg_lookup(__atomic_load_n(&ctl.fs->cfg, __ATOMIC_ACQUIRE), rel,
		    &d->conf, &rule);
	(void)ctl_mig_one(b, rel, &d->conf, false);
	free(d);
}

static void
ctl_check_migration(struct ctl_client *c, const struct ctl_req *req)
{
	int r;

	if (req->nargs == 0) {
		r = registry_each(&ctl.fs->registry, ctl_mig_each, &c->out);
		if (r < 0) {
			ctl_error(c, "check-migration: %s", strerror(-r));
			return;
		}
	}
	for (unsigned i = 0; i < req->nargs; i++) {
		struct vc_image *img = registry_find(&ctl.fs->registry,
		    req->args[i]);

		if (img != NULL) {
			struct vc_image_conf conf = image_conf_now(img);

			(void)ctl_mig_one(&c->out, img->relpath, &conf, true);
			image_release(&ctl.fs->registry, img);
		} else {
			ctl_mig_closed(&c->out, req->args[i]);
		}
	}
	ctl_buf_printf(&c->out, "ok\n");
}

/* --- reload --- */

static void
ctl_say(const char *line, void *arg)
{
	struct ctl_client *c = arg;

	ctl_buf_printf(&c->out, "message");
	ctl_buf_kv(&c->out, "text", line);
	ctl_buf_printf(&c->out, "\n");
}

static void
ctl_reload(struct ctl_client *c)
{
	char verdict[512] = "";
	int r;

	log_info("control: reload asked by pid %d uid %u", (int)c->pid,
	    (unsigned)c->uid);
	notify_reloading();
	r = reload_config(&ctl.fs->reload, ctl_say, c, verdict, sizeof(verdict));
	notify_reloaded(r);
	/* The error lines came as messages; the verdict is the error. */
	if (r < 0)
		ctl_error(c, "%s", verdict[0] != '\0' ? verdict : strerror(-r));
	else
		ctl_buf_printf(&c->out, "ok\n");
}

/* The new daemon binds the socket next: before it is told "ok". */
static void
ctl_close_listener(void)
{
	if (ctl.lfd < 0)
		return;
	close(ctl.lfd);
	ctl.lfd = -1;
	if (unlink(ctl.path) == -1 && errno != ENOENT)
		log_warn("control: unlink %s", ctl.path);
	ctl.fs->control_path = NULL;
}

/*
 * For takeover_give(): close before "ok"; reopen when "ok" could not be
 * sent and this daemon serves on (the path is free: nobody binds it
 * before hearing "ok").
 */
static void
ctl_listener(bool reopen)
{
	int fd;

	if (!reopen) {
		ctl_close_listener();
		return;
	}
	fd = ctl_bind(ctl.path);
	if (fd < 0) {
		log_warnc(fd, "takeover: cannot reopen the control socket %s; "
		    "serving on without it", ctl.path);
		return;
	}
	ctl.lfd = fd;
	ctl.fs->control_path = ctl.path;
	log_info("takeover: control socket %s open again", ctl.path);
}

/* vcachefs --takeover: the whole exchange happens in takeover_give(). */
static void
ctl_takeover(struct ctl_client *c)
{
	char why[512];
	int r;
	const char *nl = memchr(c->in, '\n', c->inlen);

	/* What follows the request would be lost to takeover_give()'s reads. */
	if (nl == NULL || (size_t)(nl + 1 - c->in) != c->inlen) {
		ctl_refuse(c, "takeover: nothing may follow the request");
		return;
	}
	r = takeover_give(ctl.fs, c->fd, ctl_listener, why, sizeof(why));
	if (r == 1) {
		ctl.handed_over = true;
		c->closing = true;	/* "ok" is sent */
		return;
	}
	ctl_error(c, "takeover: %s", why);
}

/* vcachefsctl fdstore: into systemd's store, then this daemon leaves. */
static void
ctl_fdstore(struct ctl_client *c)
{
	char why[512];
	int r = fdstore_give(ctl.fs, why, sizeof(why));

	if (r == 1) {
		ctl_close_listener();
		ctl.handed_over = true;
		ctl_buf_printf(&c->out, "ok\n");
		c->closing = true;
		return;
	}
	ctl_error(c, "fdstore: %s", why);
}

static void
ctl_serve(struct ctl_client *c, const char *line, size_t len)
{
	char err[256];

	if (ctl_parse(line, len, &ctl.req, err, sizeof(err)) < 0) {
		ctl_refuse(c, err);
		return;
	}
	log_debug("control: %s from pid %d", ctl_cmd_name(ctl.req.cmd),
	    (int)c->pid);
	switch (ctl.req.cmd) {
	case CTL_STATUS:
		ctl_status(c);
		break;
	case CTL_STATS:
		ctl_stats(c, &ctl.req);
		break;
	case CTL_RELOAD:
		ctl_reload(c);
		break;
	case CTL_FLUSH:
		ctl_flush(c, &ctl.req, false);
		break;
	case CTL_DROP_CACHE:
		ctl_flush(c, &ctl.req, true);
		break;
	case CTL_TAKEOVER:
		ctl_takeover(c);
		break;
	case CTL_FDSTORE:
		ctl_fdstore(c);
		break;
	case CTL_CHECK_MIGRATION:
		ctl_check_migration(c, &ctl.req);
		break;
	default:
		ctl_refuse(c, "unknown command");
		break;
	}
	if (c->out.failed) {
		/* The reply is cut: say so rather than send half of it. */
		ctl_buf_free(&c->out);
		ctl_refuse(c, "out of memory");
	}
}

/*
 * After the last reply of a closing connection: stop sending, and read
 * and drop what the peer still sends, for a second at most. Closing at
 * once could make the peer's own write fail (EPIPE) before it reads why.
 */
static bool
ctl_linger(struct ctl_client *c)
{
	char sink[4096];
	ssize_t n;

	if (!c->lingering) {
		(void)shutdown(c->fd, SHUT_WR);
		c->lingering = true;
		c->deadline = ctl_now_ms() + 1000;
	}
	while ((n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EINTR))
		return false;
	return ctl_now_ms() < c->deadline;
}

/*
 * Move one connection on: read what came (revents), send what is ready,
 * serve the next complete request once the last reply is out. Returns
 * false when the connection is to be closed now.
 */
static bool
ctl_step(struct ctl_client *c, short revents)
{
	ssize_t n;
	char *nl;

	if (revents & (POLLERR | POLLNVAL))
		return false;
	if ((revents & (POLLIN | POLLHUP)) && !c->eof && !c->closing &&
	    c->inlen < sizeof(c->in)) {
		n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen,
		    MSG_DONTWAIT);
		if (n == 0)
			c->eof = true;	/* requests already in serve first */
		else if (n > 0)
			c->inlen += (size_t)n;
		else if (errno != EAGAIN && errno != EINTR)
			return false;
	}
	for (;;) {
		while (c->outoff < c->out.len) {
			n = send(c->fd, c->out.p + c->outoff,
			    c->out.len - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return true;	/* POLLOUT will tell */
			if (n < 0)
				return false;	/* the peer went away */
			c->outoff += (size_t)n;
		}
		if (c->closing)
			return ctl_linger(c);
		ctl_buf_free(&c->out);
		c->outoff = 0;
		nl = c->inlen > 0 ? memchr(c->in, '\n', c->inlen) : NULL;
		if (nl != NULL) {
			ctl_serve(c, c->in, (size_t)(nl - c->in));
			if (!c->closing) {
				c->inlen -= (size_t)(nl + 1 - c->in);
				memmove(c->in, nl + 1, c->inlen);
			}
			c->deadline = 0;
			continue;
		}
		if (c->inlen == sizeof(c->in)) {
			ctl_refuse(c, "request longer than 4096 bytes");
			continue;
		}
		if (c->inlen == 0)
			return !c->eof;
		if (c->eof) {
			ctl_refuse(c, "request ends without a newline");
			continue;
		}
		if (c->deadline == 0)
			c->deadline = ctl_now_ms() + CTL_TIMEOUT_MS;
		if (ctl_now_ms() < c->deadline)
			return true;
		ctl_refuse(c, "request not finished within 3 s");
	}
}

static void
ctl_accept(void)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct ctl_client *c;
	int fd, slot;

	fd = accept4(ctl.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd == -1) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("control: accept");
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_warn("control: SO_PEERCRED");
		close(fd);
		return;
	}
	for (slot = 0; slot < CTL_MAX_CLIENTS; slot++)
		if (ctl.clients[slot] == NULL)
			break;
	c = slot < CTL_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
	if (c == NULL) {
		static const char msg[] = "error too many control connections\n";

		(void)!send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
		log_warnx("control: refused pid %d uid %u: %d connections open",
		    (int)cred.pid, (unsigned)cred.uid, CTL_MAX_CLIENTS);
		return;
	}
	if (cred.uid != 0 && cred.uid != geteuid()) {
		/* Told why, then closed (never served). */
		ctl_buf_printf(&c->out, "error permission denied: only root or "
		    "the daemon's user may use the control socket\n");
		c->closing = true;
		log_warnx("control: refused pid %d uid %u: not root or uid %u",
		    (int)cred.pid, (unsigned)cred.uid, (unsigned)geteuid());
	}
	c->fd = fd;
	c->pid = cred.pid;
	c->uid = cred.uid;
	ctl.clients[slot] = c;
}

static void *
ctl_thread(void *arg)
{
	struct pollfd pfd[CTL_MAX_CLIENTS + 2];
	int idx[CTL_MAX_CLIENTS + 2];
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		uint64_t now = ctl_now_ms(), next = 0;
		int n = 0, timeout = -1;

		pfd[n] = (struct pollfd){ .fd = ctl.wake[0], .events = POLLIN };
		idx[n++] = -1;
		pfd[n] = (struct pollfd){ .fd = ctl.lfd, .events = POLLIN };
		idx[n++] = -1;
		for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
			struct ctl_client *c = ctl.clients[i];

			if (c == NULL)
				continue;
			pfd[n] = (struct pollfd){ .fd = c->fd };
			if (c->out.len > c->outoff)
				pfd[n].events = POLLOUT;
			else if ((!c->closing && !c->eof) || c->lingering)
				pfd[n].events = POLLIN;
			if (c->deadline != 0 && (next == 0 || c->deadline < next))
				next = c->deadline;
			idx[n++] = i;
		}
		if (next != 0)
			timeout = next > now ? (int)(next - now) : 0;
		if (poll(pfd, (nfds_t)n, timeout) == -1) {
			if (errno == EINTR)
				continue;
			log_warn("control: poll");
			break;
		}
		if (pfd[0].revents != 0)
			break;
		if (pfd[1].revents & POLLIN)
			ctl_accept();
		for (int k = 2; k < n; k++) {
			struct ctl_client *c = ctl.clients[idx[k]];

			if (!ctl_step(c, pfd[k].revents)) {
				ctl.clients[idx[k]] = NULL;
				ctl_client_free(c);
			}
		}
		if (ctl.handed_over)
			break;	/* the connection is the new daemon's */
	}
	return NULL;
}

int
control_start(void)
{
	int r;

	if (ctl.lfd < 0)
		return 0;
	if (pipe2(ctl.wake, O_CLOEXEC | O_NONBLOCK) == -1)
		return -errno;
	r = pthread_create(&ctl.thread, NULL, ctl_thread, NULL);
	if (r != 0) {
		close(ctl.wake[0]);
		close(ctl.wake[1]);
		ctl.wake[0] = ctl.wake[1] = -1;
		return -r;
	}
	ctl.running = true;
	log_info("control socket %s", ctl.path);
	return 0;
}

void
control_stop(void)
{
	if (ctl.running) {
		(void)!write(ctl.wake[1], "x", 1);
		pthread_join(ctl.thread, NULL);
		ctl.running = false;
		close(ctl.wake[0]);
		close(ctl.wake[1]);
		ctl.wake[0] = ctl.wake[1] = -1;
	}
	for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
		if (ctl.clients[i] != NULL) {
			ctl_client_free(ctl.clients[i]);
			ctl.clients[i] = NULL;
		}
	}
	if (ctl.lfd >= 0) {
		close(ctl.lfd);
		ctl.lfd = -1;
		if (unlink(ctl.path) == -1 && errno != ENOENT)
			log_warn("control: unlink %s", ctl.path);
		if (ctl.fs != NULL)
			ctl.fs->control_path = NULL;
	}
}
