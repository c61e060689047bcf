/*
 * devio.h - libfuse's reads and writes of /dev/fuse, made pausable for a
 * takeover (takeover.c).
 *
 * libfuse's workers would sit in read(2) on /dev/fuse, and a request read
 * by a daemon that is handing its connection over would be lost. Here a
 * worker waits in epoll (devfd exclusive, so one request wakes one
 * worker) and reads without blocking, so devio_pause() can stop every
 * read, and wait until each request already read has been answered. What
 * the kernel has not handed out yet stays queued for the next daemon.
 * Also kept: the kernel's INIT request and the reply it got, which the
 * next daemon must match (the kernel never negotiates twice).
 *
 * Only for requests through /dev/fuse: with FUSE over io_uring the
 * kernel queues requests on the ring, and fuse_uring.c has its own I/O.
 */
#ifndef VC_DEVIO_H
#define VC_DEVIO_H

#include <stdbool.h>
#include <stddef.h>

#include "fs.h"

/* Take over se's I/O on fd (its /dev/fuse). Returns 0 or -errno. */
int devio_attach(struct fuse_session *se, int fd);
/* Whether devio serves the session (takeover needs it). */
bool devio_attached(void);

/*
 * Stop reading requests and wait (at most ms) until every request read
 * has been answered and no worker is inside a request. Returns 0, or
 * -ETIMEDOUT (still paused: devio_resume() or devio_exit()).
 */
int devio_pause(unsigned ms);
/* Read requests again. */
void devio_resume(void);
/* The connection is someone else's now: end the session loop without
 * another read. */
void devio_exit(struct fuse_session *se);

/* The kernel's INIT request and the reply sent: 0, or -ENOENT if unseen. */
int devio_init_bytes(const void **in, size_t *inlen, const void **out,
    size_t *outlen);

/*
 * For the taking daemon: run libfuse's INIT handling on the kernel's
 * original request (in, inlen), without sending the reply, and compare
 * the reply with the one the kernel got (out, outlen). Returns 0, or
 * -EPROTO with the difference in why.
 */
int devio_replay_init(struct fuse_session *se, const void *in, size_t inlen,
    const void *out, size_t outlen, char *why, size_t whylen);

#endif
