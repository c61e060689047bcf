#!/usr/bin/env python3
"""Write the corpus of crafted qcow/qcow2 headers in tests/images/bad/.

Each case is a small file plus FILE.note, which says what the file is and
what probing it must give (read by tests/unit/test_probe.c):

    expect: raw            no qcow magic, served as raw, no warning
    expect: raw-warning    magic found, header refused: raw with a warning
    expect: qcow2          accepted; a backing name, if any, resolves
    expect: qcow2-refused-backing
                           accepted, but qcow2_resolve_backing() refuses it
    reason: TEXT           must appear in the warning (or resolver reason)
    source: libqcow|header who must have answered
    backing: PATH          what the backing name must resolve to

The resolver runs as for an image at the mount root, with mountpoint
/mnt/vm and source /srv/vm. The "good" images use 512-byte clusters so a
whole valid image fits in 2 KiB: header, refcount table, refcount block
and L1 table, one cluster each (qemu-img check accepts them).

Usage: tests/images/make-bad.py [DIR]   (default: next to this script)
Python 3 standard library only.
"""
import os
import struct
import sys

MAGIC = b"QFI\xfb"
EXT_END = 0
EXT_BACKING_FMT = 0xE2792ACA
EXT_UNKNOWN = 0xDEADBEEF
MAX_FILE = 8192


def be32(v):
    return struct.pack(">I", v & 0xFFFFFFFF)


def be64(v):
    return struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF)


def ext(kind, data):
    pad = (8 - len(data) % 8) % 8
    return be32(kind) + be32(len(data)) + data + b"\0" * pad


def qcow2(version=3, cluster_bits=9, size=1 << 20, backing=None,
          backing_off=None, backing_len=None, backing_fmt=b"qcow2",
          crypt=0, l1_size=None, nb_snapshots=0, snapshots_off=0,
          incompat=0, header_length=112, compression=0, exts=None,
          end_ext=True, refcount_order=4):
    """A qcow2 image. With the defaults it is valid: 4 clusters of 512."""
    cs = 1 << cluster_bits
    rt_off, rb_off, l1_off = cs, 2 * cs, 3 * cs
    if l1_size is None and 9 <= cluster_bits <= 21:
        per_l1 = 1 << (cluster_bits + cluster_bits - 3)
        l1_size = max(1, (size + per_l1 - 1) // per_l1)
    elif l1_size is None:
        l1_size = 32
    hdr_len = 72 if version == 2 else header_length
    body = b""
    if exts is not None:
        body += b"".join(exts)
    if backing is not None and backing_fmt is not None:
        body += ext(EXT_BACKING_FMT, backing_fmt)
    if end_ext:
        body += ext(EXT_END, b"")
    fixed_len = 72 if version == 2 else max(104, min(hdr_len, 112))
    if backing is not None and backing_off is None:
        backing_off = fixed_len + len(body)
    if backing is not None and backing_len is None:
        backing_len = len(backing)
    h = MAGIC + be32(version)
    h += be64(backing_off or 0) + be32(backing_len or 0)
    h += be32(cluster_bits) + be64(size) + be32(crypt)
    h += be32(l1_size) + be64(l1_off)
    h += be64(rt_off) + be32(1)
    h += be32(nb_snapshots) + be64(snapshots_off)
    if version != 2:
        h += be64(incompat) + be64(0) + be64(0)
        h += be32(refcount_order) + be32(hdr_len)
        h += bytes([compression]) + b"\0" * 7
    h = h[:fixed_len]
    img = bytearray(h + body)
    if backing is not None:
        img += backing
    size_needed = 4 * cs
    if len(img) > cs or size_needed > MAX_FILE:
        # Not a valid layout any more; the parser must stop before tables.
        return bytes(img)
    img += b"\0" * (size_needed - len(img))
    img[rt_off:rt_off + 8] = be64(rb_off)
    for i in range(4):  # refcount 1 (16 bits) for clusters 0..3
        img[rb_off + 2 * i:rb_off + 2 * i + 2] = b"\0\1"
    return bytes(img)


def qcow1(size=16 << 20, cluster_bits=12, l2_bits=9, crypt=0,
          backing=None, backing_off=None, backing_len=None):
    h = MAGIC + be32(1)
    if backing is not None and backing_off is None:
        backing_off = 48
    h += be64(backing_off or 0)
    h += be32(backing_len if backing_len is not None else
              len(backing or b""))
    h += be32(0) + be64(size) + bytes([cluster_bits & 0xFF, l2_bits & 0xFF])
    h += b"\0\0" + be32(crypt) + be64(512)
    img = h + (backing or b"")
    return img + b"\0" * (1024 - len(img))


CASES = []


def case(name, data, what, expect, reason=None, source=None, backing=None):
    CASES.append((name, data, what, expect, reason, source, backing))


def build():
    good = qcow2()
    case("valid-v3.qcow2", good,
         "a valid qcow2 v3 image of 1 MiB with 512-byte clusters",
         "qcow2", source="libqcow")
    case("valid-v2.qcow2", qcow2(version=2),
         "a valid qcow2 v2 (compat=0.10) image", "qcow2", source="libqcow")

    case("backing-name-len-70000.qcow2",
         qcow2(backing=b"base.qcow2", backing_len=70000),
         "backing_file_size 70000 (QEMU caps names at 1023 bytes)",
         "raw-warning", "backing name length 70000 exceeds 1023")
    case("backing-dotdot-etc-passwd.qcow2",
         qcow2(backing=b"../../etc/passwd", backing_fmt=b"raw"),
         "a valid image whose backing name climbs out of the mount",
         "qcow2-refused-backing", "backing name escapes the mount")
    case("backing-absolute-outside.qcow2",
         qcow2(backing=b"/etc/shadow", backing_fmt=b"raw"),
         "a valid image backed by an absolute path outside the mount",
         "qcow2-refused-backing", "absolute backing name outside the mount")
    case("backing-json.qcow2",
         qcow2(backing=b'json:{"file.driver":"file","file.filename":'
               b'"/etc/shadow"}', backing_fmt=None),
         "a valid image with a json: pseudo-protocol backing name",
         "qcow2-refused-backing", "json: backing names are refused")
    case("backing-nbd.qcow2",
         qcow2(backing=b"nbd://attacker.example:10809/disk",
               backing_fmt=b"raw"),
         "a valid image backed by a network block device",
         "qcow2-refused-backing", 'protocol backing name "nbd:" refused')
    case("backing-ctrl-chars.qcow2",
         qcow2(backing=b"\x1b]0;pwned\x07\nx:y", backing_fmt=None),
         "a protocol-like backing name full of terminal escapes; the reason"
         " must quote it printably",
         "qcow2-refused-backing", 'protocol backing name "?]0;pwned??x:"')
    case("backing-offset-beyond-eof.qcow2",
         qcow2(cluster_bits=16, backing=b"base.qcow2",
               backing_off=0x8000),
         "backing name at 32 KiB, inside the 64 KiB cluster but past the"
         " end of this 2 KiB file", "raw-warning",
         "backing name beyond end of file")
    case("backing-offset-wrap.qcow2",
         qcow2(backing=b"base.qcow2", backing_off=0xFFFFFFFFFFFFFFF8,
               backing_len=16),
         "backing offset 2^64-8 with length 16: offset + length wraps",
         "raw-warning", "outside the first cluster")
    case("backing-overlaps-header.qcow2",
         qcow2(backing=b"x", backing_off=8, backing_len=16),
         "backing name bytes inside the header itself", "raw-warning",
         "overlaps the header")

    for bits in (0, 8, 22, 63):
        case("cluster-bits-%d.qcow2" % bits, qcow2(cluster_bits=bits),
             "cluster_bits %d (QEMU allows 9..21)" % bits, "raw-warning",
             "cluster_bits %d out of range 9..21" % bits)

    case("short-0.qcow2", b"", "an empty file: no magic, a raw image",
         "raw")
    for n in (4, 20, 71):
        case("short-%d.qcow2" % n, good[:n],
             "the first %d bytes of a valid qcow2 header" % n,
             "raw-warning", "file shorter than its header (%d bytes)" % n)

    case("header-length-100.qcow2", qcow2(header_length=100),
         "v3 header_length 100 (at least 104)", "raw-warning",
         "header_length 100 smaller than 104")
    case("header-length-65536.qcow2", qcow2(header_length=65536),
         "v3 header_length 65536, larger than the 512-byte cluster",
         "raw-warning", "header_length 65536 exceeds the cluster size 512")
    case("header-length-beyond-eof.qcow2",
         qcow2(cluster_bits=16, header_length=60000),
         "v3 header_length 60000 inside a 64 KiB cluster, past the end of"
         " the file", "raw-warning", "file shorter than its header")

    case("ext-len-beyond-buffer.qcow2",
         qcow2(exts=[be32(EXT_UNKNOWN) + be32(0x7FFFFF00)], end_ext=False),
         "a header extension claiming 2 GiB of data", "raw-warning",
         "header extension 0xdeadbeef length 2147483392 too large")
    case("ext-len-beyond-eof.qcow2",
         qcow2(cluster_bits=16,
               exts=[be32(EXT_UNKNOWN) + be32(30000)], end_ext=False),
         "a header extension of 30000 bytes, inside the cluster but past"
         " the end of the file", "raw-warning",
         "header extension beyond end of file")
    case("ext-endless-chain.qcow2",
         qcow2(cluster_bits=16, exts=[ext(EXT_UNKNOWN, b"")] * 900,
               end_ext=False),
         "900 zero-length unknown header extensions and no end marker",
         "raw-warning", "more than 64 header extensions")
    case("backing-fmt-too-long.qcow2",
         qcow2(backing=b"base.qcow2", backing_fmt=b"q" * 40),
         "backing format extension of 40 bytes (QEMU keeps 15)",
         "raw-warning", "backing format name length 40 exceeds 15")

    v4 = bytearray(good)
    v4[4:8] = be32(4)
    case("version-4.qcow2", bytes(v4), "qcow2 magic with version 4",
         "raw-warning", "unsupported qcow version 4")
    case("v1-bogus-sizes.qcow",
         qcow1(size=0xFFFFFFFFFFFFFFFF, cluster_bits=40, l2_bits=0),
         "qcow v1 with cluster_bits 40, l2_bits 0, size 2^64-1",
         "raw-warning", "cluster_bits 40 out of range 9..16")
    case("v1-size-wrap.qcow",
         qcow1(size=0xFFFFFFFFFFFFFFFF, cluster_bits=16, l2_bits=13),
         "qcow v1 with size 2^64-1: rounding it up to the L1 span wraps",
         "raw-warning", "virtual size 18446744073709551615 too large")
    case("v1-backing-len-5000.qcow",
         qcow1(backing=b"base.qcow", backing_len=5000),
         "qcow v1 with a 5000-byte backing name", "raw-warning",
         "backing name length 5000 exceeds 1023")

    case("corrupt-bit.qcow2", qcow2(incompat=0x2),
         "a valid image with the corrupt bit set: QEMU still opens it"
         " read-only, libqcow refuses it, our header answers",
         "qcow2", source="header")
    case("incompat-unknown-bit.qcow2", qcow2(incompat=0x20),
         "incompatible feature bit 5, unknown to QEMU", "raw-warning",
         "unknown incompatible features 0x20")
    case("compression-type-7.qcow2",
         qcow2(incompat=0x8, compression=7),
         "compression type 7 (only zlib 0 and zstd 1 exist)",
         "raw-warning", "unknown compression type 7")
    case("nb-snapshots-2g.qcow2",
         qcow2(nb_snapshots=1 << 31),
         "nb_snapshots 2^31 (QEMU allows 65536)", "raw-warning",
         "nb_snapshots 2147483648 exceeds 65536")
    case("l1-too-large.qcow2", qcow2(l1_size=1 << 24),
         "an L1 table of 2^24 entries, 128 MiB (QEMU allows 32 MiB)",
         "raw-warning", "L1 table of 16777216 entries")

    case("loop-a.qcow2", qcow2(backing=b"loop-b.qcow2"),
         "backed by loop-b.qcow2, which is backed by this file: each is"
         " valid alone, the chain walker must see the loop", "qcow2",
         source="libqcow", backing="loop-b.qcow2")
    case("loop-b.qcow2", qcow2(backing=b"./loop-a.qcow2"),
         "backed by loop-a.qcow2 (as ./loop-a.qcow2), closing the loop",
         "qcow2", source="libqcow", backing="loop-a.qcow2")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "bad")
    os.makedirs(out, exist_ok=True)
    build()
    for name, data, what, expect, reason, source, backing in CASES:
        assert len(data) < MAX_FILE, name
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        lines = ["# %s: %s" % (name, what), "expect: " + expect]
        if reason:
            lines.append("reason: " + reason)
        if source:
            lines.append("source: " + source)
        if backing:
            lines.append("backing: " + backing)
        with open(os.path.join(out, name + ".note"), "w") as f:
            f.write("\n".join(lines) + "\n")
    print("%d cases in %s" % (len(CASES), out))


if __name__ == "__main__":
    main()
