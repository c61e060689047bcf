/*
 * io_priv.h - helpers shared by the synchronous (io.c) and io_uring
 * (uring.c) data paths. Not for use outside lib/.
 */
#ifndef VC_IO_PRIV_H
#define VC_IO_PRIV_H

#include <sys/types.h>

#include "image.h"

#define STAT_ADD(img, field, n) \
	__atomic_add_fetch(&(img)->stats.field, (n), __ATOMIC_RELAXED)

static inline off_t
io_align_down(off_t v, unsigned a)
{
	return v & ~((off_t)a - 1);
}

static inline off_t
io_align_up(off_t v, unsigned a)
{
	return (v + a - 1) & ~((off_t)a - 1);
}

/* Count a write in flight and keep the highest count seen. */
void io_inflight_enter(struct vc_image *img);
void io_inflight_leave(struct vc_image *img);

/* Count a finished request in img->stats. */
void io_account(struct vc_image *img, int op, ssize_t res);

/*
 * The result of a backing sync that covers guest data (a guest flush, or
 * the fdatasync that makes a durable mode's size change durable): a
 * failure r < 0 is latched in img->wb_err if it is the first. Returns
 * the latched error if there is one, else r.
 */
int io_wb_result(struct vc_image *img, int r);

enum { VC_OP_READ, VC_OP_WRITE, VC_OP_FSYNC };

#endif
