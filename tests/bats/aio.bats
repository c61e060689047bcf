#!/usr/bin/env bats
# aio engines: threads, native, io_uring; parallel writes to one image;
# the visible native->threads fallback.

load helper
load modes_helper

setup() {
	mh_setup
	VC_CONF=$VC_TMP/vcachefs.conf
}

teardown() {
	mh_teardown
}

conf() {	# conf CACHE AIO
	printf '[global]\ncache = %s\naio = %s\n' "$1" "$2" >"$VC_CONF"
}

# Highest "at most N in flight" the daemon logged for an image.
max_inflight() {
	sed -n "s/.*$1: closed: .*at most \([0-9]*\) in flight.*/\1/p" "$VC_LOG" | sort -n | tail -1
}

@test "8 threads writing one image reach the daemon in parallel (threads engine)" {
	conf writeback threads
	vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	run fio --name=par --filename="$VC_MNT/one.img" --size=32M --bs=4k \
		--rw=randwrite --ioengine=psync --numjobs=8 --runtime=3 --time_based \
		--group_reporting
	assert_success
	vc_umount
	n=$(max_inflight one.img)
	echo "max writes in flight: $n"
	[ -n "$n" ] && [ "$n" -gt 1 ]
}

@test "8 threads writing one O_DIRECT image reach the daemon in parallel (none, native)" {
	conf none native
	vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	run fio --name=par --filename="$VC_MNT/one.img" --size=32M --bs=4k \
		--rw=randwrite --ioengine=psync --direct=1 --numjobs=8 --runtime=3 \
		--time_based --group_reporting
	assert_success
	vc_umount
	n=$(max_inflight one.img)
	echo "max writes in flight: $n"
	[ -n "$n" ] && [ "$n" -gt 1 ]
}

@test "a file created through the mount takes parallel writes on its create handle" {
	conf writeback threads
	vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	# One O_CREAT|O_EXCL descriptor (the CREATE reply's handle), 8 threads.
	run python3 -c '
import os, sys, threading
fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
buf = b"x" * 65536
def w(k):
    for i in range(400):
        os.pwrite(fd, buf, ((k * 400 + i) % 512) * 65536)
ts = [threading.Thread(target=w, args=(k,)) for k in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
os.close(fd)' "$VC_MNT/created.img"
	assert_success
	vc_umount
	n=$(max_inflight created.img)
	echo "max writes in flight: $n"
	[ -n "$n" ] && [ "$n" -gt 1 ]
}

@test "one writer at a time is seen as one in flight (the counter can tell)" {
	conf writeback threads
	vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	run fio --name=one --filename="$VC_MNT/one.img" --size=8M --bs=4k \
		--rw=randwrite --ioengine=psync --numjobs=1
	assert_success
	vc_umount
	[ "$(max_inflight one.img)" -eq 1 ]
}

@test "aio=native with a buffered mode falls back to threads, visibly" {
	printf '[global]\ncache = writeback\naio = native\n[direct.img]\ncache = none\naio = native\n' >"$VC_CONF"
	: >"$VC_SRC/buffered.img"
	: >"$VC_SRC/direct.img"
	run "$VCACHEFS" --check-config -c "$VC_CONF" "$VC_SRC"
	assert_success
	assert_line "buffered.img: cache=writeback aio=threads (native needs O_DIRECT: cache=none or directsync) readonly=no (from [global])"
	assert_line "direct.img: cache=none aio=native readonly=no (from [direct.img])"
	vc_mount -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	echo x >"$VC_MNT/buffered.img"
	echo x | dd of="$VC_MNT/direct.img" conv=notrunc status=none
	grep -q "buffered.img: aio=native needs O_DIRECT.*uses aio=threads" "$VC_LOG"
	if grep -q "direct.img: aio=native needs" "$VC_LOG"; then
		fail "direct.img (cache=none) must keep aio=native"
	fi
}

# fio with crc32c verification through each io_uring configuration.
verify_engine() {	# CACHE AIO
	conf "$1" "$2"
	vc_mount -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	run fio --name=a --filename="$VC_MNT/a.img" --size=16M --bs=64k --rw=randwrite \
		--ioengine=io_uring --iodepth=32 --direct=1 --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --verify_state_save=0
	assert_success
	run fio --name=b --filename="$VC_MNT/b.img" --size=8M --bs=3000 --rw=randwrite \
		--ioengine=io_uring --iodepth=32 --direct=1 --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --verify_state_save=0
	assert_success
	run fio --name=c --filename="$VC_MNT/c.img" --size=16M --bs=4k --rw=randrw \
		--ioengine=io_uring --iodepth=32 --direct=0 --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --verify_state_save=0
	assert_success
	run "$VC_TOOLS/difftest" --test "$VC_MNT/d.img" --ref "$VC_TMP/d.ref" \
		--seed 11 --ops 2000
	assert_success
	run "$VC_TOOLS/difftest" --test "$VC_MNT/e.img" --ref "$VC_TMP/e.ref" \
		--seed 12 --ops 2000 --direct
	assert_success
	# The bytes are on the backing store, not just in our buffers.
	cmp "$VC_SRC/d.img" "$VC_TMP/d.ref"
	cmp "$VC_SRC/e.img" "$VC_TMP/e.ref"
}

@test "threads engine: none keeps data intact at queue depth 32" { verify_engine none threads; }
@test "threads engine: writeback keeps data intact at queue depth 32" { verify_engine writeback threads; }
@test "io_uring engine: none + native keeps data intact" { verify_engine none native; }
@test "io_uring engine: directsync + native keeps data intact" { verify_engine directsync native; }
@test "io_uring engine: writeback + io_uring keeps data intact" { verify_engine writeback io_uring; }
@test "io_uring engine: writethrough + io_uring keeps data intact" { verify_engine writethrough io_uring; }
@test "io_uring engine: unsafe + io_uring keeps data intact" { verify_engine unsafe io_uring; }

@test "io_uring engine: qemu-io reads and writes at unaligned offsets" {
	conf none io_uring
	qemu-img create -q -f qcow2 "$VC_SRC/q.qcow2" 64M
	vc_mount -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	run qemu-io -t none -c 'write -P 0x5a 1000 70000' -c 'read -P 0x5a 1000 70000' \
		"$VC_MNT/q.qcow2"
	assert_success
	run qemu-io -t writeback -c 'read -P 0x5a 1000 70000' -c 'read -P 0 71000 1000' \
		"$VC_MNT/q.qcow2"
	assert_success
	vc_umount
	run qemu-img check "$VC_SRC/q.qcow2"
	assert_success
	run qemu-io -c 'read -P 0x5a 1000 70000' "$VC_SRC/q.qcow2"
	assert_success
}

# Durability through the ring: strace cannot see IORING_OP_FSYNC, the
# loop device's flush counter can (mh_check_flushes, modes_helper.bash).
@test "loop flushes through the ring: writeback + io_uring" { mh_check_flushes writeback io_uring; }
@test "loop flushes through the ring: none + io_uring" { mh_check_flushes none io_uring; }
@test "loop flushes through the ring: directsync + io_uring" { mh_check_flushes directsync io_uring; }
@test "loop flushes with aio=native (flushed in the worker, as QEMU does): none" { mh_check_flushes none native; }
@test "loop flushes with aio=native (flushed in the worker, as QEMU does): directsync" { mh_check_flushes directsync native; }
@test "loop flushes through the ring: unsafe + io_uring drops them" { mh_check_flushes unsafe io_uring; }

@test "io_uring engine: guest fsync goes through the ring, not fdatasync(2)" {
	export ASAN_OPTIONS=detect_leaks=0	# LeakSanitizer cannot run under ptrace
	mh_mount writeback "aio = io_uring"
	dd if=/dev/zero of="$VC_MNT/img" bs=64k count=4 status=none
	mh_strace_start "$VC_TMP/strace.log" fsync,fdatasync,io_uring_enter
	dd if=/dev/urandom of="$VC_MNT/img" bs=64k count=4 conv=notrunc,fsync status=none
	mh_strace_stop
	grep -q io_uring_enter "$VC_TMP/strace.log"
	if grep -qE '(^|[^_])f(data)?sync\(' "$VC_TMP/strace.log"; then
		fail "fsync(2)/fdatasync(2) seen: the flush did not go through the ring"
	fi
}
