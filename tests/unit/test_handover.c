/*
 * test_handover.c - pins the takeover state format (handover.c) and the
 * slot table its numbers live in (slots.c), TAP output: a round trip
 * keeps every field; every truncation, every flipped byte and each kind
 * of hostile record is refused (or parsed into something valid), never
 * read past the buffer (ASan watches); slot numbers are reused after a
 * free and installed numbers are kept out of the free list; a high
 * handed-over node ID builds no free list and an image may not claim
 * more than HO_OPENS_MAX opens.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "handover.h"
#include "slots.h"
#include "tap.h"

static void
test_build(struct vc_handover *h)
{
	struct vc_ho_inode a = { .nodeid = 2, .dev = 0x801, .ino = 12,
	    .nlookup = 3, .type = S_IFREG, .fdidx = 0, .handle_type = 1,
	    .handle_bytes = 8, .handle = "abcdefgh" };
	struct vc_ho_inode b = { .nodeid = 7, .dev = 0x801, .ino = 13,
	    .nlookup = 1, .type = S_IFDIR, .fdidx = -1, .handle_type = 1,
	    .handle_bytes = 12, .handle = "012345678901" };
	struct vc_ho_inode c = { .nodeid = 4096 + 5, .dev = 0x802, .ino = 99,
	    .nlookup = 2, .type = S_IFLNK, .stale = true, .fdidx = 1 };

	ho_init(h);
	ho_set_source(h, "/var/lib/libvirt/images");
	h->root_dev = 0x801;
	h->root_ino = 2;
	h->init_in_len = 104;
	memset(h->init_in, 0x11, h->init_in_len);
	h->init_out_len = 80;
	memset(h->init_out, 0x22, h->init_out_len);
	h->nfds = 2;
	ho_add_inode(h, &a);
	ho_add_inode(h, &b);
	ho_add_inode(h, &c);
	ho_add_image(h, &(struct vc_ho_image){ 2, 3, true });
	ho_add_dir(h, &(struct vc_ho_dir){ 2, 7, 0x7fffffff12345678LL });
	ho_add_dir(h, &(struct vc_ho_dir){ 3, 1, 0 });
}

static int
test_decode(const unsigned char *buf, size_t len, char *why, size_t wl)
{
	struct vc_handover d;
	int r;

	ho_init(&d);
	r = ho_decode(buf, len, &d, why, wl);
	ho_free(&d);
	return r;
}

static void
test_roundtrip(void)
{
	struct vc_handover h, d;
	unsigned char *buf;
	size_t len;
	char why[256] = "";
	int r;

	test_build(&h);
	r = ho_encode(&h, &buf, &len);
	test_ok(r == 0 && len > 0 && len % 8 == 0, "encode: %zu bytes", len);
	ho_init(&d);
	r = ho_decode(buf, len, &d, why, sizeof(why));
	test_ok(r == 0, "decode of what was encoded (%s)", why);
	test_ok(d.source && strcmp(d.source, h.source) == 0 &&
	    d.root_dev == h.root_dev && d.root_ino == h.root_ino &&
	    d.nfds == 2, "source, root and descriptor count kept");
	test_ok(d.init_in_len == 104 && d.init_out_len == 80 &&
	    memcmp(d.init_in, h.init_in, 104) == 0 &&
	    memcmp(d.init_out, h.init_out, 80) == 0,
	    "INIT request and reply bytes kept");
	test_ok(d.ninodes == 3 && memcmp(&d.inodes[0], &h.inodes[0],
	    sizeof(h.inodes[0])) == 0 && memcmp(&d.inodes[1], &h.inodes[1],
	    sizeof(h.inodes[1])) == 0 && memcmp(&d.inodes[2], &h.inodes[2],
	    sizeof(h.inodes[2])) == 0, "every inode field kept");
	test_ok(d.inodes[2].stale && d.inodes[2].handle_bytes == 0 &&
	    d.inodes[2].fdidx == 1, "a stale inode passed by descriptor only");
	test_ok(d.nimages == 1 && d.images[0].nodeid == 2 &&
	    d.images[0].opens == 3 && d.images[0].writable, "image kept");
	test_ok(d.ndirs == 2 && d.dirs[0].fh == 2 && d.dirs[0].nodeid == 7 &&
	    d.dirs[0].offset == 0x7fffffff12345678LL && d.dirs[1].nodeid == 1,
	    "directory handles kept (the root's too)");
	test_ok(ho_find_inode(&d, 7) == &d.inodes[1] &&
	    ho_find_inode(&d, 8) == NULL, "ho_find_inode");
	ho_free(&d);

	/* Every shorter buffer is refused. */
	unsigned bad = 0;

	for (size_t n = 0; n < len; n++)
		if (test_decode(buf, n, why, sizeof(why)) == 0)
			bad++;
	test_ok(bad == 0, "all %zu truncations refused (%u accepted)", len, bad);

	/* Every flipped byte: refused or still consistent, never a crash. */
	unsigned refused = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char *cp = malloc(len);

		memcpy(cp, buf, len);
		cp[i] ^= 0xff;
		if (test_decode(cp, len, why, sizeof(why)) < 0)
			refused++;
		free(cp);
	}
	test_ok(refused > 0, "flipped bytes: %u of %zu refused, none crashed",
	    refused, len);
	free(buf);
	ho_free(&h);
}

/* Encode h after mutate(h), expect a refusal naming want. */
static void
test_hostile(const char *name, void (*mutate)(struct vc_handover *),
    const char *want)
{
	struct vc_handover h;
	unsigned char *buf;
	size_t len;
	char why[256] = "";
	int r;

	test_build(&h);
	mutate(&h);
	r = ho_encode(&h, &buf, &len);
	if (r < 0) {
		test_ok(1, "%s: refused already when encoding", name);
		ho_free(&h);
		return;
	}
	r = test_decode(buf, len, why, sizeof(why));
	test_ok(r == -EINVAL && strstr(why, want) != NULL, "%s: %s", name, why);
	free(buf);
	ho_free(&h);
}

static void m_fdidx(struct vc_handover *h) { h->inodes[0].fdidx = 2; }
static void m_nofd(struct vc_handover *h) { h->inodes[2].fdidx = -1; }
static void m_id0(struct vc_handover *h) { h->inodes[1].nodeid = 1; }
static void m_idbig(struct vc_handover *h) { h->inodes[1].nodeid = VC_SLOTS_MAX; }
static void m_type(struct vc_handover *h) { h->inodes[0].type = 0170000; }
static void m_img(struct vc_handover *h) { h->images[0].nodeid = 7; }
static void m_imgnone(struct vc_handover *h) { h->images[0].nodeid = 55; }
static void m_imgzero(struct vc_handover *h) { h->images[0].opens = 0; }
static void m_imgmany(struct vc_handover *h) { h->images[0].opens = HO_OPENS_MAX + 1; }
static void m_dir(struct vc_handover *h) { h->dirs[0].nodeid = 2; }
static void m_dirfh(struct vc_handover *h) { h->dirs[1].fh = 0; }
static void m_src(struct vc_handover *h) { ho_set_source(h, "relative/path"); }

/* Hand-made bytes: header and one record, for what encode never makes. */
static void
test_raw(void)
{
	struct vc_handover h;
	unsigned char *buf;
	size_t len;
	char why[256];
	uint32_t v;

	test_build(&h);
	ho_encode(&h, &buf, &len);
	ho_free(&h);

	memcpy(&v, buf + 8, 4);
	v++;
	memcpy(buf + 8, &v, 4);
	test_ok(test_decode(buf, len, why, sizeof(why)) == -EINVAL &&
	    strstr(why, "version") != NULL, "another version: %s", why);
	v--;
	memcpy(buf + 8, &v, 4);
	test_ok(test_decode(buf, len, why, sizeof(why)) == 0, "restored");

	/* The first record's length made huge. */
	v = 0xfffffff0u;
	memcpy(buf + 24 + 4, &v, 4);
	test_ok(test_decode(buf, len, why, sizeof(why)) == -EINVAL &&
	    strstr(why, "past the end") != NULL, "record length 0xfffffff0: %s",
	    why);
	free(buf);

	/* Longer than the limit. */
	test_ok(test_decode((const unsigned char *)"", HO_MAX_BYTES + 1ul, why,
	    sizeof(why)) == -E2BIG, "over HO_MAX_BYTES: %s", why);
	test_ok(test_decode((const unsigned char *)"VCHOVER", 8, why,
	    sizeof(why)) == -EINVAL, "header only: %s", why);
}

static void
test_slots(void)
{
	static struct vc_slots s;
	int a, b, c;
	uint64_t n1, n2, n3;

	slots_init(&s);
	n1 = slots_alloc(&s, &a);
	n2 = slots_alloc(&s, &b);
	test_ok(n1 == 2 && n2 == 3, "numbers start at 2 (%llu, %llu)",
	    (unsigned long long)n1, (unsigned long long)n2);
	test_ok(slots_get(&s, n1) == &a && slots_get(&s, n2) == &b &&
	    slots_get(&s, 4) == NULL && slots_get(&s, 1u << 30) == NULL &&
	    slots_get(&s, VC_SLOTS_MAX) == NULL, "get");
	slots_free(&s, n1);
	test_ok(slots_get(&s, n1) == NULL, "freed slot is empty");
	n3 = slots_alloc(&s, &c);
	test_ok(n3 == n1, "a freed number is given out again");
	slots_exit(&s);

	slots_init(&s);
	test_ok(slots_install(&s, 5, &a) == 0 &&
	    slots_install(&s, 4096 * 3 + 1, &b) == 0, "install at 5 and 12289");
	test_ok(slots_install(&s, 5, &c) == -EEXIST &&
	    slots_install(&s, 1, &c) == -EINVAL &&
	    slots_install(&s, VC_SLOTS_MAX, &c) == -EINVAL,
	    "install twice, at 1, past the end refused");
	test_ok(slots_seal(&s) == 0, "seal");
	{
		bool clash = false;
		uint64_t first = 0;

		for (int i = 0; i < 4096 * 3 + 10; i++) {
			uint64_t n = slots_alloc(&s, &c);

			if (i == 0)
				first = n;
			if (n == 5 || n == 4096 * 3 + 1 || n == 0)
				clash = true;
		}
		test_ok(!clash && first == 2, "after the seal: lowest numbers "
		    "first, installed ones never given out");
	}
	test_ok(slots_get(&s, 5) == &a && slots_get(&s, 4096 * 3 + 1) == &b,
	    "installed slots kept");
	slots_exit(&s);

	/* A hostile (or merely high) node ID: the seal keeps no list of
	 * every number below it, and numbers are still given out once. */
	slots_init(&s);
	test_ok(slots_install(&s, VC_SLOTS_MAX - 1, &a) == 0 &&
	    slots_install(&s, 3, &b) == 0 && slots_seal(&s) == 0 &&
	    s.nfree == 0 && s.capfree == 0,
	    "seal after node ID %llu: no free list built",
	    (unsigned long long)(VC_SLOTS_MAX - 1));
	n1 = slots_alloc(&s, &c);
	n2 = slots_alloc(&s, &c);
	test_ok(n1 == 2 && n2 == 4, "lowest empty numbers first (%llu, %llu)",
	    (unsigned long long)n1, (unsigned long long)n2);
	slots_free(&s, 3);	/* below the scan: on the list */
	slots_free(&s, n2);	/* below the scan too */
	{
		uint64_t got[4];
		bool twice = false;

		for (int i = 0; i < 4; i++)
			got[i] = slots_alloc(&s, &c);
		for (int i = 0; i < 4; i++)
			for (int j = i + 1; j < 4; j++)
				twice |= got[i] == got[j];
		test_ok(!twice && got[2] == 5 && got[3] == 6 &&
		    ((got[0] == 3 && got[1] == 4) || (got[0] == 4 &&
		    got[1] == 3)), "freed numbers again, then the scan goes on "
		    "(%llu %llu %llu %llu), none twice",
		    (unsigned long long)got[0], (unsigned long long)got[1],
		    (unsigned long long)got[2], (unsigned long long)got[3]);
	}
	slots_exit(&s);

	/* A number the scan has not reached yet, freed: given out once. */
	slots_init(&s);
	slots_install(&s, 10, &a);
	slots_install(&s, VC_SLOTS_MAX - 1, &b);
	slots_seal(&s);
	slots_free(&s, 10);
	{
		unsigned tens = 0;
		bool order = true;

		for (uint64_t want = 2; want < 20; want++) {
			uint64_t n = slots_alloc(&s, &c);

			tens += n == 10;
			order &= n == want;
		}
		test_ok(tens == 1 && order, "a freed number ahead of the scan "
		    "is given out once, in order");
	}
	slots_exit(&s);
}

int
main(void)
{
	test_roundtrip();
	test_hostile("descriptor index past the count", m_fdidx, "descriptor");
	test_hostile("neither descriptor nor handle", m_nofd, "neither");
	test_hostile("node ID 1 (the root's)", m_id0, "out of range");
	test_hostile("node ID past the table", m_idbig, "out of range");
	test_hostile("bad file type", m_type, "bad type");
	test_hostile("image on a directory", m_img, "not a regular file");
	test_hostile("image of no inode", m_imgnone, "no such inode");
	test_hostile("image with no opens", m_imgzero, "not open");
	test_hostile("image opened more than HO_OPENS_MAX times", m_imgmany,
	    "opens, more than");
	test_hostile("directory handle on a file", m_dir, "directory handle");
	test_hostile("directory handle 0", m_dirfh, "directory handle");
	test_hostile("relative source path", m_src, "source");
	test_raw();
	test_slots();
	printf("1..%d\n", test_n);
	return test_failed ? 1 : 0;
}
