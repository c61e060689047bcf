/*
 * pagecache.h - how much of a file the host page cache holds.
 *
 * cachestat(2) (Linux 6.5+) gives resident and dirty pages at once; on
 * older kernels mincore(2) over a read-only mapping gives resident pages
 * only, and dirty is unknown.
 */
#ifndef VC_PAGECACHE_H
#define VC_PAGECACHE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Resident and dirty bytes of the file of fd (any access mode; O_DIRECT
 * descriptors too). *dirty_known is false when only mincore could be
 * used (then *dirty is 0). Returns 0 or -errno.
 */
int pagecache_usage(int fd, uint64_t *resident, uint64_t *dirty,
    bool *dirty_known);

/* Which method pagecache_usage used last: "cachestat" or "mincore". */
const char *pagecache_method(void);

/* Evict the clean pages of fd's file (POSIX_FADV_DONTNEED). 0 or -errno. */
int pagecache_drop(int fd);

#endif
