#!/usr/bin/env bats
# readonly = yes: every way of changing an image's bytes or size fails with
# EROFS, a new file whose name matches a readonly section cannot be made,
# while reads, metadata (mode, owner, xattrs) and the writable image beside
# it work as usual.

bats_require_minimum_version 1.5.0

load helper
load modes_helper

EROFS_MSG='Read-only file system'
RO_FILES=(ro.img disk.iso)	# readonly by exact name, by glob

setup() {
	mh_setup
	# ro.img has known patterns (for qemu-io), the others random bytes.
	qemu-img create -q -f raw "$VC_SRC/ro.img" 1M
	qemu-io -f raw -c 'write -P 0x42 0 512k' -c 'write -P 0x24 512k 512k' \
	    "$VC_SRC/ro.img" >/dev/null
	dd if=/dev/urandom of="$VC_SRC/disk.iso" bs=64k count=16 status=none
	dd if=/dev/urandom of="$VC_SRC/rw.img" bs=64k count=16 status=none
	mkdir "$VC_TMP/orig"
	cp "$VC_SRC/ro.img" "$VC_SRC/disk.iso" "$VC_SRC/rw.img" "$VC_TMP/orig/"
}

teardown() { mh_teardown; }

# mount_ro [CACHE]: ro.img and *.iso readonly, cache CACHE (writeback).
mount_ro() {
	mh_mount "${1:-writeback}" '[ro.img]' 'readonly = yes' '[*.iso]' 'readonly = yes'
}

# The backing file still holds its original bytes.
assert_unchanged() {	# NAME
	cmp "$VC_TMP/orig/$1" "$VC_SRC/$1" ||
	    fail "$1 changed on the backing store"
}

assert_erofs() {	# (after run)
	assert_failure
	assert_output --partial "$EROFS_MSG"
}

@test "readonly: opening for write fails with EROFS" {
	local f

	mount_ro
	for f in "${RO_FILES[@]}"; do
		run dd if=/dev/zero of="$VC_MNT/$f" bs=4k count=1 conv=notrunc
		assert_erofs
		run bash -c 'exec 9>>"$1"' _ "$VC_MNT/$f"
		assert_erofs
		run bash -c 'exec 9<>"$1"' _ "$VC_MNT/$f"
		assert_erofs
		run bash -c 'exec 9>"$1"' _ "$VC_MNT/$f"	# O_TRUNC
		assert_erofs
		assert_unchanged "$f"
	done
}

@test "readonly: opening for write fails with EROFS while a reader has it open" {
	local f fd

	mount_ro
	for f in "${RO_FILES[@]}"; do
		mh_open_fd '<' "$VC_MNT/$f"
		fd=$MH_OPENED
		mh_backing_fd "$VC_SRC/$f"
		assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDONLY"
		run dd if=/dev/zero of="$VC_MNT/$f" bs=4k count=1 conv=notrunc
		assert_erofs
		# Still one read-only descriptor: no upgrade happened.
		mh_backing_fd "$VC_SRC/$f"
		assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDONLY"
		cmp <(head -c 65536 <&"$fd") <(head -c 65536 "$VC_TMP/orig/$f")
		mh_close_fd "$fd"
		assert_unchanged "$f"
	done
}

@test "readonly: truncate fails with EROFS, by path and by open" {
	local f

	mount_ro
	for f in "${RO_FILES[@]}"; do
		run truncate -s 0 "$VC_MNT/$f"
		assert_erofs
		run truncate -s 2M "$VC_MNT/$f"
		assert_erofs
		# truncate(2) on the path: SETATTR without an open file.
		run python3 -c '
import os, sys
try:
    os.truncate(sys.argv[1], 4096)
except OSError as e:
    sys.exit(os.strerror(e.errno))
' "$VC_MNT/$f"
		assert_erofs
		assert_unchanged "$f"
	done
	# The writable image beside them can be cut.
	truncate -s 2M "$VC_MNT/rw.img"
	assert_equal "$(stat -c %s "$VC_SRC/rw.img")" 2097152
}

@test "readonly: fallocate fails with EROFS" {
	local f

	mount_ro
	for f in "${RO_FILES[@]}"; do
		run fallocate -l 4M "$VC_MNT/$f"
		assert_erofs
		run fallocate -p -o 0 -l 65536 "$VC_MNT/$f"
		assert_erofs
		assert_unchanged "$f"
	done
	fallocate -l 3M "$VC_MNT/rw.img"
	assert_equal "$(stat -c %s "$VC_SRC/rw.img")" 3145728
}

# copy_file_range(2) SRC -> DST, 64 KiB at offset 0; prints the error.
CFR='
import os, sys
src, dst = sys.argv[1:3]
try:
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dst, os.O_WRONLY)
    n = os.copy_file_range(fi, fo, 65536, 0, 0)
except OSError as e:
    sys.exit(os.strerror(e.errno))
print("copied", n)
'

@test "readonly: copy_file_range into it fails with EROFS, out of it works" {
	local f

	mount_ro
	for f in "${RO_FILES[@]}"; do
		run python3 -c "$CFR" "$VC_MNT/rw.img" "$VC_MNT/$f"
		assert_erofs
		assert_unchanged "$f"
	done
	# From a readonly image into the writable one.
	run python3 -c "$CFR" "$VC_MNT/ro.img" "$VC_MNT/rw.img"
	assert_success
	assert_output 'copied 65536'
	cmp -n 65536 "$VC_SRC/rw.img" "$VC_TMP/orig/ro.img"
}

@test "readonly: creating a file whose name matches a readonly section fails with EROFS" {
	mount_ro
	run touch "$VC_MNT/new.iso"
	assert_erofs
	run bash -c 'printf data >"$1"' _ "$VC_MNT/other.iso"
	assert_erofs
	run bash -c 'set -o noclobber; printf data >"$1"' _ "$VC_MNT/excl.iso"	# O_EXCL
	assert_erofs
	assert_file_not_exists "$VC_SRC/new.iso"
	assert_file_not_exists "$VC_SRC/other.iso"
	assert_file_not_exists "$VC_SRC/excl.iso"
	# The same, through the writable image's section: works.
	touch "$VC_MNT/new.img"
	assert_file_exists "$VC_SRC/new.img"
}

@test "readonly: mknod of a regular file matching a readonly section fails with EROFS" {
	mount_ro
	run python3 -c '
import os, stat, sys
try:
    os.mknod(sys.argv[1], stat.S_IFREG | 0o644)
except OSError as e:
    sys.exit(os.strerror(e.errno))
' "$VC_MNT/made.iso"
	assert_erofs
	assert_file_not_exists "$VC_SRC/made.iso"
}

@test "readonly: reads work and match the backing file" {
	local f

	mount_ro
	for f in "${RO_FILES[@]}"; do
		cmp "$VC_MNT/$f" "$VC_SRC/$f"
		mh_open_fd '<' "$VC_MNT/$f"
		mh_backing_fd "$VC_SRC/$f"
		assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDONLY"
		mh_close_fd "$MH_OPENED"
	done
	run qemu-io -r -f raw -t none -c 'read -P 0x42 1000 3000' \
	    -c 'read -P 0x42 524000 288' -c 'read -P 0x24 524288 300' -c 'read -P 0x24 600000 5000' "$VC_MNT/ro.img"
	assert_success
	refute_output --partial 'failed'
}

@test "readonly: cache=none readonly image reads with O_DIRECT and refuses writes" {
	local f

	mount_ro none
	for f in "${RO_FILES[@]}"; do
		mh_open_fd '<' "$VC_MNT/$f"
		mh_backing_fd "$VC_SRC/$f"
		mh_assert_mode_flags none "$MH_BFLAGS"
		assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDONLY"
		cmp <(dd if="$VC_MNT/$f" bs=3000 skip=7 count=20 status=none) \
		    <(dd if="$VC_TMP/orig/$f" bs=3000 skip=7 count=20 status=none)
		run dd if=/dev/zero of="$VC_MNT/$f" bs=4k count=1 conv=notrunc
		assert_erofs
		mh_close_fd "$MH_OPENED"
		assert_unchanged "$f"
	done
}

@test "readonly: chmod and chown work and reach the backing file" {
	local f

	mount_ro
	for f in "${RO_FILES[@]}"; do
		chmod 600 "$VC_MNT/$f"
		assert_equal "$(stat -c %a "$VC_SRC/$f")" 600
		chmod 640 "$VC_MNT/$f"
		assert_equal "$(stat -c %a "$VC_SRC/$f")" 640
		chown 1234:5678 "$VC_MNT/$f"
		assert_equal "$(stat -c %u:%g "$VC_SRC/$f")" 1234:5678
		assert_unchanged "$f"
	done
}

@test "readonly: extended attributes can be set, read and removed" {
	local f

	mount_ro
	for f in "${RO_FILES[@]}"; do
		setfattr -n user.vcachefs -v hello "$VC_MNT/$f"
		assert_equal "$(getfattr --only-values -n user.vcachefs "$VC_SRC/$f")" hello
		assert_equal "$(getfattr --only-values -n user.vcachefs "$VC_MNT/$f")" hello
		setfattr -n user.other -v from-backing "$VC_SRC/$f"
		assert_equal "$(getfattr --only-values -n user.other "$VC_MNT/$f")" from-backing
		setfattr -x user.vcachefs "$VC_MNT/$f"
		run getfattr -n user.vcachefs "$VC_SRC/$f"
		assert_failure
		assert_unchanged "$f"
	done
}

@test "readonly: the writable image beside it still takes writes" {
	mount_ro
	dd if=/dev/urandom of="$VC_TMP/new" bs=64k count=4 status=none
	dd if="$VC_TMP/new" of="$VC_MNT/rw.img" bs=64k seek=2 conv=notrunc,fsync status=none
	cmp <(dd if="$VC_SRC/rw.img" bs=64k skip=2 count=4 status=none) "$VC_TMP/new"
	cmp -n 131072 "$VC_SRC/rw.img" "$VC_TMP/orig/rw.img"
	# A readonly image next to it is still readonly.
	run dd if=/dev/zero of="$VC_MNT/ro.img" bs=4k count=1 conv=notrunc
	assert_erofs
}
