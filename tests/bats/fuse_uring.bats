#!/usr/bin/env bats
# FUSE over io_uring (Linux 6.14+): the choice of transport, its visible
# fallback, and what it carries. tests/run also runs the data-path suites a
# second time through the ring. The fuse module's enable_uring parameter
# is global: tests that change it put it back.

load helper
load modes_helper

FR_PARAM=/sys/module/fuse/parameters/enable_uring

setup() {
	mh_setup
	VC_CONF=$VC_TMP/vcachefs.conf
	FR_OLD=
	[ -w "$FR_PARAM" ] && FR_OLD=$(cat "$FR_PARAM")
}

teardown() {
	[ -z "${FR_FIO:-}" ] || kill "$FR_FIO" 2>/dev/null || true
	mh_teardown
	[ -z "$FR_OLD" ] || echo "$FR_OLD" >"$FR_PARAM"
}

fr_need() {	# the kernel must have the transport
	[ -w "$FR_PARAM" ] || skip "no FUSE over io_uring in this kernel (Linux 6.14+)"
}

conf() {	# conf CACHE AIO
	printf '[global]\ncache = %s\naio = %s\n' "$1" "$2" >"$VC_CONF"
}

@test "--fuse-uring takes auto, on or off, nothing else" {
	run "$VCACHEFS" -f --fuse-uring maybe "$VC_SRC" "$VC_MNT"
	assert_failure
	assert_output --partial "--fuse-uring: 'maybe' is not auto, on or off"
	run "$VCACHEFS" --help
	assert_output --partial "--fuse-uring auto|on|off"
}

@test "enable_uring off: 'on' refuses to start and says why; 'auto' serves through /dev/fuse" {
	fr_need
	echo N >"$FR_PARAM"
	run "$VCACHEFS" -f --fuse-uring on "$VC_SRC" "$VC_MNT"
	assert_failure
	assert_output --partial "--fuse-uring on: FUSE over io_uring is off (echo Y > $FR_PARAM)"
	if vc_is_mounted "$VC_MNT"; then fail "mounted although refused"; fi
	vc_mount --fuse-uring auto "$VC_SRC" "$VC_MNT"
	echo data >"$VC_MNT/f"
	[ "$(cat "$VC_SRC/f")" = data ]
	grep -q "FUSE requests go through /dev/fuse: FUSE over io_uring is off" "$VC_LOG"
	if grep -q "go through io_uring" "$VC_LOG"; then fail "claims the ring"; fi
}

# The observable fact: with the ring, the daemon answers requests without
# read(2)/writev(2) on /dev/fuse; without it, every request costs both.
fuse_syscalls() {	# MODE; sets FR_WRITEV (on /dev/fuse) and FR_ENTER during fio
	local ffd
	export ASAN_OPTIONS=detect_leaks=0	# LeakSanitizer cannot run under ptrace
	conf none native
	vc_mount --fuse-uring "$1" -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	fio --name=fill --filename="$VC_MNT/img" --size=16M --bs=1M --rw=write \
		--direct=1 --ioengine=psync >/dev/null
	ffd=$(mh_fuse_fd)
	mh_strace_start "$VC_TMP/strace.log" writev,io_uring_enter
	fio --name=r --filename="$VC_MNT/img" --size=16M --bs=4k --rw=randread \
		--direct=1 --ioengine=io_uring --iodepth=32 --number_ios=2000 >/dev/null
	mh_strace_stop
	FR_WRITEV=$(grep -c "writev($ffd," "$VC_TMP/strace.log" || true)
	FR_ENTER=$(grep -c io_uring_enter "$VC_TMP/strace.log" || true)
	echo "writev on /dev/fuse: $FR_WRITEV, io_uring_enter: $FR_ENTER"
}

@test "enable_uring on: 2000 reads through the ring, no replies written to /dev/fuse" {
	fr_need
	echo Y >"$FR_PARAM"
	fuse_syscalls on
	grep -q "FUSE requests go through io_uring: [0-9]* queues" "$VC_LOG"
	[ "$FR_WRITEV" -lt 10 ] || fail "$FR_WRITEV replies still went through /dev/fuse"
	[ "$FR_ENTER" -gt 0 ]
}

@test "the same reads with --fuse-uring off: one writev reply each (the check can fail)" {
	fr_need
	echo Y >"$FR_PARAM"
	fuse_syscalls off
	[ "$FR_WRITEV" -ge 2000 ]
}

@test "ring: fio crc32c at QD32 in every aio mode, and the backing bytes match" {
	fr_need
	echo Y >"$FR_PARAM"
	for m in "none native" "none threads" "writeback io_uring" "writeback threads" "directsync native"; do
		# shellcheck disable=SC2086
		conf $m
		vc_mount --fuse-uring on -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
		run fio --name=a --filename="$VC_MNT/a.img" --size=16M --bs=4k --rw=randwrite \
			--ioengine=io_uring --iodepth=32 --direct=1 --verify=crc32c \
			--do_verify=1 --verify_fatal=1 --verify_state_save=0
		assert_success
		run "$VC_TOOLS/difftest" --test "$VC_MNT/d.img" --ref "$VC_TMP/d.ref" \
			--seed 21 --ops 1000 --direct
		assert_success
		vc_umount
		cmp "$VC_SRC/d.img" "$VC_TMP/d.ref"
		rm -f "$VC_SRC"/*.img "$VC_TMP/d.ref"
	done
	if grep -q "go through /dev/fuse" "$VC_LOG"; then fail "fell back to /dev/fuse"; fi
}

@test "ring: a client killed mid-I/O leaves the daemon serving and stopping cleanly" {
	fr_need
	echo Y >"$FR_PARAM"
	conf none native
	vc_mount --fuse-uring on -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	fio --name=fill --filename="$VC_MNT/img" --size=32M --bs=1M --rw=write \
		--direct=1 --ioengine=psync >/dev/null
	fio --name=k --filename="$VC_MNT/img" --size=32M --bs=64k --rw=randrw \
		--direct=1 --ioengine=io_uring --iodepth=32 --runtime=30 --time_based --thread \
		>/dev/null 2>&1 &
	local fpid=$!
	sleep 1
	kill -KILL "$fpid"
	wait "$fpid" 2>/dev/null || true
	run dd if="$VC_MNT/img" of=/dev/null bs=1M iflag=direct status=none
	assert_success
	vc_umount
	vc_check_log
}

# The INIT reply tells the kernel we take requests through io_uring
# (FUSE_OVER_IO_URING, which libfuse 3.14 cannot send): the connection then
# keeps the ring even if the parameter is turned off while mounted.
# Without the flag every commit would fail and the requests would hang.
@test "ring: turning enable_uring off while mounted does not strand requests" {
	fr_need
	echo Y >"$FR_PARAM"
	conf none native
	vc_mount --fuse-uring on -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	grep -q "FUSE requests go through io_uring" "$VC_LOG"
	echo N >"$FR_PARAM"
	run timeout 20 fio --name=t --filename="$VC_MNT/img" --size=8M --bs=4k \
		--rw=randrw --direct=1 --ioengine=io_uring --iodepth=16 \
		--number_ios=2000 --verify=crc32c --do_verify=1 --verify_state_save=0
	assert_success
	run timeout 10 ls "$VC_MNT"
	assert_success
	vc_umount
	vc_check_log
}

cpu_list() {	# STATUS-FILE: the CPUs its Cpus_allowed_list names, one per line
	awk '/^Cpus_allowed_list/ { n = split($2, r, ",")
		for (i = 1; i <= n; i++) { split(r[i], b, "-")
			for (c = b[1]; c <= (b[2] == "" ? b[1] : b[2]); c++) print c } }' "$1"
}

fq_cpus() {	# QUEUE: the CPUs its queue thread may run on, one per line
	local t
	for t in /proc/"$VC_PID"/task/*; do
		[ "$(cat "$t/comm")" = "vcfq$1" ] && cpu_list "$t/status"
	done
	return 0
}

# placement.h: a caller at queue depth 1 is answered from its own CPU; for
# a caller with a queue the scheduler places the thread. The fact is the
# thread's affinity.
@test "ring: a queue thread is pinned to its CPU at depth 1 and unpinned while its caller keeps a queue" {
	fr_need
	cpu_list /proc/$$/status | grep -qx 0 && cpu_list /proc/$$/status | grep -qx 1 ||
		skip "needs CPUs 0 and 1"
	echo Y >"$FR_PARAM"
	conf writeback threads
	vc_mount --fuse-uring on -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	dd if=/dev/zero of="$VC_MNT/img" bs=1M count=32 status=none
	[ "$(fq_cpus 0)" = 0 ] || fail "queue 0 on CPUs $(fq_cpus 0 | tr '\n' ' ') at rest"
	[ "$(fq_cpus 1)" = 1 ] || fail "queue 1 on CPUs $(fq_cpus 1 | tr '\n' ' ') at rest"
	# libaio: the requests leave from fio's own thread, so from CPU 0.
	taskset -c 0 fio --name=q --filename="$VC_MNT/img" --size=32M --bs=4k --rw=randread \
		--ioengine=libaio --direct=1 --iodepth=32 --runtime=3 --time_based \
		--thread >/dev/null &
	FR_FIO=$!
	local busy
	sleep 2
	busy=$(fq_cpus 0 | tr '\n' ' ')
	wait "$FR_FIO"
	FR_FIO=
	echo "queue 0 under QD32 from CPU 0: CPUs $busy"
	# Unpinned: the daemon's own affinity, which it has from this shell.
	[ "$busy" = "$(cpu_list /proc/$$/status | tr '\n' ' ')" ] || fail "queue 0 not unpinned: $busy"
	# Depth 1 for longer than the calm windows: pinned again.
	taskset -c 0 fio --name=c --filename="$VC_MNT/img" --size=32M --bs=4k --rw=randread \
		--ioengine=psync --runtime=1 --time_based >/dev/null
	[ "$(fq_cpus 0)" = 0 ] || fail "queue 0 on CPUs $(fq_cpus 0 | tr '\n' ' ') after depth 1"
	vc_umount
	vc_check_log
}

# --- Ring set-up failures (lib/fault.h points ring_setup, ring_thread,
# ring_register, ring_fallback). Once the INIT reply has promised the ring
# (FUSE_OVER_IO_URING), the kernel holds every new request until each CPU
# queue has registered an entry, or until a REGISTER is refused (which
# sends it back to /dev/fuse). A queue that never registers must not leave
# the mount hanging: each case must end answering, or aborted, and say so.

fr_fault_mount() {	# FAULT [OPTIONS...]: mount through the ring with that fault
	local f=$1
	shift
	export ASAN_OPTIONS=detect_leaks=0	# fr_transport straces the daemon
	conf none native
	VCACHEFS_FAULT=$f vc_mount --fuse-uring on -c "$VC_CONF" "$@" "$VC_SRC" "$VC_MNT"
}

fr_answers() {	# the mount answers: stat, a small write and read-back
	run timeout 20 stat -c %F "$VC_MNT"
	assert_success
	run timeout 20 sh -c "echo hello >'$VC_MNT/f' && cat '$VC_MNT/f'"
	assert_success
	assert_output hello
	[ "$(cat "$VC_SRC/f")" = hello ]
}

# Which way requests really go, from the daemon's system calls: through
# /dev/fuse every request costs a writev reply on it, through the ring none.
fr_transport() {	# prints ring or devfuse
	local ffd n
	timeout 20 dd if=/dev/zero of="$VC_MNT/t.img" bs=4k count=64 oflag=direct status=none
	ffd=$(mh_fuse_fd)
	mh_strace_start "$VC_TMP/tr.log" writev
	timeout 20 dd if="$VC_MNT/t.img" of=/dev/null bs=4k count=64 iflag=direct status=none
	timeout 20 dd if="$VC_MNT/t.img" of=/dev/null bs=4k count=64 iflag=direct status=none
	mh_strace_stop
	n=$(grep -c "writev($ffd," "$VC_TMP/tr.log" || true)
	echo "writev replies on /dev/fuse for 128 reads: $n" >&2
	if [ "$n" -ge 128 ]; then echo devfuse; elif [ "$n" -lt 10 ]; then echo ring; else echo mixed; fi
}

fr_wait_log() {	# PATTERN: the daemon logs it within 10 s (it may follow the first answers)
	local i
	for i in $(seq 1 100); do
		grep -q "$1" "$VC_LOG" && return 0
		sleep 0.1
	done
	cat "$VC_LOG" >&2
	fail "not logged: $1"
}

fr_clean_stop() {	# unmounts, and the daemon exits 0
	vc_umount || { cat "$VC_LOG" >&2; fail "no clean stop"; }
	grep -q "vcachefs: stopped$" "$VC_LOG"
	vc_check_log
}

@test "ring set-up: a queue thread that fails before REGISTER: back to /dev/fuse, and it says so" {
	fr_need
	echo Y >"$FR_PARAM"
	fr_fault_mount ring_thread:1:EIO
	fr_answers
	grep -q "FUSE queue [0-9]*: failed before registering" "$VC_LOG"
	fr_wait_log "requests go through /dev/fuse"
	if grep -q "FUSE requests go through io_uring" "$VC_LOG"; then fail "claims the ring"; fi
	[ "$(fr_transport)" = devfuse ]
	fr_clean_stop
}

@test "ring set-up: one REGISTER the kernel refuses is registered again; requests go through the ring" {
	fr_need
	echo Y >"$FR_PARAM"
	fr_fault_mount ring_register:1:EINVAL
	fr_answers
	fr_wait_log "the kernel refused 1 REGISTER(s)"
	fr_wait_log "FUSE requests go through io_uring: [0-9]* queues"
	if grep -q "requests go through /dev/fuse" "$VC_LOG"; then fail "claims /dev/fuse"; fi
	[ "$(fr_transport)" = ring ]
	fr_clean_stop
}

@test "ring set-up: every REGISTER refused by the kernel: /dev/fuse, and it says so" {
	fr_need
	echo Y >"$FR_PARAM"
	fr_fault_mount 'ring_register:*:EINVAL'
	fr_answers
	fr_wait_log "the kernel refused every REGISTER of queue [0-9]* (Invalid argument); the kernel is back on /dev/fuse"
	if grep -q "FUSE requests go through io_uring" "$VC_LOG"; then fail "claims the ring"; fi
	[ "$(fr_transport)" = devfuse ]
	fr_clean_stop
}

# EAGAIN stands for a REGISTER that never reached the kernel: it still
# holds every request for the ring until something sends it back.
@test "ring set-up: no REGISTER reaches the kernel (EAGAIN each time): sent back to /dev/fuse" {
	fr_need
	echo Y >"$FR_PARAM"
	fr_fault_mount 'ring_register:*:EAGAIN'
	fr_answers
	fr_wait_log "REGISTER(s), up to 3 an entry; 0 of 32 entries registered"
	fr_wait_log "the kernel is back on /dev/fuse: requests go through /dev/fuse"
	[ "$(fr_transport)" = devfuse ]
	fr_clean_stop
}

@test "ring set-up: a queue thread that stalls past the set-up time: /dev/fuse, and it never registers late" {
	fr_need
	echo Y >"$FR_PARAM"
	fr_fault_mount ring_thread:1:delay=8000
	fr_answers
	fr_wait_log "queue [0-9]* did not register within 5000 ms; the kernel is back on /dev/fuse"
	sleep 4		# past the stalled thread's wake-up: it must not register now
	[ "$(fr_transport)" = devfuse ]
	fr_clean_stop
}

@test "ring set-up: the kernel cannot be sent back to /dev/fuse: the connection is aborted, nothing hangs" {
	fr_need
	echo Y >"$FR_PARAM"
	fr_fault_mount ring_thread:1:EIO,ring_fallback:1:EIO
	run timeout 20 stat "$VC_MNT"
	[ "$status" -ne 124 ] || fail "stat hung"
	assert_failure
	assert_output --partial "Transport endpoint is not connected"
	fr_wait_log "the kernel could not be sent back to /dev/fuse; aborting the connection"
	run vc_wait_exit "$VC_PID" 20
	[ "$status" -ne 124 ] || fail "daemon still running"
	grep -q "stopped: FUSE over io_uring set-up failed and the connection was aborted" "$VC_LOG"
	vc_check_log
}

@test "ring set-up: a ring that cannot be made before INIT: 'auto' serves through /dev/fuse, 'on' refuses" {
	fr_need
	echo Y >"$FR_PARAM"
	conf none native
	VCACHEFS_FAULT=ring_setup:1:ENOMEM vc_mount --fuse-uring auto -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	fr_answers
	grep -q "FUSE requests go through /dev/fuse: the ring could not be set up" "$VC_LOG"
	vc_umount
	VCACHEFS_FAULT=ring_setup:1:ENOMEM run timeout 30 "$VCACHEFS" -f --fuse-uring on -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	assert_failure
	assert_output --partial "FUSE over io_uring: Cannot allocate memory"
	if vc_is_mounted "$VC_MNT"; then fail "left mounted"; fi
}

# --- --buffer-memory: ring entries and bounce buffers within a cap.

FR_ENTRY_KIB=1028	# 4 KiB header room + 1 MiB payload
FR_BOUNCE_KIB=1152	# lib/io.h VC_IO_BUF_SIZE

fr_entry_maps() {	# ring entries mapped by the daemon: rw mappings of one entry's size
	python3 - "/proc/$VC_PID/maps" $((FR_ENTRY_KIB * 1024)) <<'PY'
import sys
n = 0
for line in open(sys.argv[1]):
    f = line.split()
    a, b = (int(x, 16) for x in f[0].split("-"))
    n += f[1] == "rw-p" and b - a == int(sys.argv[2])
print(n)
PY
}

@test "--buffer-memory takes MiB; --threads whose bounce buffers exceed it refuse to start" {
	run "$VCACHEFS" -f --buffer-memory lots "$VC_SRC" "$VC_MNT"
	assert_failure
	assert_output --partial "--buffer-memory: 'lots' is not a number of MiB"
	run "$VCACHEFS" --help
	assert_output --partial "--buffer-memory MiB"
	run "$VCACHEFS" -f --threads 64 --buffer-memory 64 "$VC_SRC" "$VC_MNT"
	assert_failure
	assert_output --partial "--threads 64 needs 72.0 MiB of I/O bounce buffers (1152 KiB a thread), more than --buffer-memory 64: raise it to 72"
	if vc_is_mounted "$VC_MNT"; then fail "mounted although refused"; fi
}

@test "64 CPUs (pretended): the ring depth fits the default 320 MiB, as logged and as mapped, and it serves" {
	fr_need
	echo Y >"$FR_PARAM"
	export ASAN_OPTIONS=detect_leaks=0
	conf none native
	VCACHEFS_TEST_POSSIBLE_CPUS=64 vc_mount --fuse-uring on -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	fr_answers
	grep "buffer memory:" "$VC_LOG"
	local n
	n=$(fr_entry_maps)
	echo "ring entries mapped: $n"
	# What the entries and every possible bounce buffer take, by the maps.
	[ $(( (n * FR_ENTRY_KIB + (16 + 16 + 64) * FR_BOUNCE_KIB) / 1024 )) -le 320 ]
	[ "$n" -eq 192 ]
	grep -q "buffer memory: FUSE ring 64 queues x 3 entries x $FR_ENTRY_KIB KiB = 192.[0-9] MiB, bounce buffers 96 x $FR_BOUNCE_KIB KiB = 108.0 MiB (16 FUSE workers, 16 pool workers, 64 queue threads); 30[01].[0-9] of 320 MiB" "$VC_LOG"
	[ "$(fr_transport)" = ring ]
	fr_clean_stop
}

@test "256 CPUs (pretended): the ring does not fit in 320 MiB: 'auto' uses /dev/fuse and says why, 'on' refuses" {
	fr_need
	echo Y >"$FR_PARAM"
	export ASAN_OPTIONS=detect_leaks=0
	conf none native
	VCACHEFS_TEST_POSSIBLE_CPUS=256 run "$VCACHEFS" -f --fuse-uring on -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	assert_failure
	assert_output --partial "--fuse-uring on: the ring needs --buffer-memory 581 or more (256 CPU queues, --threads 16), not 320"
	if vc_is_mounted "$VC_MNT"; then fail "mounted although refused"; fi
	VCACHEFS_TEST_POSSIBLE_CPUS=256 vc_mount --fuse-uring auto -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	fr_answers
	grep -q "FUSE requests go through /dev/fuse: the ring needs --buffer-memory 581 or more" "$VC_LOG"
	grep -q "buffer memory: bounce buffers 16 x $FR_BOUNCE_KIB KiB = 18.0 MiB (16 FUSE workers); 18.0 of 320 MiB" "$VC_LOG"
	[ "$(fr_entry_maps)" -eq 0 ]
	vc_umount
	vc_check_log
}
