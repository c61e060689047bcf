/*
 * bufpool.c - reusable aligned buffers (see bufpool.h).
 */
#include <errno.h>
#include <stdlib.h>

#include "bufpool.h"

int
bufpool_init(struct vc_bufpool *p, size_t large, unsigned max, size_t align)
{
	pthread_mutex_init(&p->lock, NULL);
	p->size[0] = VC_BUFPOOL_SMALL;
	p->size[1] = large;
	p->max = max;
	p->align = align;
	for (int c = 0; c < VC_BUFPOOL_CLASSES; c++) {
		p->nfree[c] = 0;
		p->nmade[c] = 0;
		p->free[c] = calloc(max, sizeof(void *));
		if (p->free[c] == NULL) {
			bufpool_exit(p);
			return -ENOMEM;
		}
	}
	return 0;
}

void
bufpool_exit(struct vc_bufpool *p)
{
	for (int c = 0; c < VC_BUFPOOL_CLASSES; c++) {
		if (p->free[c] == NULL)
			continue;
		for (unsigned i = 0; i < p->nfree[c]; i++)
			free(p->free[c][i]);
		free(p->free[c]);
		p->free[c] = NULL;
	}
	pthread_mutex_destroy(&p->lock);
}

static int
bufpool_class(const struct vc_bufpool *p, size_t len)
{
	return len <= p->size[0] ? 0 : 1;
}

void *
bufpool_get(struct vc_bufpool *p, size_t len)
{
	int c = bufpool_class(p, len);
	void *buf = NULL;

	if (len > p->size[1])
		return NULL;
	pthread_mutex_lock(&p->lock);
	if (p->nfree[c] > 0) {
		buf = p->free[c][--p->nfree[c]];
	} else if (p->nmade[c] < p->max) {
		if (posix_memalign(&buf, p->align, p->size[c]) != 0)
			buf = NULL;
		else
			p->nmade[c]++;
	}
	pthread_mutex_unlock(&p->lock);
	return buf;
}

void
bufpool_put(struct vc_bufpool *p, void *buf, size_t len)
{
	int c = bufpool_class(p, len);

	pthread_mutex_lock(&p->lock);
	/* Every buffer handed out fits in the free array: max is the bound. */
	p->free[c][p->nfree[c]++] = buf;
	pthread_mutex_unlock(&p->lock);
}
