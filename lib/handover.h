/*
 * handover.h - the state a daemon hands to the one taking its FUSE
 * connection over (vcachefs/takeover.c), as bytes and back.
 *
 * What the kernel holds numbers of must be rebuilt at the same numbers:
 * every inode it has looked up (node ID, lookup count, how to reopen the
 * object: a descriptor passed alongside, or a file handle), every open
 * image (its node ID is the file handle; how many opens, whether one of
 * them writes) and every open directory handle (slot, offset). Also the
 * kernel's INIT request and the reply it got, since the kernel never
 * negotiates again, and the source directory's path.
 *
 * The format is for two processes of one host: native byte order, a
 * version that must match exactly. The parser trusts nothing: a record
 * that does not fit, a count that does not add up, a handle longer than
 * MAX_HANDLE_SZ, a node ID out of range, an image opened more than
 * HO_OPENS_MAX times or an image or directory that names no inode is
 * refused with -EINVAL (-E2BIG past the limits).
 */
#ifndef VC_HANDOVER_H
#define VC_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HO_VERSION	1
#define HO_MAX_BYTES	(256u << 20)	/* the whole state */
#define HO_INIT_MAX	512		/* INIT request or reply bytes */
#define HO_HANDLE_MAX	128		/* MAX_HANDLE_SZ */
#define HO_OPENS_MAX	(1u << 20)	/* opens of one image: each is reopened */

struct vc_ho_inode {
	uint64_t nodeid, dev, ino;
	uint64_t nlookup;		/* 0: forgotten, but a file of it is open */
	uint32_t type;			/* S_IFMT bits */
	bool stale;			/* unhashed: ESTALE from now on */
	int32_t fdidx;			/* index among the passed descriptors, or -1 */
	int32_t handle_type;
	uint32_t handle_bytes;		/* 0: no handle (then fdidx >= 0) */
	unsigned char handle[HO_HANDLE_MAX];
};

struct vc_ho_image {
	uint64_t nodeid;
	uint32_t opens;			/* open file handles of the kernel */
	bool writable;			/* its descriptor was opened for writing */
};

struct vc_ho_dir {
	uint64_t fh;			/* slot in the directory handle table */
	uint64_t nodeid;
	int64_t offset;			/* telldir cookie of the next entry */
};

struct vc_handover {
	char *source;			/* owned */
	uint64_t root_dev, root_ino;
	unsigned char init_in[HO_INIT_MAX], init_out[HO_INIT_MAX];
	uint32_t init_in_len, init_out_len;
	uint32_t nfds;			/* descriptors passed along with it */
	struct vc_ho_inode *inodes;	/* owned, nodeid order not required */
	size_t ninodes, capinodes;
	struct vc_ho_image *images;
	size_t nimages, capimages;
	struct vc_ho_dir *dirs;
	size_t ndirs, capdirs;
};

void ho_init(struct vc_handover *h);
void ho_free(struct vc_handover *h);

/* Building (the giving daemon). Return 0 or -ENOMEM / -EINVAL. */
int ho_set_source(struct vc_handover *h, const char *source);
int ho_add_inode(struct vc_handover *h, const struct vc_ho_inode *in);
int ho_add_image(struct vc_handover *h, const struct vc_ho_image *img);
int ho_add_dir(struct vc_handover *h, const struct vc_ho_dir *d);

/* The bytes of h, in a buffer the caller frees. Returns 0 or -errno. */
int ho_encode(const struct vc_handover *h, unsigned char **out, size_t *len);
/*
 * Parse len bytes into h (ho_init'ed; ho_free it either way). Every
 * field is checked (see above). Returns 0, or -EINVAL / -E2BIG with a
 * reason in why.
 */
int ho_decode(const unsigned char *buf, size_t len, struct vc_handover *h,
    char *why, size_t whylen);

/* The inode of nodeid in h, or NULL. */
const struct vc_ho_inode *ho_find_inode(const struct vc_handover *h,
    uint64_t nodeid);

#endif
