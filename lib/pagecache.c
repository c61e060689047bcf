/*
 * pagecache.c - resident and dirty page cache of a file (pagecache.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fault.h"
#include "pagecache.h"

#ifndef __NR_cachestat
#define __NR_cachestat 451	/* the same number on every architecture */
#endif

/* The kernel's struct cachestat_range and struct cachestat (uapi mman.h). */
struct pc_cachestat_range {
	uint64_t off, len;	/* len 0: to the end of the file */
};

struct pc_cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted,
	    nr_recently_evicted;
};

/* 0: not probed, 1: cachestat works, -1: no cachestat (ENOSYS). */
static int pc_have_cachestat;
/* What the last call used: false cachestat, true mincore. */
static bool pc_used_mincore;

static int
pc_cachestat(int fd, uint64_t *resident, uint64_t *dirty)
{
	struct pc_cachestat_range range = { 0, 0 };
	struct pc_cachestat cs;
	long page = sysconf(_SC_PAGESIZE);

	memset(&cs, 0, sizeof(cs));
	if (syscall(__NR_cachestat, fd, &range, &cs, 0) == -1)
		return -errno;
	*resident = cs.nr_cache * (uint64_t)page;
	/* Pages under writeback are not on disk yet either. */
	*dirty = (cs.nr_dirty + cs.nr_writeback) * (uint64_t)page;
	return 0;
}

/* A chunk at a time, so a large image needs neither a large mapping nor vector. */
#define PC_CHUNK	(256u << 20)

static int
pc_mincore(int fd, uint64_t *resident)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned char *vec;
	struct stat st;
	uint64_t n = 0;
	off_t off;
	int err = 0;

	if (fstat(fd, &st) == -1)
		return -errno;
	*resident = 0;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	vec = malloc(PC_CHUNK / (size_t)page);
	if (vec == NULL)
		return -ENOMEM;
	for (off = 0; off < st.st_size; off += PC_CHUNK) {
		size_t len = st.st_size - off < (off_t)PC_CHUNK ?
		    (size_t)(st.st_size - off) : PC_CHUNK;
		size_t pages = (len + (size_t)page - 1) / (size_t)page;
		void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, off);

		if (m == MAP_FAILED) {
			err = -errno;
			break;
		}
		if (mincore(m, len, vec) == -1)
			err = -errno;
		else
			for (size_t i = 0; i < pages; i++)
				n += vec[i] & 1;
		munmap(m, len);
		if (err < 0)
			break;
	}
	free(vec);
	*resident = n * (uint64_t)page;
	return err;
}

static bool
pc_use_cachestat(void)
{
	int have = __atomic_load_n(&pc_have_cachestat, __ATOMIC_RELAXED);

#ifdef VC_FAULT_INJECT
	/* Tests make the fallback run on a kernel that has cachestat. */
	if (fault_hit(VC_FAULT_NO_CACHESTAT) != 0)
		return false;
#endif
	return have >= 0;
}

int
pagecache_usage(int fd, uint64_t *resident, uint64_t *dirty, bool *dirty_known)
{
	int r;

	*resident = 0;
	*dirty = 0;
	*dirty_known = false;
	if (pc_use_cachestat()) {
		r = pc_cachestat(fd, resident, dirty);
		if (r == 0) {
			__atomic_store_n(&pc_have_cachestat, 1, __ATOMIC_RELAXED);
			__atomic_store_n(&pc_used_mincore, false, __ATOMIC_RELAXED);
			*dirty_known = true;
			return 0;
		}
		/* ENOSYS: an older kernel; EPERM: a seccomp filter says no. */
		if (r != -ENOSYS && r != -EPERM)
			return r;
		__atomic_store_n(&pc_have_cachestat, -1, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&pc_used_mincore, true, __ATOMIC_RELAXED);
	return pc_mincore(fd, resident);
}

const char *
pagecache_method(void)
{
	if (__atomic_load_n(&pc_have_cachestat, __ATOMIC_RELAXED) < 0 ||
	    __atomic_load_n(&pc_used_mincore, __ATOMIC_RELAXED))
		return "mincore";
	return "cachestat";
}

int
pagecache_drop(int fd)
{
	int r = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);

	return r == 0 ? 0 : -r;
}
