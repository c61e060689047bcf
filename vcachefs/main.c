/*
 * main.c - vcachefs: command line, start-up checks, mount and serve.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "checkconf.h"
#include "control.h"
#include "fault.h"
#include "fs.h"
#include "devio.h"
#include "fdstore.h"
#include "fuse_uring.h"
#include "io.h"
#include "log.h"
#include "mounts.h"
#include "mountopts.h"
#include "notify.h"
#include "preflight.h"
#include "stop.h"
#include "takeover.h"
#include "workpool.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

#define VC_THREADS_DEFAULT	16
#define VC_THREADS_MAX		256
#define VC_TIMEOUT_DEFAULT	1.0
/* --buffer-memory: MiB for FUSE ring entries and I/O bounce buffers. */
#define VC_BUFMEM_DEFAULT	320
#define VC_BUFMEM_MAX		(1u << 20)
#define VC_MIB			(1024.0 * 1024.0)

struct vc_opts {
	const char *config;
	bool config_named;	/* -c given: a missing file is an error */
	bool foreground, debug, force, check_config;
	bool takeover;		/* --takeover: take the mount's connection over */
	unsigned threads;
	unsigned buffer_mib;	/* --buffer-memory */
	enum vc_fuse_uring_mode fuse_uring;
	const char *log_file;
	const char *control;	/* --control PATH; NULL: the default */
	struct vc_mountopts mo;	/* -o options, sorted */
	const char *source, *mountpoint;
};

enum { OPT_THREADS = 256, OPT_LOG_FILE, OPT_FORCE, OPT_CHECK_CONFIG,
    OPT_FUSE_URING, OPT_BUFFER_MEMORY, OPT_CONTROL, OPT_TAKEOVER };

static const struct option vc_longopts[] = {
	{ "config",	  required_argument, NULL, 'c' },
	{ "foreground",	  no_argument,	     NULL, 'f' },
	{ "debug",	  no_argument,	     NULL, 'd' },
	{ "threads",	  required_argument, NULL, OPT_THREADS },
	{ "fuse-uring",	  required_argument, NULL, OPT_FUSE_URING },
	{ "buffer-memory", required_argument, NULL, OPT_BUFFER_MEMORY },
	{ "log-file",	  required_argument, NULL, OPT_LOG_FILE },
	{ "control",	  required_argument, NULL, OPT_CONTROL },
	{ "force",	  no_argument,	     NULL, OPT_FORCE },
	{ "takeover",	  no_argument,	     NULL, OPT_TAKEOVER },
	{ "check-config", no_argument,	     NULL, OPT_CHECK_CONFIG },
	{ "version",	  no_argument,	     NULL, 'V' },
	{ "help",	  no_argument,	     NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

static void
vc_usage(FILE *out)
{
	fprintf(out,
"usage: vcachefs [OPTIONS] [SOURCE] MOUNTPOINT\n"
"       vcachefs --check-config [-c FILE] [SOURCE]\n"
"\n"
"Serve the VM disk images of SOURCE at MOUNTPOINT, applying to every image\n"
"the cache mode (writeback, writethrough, none, directsync, unsafe) that the\n"
"configuration names for it. Without SOURCE, MOUNTPOINT is mounted over\n"
"itself and its files stay reachable: vcachefs /var/lib/libvirt/images\n"
"\n"
"  -c, --config FILE   configuration (default %s;\n"
"                      built-in defaults when that file does not exist)\n"
"  -f, --foreground    stay in the foreground and log to stderr\n"
"  -d, --debug         log debug messages\n"
"  -o OPT[,OPT...]     mount options: config=FILE, log_file=FILE, FUSE\n"
"                      options; mount(8) words (nofail, x-*) are ignored\n"
"      --threads N     at most N worker threads (default %d)\n"
"      --fuse-uring auto|on|off\n"
"                      take FUSE requests through io_uring (Linux 6.14+,\n"
"                      fuse module parameter enable_uring=Y); auto uses it\n"
"                      when the kernel offers it (default auto)\n"
"      --buffer-memory MiB\n"
"                      at most this much for FUSE ring entries and I/O\n"
"                      bounce buffers (default %d)\n"
"      --log-file FILE as a daemon, log to FILE instead of syslog\n"
"      --control PATH  the control socket for vcachefsctl (default\n"
"                      %s/MOUNTPOINT-escaped.sock)\n"
"      --force         lazily unmount a stale mount first, and mount even\n"
"                      if processes hold files of the directory open\n"
"      --takeover      take over the running daemon of MOUNTPOINT without\n"
"                      unmounting (an upgrade; see vcachefs(8))\n"
"      --check-config  check the configuration, print the settings of\n"
"                      every image in SOURCE, and exit\n"
"  -V, --version       print the version and exit\n"
"  -h, --help          print this help and exit\n"
"\n"
"SIGTERM or SIGINT unmounts when no image is open; with images open it is\n"
"refused, and a second signal within %d s forces a lazy unmount.\n"
"See vcachefs(8) and vcachefs.conf(5).\n",
	    VC_CONFIG_DEFAULT_PATH, VC_THREADS_DEFAULT, VC_BUFMEM_DEFAULT,
	    VC_CONTROL_DIR, VC_STOP_FORCE_WINDOW);
}

/* -o LIST; config= and log_file= stand for -c and --log-file. */
static int
vc_add_mount_opts(struct vc_opts *o, const char *list)
{
	char err[256];
	int r = mountopts_add(&o->mo, list, err, sizeof(err));

	if (r < 0)
		log_warnx("-o: %s", err);
	return r < 0 ? -1 : 0;
}

/* The same setting twice (-c and config=): one place only. */
static int
vc_mount_opts_apply(struct vc_opts *o)
{
	if (o->mo.config[0] != '\0') {
		if (o->config_named) {
			log_warnx("-c and -o config= both given: name the "
			    "configuration once");
			return -1;
		}
		o->config = o->mo.config;
		o->config_named = true;
	}
	if (o->mo.log_file[0] != '\0') {
		if (o->log_file != NULL) {
			log_warnx("--log-file and -o log_file= both given: "
			    "name the log file once");
			return -1;
		}
		o->log_file = o->mo.log_file;
	}
	return 0;
}

/* Returns 0, 1 for "exit 0 now" (help, version), or -1 after an error. */
static int
vc_parse_args(int argc, char **argv, struct vc_opts *o)
{
	char *end;
	long n;
	int c;

	memset(o, 0, sizeof(*o));
	mountopts_init(&o->mo);
	o->config = VC_CONFIG_DEFAULT_PATH;
	o->threads = VC_THREADS_DEFAULT;
	o->buffer_mib = VC_BUFMEM_DEFAULT;
	opterr = 0;
	/* GNU getopt permutes, so "SRC MNT -o opts" (mount.fuse3) works too. */
	while ((c = getopt_long(argc, argv, ":c:fdo:Vh", vc_longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			o->config_named = true;
			break;
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->debug = true;
			break;
		case 'o':
			if (vc_add_mount_opts(o, optarg) < 0)
				return -1;
			break;
		case OPT_THREADS:
			errno = 0;
			n = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || n < 1 ||
			    n > VC_THREADS_MAX) {
				log_warnx("--threads: '%s' is not a number from 1 "
				    "to %d", optarg, VC_THREADS_MAX);
				return -1;
			}
			o->threads = (unsigned)n;
			break;
		case OPT_FUSE_URING:
			if (fuse_uring_parse_mode(optarg, &o->fuse_uring) < 0) {
				log_warnx("--fuse-uring: '%s' is not auto, on or "
				    "off", optarg);
				return -1;
			}
			break;
		case OPT_BUFFER_MEMORY:
			errno = 0;
			n = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || n < 1 ||
			    n > (long)VC_BUFMEM_MAX) {
				log_warnx("--buffer-memory: '%s' is not a number "
				    "of MiB from 1 to %u", optarg, VC_BUFMEM_MAX);
				return -1;
			}
			o->buffer_mib = (unsigned)n;
			break;
		case OPT_LOG_FILE:
			o->log_file = optarg;
			break;
		case OPT_CONTROL:
			o->control = optarg;
			break;
		case OPT_FORCE:
			o->force = true;
			break;
		case OPT_TAKEOVER:
			o->takeover = true;
			break;
		case OPT_CHECK_CONFIG:
			o->check_config = true;
			break;
		case 'V':
			printf("vcachefs %s\n", VC_VERSION);
			return 1;
		case 'h':
			vc_usage(stdout);
			return 1;
		case ':':
			log_warnx("option %s needs an argument (see --help)",
			    argv[optind - 1]);
			return -1;
		default:
			if (optopt > 0 && optopt < 256)
				log_warnx("unknown option -%c (see --help)", optopt);
			else
				log_warnx("unknown option %s (see --help)",
				    argv[optind - 1]);
			return -1;
		}
	}
	if (vc_mount_opts_apply(o) < 0)
		return -1;
	argc -= optind;
	argv += optind;
	if (o->check_config) {
		if (argc > 1) {
			log_warnx("--check-config takes at most SOURCE (see --help)");
			return -1;
		}
		o->source = argc == 1 ? argv[0] : NULL;
		return 0;
	}
	if (argc == 0 || argc > 2) {
		log_warnx("%s (see --help)", argc == 0 ? "missing MOUNTPOINT" :
		    "too many arguments");
		return -1;
	}
	o->mountpoint = argv[argc - 1];
	o->source = argc == 2 ? argv[0] : NULL;
	return 0;
}

/* --check-config: 0 when the file is valid, 1 otherwise. */
static int
vc_check_config(const struct vc_opts *o, const struct vc_config *cfg)
{
	struct vc_resolver rs;
	char real[PATH_MAX];
	int fd, r;

	if (o->source == NULL) {
		printf("%s: configuration OK\n",
		    cfg->path ? cfg->path : "built-in defaults");
		return 0;
	}
	fd = open(o->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1 || realpath(o->source, real) == NULL) {
		log_warn("source %s", o->source);
		if (fd != -1)
			close(fd);
		return 1;
	}
	/* Nothing is mounted: backing names under SOURCE map into it. */
	r = resolver_init(&rs, cfg, fd, real, real);
	if (r == 0) {
		r = checkconf_print(cfg, &rs, fd, o->source, stdout);
		resolver_exit(&rs);
	}
	close(fd);
	return r < 0 ? 1 : 0;
}

/* The daemon does I/O on behalf of memory reclaim: keep it alive and unthrottled. */
static void
vc_protect_self(void)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	int err = fault_hit(VC_FAULT_OOM_ADJ);

	if (err < 0)
		errno = -err;
	if (fd == -1 || err < 0 || write(fd, "-1000", 5) != 5)
		log_warn("cannot set oom_score_adj to -1000 (needs CAP_SYS_RESOURCE)");
	if (fd != -1)
		close(fd);
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == -1)
		log_warn("cannot mark the daemon PR_SET_IO_FLUSHER (needs CAP_SYS_RESOURCE)");
}

/*
 * Once set-up is done, CAP_SYS_RESOURCE only lets the guests' writes
 * ignore quotas and reserved blocks: drop it for good. Nothing later
 * needs it (no write_buf op, so libfuse never grows splice pipes; the
 * descriptor limit is already raised). Capabilities are per thread: this
 * runs before any thread is created, and they all inherit the result.
 */
static void
vc_drop_sys_resource(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0,
	};
	struct __user_cap_data_struct cap[_LINUX_CAPABILITY_U32S_3];
	unsigned i = CAP_TO_INDEX(CAP_SYS_RESOURCE);
	__u32 bit = CAP_TO_MASK(CAP_SYS_RESOURCE);

	if (syscall(SYS_capget, &hdr, cap) == -1) {
		log_warn("capget: cannot drop CAP_SYS_RESOURCE");
		return;
	}
	if ((cap[i].effective | cap[i].permitted | cap[i].inheritable) & bit) {
		cap[i].effective &= ~bit;
		cap[i].permitted &= ~bit;
		cap[i].inheritable &= ~bit;
		if (syscall(SYS_capset, &hdr, cap) == -1) {
			log_warn("capset: cannot drop CAP_SYS_RESOURCE");
			return;
		}
		log_debug("CAP_SYS_RESOURCE dropped: quotas and reserved "
		    "blocks apply to the daemon's writes");
	} else {
		log_debug("no CAP_SYS_RESOURCE to drop");
	}
	/* So that no exec regains it; needs CAP_SETPCAP (non-root lacks it). */
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0) == -1)
		log_debug("CAP_SYS_RESOURCE stays in the bounding set: %s",
		    strerror(errno));
}

/*
 * Descriptors 0-2 must be open before the daemon opens anything, or its
 * first descriptor would take the place of a missing stderr (and logs
 * would be written into it, or fuse_daemonize() would put /dev/null over
 * it).
 */
static int
vc_open_stdio(void)
{
	for (int fd = 0; fd < 3; fd++) {
		int nfd;

		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		/* The lowest free number: fd itself, since 0..fd-1 are open. */
		nfd = open("/dev/null", O_RDWR);
		if (nfd != fd) {
			if (nfd != -1)
				close(nfd);
			return -1;
		}
	}
	return 0;
}

/*
 * A detached daemon keeps no descriptor of whoever started it (a shell's
 * fd 7, make's jobserver pipe): they would stay open for its whole life.
 * Runs before the daemon opens anything of its own.
 */
static void
vc_close_inherited(void)
{
	struct dirent *de;
	DIR *d;

#ifdef SYS_close_range
	if (fault_hit(VC_FAULT_CLOSE_RANGE) == 0 &&
	    syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
#endif
	/* Before Linux 5.9, or where a seccomp filter refuses close_range. */
	d = opendir("/proc/self/fd");
	if (d == NULL) {
		log_warn("cannot close inherited descriptors: /proc/self/fd");
		return;
	}
	while ((de = readdir(d)) != NULL) {
		int fd = atoi(de->d_name);

		if (fd >= 3 && fd != dirfd(d))
			close(fd);
	}
	closedir(d);
	log_debug("closed inherited descriptors through /proc/self/fd");
}

/*
 * Every looked-up inode holds a descriptor: take the whole hard limit
 * (systemd and shells often set a soft limit of 1024).
 */
static void
vc_raise_nofile(void)
{
	struct rlimit rl;
	rlim_t old;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit RLIMIT_NOFILE");
		return;
	}
	if (rl.rlim_cur >= rl.rlim_max)
		return;
	old = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("setrlimit RLIMIT_NOFILE to %llu",
		    (unsigned long long)rl.rlim_max);
		return;
	}
	log_debug("RLIMIT_NOFILE: soft limit raised from %llu to the hard "
	    "limit %llu", (unsigned long long)old,
	    (unsigned long long)rl.rlim_max);
}

/* Build the FUSE mount options. fsname shows SOURCE in /proc/mounts. */
static int
vc_fuse_args(const struct vc_opts *o, const char *source,
    struct fuse_args *args)
{
	char opts[PATH_MAX + 1200];

	snprintf(opts, sizeof(opts), "fsname=%s,subtype=vcachefs,"
	    "default_permissions%s%s%s", source,
	    geteuid() == 0 ? ",allow_other" : "",
	    o->mo.fuse[0] ? "," : "", o->mo.fuse);
	if (fuse_opt_add_arg(args, "vcachefs") == -1 ||
	    fuse_opt_add_arg(args, "-o") == -1 ||
	    fuse_opt_add_arg(args, opts) == -1)
		return -ENOMEM;
	if (o->debug && getenv("VCACHEFS_FUSE_DEBUG") != NULL)
		return fuse_opt_add_arg(args, "-d") == -1 ? -ENOMEM : 0;
	return 0;
}

/* As a daemon, logs go to syslog or --log-file; say so if they would be lost. */
static int
vc_daemon_logging(const struct vc_opts *o)
{
	int err;

	if (o->foreground)
		return log_set_target(VC_LOG_STDERR, NULL);
	if (o->log_file != NULL) {
		err = log_set_target(VC_LOG_FILE, o->log_file);
		if (err < 0) {
			log_warnc(err, "--log-file %s", o->log_file);
			return -1;
		}
		return 0;
	}
	if (access("/dev/log", W_OK) == -1)
		log_warnx("warning: no /dev/log, so syslog messages of the daemon "
		    "will be lost; use --log-file FILE or -f");
	log_set_target(VC_LOG_SYSLOG, NULL);
	return 0;
}

/*
 * The signal thread takes these with sigwait(): blocked from the first
 * instruction of main(), so that one arriving during start-up (a SIGHUP
 * would kill) stays pending until the thread runs. Threads and children
 * inherit the mask.
 */
static void
vc_block_signals(void)
{
	sigset_t set;

	stop_signal_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static size_t
vc_mib_up(size_t bytes)
{
	return (bytes + (1u << 20) - 1) >> 20;
}

/* The FUSE workers' bounce buffers alone must fit in --buffer-memory. */
static int
vc_check_buffers(const struct vc_opts *o)
{
	size_t need = (size_t)o->threads * VC_IO_BUF_SIZE;

	if (need <= (size_t)o->buffer_mib << 20)
		return 0;
	log_warnx("--threads %u needs %.1f MiB of I/O bounce buffers (%u KiB "
	    "a thread), more than --buffer-memory %u: raise it to %zu or "
	    "lower --threads", o->threads, need / VC_MIB, VC_IO_BUF_SIZE >> 10,
	    o->buffer_mib, vc_mib_up(need));
	return -1;
}

/*
 * Fit the FUSE ring in what --buffer-memory leaves after the bounce
 * buffers of the FUSE workers and of the pool workers (--threads each).
 * Returns 0, or -errno with the reason in why.
 */
static int
vc_plan_ring(const struct vc_opts *o, struct vc_fuse_uring_plan *p,
    char *why, size_t len)
{
	size_t cap = (size_t)o->buffer_mib << 20;
	size_t others = 2 * (size_t)o->threads * VC_IO_BUF_SIZE;
	int r;

	r = fuse_uring_plan(cap > others ? cap - others : 0,
	    VC_FUSE_URING_DEPTH, p);
	if (r == -ENOBUFS)
		snprintf(why, len, "the ring needs --buffer-memory %zu or more "
		    "(%u CPU queues, --threads %u), not %u",
		    vc_mib_up(others + p->min_bytes), p->queues, o->threads,
		    o->buffer_mib);
	else if (r < 0)
		snprintf(why, len, "cannot count the CPUs (%s)", strerror(-r));
	return r;
}

/* Say once what the buffers may take; p is NULL without the ring. */
static void
vc_log_memory(const struct vc_opts *o, const struct vc_fuse_uring_plan *p)
{
	unsigned nbuf = o->threads + (p != NULL ? o->threads + p->queues : 0);
	size_t bounce = (size_t)nbuf * VC_IO_BUF_SIZE, ring = 0;

	if (p == NULL) {
		log_info("buffer memory: bounce buffers %u x %u KiB = %.1f MiB "
		    "(%u FUSE workers); %.1f of %u MiB (--buffer-memory)", nbuf,
		    VC_IO_BUF_SIZE >> 10, bounce / VC_MIB, o->threads,
		    bounce / VC_MIB, o->buffer_mib);
		return;
	}
	ring = (size_t)p->queues * p->depth * p->entry_size;
	log_info("buffer memory: FUSE ring %u queues x %u entries x %zu KiB = "
	    "%.1f MiB, bounce buffers %u x %u KiB = %.1f MiB (%u FUSE workers, "
	    "%u pool workers, %u queue threads); %.1f of %u MiB "
	    "(--buffer-memory)", p->queues, p->depth, p->entry_size >> 10,
	    ring / VC_MIB, nbuf, VC_IO_BUF_SIZE >> 10, bounce / VC_MIB,
	    o->threads, o->threads, p->queues, (ring + bounce) / VC_MIB,
	    o->buffer_mib);
	if (p->depth < VC_FUSE_URING_DEPTH_LOW)
		log_warnx("FUSE ring: only %u entries a queue fit in "
		    "--buffer-memory %u; more would serve deep client queues "
		    "better", p->depth, o->buffer_mib);
}

/* Undo the FUSE ring's start when serving never begins. */
static void
vc_ring_abort(struct vc_fs *fs)
{
	if (fs->fuse_uring) {
		fuse_uring_stop();
		workpool_stop();
		fuse_uring_free();
	}
}

/*
 * At stop, images in writeback and unsafe (open ones after a forced stop,
 * and closed ones the kernel had not written back yet) are synced one by
 * one, so the log can say how much a host crash would have lost; the
 * syncfs that follows covers everything else.
 */
static void
vc_make_durable(struct vc_fs *fs)
{
	uint64_t bytes;
	bool known;
	int n;

	n = registry_make_durable(&fs->registry, &bytes, &known);
	if (n < 0)
		log_warnc(n, "stop: making writeback/unsafe images durable");
	else if (n > 0 && known)
		log_info("stop: made %llu bytes durable (%d image(s) in "
		    "writeback or unsafe)", (unsigned long long)bytes, n);
	else if (n > 0)
		log_info("stop: made %d image(s) in writeback or unsafe durable "
		    "(at least %llu dirty bytes; cachestat(2) could not tell "
		    "them all)", n, (unsigned long long)bytes);
}

/* The parent of a detached taking-over daemon waits on this for its outcome. */
static int vc_outcome_fd = -1;

/*
 * --takeover as a daemon: detach before the connection is installed, so
 * that no set-up that can fail is left for after the old daemon has
 * left; the parent exits only with the outcome (vc_detach_done), 1 when
 * the child ends without one.
 */
static int
vc_detach_pending(void)
{
	int p[2], fd, r;
	char c = 1;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) == -1)
		return -errno;
	pid = fork();
	if (pid == -1) {
		r = -errno;
		close(p[0]);
		close(p[1]);
		return r;
	}
	if (pid > 0) {
		close(p[1]);
		while (read(p[0], &c, 1) == -1 && errno == EINTR)
			;
		_exit(c == 0 ? 0 : 1);
	}
	close(p[0]);
	if (setsid() == -1)
		log_warn("setsid");
	if (chdir("/") == -1)
		log_warn("chdir /");
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd != -1) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
	vc_outcome_fd = p[1];
	log_detached();
	return 0;
}

static void
vc_detach_done(bool ok)
{
	char c = ok ? 0 : 1;

	if (vc_outcome_fd < 0)
		return;
	(void)!write(vc_outcome_fd, &c, 1);
	close(vc_outcome_fd);
	vc_outcome_fd = -1;
}

/* The ring for aio=native/io_uring; in the daemon process (it has a thread). */
static void
vc_engine_start(struct vc_fs *fs)
{
	int r = uring_init(&fs->uring);

	if (r == 0) {
		fs->uring_ok = true;
		fs->registry.uring = &fs->uring;
	} else {
		log_warnc(r, "io_uring unavailable; images with aio=native or "
		    "aio=io_uring use aio=threads");
	}
}

static void
vc_engine_stop(struct vc_fs *fs)
{
	if (fs->uring_ok) {
		/* Requests still in the ring finish (their replies may fail). */
		uring_exit(&fs->uring);
		fs->uring_ok = false;
		fs->registry.uring = NULL;
	}
}

/*
 * A taken-over daemon (o->takeover) owns the only /dev/fuse descriptor
 * once the old one left: returning would close it and every guest would
 * lose its disk. So its set-up failures here are logged and it serves on
 * without what failed (daemonizing and the engine ran before the ack).
 */
static int
vc_serve(struct vc_fs *fs, const struct vc_opts *o,
    const struct vc_fuse_uring_plan *plan)
{
	char status[2 * PATH_MAX + 32];
	struct fuse_loop_config *lc;
	struct vc_mountent ent;
	unsigned conn = 0;
	int r, r2;

	if (mounts_find(fs->mountpoint, &ent) > 0)
		conn = ent.minor;
	if (!o->foreground && !o->takeover) {
		if (fuse_daemonize(0) == -1) {
			log_warnx("cannot detach from the terminal");
			return -1;
		}
		log_detached();
	}
	/* After fork: the ring and its thread belong to the daemon process. */
	if (!o->takeover)
		vc_engine_start(fs);
	if (fs->fuse_uring) {
		/* The queue threads never wait for the disk: the pool does. */
		/*
		 * At least two: the pool keeps a worker for I/O alone, so
		 * whole requests waiting on a quiesced image cannot hold
		 * every worker while the I/O the quiesce waits for is queued.
		 */
		r = workpool_start(o->threads > 1 ? o->threads : 2);
		if (r == 0) {
			r = fuse_uring_start(plan, conn);
			if (r < 0)
				workpool_stop();
		}
		if (r < 0) {
			log_warnc(r, "FUSE over io_uring");
			if (o->fuse_uring == VC_FUSE_URING_ON)
				return -1;
			fs->fuse_uring = false;
			snprintf(fs->fuse_uring_why, sizeof(fs->fuse_uring_why),
			    "the ring could not be set up");
		}
	}
	r = stop_start(fs, conn);
	if (r < 0 && o->takeover) {
		log_warnc(r, "signal thread: serving on without one (SIGTERM and "
		    "SIGHUP wait until the next takeover)");
	} else if (r < 0) {
		log_warnc(r, "signal thread");
		vc_ring_abort(fs);
		return -1;
	}
	r = control_start();
	if (r < 0 && o->takeover) {
		log_warnc(r, "control thread: serving on without the control "
		    "socket");
		control_stop();
	} else if (r < 0) {
		log_warnc(r, "control thread");
		stop_finish();
		vc_ring_abort(fs);
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &fs->started);
	fs->started_wall = time(NULL);
	log_info("serving %s at %s (pid %d)", fs->source, fs->mountpoint,
	    (int)getpid());
	/* Said once the log goes where the daemon's messages go. */
	if (!fs->fuse_uring && o->fuse_uring == VC_FUSE_URING_AUTO)
		log_info("FUSE requests go through /dev/fuse: %s",
		    fs->fuse_uring_why);
	vc_log_memory(o, fs->fuse_uring ? plan : NULL);
	lc = fuse_loop_cfg_create();
	if (lc == NULL && o->takeover) {
		log_warnx("out of memory for the worker settings: serving with "
		    "one worker");
	} else if (lc == NULL) {
		control_stop();
		stop_finish();
		vc_ring_abort(fs);
		return -1;
	}
	if (lc != NULL) {
		fuse_loop_cfg_set_max_threads(lc, o->threads);
		fuse_loop_cfg_set_idle_threads(lc, o->threads);
		fuse_loop_cfg_set_clone_fd(lc, 0);
	}
	snprintf(status, sizeof(status), "serving %s at %s", fs->source,
	    fs->mountpoint);
	r = notify_ready_start(fs->mountpoint, conn, status);
	if (r < 0)
		log_warnc(r, "readiness thread: no READY=1 for the service "
		    "manager");
	fault_hit(VC_FAULT_SERVE);	/* a slow start, for the readiness test */
	r = lc != NULL ? fuse_session_loop_mt(fs->se, lc) :
	    fuse_session_loop(fs->se);
	notify_stopping("stopping: making written data durable");
	if (lc != NULL)
		fuse_loop_cfg_destroy(lc);
	control_stop();
	stop_finish();
	/* Before the engine: ring requests may wait for its completions. */
	if (fs->fuse_uring) {
		fuse_uring_stop();
		workpool_stop();
	}
	vc_engine_stop(fs);
	if (fs->fuse_uring)
		fuse_uring_free();	/* no reply can come any more */
	/* In-flight requests are done: make what was written durable. */
	vc_make_durable(fs);
	r2 = itable_syncfs(&fs->itable);
	if (r2 < 0)
		log_warnc(r2, "syncfs %s", fs->source);
	if (r < 0 && !stop_forced()) {
		log_warnc(r, "session loop");
		return -1;
	}
	if (fs->fuse_uring && fuse_uring_aborted()) {
		log_warnx("stopped: FUSE over io_uring set-up failed and the "
		    "connection was aborted");
		return -1;
	}
	log_info("stopped%s", stop_forced() ? " (forced)" : "");
	return 0;
}

int
main(int argc, char **argv)
{
	char source[PATH_MAX], mnt[PATH_MAX];
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct vc_fuse_uring_plan plan = { 0 };
	struct vc_takeover tk = { .sock = -1, .devfd = -1, .rootfd = -1 };
	struct vc_fs fs;
	struct vc_opts o;
	char why[512];
	int rootfd, r, status = 1;

	vc_block_signals();
	if (vc_open_stdio() < 0)
		return 1;
	log_init("vcachefs", false);
	r = vc_parse_args(argc, argv, &o);
	if (r != 0)
		return r > 0 ? 0 : 1;
	log_init("vcachefs", o.debug);
	if (o.mo.dropped_suid_dev)
		log_debug("-o suid/dev ignored: the mount is nosuid,nodev");
	log_route_fuse();
#ifdef VC_FAULT_INJECT
	if (fault_init(getenv("VCACHEFS_FAULT")) < 0)
		return 1;
#else
	if (getenv("VCACHEFS_FAULT") != NULL)
		log_warnx("VCACHEFS_FAULT ignored: this build has no fault "
		    "injection (the tests' ASan build has)");
#endif
	/* Not in the foreground: a service manager may pass descriptors. */
	if (!o.foreground && !o.check_config)
		vc_close_inherited();
	/* From here every message also reaches the daemon's log (log.h). */
	if (!o.check_config && vc_daemon_logging(&o) < 0)
		return 1;
	vc_raise_nofile();

	memset(&fs, 0, sizeof(fs));
	r = cfg_load(o.config, o.config_named, &fs.cfg);
	/* cfg_load() has said what is wrong, one FILE:LINE line an error. */
	if (r < 0)
		return 1;
	if (o.check_config) {
		status = vc_check_config(&o, fs.cfg);
		cfg_free(fs.cfg);
		return status;
	}

	if (vc_check_buffers(&o) < 0)
		goto out_cfg;
	/* Restarted by systemd with a stored connection: take it over. */
	r = fdstore_take(o.mountpoint, mnt, sizeof(mnt), source, sizeof(source),
	    &tk);
	if (r < 0)
		goto out_cfg;
	if (r > 0)
		o.takeover = true;
	if (o.takeover) {
		/* The mount stays: no preflight, the old daemon's source. */
		if (!tk.from_store && takeover_begin(o.mountpoint, o.control,
		    mnt, sizeof(mnt), source, sizeof(source), &tk) < 0)
			goto out_cfg;
		rootfd = tk.rootfd;
		tk.rootfd = -1;
		goto have_root;
	}
	if (preflight_mountpoint(o.mountpoint, o.force, mnt) < 0)
		goto out_cfg;
	if (o.source != NULL) {
		if (preflight_source(o.source, source) < 0)
			goto out_cfg;
	} else {
		snprintf(source, sizeof(source), "%s", mnt);
		if (preflight_source(source, source) < 0)
			goto out_cfg;
	}
	if (preflight_holders(mnt, o.force) < 0)
		goto out_cfg;
	if (preflight_fuse(strstr(o.mo.fuse, "allow_other") != NULL) < 0)
		goto out_cfg;
	if (o.fuse_uring != VC_FUSE_URING_OFF) {
		fs.fuse_uring = fuse_uring_available(fs.fuse_uring_why,
		    sizeof(fs.fuse_uring_why)) == 1;
		if (fs.fuse_uring && vc_plan_ring(&o, &plan,
		    fs.fuse_uring_why, sizeof(fs.fuse_uring_why)) < 0)
			fs.fuse_uring = false;
		if (!fs.fuse_uring && o.fuse_uring == VC_FUSE_URING_ON) {
			log_warnx("--fuse-uring on: %s", fs.fuse_uring_why);
			goto out_cfg;
		}
	}

	/* Open the source before mounting: in place, the mount will cover it. */
	rootfd = open(source, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd == -1) {
		log_warn("source %s", source);
		goto out_cfg;
	}
have_root:
	r = itable_init(&fs.itable, rootfd);
	if (r < 0) {
		log_warnc(r, "source %s", source);
		close(rootfd);
		goto out_cfg;
	}
	slots_init(&fs.dirs);
	registry_init(&fs.registry, &fs.itable, fs.cfg);
	r = resolver_init(&fs.resolver, fs.cfg, fs.itable.root.fd, source, mnt);
	if (r < 0) {
		log_warnc(r, "resolver");
		goto out_fs;
	}
	fs.resolver_ok = true;
	registry_set_resolver(&fs.registry, &fs.resolver);
	fs.source = source;
	fs.mountpoint = mnt;
	fs.timeout = VC_TIMEOUT_DEFAULT;
	/* SIGHUP (and vcachefsctl reload) re-read the file from now on. */
	reload_init(&fs.reload, o.config, o.config_named, &fs.cfg,
	    &fs.registry, &fs.resolver, fs.itable.root.fd, source);
	checkconf_unmatched(fs.cfg, fs.itable.root.fd, source, NULL, NULL);
	/* Modes from the kernel already carry the caller's umask. */
	umask(0);

	if (vc_fuse_args(&o, source, &args) < 0)
		goto out_fs;
	fs.se = fuse_session_new(&args, &vc_ops, sizeof(vc_ops), &fs);
	if (fs.se == NULL) {
		log_warnx("cannot create the FUSE session (bad -o option?)");
		goto out_fs;
	}
	if (o.takeover) {
		/*
		 * What can fail is done while the old daemon still holds the
		 * connection: detaching, and the engine before the images
		 * are reopened (else they fall back to aio=threads).
		 */
		r = o.foreground ? 0 : vc_detach_pending();
		if (r < 0) {
			snprintf(why, sizeof(why), "cannot detach: %s",
			    strerror(-r));
		} else {
			vc_engine_start(&fs);
			r = takeover_install(&fs, &tk, why, sizeof(why));
		}
		if (r < 0) {
			log_warnx("takeover: %s; the old daemon goes on serving", why);
			takeover_refuse(&tk, why);
			goto out_session;
		}
		if (takeover_commit(&tk) < 0)
			goto out_session;
		takeover_free(&tk);
		log_info("takeover: %s taken over", mnt);
		vc_detach_done(true);
	} else if (fuse_session_mount(fs.se, mnt) != 0) {
		log_warnx("cannot mount %s (see the fuse: message above)", mnt);
		goto out_session;
	}
	if (fs.fuse_uring) {
		r = fuse_uring_attach(fs.se);
		if (r < 0) {
			log_warnc(r, "FUSE over io_uring");
			fs.fuse_uring = false;
			if (o.fuse_uring == VC_FUSE_URING_ON)
				goto out_unmount;
		}
	}
	/* Through /dev/fuse: pausable, so a new daemon can take over. */
	if (!fs.fuse_uring && !o.takeover &&
	    (r = devio_attach(fs.se, fuse_session_fd(fs.se))) < 0)
		log_warnc(r, "/dev/fuse I/O for takeovers (vcachefs --takeover "
		    "will be refused)");
	fs.config_path = fs.cfg->path;
	r = control_open(&fs, o.control);
	if (r < 0 && o.takeover) {
		/* The connection is ours alone now: never give it up. */
		log_warnc(r, "takeover: no control socket; serving %s on "
		    "without one (vcachefsctl and the next takeover cannot "
		    "reach this daemon)", mnt);
	} else if (r < 0) {
		goto out_unmount;
	}
	vc_protect_self();
	vc_drop_sys_resource();
	if (vc_serve(&fs, &o, &plan) == 0)
		status = 0;
	control_stop();	/* closes and unlinks the socket if serving never began */
out_unmount:
	if (!takeover_given())	/* else the mount is the new daemon's */
		fuse_session_unmount(fs.se);
out_session:
	vc_engine_stop(&fs);	/* a takeover that failed started it early */
	fuse_session_destroy(fs.se);
out_fs:
	fuse_opt_free_args(&args);
	registry_exit(&fs.registry);
	if (fs.resolver_ok)
		resolver_exit(&fs.resolver);
	reload_exit(&fs.reload);
	itable_exit(&fs.itable);
	ops_dirs_exit(&fs);
out_cfg:
	takeover_free(&tk);
	cfg_free(fs.cfg);
	return status;
}
