/*
 * fuse_uring.h - FUSE over io_uring: the kernel hands requests to the
 * daemon through ring entries instead of read(2) on /dev/fuse.
 *
 * Linux 6.14 and later can deliver FUSE requests through io_uring
 * (IORING_OP_URING_CMD on /dev/fuse), one queue per CPU: a request is
 * queued on the CPU its caller runs on, and its reply goes back with the
 * command that fetches the next request, so a busy queue thread serves
 * many requests per system call and wakes no other CPU. libfuse 3.14 does
 * not know this transport, so the entries here rebuild each request as
 * /dev/fuse would carry it and let libfuse dispatch it to the same
 * operations; the replies libfuse sends are caught on their way to
 * /dev/fuse (fuse_session_custom_io) and written into the entry instead.
 * Requests the kernel still sends through /dev/fuse (INIT, FORGET,
 * INTERRUPT, and everything before the ring is ready) take the usual
 * session loop. On kernels without it, or with the fuse module's
 * enable_uring parameter off, the daemon keeps /dev/fuse alone.
 */
#ifndef VC_FUSE_URING_H
#define VC_FUSE_URING_H

#include <stdbool.h>
#include <stddef.h>

#include "fs.h"

enum vc_fuse_uring_mode {
	VC_FUSE_URING_AUTO,	/* use it when the kernel offers it */
	VC_FUSE_URING_ON,	/* required: fail to start without it */
	VC_FUSE_URING_OFF,
};

/* Entries per queue thread, at most. One thread per CPU queue, never
 * waiting for the disk, measured best (make bench, 2 CPUs): more threads
 * with fewer entries each spread the requests of one CPU over sleeping
 * threads. Fewer when --buffer-memory leaves no room for them. */
#define VC_FUSE_URING_DEPTH	32
/* Below this many entries a queue, log that --buffer-memory limits them. */
#define VC_FUSE_URING_DEPTH_LOW	8
/* After INIT, how long every queue has to register before the daemon
 * gives up on the ring and sends the kernel back to /dev/fuse. */
#define VC_FUSE_URING_SETUP_MS	5000

#define VC_FUSE_URING_PARAM "/sys/module/fuse/parameters/enable_uring"

/* Parse "auto", "on" or "off". Returns 0 or -EINVAL. */
int fuse_uring_parse_mode(const char *s, enum vc_fuse_uring_mode *mode);

/*
 * Whether the running kernel offers the transport: 1 yes, 0 no, with a
 * reason in why (for the log and the error of mode "on").
 */
int fuse_uring_available(char *why, size_t whylen);

/*
 * Catch the session's traffic to /dev/fuse (after fuse_session_mount):
 * needed before fuse_uring_start. Returns 0 or -errno.
 */
int fuse_uring_attach(struct fuse_session *se);

/* What the ring will reserve: decided before mounting. */
struct vc_fuse_uring_plan {
	unsigned queues;	/* one per possible CPU, each with a thread */
	unsigned depth;		/* entries per queue */
	size_t entry_size;	/* bytes of one entry (header room + payload) */
	size_t min_bytes;	/* one entry and one bounce buffer a queue */
	size_t bytes;		/* entries plus the queue threads' bounce buffers */
};

/*
 * Fit the ring into budget bytes (what --buffer-memory leaves after the
 * other threads' bounce buffers): up to depth_max entries a queue, and a
 * bounce buffer (VC_IO_BUF_SIZE) for each queue thread. Returns 0,
 * -ENOBUFS when not even one entry a queue fits (p->min_bytes says what
 * would), or -ENODEV when the number of CPUs is unknown.
 */
int fuse_uring_plan(size_t budget, unsigned depth_max,
    struct vc_fuse_uring_plan *p);

/*
 * Start the queue threads as planned. They register with the kernel once
 * it has answered INIT; the thread that sent the INIT reply then waits
 * (VC_FUSE_URING_SETUP_MS at most) until every queue has registered, and
 * otherwise sends the kernel back to /dev/fuse, or aborts the connection
 * (conn: its number in /sys/fs/fuse/connections, 0 if unknown) when even
 * that fails. Returns 0 or -errno.
 */
int fuse_uring_start(const struct vc_fuse_uring_plan *p, unsigned conn);

/* True once set-up failed so that the connection had to be aborted. */
bool fuse_uring_aborted(void);

/*
 * After the session loop ended: wait until every request a queue thread
 * took has been answered, then stop the queue threads.
 */
void fuse_uring_stop(void);
/* Free the entries, once nothing can send a reply any more (after the
 * pool and the io_uring engine stopped). */
void fuse_uring_free(void);

#endif
