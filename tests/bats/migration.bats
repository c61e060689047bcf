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
}

teardown() {
	local p c
	for p in "${MG_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
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
