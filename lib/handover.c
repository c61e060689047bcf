/*
 * handover.c - (de)serialising the takeover state (see handover.h).
 *
 * Layout: a header (magic, version, total length), then records of
 * { u32 type, u32 length, payload padded to 8 bytes }, ending with
 * HO_REC_END. Fixed-size records must have exactly their size.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "handover.h"
#include "slots.h"

#define HO_MAGIC	"VCHOVER\0"
#define HO_ALIGN(n)	(((n) + 7u) & ~(size_t)7u)
#define HO_ROOT_ID	1

enum ho_rec {
	HO_REC_END = 0,
	HO_REC_SOURCE,
	HO_REC_ROOT,
	HO_REC_INIT_IN,
	HO_REC_INIT_OUT,
	HO_REC_NFDS,
	HO_REC_INODE,
	HO_REC_IMAGE,
	HO_REC_DIR,
};

struct ho_hdr {
	char magic[8];
	uint32_t version;
	uint32_t pad;
	uint64_t size;		/* all bytes, header included */
};

struct ho_rechdr {
	uint32_t type;
	uint32_t len;
};

/* The wire forms of the fixed records. */
struct ho_wire_root { uint64_t dev, ino; };
struct ho_wire_inode {
	uint64_t nodeid, dev, ino, nlookup;
	uint32_t type, stale;
	int32_t fdidx, handle_type;
	uint32_t handle_bytes, pad;
	unsigned char handle[HO_HANDLE_MAX];
};
struct ho_wire_image { uint64_t nodeid; uint32_t opens, writable; };
struct ho_wire_dir { uint64_t fh, nodeid; int64_t offset; };

void
ho_init(struct vc_handover *h)
{
	memset(h, 0, sizeof(*h));
}

void
ho_free(struct vc_handover *h)
{
	free(h->source);
	free(h->inodes);
	free(h->images);
	free(h->dirs);
	ho_init(h);
}

int
ho_set_source(struct vc_handover *h, const char *source)
{
	char *s = strdup(source);

	if (s == NULL)
		return -ENOMEM;
	free(h->source);
	h->source = s;
	return 0;
}

/* Room for one more element of size sz in *arr. */
static int
ho_grow(void **arr, size_t *n, size_t *cap, size_t sz)
{
	void *p;
	size_t ncap;

	if (*n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	p = realloc(*arr, ncap * sz);
	if (p == NULL)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

int
ho_add_inode(struct vc_handover *h, const struct vc_ho_inode *in)
{
	if (in->handle_bytes > HO_HANDLE_MAX)
		return -EINVAL;
	if (ho_grow((void **)&h->inodes, &h->ninodes, &h->capinodes,
	    sizeof(*in)) < 0)
		return -ENOMEM;
	h->inodes[h->ninodes++] = *in;
	return 0;
}

int
ho_add_image(struct vc_handover *h, const struct vc_ho_image *img)
{
	if (ho_grow((void **)&h->images, &h->nimages, &h->capimages,
	    sizeof(*img)) < 0)
		return -ENOMEM;
	h->images[h->nimages++] = *img;
	return 0;
}

int
ho_add_dir(struct vc_handover *h, const struct vc_ho_dir *d)
{
	if (ho_grow((void **)&h->dirs, &h->ndirs, &h->capdirs, sizeof(*d)) < 0)
		return -ENOMEM;
	h->dirs[h->ndirs++] = *d;
	return 0;
}

struct ho_out {
	unsigned char *p;
	size_t len;
};

static void
ho_put(struct ho_out *o, uint32_t type, const void *data, size_t len)
{
	struct ho_rechdr rh = { .type = type, .len = (uint32_t)len };

	memcpy(o->p + o->len, &rh, sizeof(rh));
	o->len += sizeof(rh);
	if (len > 0)
		memcpy(o->p + o->len, data, len);
	memset(o->p + o->len + len, 0, HO_ALIGN(len) - len);
	o->len += HO_ALIGN(len);
}

int
ho_encode(const struct vc_handover *h, unsigned char **out, size_t *len)
{
	size_t srclen = h->source ? strlen(h->source) + 1 : 0, total;
	struct ho_wire_root root = { h->root_dev, h->root_ino };
	struct ho_hdr hdr = { .version = HO_VERSION };
	struct ho_out o;
	uint32_t nfds = h->nfds;

	if (h->source == NULL || h->init_in_len > HO_INIT_MAX ||
	    h->init_out_len > HO_INIT_MAX)
		return -EINVAL;
	total = sizeof(hdr) + 6 * sizeof(struct ho_rechdr) + HO_ALIGN(srclen) +
	    sizeof(root) + HO_ALIGN(h->init_in_len) +
	    HO_ALIGN(h->init_out_len) + 8 +
	    h->ninodes * (sizeof(struct ho_rechdr) + sizeof(struct ho_wire_inode)) +
	    h->nimages * (sizeof(struct ho_rechdr) + sizeof(struct ho_wire_image)) +
	    h->ndirs * (sizeof(struct ho_rechdr) + sizeof(struct ho_wire_dir)) +
	    sizeof(struct ho_rechdr);
	if (total > HO_MAX_BYTES)
		return -E2BIG;
	o.p = calloc(1, total);
	if (o.p == NULL)
		return -ENOMEM;
	o.len = sizeof(hdr);
	ho_put(&o, HO_REC_SOURCE, h->source, srclen);
	ho_put(&o, HO_REC_ROOT, &root, sizeof(root));
	ho_put(&o, HO_REC_INIT_IN, h->init_in, h->init_in_len);
	ho_put(&o, HO_REC_INIT_OUT, h->init_out, h->init_out_len);
	ho_put(&o, HO_REC_NFDS, &nfds, sizeof(nfds));
	for (size_t i = 0; i < h->ninodes; i++) {
		const struct vc_ho_inode *n = &h->inodes[i];
		struct ho_wire_inode w = {
			.nodeid = n->nodeid, .dev = n->dev, .ino = n->ino,
			.nlookup = n->nlookup, .type = n->type,
			.stale = n->stale, .fdidx = n->fdidx,
			.handle_type = n->handle_type,
			.handle_bytes = n->handle_bytes,
		};

		memcpy(w.handle, n->handle, n->handle_bytes);
		ho_put(&o, HO_REC_INODE, &w, sizeof(w));
	}
	for (size_t i = 0; i < h->nimages; i++) {
		struct ho_wire_image w = { h->images[i].nodeid,
		    h->images[i].opens, h->images[i].writable };

		ho_put(&o, HO_REC_IMAGE, &w, sizeof(w));
	}
	for (size_t i = 0; i < h->ndirs; i++) {
		struct ho_wire_dir w = { h->dirs[i].fh, h->dirs[i].nodeid,
		    h->dirs[i].offset };

		ho_put(&o, HO_REC_DIR, &w, sizeof(w));
	}
	ho_put(&o, HO_REC_END, NULL, 0);
	memcpy(hdr.magic, HO_MAGIC, sizeof(hdr.magic));
	hdr.size = o.len;
	memcpy(o.p, &hdr, sizeof(hdr));
	*out = o.p;
	*len = o.len;
	return 0;
}

static int
ho_bad(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
ho_bad(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

const struct vc_ho_inode *
ho_find_inode(const struct vc_handover *h, uint64_t nodeid)
{
	for (size_t i = 0; i < h->ninodes; i++)
		if (h->inodes[i].nodeid == nodeid)
			return &h->inodes[i];
	return NULL;
}

static bool
ho_type_ok(uint32_t type)
{
	switch (type) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR:
	case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		return true;
	}
	return false;
}

static bool
ho_nodeid_ok(uint64_t id)
{
	return id >= VC_SLOTS_FIRST && id < VC_SLOTS_MAX;
}

/* One inode record, checked. */
static int
ho_decode_inode(const struct ho_wire_inode *w, struct vc_handover *h,
    char *why, size_t whylen)
{
	struct vc_ho_inode n = {
		.nodeid = w->nodeid, .dev = w->dev, .ino = w->ino,
		.nlookup = w->nlookup, .type = w->type, .stale = w->stale != 0,
		.fdidx = w->fdidx, .handle_type = w->handle_type,
		.handle_bytes = w->handle_bytes,
	};

	if (!ho_nodeid_ok(n.nodeid))
		return ho_bad(why, whylen, "inode node ID %llu out of range",
		    (unsigned long long)n.nodeid);
	if (!ho_type_ok(n.type))
		return ho_bad(why, whylen, "inode %llu: bad type %#o",
		    (unsigned long long)n.nodeid, n.type);
	if (n.handle_bytes > HO_HANDLE_MAX)
		return ho_bad(why, whylen, "inode %llu: handle of %u bytes",
		    (unsigned long long)n.nodeid, n.handle_bytes);
	if (n.fdidx < -1 || (n.fdidx >= 0 && (uint32_t)n.fdidx >= h->nfds))
		return ho_bad(why, whylen, "inode %llu: descriptor %d of %u",
		    (unsigned long long)n.nodeid, n.fdidx, h->nfds);
	if (n.fdidx < 0 && n.handle_bytes == 0)
		return ho_bad(why, whylen, "inode %llu: neither a descriptor "
		    "nor a handle", (unsigned long long)n.nodeid);
	memcpy(n.handle, w->handle, n.handle_bytes);
	return ho_add_inode(h, &n);
}

int
ho_decode(const unsigned char *buf, size_t len, struct vc_handover *h,
    char *why, size_t whylen)
{
	struct ho_hdr hdr;
	size_t off = sizeof(hdr);
	unsigned seen = 0;	/* bit per single record type */
	bool end = false;
	int r = 0;

	if (len > HO_MAX_BYTES)
		return ho_bad(why, whylen, "state of %zu bytes", len), -E2BIG;
	if (len < sizeof(hdr))
		return ho_bad(why, whylen, "state of %zu bytes is truncated", len);
	memcpy(&hdr, buf, sizeof(hdr));
	if (memcmp(hdr.magic, HO_MAGIC, sizeof(hdr.magic)) != 0)
		return ho_bad(why, whylen, "not a vcachefs handover");
	if (hdr.version != HO_VERSION)
		return ho_bad(why, whylen, "handover version %u, this daemon "
		    "reads %u", hdr.version, HO_VERSION);
	if (hdr.size != len)
		return ho_bad(why, whylen, "state says %llu bytes, has %zu",
		    (unsigned long long)hdr.size, len);
	while (r == 0 && !end) {
		struct ho_rechdr rh;
		const unsigned char *p;

		if (len - off < sizeof(rh))
			return ho_bad(why, whylen, "truncated at byte %zu", off);
		memcpy(&rh, buf + off, sizeof(rh));
		off += sizeof(rh);
		if (rh.len > len - off || HO_ALIGN(rh.len) > len - off)
			return ho_bad(why, whylen, "record %u of %u bytes at "
			    "byte %zu runs past the end", rh.type, rh.len, off);
		p = buf + off;
		off += HO_ALIGN(rh.len);
		if (rh.type <= HO_REC_NFDS) {
			if (seen & (1u << rh.type))
				return ho_bad(why, whylen, "record %u twice", rh.type);
			seen |= 1u << rh.type;
		}
		/* Singles first: the others are checked against them. */
		if (rh.type >= HO_REC_INODE && (seen & 0x3e) != 0x3e)
			return ho_bad(why, whylen, "record %u before the "
			    "header records", rh.type);
		switch (rh.type) {
		case HO_REC_END:
			end = true;
			break;
		case HO_REC_SOURCE:
			if (rh.len < 2 || p[0] != '/' || memchr(p, '\0', rh.len) !=
			    (const void *)(p + rh.len - 1))
				return ho_bad(why, whylen, "bad source path");
			r = ho_set_source(h, (const char *)p);
			break;
		case HO_REC_ROOT: {
			struct ho_wire_root w;

			if (rh.len != sizeof(w))
				return ho_bad(why, whylen, "bad root record");
			memcpy(&w, p, sizeof(w));
			h->root_dev = w.dev;
			h->root_ino = w.ino;
			break;
		}
		case HO_REC_INIT_IN:
		case HO_REC_INIT_OUT:
			if (rh.len == 0 || rh.len > HO_INIT_MAX)
				return ho_bad(why, whylen, "INIT record of %u "
				    "bytes", rh.len);
			if (rh.type == HO_REC_INIT_IN) {
				memcpy(h->init_in, p, rh.len);
				h->init_in_len = rh.len;
			} else {
				memcpy(h->init_out, p, rh.len);
				h->init_out_len = rh.len;
			}
			break;
		case HO_REC_NFDS:
			if (rh.len != sizeof(h->nfds))
				return ho_bad(why, whylen, "bad descriptor count");
			memcpy(&h->nfds, p, sizeof(h->nfds));
			if (h->nfds > (1u << 20))
				return ho_bad(why, whylen, "%u descriptors", h->nfds);
			break;
		case HO_REC_INODE: {
			struct ho_wire_inode w;

			if (rh.len != sizeof(w))
				return ho_bad(why, whylen, "bad inode record");
			memcpy(&w, p, sizeof(w));
			r = ho_decode_inode(&w, h, why, whylen);
			break;
		}
		case HO_REC_IMAGE: {
			struct ho_wire_image w;
			const struct vc_ho_inode *n;

			if (rh.len != sizeof(w))
				return ho_bad(why, whylen, "bad image record");
			memcpy(&w, p, sizeof(w));
			n = ho_find_inode(h, w.nodeid);
			if (n == NULL || n->type != S_IFREG || w.opens == 0)
				return ho_bad(why, whylen, "image %llu: %s",
				    (unsigned long long)w.nodeid, n == NULL ?
				    "no such inode" : n->type != S_IFREG ?
				    "not a regular file" : "not open");
			if (w.opens > HO_OPENS_MAX)
				return ho_bad(why, whylen, "image %llu: %u opens, "
				    "more than %u", (unsigned long long)w.nodeid,
				    w.opens, HO_OPENS_MAX);
			r = ho_add_image(h, &(struct vc_ho_image){ w.nodeid,
			    w.opens, w.writable != 0 });
			break;
		}
		case HO_REC_DIR: {
			struct ho_wire_dir w;
			const struct vc_ho_inode *n;

			if (rh.len != sizeof(w))
				return ho_bad(why, whylen, "bad directory record");
			memcpy(&w, p, sizeof(w));
			n = w.nodeid == HO_ROOT_ID ? NULL : ho_find_inode(h,
			    w.nodeid);
			if (!ho_nodeid_ok(w.fh) || (w.nodeid != HO_ROOT_ID &&
			    (n == NULL || n->type != S_IFDIR)))
				return ho_bad(why, whylen, "directory handle "
				    "%llu of %llu is bad",
				    (unsigned long long)w.fh,
				    (unsigned long long)w.nodeid);
			r = ho_add_dir(h, &(struct vc_ho_dir){ w.fh, w.nodeid,
			    w.offset });
			break;
		}
		default:
			return ho_bad(why, whylen, "unknown record %u", rh.type);
		}
	}
	if (r < 0)
		return r == -ENOMEM ? ho_bad(why, whylen, "out of memory"),
		    -ENOMEM : r;
	if (!end)
		return ho_bad(why, whylen, "no end record");
	if (off != len)
		return ho_bad(why, whylen, "%zu bytes after the end", len - off);
	if ((seen & 0x3e) != 0x3e)
		return ho_bad(why, whylen, "header records missing");
	return 0;
}
