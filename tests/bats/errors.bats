#!/usr/bin/env bats
# Errors of the backing store reach the client unchanged, and the daemon
# keeps serving.

load helper
load modes_helper

setup() {
	mh_setup
	SMALL=$VC_TMP/small
	mkdir "$SMALL"
}

teardown() {
	vc_stop_all
	umount "$SMALL" 2>/dev/null || umount -l "$SMALL" 2>/dev/null || true
	mh_teardown
}

full_disk() {	# MODE: fill a 2 MiB tmpfs through the mount
	mount -t tmpfs -o size=2M tmpfs "$SMALL"
	mh_conf "$1"
	vc_mount -c "$MH_CONF" "$SMALL" "$VC_MNT"
	run dd if=/dev/zero of="$VC_MNT/img" bs=64k count=64 conv=fsync
	assert_failure
	assert_output --partial "No space left on device"
	# The same on the plain directory, for comparison.
	run dd if=/dev/zero of="$SMALL/other" bs=64k count=64
	assert_output --partial "No space left on device"
	rm -f "$SMALL/other"
	# Still serving, and what fit is there.
	run ls "$VC_MNT"
	assert_success
	assert_output img
	[ "$(stat -c %s "$VC_MNT/img")" -gt 0 ]
	# Room again once the image is gone: the mount takes writes.
	rm "$VC_MNT/img"
	echo small >"$VC_MNT/note"
	[ "$(cat "$SMALL/note")" = small ]
}

@test "a full disk gives ENOSPC through the mount (writeback)" { full_disk writeback; }
@test "a full disk gives ENOSPC through the mount (writethrough)" { full_disk writethrough; }
@test "a full disk gives ENOSPC through the mount (unsafe)" { full_disk unsafe; }

@test "a full disk gives ENOSPC through the mount (none, O_DIRECT on ext4)" {
	mh_loop_ext4
	VC_SRC=$MH_EXT4DIR/src
	mkdir "$VC_SRC"
	# Leave 8 MiB free (ext4 keeps some for itself); write 16 MiB.
	local avail bsize
	avail=$(stat -f -c %f "$MH_EXT4DIR")	# free to root, reserve included
	bsize=$(stat -f -c %S "$MH_EXT4DIR")
	fallocate -l $(( avail * bsize - (8 << 20) )) "$MH_EXT4DIR/filler"
	mh_mount none
	run dd if=/dev/zero of="$VC_MNT/img" bs=64k count=256 oflag=direct
	assert_failure
	assert_output --partial "No space left on device"
	run ls "$VC_MNT"
	assert_success
}

@test "errno of the backing store passes through: ENOENT, EEXIST, ENOTEMPTY, ENOTDIR" {
	mh_mount writeback
	run cat "$VC_MNT/missing"
	assert_output --partial "No such file or directory"
	mkdir "$VC_MNT/d"
	touch "$VC_MNT/d/f"
	run mkdir "$VC_MNT/d"
	assert_output --partial "File exists"
	run rmdir "$VC_MNT/d"
	assert_output --partial "Directory not empty"
	run ls "$VC_MNT/d/f/x"
	assert_output --partial "Not a directory"
}
