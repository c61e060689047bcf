#!/usr/bin/env bats
# Live migration: vcachefsctl check-migration applies libvirt's rules to
# the filesystem under SOURCE and the mode vcachefs really uses; the
# libvirt hook (etc/libvirt/hooks/qemu.d/vcachefs) refuses, drops and
# flushes from recorded domain XML; the cgroup charging of backing I/O.

bats_require_minimum_version 1.5.0

load helper
load modes_helper

: "${VCTL:=$BATS_TEST_DIRNAME/../../build/asan/vcachefsctl}"
MG_ROOT=$BATS_TEST_DIRNAME/../..

setup() {
	mh_setup
	MG_CGROUPS=()	# cgroups this test made, removed in teardown
	MG_PIDS=()	# writers it started
	MG_UNDER=	# a bind mount of SOURCE made before an in-place mount
}

teardown() {
	local p c
	for p in "${MG_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	# Before mh_teardown removes VC_TMP: the bind is of VC_SRC itself.
	if [ -n "$MG_UNDER" ]; then
		umount "$MG_UNDER" 2>/dev/null || umount -l "$MG_UNDER" 2>/dev/null || true
	fi
	mh_teardown
	for c in "${MG_CGROUPS[@]}"; do
		rmdir "$c" 2>/dev/null || true
	done
}

# One image per case: NAME MODE READONLY SHAREABLE.
MG_CASES=(
	"wb.img writeback no no"
	"wt.img writethrough no no"
	"none.img none no no"
	"ds.img directsync no no"
	"unsafe.img unsafe no no"
	"wb-ro.img writeback yes no"
	"wb-sh.img writeback no yes"
	"wt-sh.img writethrough no yes"
	"unsafe-ro.img unsafe yes no"
	"unsafe-sh.img unsafe no yes"
)

# The filesystems: TEST_FSTYPE CLASS NAME (libvirt's virfile.c list).
MG_FSTYPES=(
	"0x01161970 cluster gfs2"
	"0x7461636f cluster ocfs2"
	"0x00c36400 cluster ceph"
	"0x6969 shared nfs"
	"0x6b414653 shared afs"
	"0x517b shared smb"
	"0xff534d42 shared cifs"
	"0x47504653 shared gpfs"
	"0x61636673 shared acfs"
	"0x19830326 shared beegfs"
	"fuse.glusterfs shared fuse.glusterfs"
	"fuse.quobyte shared fuse.quobyte"
	"fuse.sshfs local fuse.sshfs"
	"0xef53 local ext4"
	"0x58465342 local xfs"
)

# The rule, written here apart from the code: CLASS MODE RO SHARE -> safe?
mg_expect() {
	local cls=$1 mode=$2 ro=$3 sh=$4
	[ "$cls" = local ] && { echo unsafe; return; }
	[ "$mode" = unsafe ] && { echo unsafe; return; }
	[ "$cls" = cluster ] && { echo safe; return; }
	case $mode in none | directsync) echo safe; return ;; esac
	[ "$ro" = yes ] || [ "$sh" = yes ] && { echo safe; return; }
	echo unsafe
}

# A config with one section per case, and the images.
mg_config() {
	local c name mode ro sh
	printf '[global]\ncache = writeback\n' >"$MH_CONF"
	for c in "${MG_CASES[@]}"; do
		read -r name mode ro sh <<<"$c"
		truncate -s 8M "$VC_SRC/$name"
		printf '[%s]\ncache = %s\nreadonly = %s\nshareable = %s\n' \
		    "$name" "$mode" "$ro" "$sh" >>"$MH_CONF"
	done
}

mg_names() {
	local c
	for c in "${MG_CASES[@]}"; do echo "${c%% *}"; done
}

# The line check-migration printed for an image: mg_line OUTPUT NAME
mg_line() { grep -F -- "$2: " <<<"$1" | head -1; }

@test "check-migration: every filesystem class in every mode, readonly and shareable (test f_type override)" {
	local f fstype cls fsname c name mode ro sh want line out st
	mg_config
	for f in "${MG_FSTYPES[@]}"; do
		read -r fstype cls fsname <<<"$f"
		VCACHEFS_TEST_FSTYPE=$fstype vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
		# Open one image: an open image is decided from what is in effect.
		exec {fd}<"$VC_MNT/wb.img"
		MH_FDS=("$fd")
		run --separate-stderr "$VCTL" -m "$VC_MNT" check-migration $(mg_names)
		st=$status out=$output
		if [ "$fstype" = 0x6969 ] && ! grep -q "on nfs" <<<"$out"; then
			exec {fd}<&-
			MH_FDS=()
			skip "the daemon ignores VCACHEFS_TEST_FSTYPE: not the fault-injection build"
		fi
		local all_safe=yes
		for c in "${MG_CASES[@]}"; do
			read -r name mode ro sh <<<"$c"
			want=$(mg_expect "$cls" "$mode" "$ro" "$sh")
			[ "$want" = safe ] || all_safe=no
			line=$(mg_line "$out" "$name")
			[[ $line == "$name: $want: "* ]] ||
			    fail "$fsname ($cls) $name cache=$mode readonly=$ro shareable=$sh: want $want, got: $line"
		done
		# Exit 0 only when every image is safe: never here (unsafe.img).
		[ "$all_safe" = no ] && [ "$st" -eq 1 ] || fail "$fsname: exit $st"
		# The classes' reasons say what decided.
		case $cls in
		local) [[ $(mg_line "$out" none.img) == *"--copy-storage-all"* ]] ||
			fail "$fsname: local reason: $(mg_line "$out" none.img)" ;;
		cluster) [[ $(mg_line "$out" wb.img) == *"$fsname is a cluster filesystem"* ]] ||
			fail "$fsname: cluster reason: $(mg_line "$out" wb.img)" ;;
		shared) [[ $(mg_line "$out" wb.img) == *"none or directsync"* ]] ||
			fail "$fsname: shared reason: $(mg_line "$out" wb.img)" ;;
		esac
		[[ $(mg_line "$out" unsafe.img) == *"drops the guest's flushes"* ]] ||
		    [ "$cls" = local ] || fail "$fsname: unsafe reason"
		exec {fd}<&-
		MH_FDS=()
		vc_umount
		VC_MOUNTS=() VC_PIDS=()
	done
}

@test "check-migration: exit 0 only when every named image is safe; --json; shareable in status and --check-config" {
	mg_config
	VCACHEFS_TEST_FSTYPE=0x6969 vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	run -0 "$VCTL" -m "$VC_MNT" check-migration none.img ds.img wb-ro.img wb-sh.img
	[ "${#lines[@]}" -eq 4 ]
	grep -q "on nfs" <<<"$output" || skip "not the fault-injection build"
	run -1 "$VCTL" -m "$VC_MNT" check-migration none.img wb.img
	assert_line --partial "wb.img: unsafe: cache=writeback"
	assert_line --partial "none.img: safe: cache=none"
	run -0 "$VCTL" -m "$VC_MNT" check-migration --json wb-sh.img
	run -0 jq -r '.images[0] | "\(.name) \(.verdict) \(.fs) \(.class) \(.shareable) \(.open)"' <<<"$output"
	assert_output "wb-sh.img safe nfs shared yes no"
	# Bad usage is 2, an image that is not there is not safe (1).
	run -2 "$VCTL" -m "$VC_MNT" check-migration --bogus
	run -1 "$VCTL" -m "$VC_MNT" check-migration missing.img
	assert_output --partial "missing.img: unknown: not found under SOURCE"
	run -1 "$VCTL" -m "$VC_MNT" check-migration ../etc/passwd
	assert_output --partial "unknown: not a name under the mount"
	# status shows shareable for an open image.
	exec {fd}<"$VC_MNT/wb-sh.img"
	MH_FDS+=("$fd")
	run -0 "$VCTL" -m "$VC_MNT" status
	assert_line "shareable = yes: wb-sh.img"
	# --check-config shows it, and only where it is set.
	run -0 "$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
	assert_line --partial "wb-sh.img: cache=writeback aio=threads readonly=no shareable=yes (from [wb-sh.img])"
	assert_line --partial "wb.img: cache=writeback aio=threads readonly=no (from [wb.img])"
}

@test "check-migration: the real local filesystem under SOURCE (no override) is not safe without copying storage" {
	local fstype
	fstype=$(findmnt -n -o FSTYPE -T "$VC_SRC")
	truncate -s 8M "$VC_SRC/disk.img"
	mh_mount none
	exec {fd}<>"$VC_MNT/disk.img"
	MH_FDS+=("$fd")
	run -1 "$VCTL" -m "$VC_MNT" check-migration
	assert_output "disk.img: unsafe: $fstype is not a shared filesystem: the other host cannot see this image; migrate with --copy-storage-all, or put SOURCE on shared storage"
	run -1 "$VCTL" -m "$VC_MNT" check-migration --json
	run -0 jq -r '.images[0] | "\(.fs) \(.class) \(.cache) \(.open)"' <<<"$output"
	assert_output "$fstype local none yes"
}

@test "check-migration: a SOURCE on a FUSE mount is named by its mount type (fuse.vcachefs under vcachefs, no override)" {
	local inner=$VC_TMP/inner
	mkdir -p "$inner"
	truncate -s 8M "$VC_SRC/disk.img"
	mh_mount none
	# A second vcachefs whose SOURCE is the first mount.
	vc_mount -c "$MH_CONF" --control "$VC_TMP/inner.sock" "$VC_MNT" "$inner"
	run -1 "$VCTL" -s "$VC_TMP/inner.sock" check-migration disk.img
	assert_output "disk.img: unsafe: fuse.vcachefs is not a shared filesystem: the other host cannot see this image; migrate with --copy-storage-all, or put SOURCE on shared storage"
}

# --- in place: SOURCE == MOUNTPOINT ---

# vcachefs over VC_SRC itself, as over /var/lib/libvirt/images. The
# backing files stay reachable through MG_UNDER, a private bind mount of
# VC_SRC made before the overmount (private: a shared one would get the
# FUSE mount propagated over it).
mg_inplace() {
	MG_UNDER=$VC_TMP/under
	mkdir -p "$MG_UNDER"
	mount --bind "$VC_SRC" "$MG_UNDER"
	mount --make-private "$MG_UNDER"
	mh_conf writeback
	vc_mount -c "$MH_CONF" "$VC_SRC"
	[ "$(stat -f -c %t "$MG_UNDER")" != 65735546 ] ||
	    fail "the bind mount shows the FUSE mount: the test would look at the wrong file"
}

@test "in place: drop-cache of an image that is not open empties the backing file's page cache (not the FUSE inode's)" {
	dd if=/dev/urandom of="$VC_SRC/closed.img" bs=1M count=8 status=none
	mg_inplace
	cat "$MG_UNDER/closed.img" >/dev/null
	(( $(mh_resident "$MG_UNDER/closed.img") > 0 )) || fail "nothing cached: the test would mean nothing"
	run -0 "$VCTL" -m "$VC_SRC" drop-cache closed.img
	assert_equal "$(mh_resident "$MG_UNDER/closed.img")" 0
	grep -q "control: dropped the cache of closed.img (not open)" "$VC_LOG"
	# A flush of it answers too (the control thread is no FUSE client
	# of its own daemon).
	run -0 "$VCTL" -m "$VC_SRC" flush closed.img
}

@test "in place: check-migration names the filesystem under SOURCE (not fuse), open and not open" {
	local fstype
	fstype=$(findmnt -n -o FSTYPE -T "$VC_SRC")
	[[ $fstype != fuse* ]] || skip "VC_SRC is on $fstype"
	truncate -s 8M "$VC_SRC/open.img" "$VC_SRC/closed.img"
	mg_inplace
	exec {fd}<"$VC_SRC/open.img"
	MH_FDS+=("$fd")
	run -1 "$VCTL" -m "$VC_SRC" check-migration --json open.img closed.img missing.img
	run -0 jq -r '.images[] | "\(.name) \(.fs) \(.class) \(.open)"' <<<"$output"
	assert_line "open.img $fstype local yes"
	assert_line "closed.img $fstype local no"
	run -1 "$VCTL" -m "$VC_SRC" check-migration missing.img
	assert_output --partial "missing.img: unknown: not found under SOURCE"
}

# --- the libvirt hook ---

MG_HOOK=$MG_ROOT/etc/libvirt/hooks/qemu.d/vcachefs

# The recorded domain XML with this test's mount and off-mount directory.
mg_xml() {	# FILE
	sed -e "s|@MNT@|$VC_MNT|g" -e "s|@OFF@|$VC_TMP/off|g" -e "s|@LINK@|$VC_TMP/link|g" \
	    "$MG_ROOT/tests/migration/$1"
}

# Images of vm-mixed.xml, and a config: SHARE is the data disk's
# shareable (yes/no).
mg_hook_setup() {	# SHARE
	mkdir -p "$VC_SRC/vms" "$VC_SRC/cluster" "$VC_SRC/iso" "$VC_TMP/off"
	qemu-img create -q -f qcow2 "$VC_SRC/vms/web01-root.qcow2" 16M
	truncate -s 16M "$VC_SRC/vms/web01 data.raw" "$VC_SRC/cluster/quorum.raw" \
	    "$VC_SRC/iso/debian-12.iso" "$VC_TMP/off/web01-swap.raw"
	mh_conf writeback '[vms/web01-root.qcow2]' 'cache = none' \
	    '[vms/*data.raw]' "shareable = $1" \
	    '[cluster/quorum.raw]' 'shareable = yes' \
	    '[iso/*]' 'readonly = yes'
}

# Fill the page cache of every backing file of vm-mixed.xml (and of the
# off-mount disk) by reading it, and check that it took.
mg_fill() {
	local f
	for f in "$VC_SRC/vms/web01-root.qcow2" "$VC_SRC/vms/web01 data.raw" \
	    "$VC_SRC/cluster/quorum.raw" "$VC_SRC/iso/debian-12.iso" \
	    "$VC_TMP/off/web01-swap.raw"; do
		cat "$f" >/dev/null
		(( $(mh_resident "$f") > 0 )) || fail "nothing cached for $f: the test would mean nothing"
	done
}

mg_hook() {	# OPERATION XMLFILE: run the hook as libvirtd does
	mg_xml "$2" | VCACHEFSCTL=$VCTL "$MG_HOOK" web01 "$1" begin -
}

@test "hook: migrate on a shared store (nfs) with only safe disks: exit 0, stdout empty, their cache dropped, the off-mount disk untouched" {
	mg_hook_setup yes
	VCACHEFS_TEST_FSTYPE=0x6969 vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	run -0 "$VCTL" -m "$VC_MNT" check-migration vms/web01-root.qcow2
	[[ $output == *"on nfs"* ]] || skip "not the fault-injection build"
	mg_fill
	run --separate-stderr mg_hook migrate vm-mixed.xml
	[ "$status" -eq 0 ] || fail "hook exit $status: $stderr"
	# libvirt would take stdout of migrate as a new domain XML.
	assert_equal "$output" ""
	assert_equal "$stderr" ""
	assert_equal "$(mh_resident "$VC_SRC/vms/web01-root.qcow2")" 0
	assert_equal "$(mh_resident "$VC_SRC/vms/web01 data.raw")" 0
	assert_equal "$(mh_resident "$VC_SRC/cluster/quorum.raw")" 0
	# The read-only cdrom is not checked, but its cache is dropped too.
	assert_equal "$(mh_resident "$VC_SRC/iso/debian-12.iso")" 0
	(( $(mh_resident "$VC_TMP/off/web01-swap.raw") > 0 )) || fail "the off-mount disk was dropped"
	grep -q "control: dropped the cache of vms/web01 data.raw (not open)" "$VC_LOG"
}

@test "hook: migrate with a buffered disk on a shared store: refused, exit 1, the reason on stderr" {
	mg_hook_setup no
	VCACHEFS_TEST_FSTYPE=0x6969 vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	run -0 "$VCTL" -m "$VC_MNT" check-migration vms/web01-root.qcow2
	[[ $output == *"on nfs"* ]] || skip "not the fault-injection build"
	run --separate-stderr mg_hook migrate vm-mixed.xml
	assert_equal "$status" 1
	assert_equal "$output" ""
	[[ $stderr == *"web01: refusing the migration"* ]] || fail "stderr: $stderr"
	[[ $stderr == *"$VC_MNT/vms/web01 data.raw: unsafe: cache=writeback keeps the image in the host page cache on nfs"* ]] ||
	    fail "stderr: $stderr"
	# Only the disk that fails is named: the safe ones are not.
	[[ $stderr != *"web01-root.qcow2"* && $stderr != *"quorum.raw"* ]] || fail "stderr: $stderr"
}

@test "hook: migrate from the real local filesystem (no override): refused, the reason says --copy-storage-all" {
	mg_hook_setup yes
	mh_mount writeback '[vms/web01-root.qcow2]' 'cache = none'
	run --separate-stderr mg_hook migrate vm-mixed.xml
	assert_equal "$status" 1
	[[ $stderr == *"web01-root.qcow2: unsafe: "*"is not a shared filesystem"*"--copy-storage-all"* ]] ||
	    fail "stderr: $stderr"
}

@test "hook: a domain with no disk on a vcachefs mount is left alone; other operations do nothing" {
	mg_hook_setup yes
	mh_mount writeback
	mkdir -p "$VC_TMP/off"; truncate -s 1M "$VC_TMP/off/db02.raw"
	run -0 --separate-stderr mg_hook migrate vm-off-mount.xml
	assert_equal "$output$stderr" ""
	mg_fill
	run -0 --separate-stderr mg_hook started vm-mixed.xml
	run -0 --separate-stderr mg_hook reconnect vm-mixed.xml
	(( $(mh_resident "$VC_SRC/vms/web01-root.qcow2") > 0 )) || fail "started dropped the cache"
	! grep -q "control: " "$VC_LOG" || { grep "control: " "$VC_LOG"; fail "the daemon was asked something"; }
}

@test "hook: prepare drops the cache of an open disk; release flushes an open one (dirty -> 0) and a closed one (fdatasync)" {
	mg_hook_setup yes
	mh_mount writeback '[vms/web01-root.qcow2]' 'cache = none' \
	    '[vms/*data.raw]' 'shareable = yes'
	exec {fd}<>"$VC_MNT/vms/web01 data.raw"; MH_FDS+=("$fd")
	mg_fill
	run -0 --separate-stderr mg_hook prepare vm-mixed.xml
	assert_equal "$(mh_resident "$VC_SRC/vms/web01 data.raw")" 0
	grep -q "control: dropped the cache of vms/web01 data.raw$" "$VC_LOG"

	# Dirty data of the open writeback disk, and of a closed one.
	dd if=/dev/urandom of="$VC_MNT/vms/web01 data.raw" bs=1M count=4 conv=notrunc status=none
	dd if=/dev/urandom of="$VC_MNT/cluster/quorum.raw" bs=1M count=4 conv=notrunc status=none
	run -0 "$VCTL" -m "$VC_MNT" status --json
	run -0 jq -r '.images[] | select(.name == "vms/web01 data.raw") | .dirty' <<<"$output"
	(( output > 0 )) || fail "no dirty bytes before release ($output): the test would mean nothing"
	export ASAN_OPTIONS=detect_leaks=0
	mh_strace_start "$VC_TMP/strace.log" openat2,fdatasync
	run -0 --separate-stderr mg_hook release vm-mixed.xml
	mh_strace_stop
	assert_equal "$output$stderr" ""
	run -0 "$VCTL" -m "$VC_MNT" status --json
	run -0 jq -r '.images[] | select(.name == "vms/web01 data.raw") | .dirty' <<<"$output"
	assert_output 0
	# The closed disk: opened below SOURCE and fdatasync'ed.
	grep -q "control: flushed cluster/quorum.raw (not open)" "$VC_LOG"
	fd2=$(awk '/openat2\(/ && $NF ~ /^[0-9]+$/ { print $NF }' "$VC_TMP/strace.log" | head -1)
	[ -n "$fd2" ] || { cat "$VC_TMP/strace.log"; fail "no openat2 of a closed disk"; }
	grep -qE "fdatasync\($fd2\) += 0" "$VC_TMP/strace.log" ||
	    { cat "$VC_TMP/strace.log"; fail "no fdatasync($fd2)"; }
}

@test "hook: disks named through a symlinked directory or with .. and // are found on the mount: refused, and their cache dropped" {
	mg_hook_setup no
	ln -s "$VC_MNT/vms" "$VC_TMP/link"
	VCACHEFS_TEST_FSTYPE=0x6969 vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	run -0 "$VCTL" -m "$VC_MNT" check-migration vms/web01-root.qcow2
	[[ $output == *"on nfs"* ]] || skip "not the fault-injection build"
	run --separate-stderr mg_hook migrate vm-paths.xml
	assert_equal "$status" 1
	assert_equal "$output" ""
	# Named as the XML names it; the safe root disk is not named.
	[[ $stderr == *"$VC_TMP/link/web01 data.raw: unsafe: cache=writeback"* ]] || fail "stderr: $stderr"
	[[ $stderr != *"web01-root.qcow2"* ]] || fail "stderr: $stderr"
	mg_fill
	run -0 --separate-stderr mg_hook prepare vm-paths.xml
	assert_equal "$(mh_resident "$VC_SRC/vms/web01-root.qcow2")" 0
	assert_equal "$(mh_resident "$VC_SRC/vms/web01 data.raw")" 0
}

@test "hook: a writable storage pool volume disk refuses a migration (the hook cannot place it); start goes on" {
	mg_hook_setup yes
	mh_mount writeback
	run --separate-stderr mg_hook migrate vm-volume.xml
	assert_equal "$status" 1
	[[ $stderr == *"refusing the migration"*"volume default/web01-root.qcow2: a storage pool volume"* ]] || fail "stderr: $stderr"
	# The read-only one is skipped, as libvirt skips it.
	[[ $stderr != *"debian-12.iso"* ]] || fail "stderr: $stderr"
	run -0 --separate-stderr mg_hook start vm-volume.xml
	assert_equal "$output$stderr" ""
}

@test "hook: domain XML that xmllint cannot parse refuses a migration; start goes on with a warning" {
	mg_hook_setup yes
	mh_mount writeback
	run --separate-stderr mg_hook migrate vm-truncated.xml
	assert_equal "$status" 1
	assert_equal "$output" ""
	[[ $stderr == *"web01: migrate: cannot parse the domain XML"* ]] || fail "stderr: $stderr"
	run --separate-stderr mg_hook start vm-truncated.xml
	assert_equal "$status" 0
	[[ $stderr == *"cannot parse the domain XML"* ]] || fail "stderr: $stderr"
}

mg_hook_env() {	# OPERATION XMLFILE VAR=VALUE...: mg_hook with more environment
	local op=$1 f=$2
	shift 2
	mg_xml "$f" | env VCACHEFSCTL="$VCTL" "$@" "$MG_HOOK" web01 "$op" begin -
}

@test "hook: with no vcachefs mount it exits 0 before TMPDIR can fail; with one, no temporary file refuses a migrate and start goes on" {
	mg_hook_setup yes
	grep -v ' fuse\.vcachefs ' /proc/mounts >"$VC_TMP/mounts-none"
	run -0 --separate-stderr mg_hook_env start vm-mixed.xml \
	    VCACHEFS_HOOK_MOUNTS="$VC_TMP/mounts-none" TMPDIR="$VC_TMP/missing"
	assert_equal "$output$stderr" ""
	run -0 --separate-stderr mg_hook_env migrate vm-mixed.xml \
	    VCACHEFS_HOOK_MOUNTS="$VC_TMP/mounts-none" TMPDIR="$VC_TMP/missing"
	assert_equal "$output$stderr" ""
	mh_mount writeback
	run --separate-stderr mg_hook_env migrate vm-mixed.xml TMPDIR="$VC_TMP/missing"
	assert_equal "$status" 1
	[[ $stderr == *"web01: migrate: cannot make a temporary file in $VC_TMP/missing"* ]] || fail "stderr: $stderr"
	run --separate-stderr mg_hook_env start vm-mixed.xml TMPDIR="$VC_TMP/missing"
	assert_equal "$status" 0
	[[ $stderr == *"vcachefs disks not checked"* ]] || fail "stderr: $stderr"
	# An unreadable mount table: nothing can be checked.
	run --separate-stderr mg_hook_env migrate vm-mixed.xml VCACHEFS_HOOK_MOUNTS="$VC_TMP/missing"
	assert_equal "$status" 1
	run -0 --separate-stderr mg_hook_env start vm-mixed.xml VCACHEFS_HOOK_MOUNTS="$VC_TMP/missing"
}

@test "hook: without xmllint on PATH a migrate is refused and start goes on" {
	local t
	mg_hook_setup yes
	mh_mount writeback
	mkdir "$VC_TMP/bin"
	for t in awk sort cut cat mktemp rm date timeout realpath env; do
		ln -s "$(command -v "$t")" "$VC_TMP/bin/$t"
	done
	run --separate-stderr mg_hook_env migrate vm-mixed.xml PATH="$VC_TMP/bin"
	assert_equal "$status" 1
	[[ $stderr == *"xmllint, realpath, timeout, date, mktemp or $VCTL not found"* ]] || fail "stderr: $stderr"
	run --separate-stderr mg_hook_env start vm-mixed.xml PATH="$VC_TMP/bin"
	assert_equal "$status" 0
	[[ $stderr == *"not checked"* ]] || fail "stderr: $stderr"
}

@test "hook: one deadline for the whole hook: a daemon that does not answer is asked once, with stdin closed" {
	mg_hook_setup yes
	mh_mount writeback
	# A vcachefsctl that never answers; it says what it was asked and
	# what its stdin is.
	printf '%s\n' '#!/bin/sh' \
	    'printf "%s stdin=%s\n" "$*" "$(readlink /proc/self/fd/0)" >>"$CALLS"' \
	    'exec sleep 600' >"$VC_TMP/stuck-ctl"
	chmod +x "$VC_TMP/stuck-ctl"
	# A timeout that is no number: no check, so no migration.
	run --separate-stderr mg_hook_env migrate vm-mixed.xml VCACHEFS_HOOK_TIMEOUT=5m
	assert_equal "$status" 1
	[[ $stderr == *"VCACHEFS_HOOK_TIMEOUT=5m is not a number of seconds"* ]] || fail "stderr: $stderr"
	run --separate-stderr mg_hook_env prepare vm-mixed.xml CALLS="$VC_TMP/ctl.calls" \
	    VCACHEFSCTL="$VC_TMP/stuck-ctl" VCACHEFS_HOOK_TIMEOUT=2
	assert_equal "$status" 0
	# Four disks on the mount, one request: the mount is skipped after it.
	assert_equal "$(wc -l <"$VC_TMP/ctl.calls")" 1
	grep -q "drop-cache vms/web01-root.qcow2 stdin=/dev/null$" "$VC_TMP/ctl.calls" ||
	    fail "calls: $(cat "$VC_TMP/ctl.calls")"
	[[ $stderr == *"web01-root.qcow2: timed out"* ]] || fail "stderr: $stderr"
	[ "$(grep -c "did not answer in time" <<<"$stderr")" -eq 3 ] || fail "stderr: $stderr"
	# A migrate is refused for every writable disk on that mount.
	: >"$VC_TMP/ctl.calls"
	run --separate-stderr mg_hook_env migrate vm-mixed.xml CALLS="$VC_TMP/ctl.calls" \
	    VCACHEFSCTL="$VC_TMP/stuck-ctl" VCACHEFS_HOOK_TIMEOUT=2
	assert_equal "$status" 1
	assert_equal "$(wc -l <"$VC_TMP/ctl.calls")" 1
	# Past the deadline even a path is not resolved: refused too. The
	# read-only cdrom is not checked (libvirt does not check it either),
	# only its drop fails.
	[[ $stderr == *"refusing the migration"*"web01-root.qcow2: timed out"*"web01 data.raw: cannot resolve its path: no time left"* ]] ||
	    fail "stderr: $stderr"
	[[ $stderr == *"migrate: $VC_MNT/iso/debian-12.iso: $VC_MNT did not answer in time"* ]] || fail "stderr: $stderr"
}

# --- cgroups: whose I/O and page cache it is ---

# Two cgroups, A (the writer, as a VM would be) and D (the daemon), in
# the memory hierarchy: cgroup v2 where it has the memory controller (with
# io too), else the v1 memory hierarchy. Sets MG_CG_KIND, MG_CG_A, MG_CG_D.
mg_cg_setup() {
	local root own
	MG_CG_KIND=
	for root in /sys/fs/cgroup /sys/fs/cgroup/unified; do
		[ -f "$root/cgroup.controllers" ] || continue
		grep -qw memory "$root/cgroup.controllers" || continue
		# The root may have processes of its own; a child may not.
		grep -qw memory "$root/cgroup.subtree_control" ||
		    echo "+memory" >"$root/cgroup.subtree_control" || continue
		grep -qw io "$root/cgroup.controllers" &&
		    { grep -qw io "$root/cgroup.subtree_control" || echo "+io" >"$root/cgroup.subtree_control"; } || true
		MG_CG_KIND=v2
		local p=$root/vcachefs-test.$$.$BATS_TEST_NUMBER
		mkdir "$p"; MG_CGROUPS=("$p")
		(cd "$root" && cat cgroup.subtree_control) | tr ' ' '\n' | grep -xE 'memory|io' |
		    sed 's/^/+/' | tr '\n' ' ' >"$p/cgroup.subtree_control"
		mkdir "$p/A" "$p/D"; MG_CGROUPS=("$p/A" "$p/D" "$p")
		MG_CG_A=$p/A MG_CG_D=$p/D
		return 0
	done
	own=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
	root=/sys/fs/cgroup/memory$own
	if [ -n "$own" ] && [ -f "$root/memory.stat" ] && mkdir "$root/vcachefs-test-A.$$" 2>/dev/null; then
		mkdir "$root/vcachefs-test-D.$$"
		MG_CGROUPS=("$root/vcachefs-test-A.$$" "$root/vcachefs-test-D.$$")
		MG_CG_KIND=v1 MG_CG_A=$root/vcachefs-test-A.$$ MG_CG_D=$root/vcachefs-test-D.$$
		return 0
	fi
	return 1
}

# Page cache (file) bytes charged to a cgroup.
mg_cg_file() {
	if [ "$MG_CG_KIND" = v2 ]; then
		awk '$1 == "file" { print $2 }' "$1/memory.stat"
	else
		awk '$1 == "cache" { print $2 }' "$1/memory.stat"
	fi
}

mg_cg_mem() {	# memory.current, or v1's usage_in_bytes
	cat "$1/memory.current" 2>/dev/null || cat "$1/memory.usage_in_bytes"
}

# cgroup v2 io.stat bytes (rbytes+wbytes) of device MAJ:MIN, or "" without io.
mg_cg_io() {	# CGROUP MAJ:MIN
	[ -f "$1/io.stat" ] || return 0
	awk -v d="$2" '$1 == d { for (i = 2; i <= NF; i++) { split($i, kv, "=");
		if (kv[1] == "rbytes" || kv[1] == "wbytes") n += kv[2] } } END { print n + 0 }' "$1/io.stat"
}

# Storage I/O a process caused (/proc/PID/io): mg_proc_io PID read_bytes|write_bytes
mg_proc_io() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/io"; }

# Run a command as a member of cgroup CG; prints its (and its children's)
# storage I/O afterwards as "read_bytes write_bytes".
mg_in_cgroup() {	# CG COMMAND...
	local cg=$1
	shift
	sh -c 'echo 0 >"$1/cgroup.procs" || exit 1; shift; "$@" || exit 1
	    awk '\''$1 == "read_bytes:" { r = $2 } $1 == "write_bytes:" { w = $2 }
	    END { print r, w }'\'' /proc/$$/io' sh "$cg" "$@"
}

@test "cgroups: backing I/O and page cache of a writer in cgroup A are charged to the daemon's cgroup D, not A" {
	local MiB=1048576 dev before io r w
	mg_cg_setup || skip "no memory cgroup to make here (neither cgroup v2 with memory nor v1)"
	dev=$(findmnt -n -o MAJ:MIN -T "$VC_SRC")
	truncate -s 64M "$VC_SRC/vm.img"
	mh_mount writeback
	# The daemon (all its threads) moves before any image I/O.
	echo "$VC_PID" >"$MG_CG_D/cgroup.procs"

	before=$(mg_proc_io "$VC_PID" write_bytes)
	run -0 mg_in_cgroup "$MG_CG_A" dd if=/dev/urandom of="$VC_MNT/vm.img" bs=1M count=64 conv=notrunc status=none
	read -r r w <<<"$output"
	echo "# $MG_CG_KIND after a 64 MiB write from A: A file=$(mg_cg_file "$MG_CG_A") mem=$(mg_cg_mem "$MG_CG_A") io=$(mg_cg_io "$MG_CG_A" "$dev"); D file=$(mg_cg_file "$MG_CG_D") mem=$(mg_cg_mem "$MG_CG_D") io=$(mg_cg_io "$MG_CG_D" "$dev"); writer write_bytes=$w, daemon +$(( $(mg_proc_io "$VC_PID" write_bytes) - before ))" >&3
	(( $(mg_cg_file "$MG_CG_D") >= 56 * MiB )) || fail "D holds $(mg_cg_file "$MG_CG_D") bytes of page cache, not the image's 64 MiB"
	(( $(mg_cg_file "$MG_CG_A") < 8 * MiB )) || fail "A holds $(mg_cg_file "$MG_CG_A") bytes of page cache"
	# (The writer's own write_bytes counts too: FUSE accounts a direct
	# write to its caller. What matters is where the pages are.)
	(( $(mg_proc_io "$VC_PID" write_bytes) - before >= 56 * MiB )) || fail "the daemon dirtied less than the image"

	# Reading back, cold: the daemon reads the store, and D is charged.
	run -0 "$VCTL" -m "$VC_MNT" drop-cache vm.img
	(( $(mg_cg_file "$MG_CG_D") < 8 * MiB )) || fail "drop-cache left $(mg_cg_file "$MG_CG_D") bytes in D"
	before=$(mg_proc_io "$VC_PID" read_bytes)
	io=$(mg_cg_io "$MG_CG_D" "$dev")
	run -0 mg_in_cgroup "$MG_CG_A" dd if="$VC_MNT/vm.img" of=/dev/null bs=1M status=none
	read -r r w <<<"$output"
	echo "# $MG_CG_KIND after a 64 MiB cold read from A: A file=$(mg_cg_file "$MG_CG_A") io=$(mg_cg_io "$MG_CG_A" "$dev"); D file=$(mg_cg_file "$MG_CG_D") io=$(mg_cg_io "$MG_CG_D" "$dev"); reader read_bytes=$r, daemon +$(( $(mg_proc_io "$VC_PID" read_bytes) - before ))" >&3
	(( $(mg_cg_file "$MG_CG_D") >= 56 * MiB )) || fail "the read left $(mg_cg_file "$MG_CG_D") bytes in D"
	(( $(mg_cg_file "$MG_CG_A") < 8 * MiB )) || fail "A holds $(mg_cg_file "$MG_CG_A") bytes of page cache"
	(( $(mg_proc_io "$VC_PID" read_bytes) - before >= 56 * MiB )) || fail "the daemon read less than the image from storage"
	if [ -n "$io" ]; then
		(( $(mg_cg_io "$MG_CG_D" "$dev") - io >= 56 * MiB )) || fail "io.stat of D"
		(( $(mg_cg_io "$MG_CG_A" "$dev") < 8 * MiB )) || fail "io.stat of A: $(mg_cg_io "$MG_CG_A" "$dev")"
	fi
}
