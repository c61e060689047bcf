/*
 * fault.h - test-only fault injection.
 *
 * Built in only with -DVC_FAULT_INJECT (the ASan build the tests run);
 * in the release build fault_hit() is a constant 0 and costs nothing.
 * The daemon reads the spec from the environment variable VCACHEFS_FAULT
 * at start: a comma-separated list of POINT:WHICH:ACTION, where
 *   POINT  is a name from the table in fault.c (fsync, read, write, ...);
 *   WHICH  is N (only the Nth call, counting from 1), N+ (the Nth and all
 *          later ones) or * (every call);
 *   ACTION is an errno name (EIO, ENOSPC, EDQUOT, EINTR, EAGAIN, EBUSY,
 *          EINVAL, ENOMEM, EACCES, EPERM, EADDRINUSE), or delay=MS (wait MS milliseconds, then go on
 *          without an error).
 * Example: VCACHEFS_FAULT=fsync:2:EIO,fsync:*:delay=100
 */
#ifndef VC_FAULT_H
#define VC_FAULT_H

enum vc_fault_point {
	VC_FAULT_FSYNC,		/* a backing fdatasync/fsync of a guest flush */
	VC_FAULT_READ,		/* a backing read */
	VC_FAULT_WRITE,		/* a backing write */
	VC_FAULT_FALLOCATE,	/* a backing fallocate */
	VC_FAULT_URING_SUBMIT,	/* io_uring_submit of the engine's batch */
	VC_FAULT_RING_SETUP,	/* a FUSE ring queue thread's ring set-up */
	VC_FAULT_RING_THREAD,	/* a FUSE ring queue thread, before REGISTER */
	VC_FAULT_RING_REGISTER,	/* the kernel's answer to one REGISTER */
	VC_FAULT_OPEN,		/* opening an image's backing descriptor (a live
				 * switch, or --takeover reopening an open image) */
	VC_FAULT_RING_FALLBACK,	/* the REGISTER that sends the kernel back to /dev/fuse */
	VC_FAULT_CLOSE_RANGE,	/* close_range(2) of inherited descriptors at start */
	VC_FAULT_NO_CACHESTAT,	/* cachestat(2): any action makes pagecache.c use mincore */
	VC_FAULT_SERVE,		/* just before the session loop starts (delay: a slow start) */
	VC_FAULT_OOM_ADJ,	/* the start-up write of oom_score_adj */
	VC_FAULT_TAKEOVER_INIT,	/* --takeover: any error action makes the replayed INIT
				 * reply differ (max_write), as a changed build would */
	VC_FAULT_CONTROL_OPEN,	/* binding the control socket at start */
	VC_FAULT_NPOINTS
};

#ifdef VC_FAULT_INJECT
/* Parse spec (may be NULL: no faults). Returns 0, or -EINVAL after
 * logging what is wrong. */
int fault_init(const char *spec);
/*
 * Count one call at point p. Returns 0 to go on, or -errno to fail the
 * call with (a delay action sleeps first and returns 0).
 */
int fault_hit(enum vc_fault_point p);
#else
static inline int fault_init(const char *spec) { (void)spec; return 0; }
static inline int fault_hit(enum vc_fault_point p) { (void)p; return 0; }
#endif

#endif
