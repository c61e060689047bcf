/*
 * bufpool.h - aligned I/O buffers for asynchronous requests, kept for
 * reuse so the data path never mallocs. Two size classes: small requests
 * do not pin a megabyte each.
 */
#ifndef VC_BUFPOOL_H
#define VC_BUFPOOL_H

#include <pthread.h>
#include <stddef.h>

#define VC_BUFPOOL_SMALL	(128u << 10)
#define VC_BUFPOOL_CLASSES	2

struct vc_bufpool {
	pthread_mutex_t lock;
	size_t size[VC_BUFPOOL_CLASSES];	/* bytes per buffer of a class */
	void **free[VC_BUFPOOL_CLASSES];	/* protected by lock */
	unsigned nfree[VC_BUFPOOL_CLASSES];	/* protected by lock */
	unsigned nmade[VC_BUFPOOL_CLASSES];	/* protected by lock */
	unsigned max;				/* per class */
	size_t align;
};

/* large: bytes of the biggest buffer; max: buffers per class. 0 or -errno. */
int bufpool_init(struct vc_bufpool *p, size_t large, unsigned max, size_t align);
void bufpool_exit(struct vc_bufpool *p);

/* A buffer of at least len bytes, or NULL when the pool is exhausted
 * (the caller then takes its synchronous path). */
void *bufpool_get(struct vc_bufpool *p, size_t len);
void bufpool_put(struct vc_bufpool *p, void *buf, size_t len);

#endif
