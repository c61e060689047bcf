#!/bin/sh
# mkguest.sh OUTDIR: build the small test guest that boots under QEMU (TCG
# is enough), writes known patterns to its disk, checks them, prints one
# result line on the serial console and powers off. From Debian packages
# only; cached: a second run does nothing. The initramfs is rebuilt when
# init, pattern.awk or this script is newer than it; the kernel is
# downloaded again only when vmlinuz is missing or older than this script.
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
#   OUTDIR/kernel/     the modules (uncompressed) and their load order, kept
#                      so that a new /init does not download the kernel again
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
# each on a line of its own; then the guest powers off (poweroff -f) and
# qemu exits 0. Anything else on the console is the firmware's or the
# kernel's. If /init dies, the kernel panics and panic=-1 with -no-reboot
# ends qemu too.
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
# lba=L" padded with spaces to 511 bytes, then "\n". Before HOLD (and
# RESULT) the guest has made exactly three fsyncs (direct, buffered, done),
# each a virtio flush that QEMU passes on as one fdatasync of the image.
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

# up to date: OUTPUT exists and none of SOURCES is newer
fresh() {	# OUTPUT SOURCES...
	o=$1
	shift
	[ -s "$o" ] || return 1
	for s in "$@"; do
		[ -n "$(find "$s" -newer "$o")" ] && return 1
	done
	return 0
}
kernel_fresh() {
	fresh "$out/vmlinuz" "$here/mkguest.sh" && [ -s "$out/kernel/order" ]
}
initrd_fresh() {
	fresh "$out/initrd.img" "$here/init" "$here/pattern.awk" "$here/mkguest.sh" "$out/vmlinuz"
}

# One builder at a time per OUTDIR; the others wait and find it done.
exec 9>"$out/.lock"
flock 9
kernel_fresh && initrd_fresh && exit 0

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

# ---- kernel, and its modules the guest needs, kept in OUTDIR/kernel ----
build_kernel() {
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
	    awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1\./ { print $2; exit }')
	if [ -z "$kpkg" ]; then
		echo "mkguest: linux-image-amd64 depends on no linux-image-6.1.* package" >&2
		return 1
	fi
	mkdir "$tmp/kdeb" "$tmp/k" "$tmp/kmods"
	fetch "$tmp/kdeb" "$kpkg" || return 1
	dpkg-deb -x "$tmp/kdeb"/*.deb "$tmp/k" || return 1
	kver=${kpkg#linux-image-}
	mdir=$tmp/k/lib/modules/$kver
	if [ ! -f "$tmp/k/boot/vmlinuz-$kver" ] || [ ! -d "$mdir" ]; then
		echo "mkguest: $kpkg has no boot/vmlinuz-$kver or lib/modules/$kver" >&2
		return 1
	fi
	: >"$tmp/kmods/order"
	for m in $MODULES; do
		add "$m" || return 1
	done
	# Install: vmlinuz last, so that its presence means the rest is there.
	rm -rf "$out/kernel" &&
	    mv "$tmp/kmods" "$out/kernel" &&
	    echo "$kver" >"$out/kernel-version" &&
	    cp "$tmp/k/boot/vmlinuz-$kver" "$tmp/vmlinuz" &&
	    mv -f "$tmp/vmlinuz" "$out/vmlinuz"
}

# Modules go in uncompressed (busybox insmod may not decompress; Debian 12
# does not compress them, later releases do), and in an order where each
# comes after what its "depends=" field names (the field depmod builds
# modules.dep from; the package ships no modules.dep).
modfile() {	# NAME -> path of NAME.ko* in the kernel's tree
	f=$(find "$mdir/kernel" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" -o -name "$1.ko.gz" | head -n 1)
	[ -n "$f" ] || { echo "mkguest: no module $1 in $kpkg" >&2; return 1; }
	echo "$f"
}
unpack() {	# NAME: $tmp/kmods/NAME.ko
	f=$(modfile "$1") || return 1
	o=$tmp/kmods/$1.ko
	case $f in
	*.ko) cp "$f" "$o" ;;
	*.xz) xz -dc "$f" >"$o" ;;
	*.zst) zstd -qdc "$f" >"$o" ;;
	*.gz) gzip -dc "$f" >"$o" ;;
	esac
}
deps() {	# NAME -> the modules it needs, one a line
	objcopy -O binary --only-section=.modinfo "$tmp/kmods/$1.ko" /dev/stdout |
	    tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' '\n' | sed '/^$/d' | tr '-' '_'
}
add() {	# NAME [CHAIN]: append NAME to the order after its dependencies
	grep -qx "$1" "$tmp/kmods/order" && return 0
	case " ${2:-} " in *" $1 "*) echo "mkguest: module dependency loop: ${2:-} $1" >&2; return 1 ;; esac
	[ -f "$tmp/kmods/$1.ko" ] || unpack "$1" || return 1
	for d in $(deps "$1"); do
		add "$d" "${2:-} $1" || return 1
	done
	echo "$1" >>"$tmp/kmods/order"
}

# ---- initramfs ----
build_initrd() {
	mkdir -p "$tmp/root/bin" "$tmp/root/etc" "$tmp/root/lib/modules"
	# busybox: the installed busybox-static, else its package
	if dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed"; then
		cp /bin/busybox "$tmp/root/bin/busybox" || return 1
	else
		mkdir "$tmp/bdeb" "$tmp/b"
		fetch "$tmp/bdeb" busybox-static || return 1
		dpkg-deb -x "$tmp/bdeb"/*.deb "$tmp/b" || return 1
		cp "$tmp/b/bin/busybox" "$tmp/root/bin/busybox" || return 1
	fi
	# A dynamic busybox would fail in the guest, which has no libc.
	if objdump -p "$tmp/root/bin/busybox" 2>/dev/null | grep -q NEEDED; then
		echo "mkguest: the busybox found is not static" >&2
		return 1
	fi
	while read -r m; do
		cp "$out/kernel/$m.ko" "$tmp/root/lib/modules/" || return 1
	done <"$out/kernel/order"
	cp "$out/kernel/order" "$tmp/root/etc/vcguest-modules" &&
	    cp "$here/init" "$tmp/root/init" &&
	    cp "$here/pattern.awk" "$tmp/root/pattern.awk" &&
	    chmod 755 "$tmp/root/init" "$tmp/root/bin/busybox" || return 1
	(cd "$tmp/root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	    gzip -9n >"$tmp/initrd.img" || return 1
	mv -f "$tmp/initrd.img" "$out/initrd.img"
}

kernel_fresh || build_kernel
initrd_fresh || build_initrd
echo "mkguest: $out: kernel $(cat "$out/kernel-version"), modules: $(tr '\n' ' ' <"$out/kernel/order")"
