#!/bin/sh
# mkguest.sh OUTDIR: build the small test guest that boots under QEMU (TCG
# is enough), writes known patterns to its disk, checks them, prints one
# result line on the serial console and powers off. From Debian packages
# only; cached: a second run does nothing unless an output is missing or
# older than its sources (init, pattern.awk, this script).
#
# Outputs
#   OUTDIR/vmlinuz     the kernel of the linux-image-6.1.* package that
#                      linux-image-amd64 depends on (apt-get download)
#   OUTDIR/initrd.img  gzip'ed newc cpio: busybox-static, /init (tests/guest/
#                      init), pattern.awk, and the virtio modules of that
#                      kernel (virtio_ring virtio virtio_pci_legacy_dev
#                      virtio_pci_modern_dev virtio_pci virtio_blk, plus
#                      whatever they depend on), in dependency order
#   OUTDIR/kernel-version  the kernel's release, e.g. 6.1.0-57-amd64
#
# Kernel command line (console on ttyS0):
#   console=ttyS0 panic=-1 [quiet] vcguest.seed=N [vcguest.mode=write|verify]
#       [vcguest.hold=0|1] [vcguest.holdmax=SECONDS] [vcguest.dev=/dev/vda]
#   vcguest.seed=N   required; decimal, at most 20 digits; goes into every
#                    sector written, so each boot's data is its own
#   vcguest.mode     write (default): write both regions, read them back,
#                    then write the done sector; verify: write nothing,
#                    check that the disk holds seed N's pattern (e.g. after
#                    a remount or another boot)
#   vcguest.hold=1   after the checks, print "VCGUEST HOLD seed=N" and wait
#                    (qemu still running, image open) until the host writes
#                    "VCGUEST GO seed=N\n" at the start of the mailbox
#                    sector, e.g. through the mount:
#                      printf 'VCGUEST GO seed=%s\n' N |
#                        dd of=IMG bs=512 seek=6144 conv=notrunc,fsync
#                    (write it so that qemu's reads see it: through the
#                    vcachefs mount, fsync'ed). The guest polls it with
#                    O_DIRECT reads every 0.2 s.
#   vcguest.holdmax  seconds to wait for GO before failing (default 600)
#
# Console lines (serial, may end in \r\n), all starting with "VCGUEST ":
#   VCGUEST BOOT seed=N mode=M dev=/dev/vda kernel=RELEASE
#   VCGUEST HOLD seed=N                       (vcguest.hold=1 only)
#   VCGUEST RESULT ok seed=N mode=M uptime=SECONDS
#   VCGUEST RESULT fail seed=N mode=M: REASON
# then the guest powers off (poweroff -f) and qemu exits. Anything else on
# the console is the kernel's.
#
# Disk layout (virtio disk /dev/vda, LBA = 512-byte sector; the disk must
# be at least 4 MiB; the guest writes nothing outside LBA 0..4096):
#   LBA 0..2047     1 MiB "direct": dd oflag=direct bs=64k (16 writes), fsync
#   LBA 2048..4095  1 MiB "buffered": dd bs=64k through the guest's page
#                   cache, fsync
#   LBA 4096        "done": one O_DIRECT 512-byte write, fsync, only after
#                   both regions read back equal (O_DIRECT, caches dropped)
#   LBA 6144        mailbox (3 MiB), read only by the guest (vcguest.hold)
# Each sector is one text line (pattern.awk): "VCGUEST seed=N region=R
# lba=L" padded with spaces to 511 bytes, then "\n". Each fsync reaches
# QEMU as a virtio flush, which QEMU passes on as fdatasync of the image.
# Check a raw backing file byte for byte with
#   tests/guest/expect.sh SEED FILE     (exit 0 equal, 1 with the first bad
#                                        sector named; a qcow2: qemu-img
#                                        convert -O raw it first)
#   tests/guest/expect.sh SEED > F      (the expected LBA 0..4096 bytes)
#
# Example (the image on the vcachefs mount):
#   qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot -nodefaults \
#     -serial stdio -kernel OUTDIR/vmlinuz -initrd OUTDIR/initrd.img \
#     -append "console=ttyS0 panic=-1 quiet vcguest.seed=42" \
#     -drive file=MNT/img.raw,format=raw,if=virtio,cache=none,aio=native \
#     </dev/null >console.log
# (-nodefaults: no NIC, no VGA: less to set up and boot; -serial stdio
# then puts the console on stdout.)
#
# Needs: apt-get (network to a Debian mirror for the kernel and, unless
# busybox-static is installed, busybox), dpkg-deb, cpio, gzip, objcopy,
# flock. tests/deps.sh installs them.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk"

# up to date: OUTPUT exists and no source is newer
fresh() {
	[ -s "$1" ] || return 1
	for s in "$here/init" "$here/pattern.awk" "$here/mkguest.sh"; do
		[ "$s" -nt "$1" ] && return 1
	done
	return 0
}

# One builder at a time per OUTDIR; the others wait and find it done.
exec 9>"$out/.lock"
flock 9
fresh "$out/vmlinuz" && fresh "$out/initrd.img" && exit 0

tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# apt-get download PKG into DIR; with stale package lists the mirror may no
# longer have that version: refresh them (root only) and try once more.
fetch() {	# DIR PKG
	(cd "$1" && apt-get download -q "$2" >/dev/null 2>"$tmp/apt.err") && return 0
	if [ "$(id -u)" -eq 0 ]; then
		apt-get update -qq &&
		    (cd "$1" && apt-get download -q "$2" >/dev/null 2>"$tmp/apt.err") &&
		    return 0
	fi
	echo "mkguest: apt-get download $2 failed:" >&2
	cat "$tmp/apt.err" >&2
	return 1
}

# ---- kernel ----
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1\./ { print $2; exit }')
[ -n "$kpkg" ] || { echo "mkguest: linux-image-amd64 depends on no linux-image-6.1.* package" >&2; exit 1; }
mkdir "$tmp/kdeb" "$tmp/k"
fetch "$tmp/kdeb" "$kpkg"
dpkg-deb -x "$tmp/kdeb"/*.deb "$tmp/k"
kver=${kpkg#linux-image-}
mdir=$tmp/k/lib/modules/$kver
[ -f "$tmp/k/boot/vmlinuz-$kver" ] && [ -d "$mdir" ] ||
    { echo "mkguest: $kpkg has no boot/vmlinuz-$kver or lib/modules/$kver" >&2; exit 1; }

# ---- busybox: the installed busybox-static, else its package ----
mkdir -p "$tmp/root/bin" "$tmp/root/etc" "$tmp/root/lib/modules"
if dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed"; then
	cp /bin/busybox "$tmp/root/bin/busybox"
else
	mkdir "$tmp/bdeb" "$tmp/b"
	fetch "$tmp/bdeb" busybox-static
	dpkg-deb -x "$tmp/bdeb"/*.deb "$tmp/b"
	cp "$tmp/b/bin/busybox" "$tmp/root/bin/busybox"
fi
# A dynamic busybox would fail in the guest, which has no libc.
if objdump -p "$tmp/root/bin/busybox" 2>/dev/null | grep -q NEEDED; then
	echo "mkguest: /bin/busybox is not static (busybox-static not installed?)" >&2
	exit 1
fi

# ---- modules: uncompressed (busybox insmod may not decompress), and
# sorted so that each comes after what its "depends=" field names (the
# field depmod builds modules.dep from; the package ships no modules.dep).
modfile() {	# NAME -> path of NAME.ko* in the kernel's tree
	f=$(find "$mdir/kernel" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" -o -name "$1.ko.gz" | head -n 1)
	[ -n "$f" ] || { echo "mkguest: no module $1 in $kpkg" >&2; return 1; }
	echo "$f"
}
unpack() {	# NAME: $tmp/root/lib/modules/NAME.ko
	f=$(modfile "$1") || return 1
	o=$tmp/root/lib/modules/$1.ko
	case $f in
	*.ko) cp "$f" "$o" ;;
	*.xz) xz -dc "$f" >"$o" ;;
	*.zst) zstd -qdc "$f" >"$o" ;;
	*.gz) gzip -dc "$f" >"$o" ;;
	esac
}
deps() {	# NAME -> the modules it needs, one a line
	objcopy -O binary --only-section=.modinfo "$tmp/root/lib/modules/$1.ko" /dev/stdout |
	    tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' '\n' | sed '/^$/d' | tr '-' '_'
}
: >"$tmp/order"
add() {	# NAME [CHAIN]: append NAME after its dependencies
	grep -qx "$1" "$tmp/order" && return 0
	case " ${2:-} " in *" $1 "*) echo "mkguest: module dependency loop: ${2:-} $1" >&2; return 1 ;; esac
	[ -f "$tmp/root/lib/modules/$1.ko" ] || unpack "$1" || return 1
	for d in $(deps "$1"); do
		add "$d" "${2:-} $1" || return 1
	done
	echo "$1" >>"$tmp/order"
}
for m in $MODULES; do
	add "$m"
done
cp "$tmp/order" "$tmp/root/etc/vcguest-modules"

# ---- initramfs ----
cp "$here/init" "$tmp/root/init"
cp "$here/pattern.awk" "$tmp/root/pattern.awk"
chmod 755 "$tmp/root/init" "$tmp/root/bin/busybox"
(cd "$tmp/root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
    gzip -9n >"$tmp/initrd.img"

# Install: the kernel last, so that "both present" means "both done".
cp "$tmp/k/boot/vmlinuz-$kver" "$tmp/vmlinuz"
echo "$kver" >"$tmp/kernel-version"
mv -f "$tmp/initrd.img" "$out/initrd.img"
mv -f "$tmp/kernel-version" "$out/kernel-version"
mv -f "$tmp/vmlinuz" "$out/vmlinuz"
echo "mkguest: $out: kernel $kver, modules: $(tr '\n' ' ' <"$tmp/order")"
