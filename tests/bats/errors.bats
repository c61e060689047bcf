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
	# Room again once the image is gone: the mount takes writes. The
	# space comes back when the daemon's last descriptor of the image
	# closes, on the kernel's RELEASE, which may still be on its way.
	rm "$VC_MNT/img"
	for _ in $(seq 300); do
		[ "$(df --output=avail -k "$SMALL" | tail -1)" -ge 1024 ] && break
		sleep 0.1
	done
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

# A failed flush stays failed. The kernel reports a writeback error once
# per open file description, and the daemon has one backing descriptor per
# image, so without a latch in the daemon the guest's next fsync would
# succeed although the data of the failed one was dropped. The fault hook
# fails the first backing sync with EIO; every later fsync on the image,
# through any opener, must fail too, until the last opener has closed it.
# Prints one line per step: NAME OK or NAME ERRNONAME.
latch_client() {	# PATH
	python3 - "$1" <<'PY'
import errno, os, sys
p = sys.argv[1]
def step(name, fn):
    try:
        fn()
        print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
a = os.open(p, os.O_RDWR)
b = os.open(p, os.O_RDWR)	# a second opener of the same image
step("write1", lambda: os.pwrite(a, b"a" * 4096, 0))
step("fsync1", lambda: os.fsync(a))
step("write2", lambda: os.pwrite(a, b"b" * 4096, 4096))
step("fsync2", lambda: os.fsync(a))
step("fdatasync3", lambda: os.fdatasync(a))
step("fsync-other-opener", lambda: os.fsync(b))
os.close(a)
step("fsync-after-first-close", lambda: os.fsync(b))
os.close(b)
PY
}

latch_reopen() {	# PATH: a fresh open after the last close
	python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"c" * 4096, 8192)
os.fsync(fd)
print("reopen-fsync OK")' "$1"
}

latch_expect='write1 OK
fsync1 EIO
write2 OK
fsync2 EIO
fdatasync3 EIO
fsync-other-opener EIO
fsync-after-first-close EIO'

latch_check() {	# CACHE AIO
	truncate -s 1M "$VC_SRC/img"
	mh_conf writeback "[img]" "cache = $1" "aio = $2"
	VCACHEFS_FAULT=fsync:1:EIO vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	run latch_client "$VC_MNT/img"
	assert_success
	assert_output "$latch_expect"
	# The latch lives as long as the image: after the last RELEASE (which
	# the kernel sends after close(2) returns) a new open starts clean.
	mh_wait_no_backing "$VC_SRC/img"
	run latch_reopen "$VC_MNT/img"
	assert_success
	assert_output "reopen-fsync OK"
	# The writes after the failure reached the file all the same.
	[ "$(head -c 4096 "$VC_SRC/img" | tr -d a | wc -c)" -eq 0 ]
	[ "$(tail -c +4097 "$VC_SRC/img" | head -c 4096 | tr -d b | wc -c)" -eq 0 ]
}

@test "a failed flush is latched until the last close (writeback, aio=threads)" { latch_check writeback threads; }
@test "a failed flush is latched until the last close (writeback, aio=io_uring)" { latch_check writeback io_uring; }
@test "a failed flush is latched until the last close (none, aio=threads)" { latch_check none threads; }
@test "a failed flush is latched until the last close (none, aio=native)" { latch_check none native; }
@test "a failed flush is latched until the last close (none, aio=io_uring)" { latch_check none io_uring; }

# In the durable modes, truncate and extending writes end with fdatasync of
# their own; when it fails the guest's data may be gone, so it is latched too.
@test "a failed fdatasync after truncate is latched (writethrough)" {
	truncate -s 1M "$VC_SRC/img"
	mh_conf writethrough
	VCACHEFS_FAULT=fsync:1:EIO vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	run python3 -c 'import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for name, fn in (("ftruncate", lambda: os.ftruncate(fd, 2 << 20)),
                 ("fsync", lambda: os.fsync(fd)), ("fsync", lambda: os.fsync(fd))):
    try:
        fn(); print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode[e.errno])' "$VC_MNT/img"
	assert_success
	assert_output $'ftruncate EIO\nfsync EIO\nfsync EIO'
}

@test "a failed fdatasync after an extending write is latched (directsync)" {
	truncate -s 1M "$VC_SRC/img"
	mh_conf directsync
	VCACHEFS_FAULT=fsync:1:EIO vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	# 100 bytes past the end: the padded O_DIRECT tail extends the file,
	# which is cut back and made durable with fdatasync.
	run python3 -c 'import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for name, fn in (("write", lambda: os.pwrite(fd, b"x" * 100, 1 << 20)),
                 ("fsync", lambda: os.fsync(fd)), ("fsync", lambda: os.fsync(fd))):
    try:
        fn(); print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode[e.errno])' "$VC_MNT/img"
	assert_success
	assert_output $'write EIO\nfsync EIO\nfsync EIO'
}
