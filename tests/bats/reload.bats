#!/usr/bin/env bats
# Reload (SIGHUP; vcachefsctl reload runs the same reload_config()) and the
# live switch of an open image's cache mode: fio and qemu-io keep their
# data across every switch, the backing descriptor's flags in
# /proc/PID/fdinfo follow the mode, leaving unsafe makes the dirty pages
# durable, a broken file changes nothing, an open base follows its
# overlay's section, a section that matches no file is warned about, and
# the stop makes writeback/unsafe data durable and says how much.

load helper
load modes_helper
load data_helper

setup() {
	mh_setup
	dh_setup
	RL_NHUP=0
}

teardown() {
	dh_cleanup
	mh_teardown
}

# Dirty (and under writeback) bytes of FILE in the host page cache, by
# cachestat(2) (Linux 6.5+); exits 2 where the kernel has none.
rl_dirty() {	# FILE
	python3 - "$1" <<'EOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]
class Stat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("cache", "dirty", "writeback", "evicted", "recently_evicted")]
fd = os.open(sys.argv[1], os.O_RDONLY)
r, s = Range(0, 0), Stat()
if libc.syscall(451, fd, ctypes.byref(r), ctypes.byref(s), 0) != 0:
    sys.exit(2)
print((s.dirty + s.writeback) * os.sysconf("SC_PAGESIZE"))
EOF
}

rl_need_cachestat() {
	local st=0
	rl_dirty /proc/self/exe >/dev/null || st=$?
	[ "$st" -ne 2 ] || skip "no cachestat(2) here (Linux < 6.5)"
}

# Send SIGHUP and wait until the daemon has answered it: a reload ends with
# one "reload: ..." or "reload rejected: ..." line.
rl_hup() {
	local i n

	RL_NHUP=$((RL_NHUP + 1))
	kill -HUP "$VC_PID"
	for i in $(seq 1 200); do
		n=$(grep -cE 'vcachefs: reload( rejected)?: ' "$VC_LOG" || true)
		[ "$n" -ge "$RL_NHUP" ] && return 0
		sleep 0.05
	done
	echo "no reload summary in the log 10 s after SIGHUP $RL_NHUP:" >&2
	cat "$VC_LOG" >&2
	return 1
}

# The backing descriptor of FILE shows MODE (O_DIRECT, O_DSYNC in fdinfo).
rl_assert_mode() {	# FILE MODE
	mh_backing_fd "$1"
	echo "$2: backing fd $MH_BFD flags 0$MH_BFLAGS"
	mh_assert_mode_flags "$2" "$MH_BFLAGS"
}

# Rewrite the config: [global] writeback, and NAME with MODE.
rl_conf() {	# NAME MODE [LINE...]
	local name=$1 mode=$2
	shift 2
	mh_conf writeback "[$name]" "cache = $mode" "$@"
}

# Write 8 MiB through the mount until the backing file holds at least
# 4 MiB of it dirty: on a shared host someone else's sync(1) may write
# it back at any time. Sets RL_DIRTY.
rl_make_dirty() {	# MNTFILE SRCFILE
	local i
	for i in 1 2 3 4 5; do
		dd if=/dev/urandom of="$1" bs=1M count=8 conv=notrunc status=none
		RL_DIRTY=$(rl_dirty "$2")
		[ "$RL_DIRTY" -ge $((4 << 20)) ] && return 0
	done
	echo "$2 never stayed dirty (last: $RL_DIRTY bytes)" >&2
	return 1
}

RL_STEPS=(none unsafe directsync writethrough writeback)

# fio verifies its data while SIGHUP steps the image's mode through
# RL_STEPS; AIO is the image's engine (native falls back to threads in
# the buffered modes, and comes back with O_DIRECT).
rl_fio_switch() {	# AIO
	local aio=$1
	truncate -s 32M "$VC_SRC/disk.img"
	rl_conf disk.img writeback "aio = $aio"
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	# Two clients on halves of the image: buffered psync, and O_DIRECT
	# io_uring with a queue. Rate-limited so that it writes during
	# every switch; verify_backlog checks data while it runs as well.
	fio --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_backlog=64 \
		--verify_state_save=0 --rw=randwrite --bs=4k --size=16M \
		--filename="$VC_MNT/disk.img" \
		--name=buffered --ioengine=psync --rate_iops=400 --offset=0 \
		--name=direct --ioengine=io_uring --direct=1 --iodepth=8 \
		--rate_iops=400 --offset=16M >"$VC_TMP/fio.out" 2>&1 &
	local fio=$!
	dh_bg "$fio"
	# fio has opened the image (its one data descriptor in the daemon),
	# however slow a loaded machine starts it; then a moment of writes.
	local i
	for i in $(seq 600); do
		[ "$(mh_backing_fds "$VC_SRC/disk.img" | grep -c .)" -eq 1 ] && break
		sleep 0.1
	done
	sleep 0.5
	rl_assert_mode "$VC_SRC/disk.img" writeback
	for m in "${RL_STEPS[@]}"; do
		rl_conf disk.img "$m" "aio = $aio"
		rl_hup
		rl_assert_mode "$VC_SRC/disk.img" "$m"
		grep -q "disk.img: cache=.* -> cache=$m " "$VC_LOG"
	done
	# Every switch happened under load.
	kill -0 "$fio"
	wait "$fio" || { cat "$VC_TMP/fio.out"; false; }
	output=$(cat "$VC_TMP/fio.out")
	echo "$output" | grep -E 'err=|verify|READ|WRITE'
	dh_fio_clean "$output"
	# It read back (and so checked) what it wrote.
	echo "$output" | grep -qE 'READ: .*io=[1-9]'
	[ "$(grep -c 'image(s) switched' "$VC_LOG")" -eq ${#RL_STEPS[@]} ]
	vc_check_log
}

@test "fio --verify=crc32c keeps its data while SIGHUP switches its image writeback -> none -> unsafe -> directsync -> writethrough -> writeback" {
	rl_fio_switch threads
}

@test "the same switches with aio=io_uring (the io_uring engine under fio verify)" {
	rl_fio_switch io_uring
}

@test "the same switches with aio=native" {
	rl_fio_switch native
}

@test "qemu-io holding the image open through the mount reads back every write across the same switches" {
	truncate -s 16M "$VC_SRC/disk.img"
	rl_conf disk.img writeback
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	dh_qemu_start "$VC_MNT/disk.img"
	local n=0 p
	dh_qemu "write -P 0x10 0 1M"
	rl_assert_mode "$VC_SRC/disk.img" writeback
	for m in "${RL_STEPS[@]}"; do
		n=$((n + 1))
		p=$(printf '0x%02x' $((0x10 + n)))
		rl_conf disk.img "$m"
		rl_hup
		rl_assert_mode "$VC_SRC/disk.img" "$m"
		# What was written before the switch, and a write after it.
		dh_qemu "read -P $(printf '0x%02x' $((0x10 + n - 1))) $(((n - 1) << 20)) 1M"
		dh_qemu "write -P $p $((n << 20)) 1M"
		dh_qemu "flush"
	done
	for ((i = 0; i <= n; i++)); do
		dh_qemu "read -P $(printf '0x%02x' $((0x10 + i))) $((i << 20)) 1M"
	done
	dh_qemu_quit
	cat "$VC_TMP/q.out"
	! grep -qiE 'fail|error' "$VC_TMP/q.out"
	[ "$(grep -o 'read 1048576/1048576' "$VC_TMP/q.out" | wc -l)" -eq $((2 * n + 1)) ]
	[ "$(grep -o 'wrote 1048576/1048576' "$VC_TMP/q.out" | wc -l)" -eq $((n + 1)) ]
	# And the backing file holds them all.
	for ((i = 0; i <= n; i++)); do
		cmp <(head -c 1M /dev/zero | tr '\0' "\\$(printf '%03o' $((0x10 + i)))") \
			<(dd if="$VC_SRC/disk.img" bs=1M skip="$i" count=1 status=none)
	done
	vc_check_log
}

@test "leaving unsafe for none writes the image's dirty pages first (cachestat 0 after), and the log counts them" {
	rl_need_cachestat
	truncate -s 32M "$VC_SRC/disk.img"
	rl_conf disk.img unsafe
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	mh_open_fd '<>' "$VC_MNT/disk.img"	# keeps it open across the switch
	rl_assert_mode "$VC_SRC/disk.img" unsafe
	rl_make_dirty "$VC_MNT/disk.img" "$VC_SRC/disk.img"
	echo "dirty before: $RL_DIRTY"
	rl_conf disk.img none
	rl_hup
	rl_assert_mode "$VC_SRC/disk.img" none
	after=$(rl_dirty "$VC_SRC/disk.img")
	echo "dirty after: $after"
	[ "$after" -eq 0 ]
	grep 'cache=unsafe aio=threads -> cache=none' "$VC_LOG"
	n=$(sed -n 's/.*-> cache=none .*made \([0-9]*\) bytes durable first.*/\1/p' "$VC_LOG")
	echo "logged: $n"
	[ "$n" -gt 0 ] && [ "$n" -le $((8 << 20)) ]
}

@test "leaving writeback: the switch's fdatasync on the backing descriptor comes before the descriptor is swapped (strace)" {
	export ASAN_OPTIONS=detect_leaks=0	# LeakSanitizer cannot run under ptrace
	truncate -s 16M "$VC_SRC/disk.img"
	rl_conf disk.img writeback
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	mh_open_fd '<>' "$VC_MNT/disk.img"
	dd if=/dev/urandom of="$VC_MNT/disk.img" bs=1M count=4 conv=notrunc status=none
	rl_assert_mode "$VC_SRC/disk.img" writeback
	local oldfd=$MH_BFD st=$VC_TMP/strace.log
	mh_strace_start "$st" fdatasync,openat,close
	rl_conf disk.img directsync
	rl_hup
	mh_strace_stop
	rl_assert_mode "$VC_SRC/disk.img" directsync
	cat "$st"
	# fdatasync of the old descriptor, then the new O_DIRECT|O_DSYNC
	# open, then the old one closed.
	sync_line=$(grep -n "fdatasync($oldfd)" "$st" | head -1 | cut -d: -f1)
	open_line=$(grep -n 'openat(.*O_DSYNC.*O_DIRECT' "$st" | head -1 | cut -d: -f1)
	close_line=$(grep -n "close($oldfd)" "$st" | tail -1 | cut -d: -f1)
	echo "fdatasync at $sync_line, open at $open_line, close at $close_line"
	[ -n "$sync_line" ] && [ -n "$open_line" ] && [ -n "$close_line" ]
	[ "$sync_line" -lt "$open_line" ] && [ "$open_line" -lt "$close_line" ]
}

@test "a broken config is rejected whole with FILE:LINE, and the open image keeps its mode" {
	truncate -s 16M "$VC_SRC/disk.img"
	rl_conf disk.img none
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	mh_open_fd '<>' "$VC_MNT/disk.img"
	rl_assert_mode "$VC_SRC/disk.img" none
	# Line 4 is good (and would switch it); line 5 is not.
	printf '[global]\ncache = writeback\n[disk.img]\ncache = writeback\nbogus = 1\n' >"$MH_CONF"
	rl_hup
	grep -F "$MH_CONF:5: unknown key 'bogus'" "$VC_LOG"
	grep -F 'reload rejected: 1 error(s); the old configuration stays' "$VC_LOG"
	rl_assert_mode "$VC_SRC/disk.img" none
	# Still served, in the old mode.
	echo hello | dd of="$VC_MNT/disk.img" bs=4k conv=sync,notrunc status=none
	[ "$(head -c 5 "$VC_SRC/disk.img")" = hello ]
	# A fixed file then takes effect.
	rl_conf disk.img writeback
	rl_hup
	rl_assert_mode "$VC_SRC/disk.img" writeback
	vc_check_log
}

@test "chain: an open base switches when its overlay's section changes, and when a new overlay that implies more opens" {
	qemu-img create -q -f qcow2 "$VC_SRC/base.qcow2" 16M
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$VC_SRC/top.qcow2"
	mh_conf writeback
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	qemu-io -f qcow2 -c 'sleep 600000' "$VC_MNT/top.qcow2" >"$VC_TMP/holder.out" 2>&1 </dev/null &
	dh_bg $!
	for i in $(seq 1 200); do
		[ -n "$(mh_backing_fds "$VC_SRC/base.qcow2")" ] && break
		sleep 0.05
	done
	rl_assert_mode "$VC_SRC/base.qcow2" writeback
	rl_assert_mode "$VC_SRC/top.qcow2" writeback
	# The overlay's section changes: its base follows (downward).
	mh_conf writeback '[top.qcow2]' 'cache = none'
	rl_hup
	rl_assert_mode "$VC_SRC/top.qcow2" none
	rl_assert_mode "$VC_SRC/base.qcow2" none
	grep 'base.qcow2: cache=writeback aio=threads -> cache=none .*inherited down from top.qcow2' "$VC_LOG"

	# A base open on its own, then an overlay with a safer section opens.
	# (A glob: an exact section would make it a configured overlay, whose
	# base inherits from it even while it is closed.)
	qemu-img create -q -f qcow2 "$VC_SRC/b2.qcow2" 16M
	qemu-img create -q -f qcow2 -b b2.qcow2 -F qcow2 "$VC_SRC/t2.qcow2"
	mh_conf writeback '[t2*.qcow2]' 'cache = directsync'
	rl_hup
	mh_open_fd '<' "$VC_MNT/b2.qcow2"
	rl_assert_mode "$VC_SRC/b2.qcow2" writeback
	qemu-io -f qcow2 -c 'read 0 64k' "$VC_MNT/t2.qcow2"
	rl_assert_mode "$VC_SRC/b2.qcow2" directsync
	grep 'b2.qcow2: cache=writeback aio=threads -> cache=directsync .*(t2.qcow2 opened)' "$VC_LOG"
	vc_check_log
}

@test "a section that matches no file: a warning from --check-config, at start and at reload; the config is still accepted" {
	truncate -s 16M "$VC_SRC/base.qcow2"
	printf '[global]\ncache = writeback\n\n[bsae.qcow2]\ncache = none\n' >"$MH_CONF"
	run "$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
	echo "$output"
	assert_success
	assert_output --partial "$MH_CONF:4: warning: [bsae.qcow2] matches no file under $VC_SRC"
	assert_output --partial "$MH_CONF: configuration OK"
	assert_output --partial "base.qcow2: cache=writeback"
	# Globs too; a matching one and [format:...] sections are not warned about.
	printf '[*.iso]\nreadonly = yes\n[*.qcow2]\ncache = none\n[format:raw]\ncache = none\n' >"$VC_TMP/g.conf"
	run "$VCACHEFS" --check-config -c "$VC_TMP/g.conf" "$VC_SRC"
	echo "$output"
	assert_success
	assert_output --partial "g.conf:1: warning: [*.iso] matches no file"
	refute_output --partial "[*.qcow2] matches"
	refute_output --partial "[format:raw] matches"

	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	grep -F "$MH_CONF:4: warning: [bsae.qcow2] matches no file under $VC_SRC" "$VC_LOG"
	printf '[global]\ncache = writeback\n[base.qcow2]\ncache = none\n[tpyo.img]\ncache = none\n' >"$MH_CONF"
	rl_hup
	grep -F "$MH_CONF:5: warning: [tpyo.img] matches no file under $VC_SRC" "$VC_LOG"
	grep -F 'reload: 0 image(s) switched' "$VC_LOG"
	# Accepted: base.qcow2 opens with the new section.
	mh_open_fd '<' "$VC_MNT/base.qcow2"
	rl_assert_mode "$VC_SRC/base.qcow2" none
}

@test "a section and an empty source directory (a fresh image directory): warned, the daemon starts" {
	printf '[global]\ncache = writeback\n\n[vm1.qcow2]\ncache = none\n' >"$MH_CONF"
	run "$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
	echo "$output"
	assert_success
	assert_output --partial "$MH_CONF:4: warning: [vm1.qcow2] matches no file under $VC_SRC"
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	grep -F "$MH_CONF:4: warning: [vm1.qcow2] matches no file under $VC_SRC" "$VC_LOG"
	rl_hup
	grep -F 'reload: 0 image(s) switched' "$VC_LOG"
	vc_check_log
}

rl_stop_durable() {	# MODE HOW
	rl_need_cachestat
	truncate -s 32M "$VC_SRC/disk.img"
	rl_conf disk.img "$1"
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	# Dirty right before the stop: the kernel's own writeback (or another
	# process's sync) may clean the pages while the close is waited for.
	local try
	for try in 1 2 3 4 5; do
		rl_make_dirty "$VC_MNT/disk.img" "$VC_SRC/disk.img"
		mh_wait_no_backing "$VC_SRC/disk.img"
		RL_DIRTY=$(rl_dirty "$VC_SRC/disk.img")
		[ "$RL_DIRTY" -ge $((4 << 20)) ] && break
	done
	echo "dirty before the stop: $RL_DIRTY (try $try)"
	if [ "$2" = sigterm ]; then
		kill -TERM "$VC_PID"
		vc_wait_exit "$VC_PID"
	else
		vc_umount
	fi
	[ "$(rl_dirty "$VC_SRC/disk.img")" -eq 0 ]
	n=$(sed -n 's/.*stop: made \([0-9]*\) bytes durable (1 image(s) in writeback or unsafe).*/\1/p' "$VC_LOG")
	echo "logged: $n"
	# At most what was dirty: only a sync by someone else in between
	# makes it less.
	[ "$n" -gt 0 ] && [ "$n" -le $((8 << 20)) ]
}

@test "SIGTERM makes a closed unsafe image's dirty data durable and logs the bytes" {
	rl_stop_durable unsafe sigterm
}

@test "unmount makes a closed writeback image's dirty data durable and logs the bytes" {
	rl_stop_durable writeback umount
}

@test "readonly by reload: an image that never had a writer refuses writes at once; one with a writer keeps it and refuses new write opens" {
	truncate -s 16M "$VC_SRC/ro.img" "$VC_SRC/rw.img"
	mh_conf writeback
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	mh_open_fd '<' "$VC_MNT/ro.img"
	mh_open_fd '<>' "$VC_MNT/rw.img"
	local writer=$MH_OPENED
	mh_conf writeback '[ro.img]' 'readonly = yes' '[rw.img]' 'readonly = yes'
	rl_hup
	run dd if=/dev/zero of="$VC_MNT/ro.img" bs=4k count=1 conv=notrunc status=none
	assert_failure
	assert_output --partial "Read-only file system"
	run dd if=/dev/zero of="$VC_MNT/rw.img" bs=4k count=1 conv=notrunc status=none
	assert_failure
	assert_output --partial "Read-only file system"
	# The writer that had it open goes on.
	printf 'still' >&"$writer"
	[ "$(head -c 5 "$VC_SRC/rw.img")" = still ]
	grep -F 'rw.img: readonly=yes for new opens; its open writers keep writing' "$VC_LOG"
	# And back: writable again for new opens.
	mh_conf writeback
	rl_hup
	echo again | dd of="$VC_MNT/ro.img" bs=4k conv=sync,notrunc status=none
	[ "$(head -c 5 "$VC_SRC/ro.img")" = again ]
}

@test "a switch whose new descriptor cannot be opened keeps the old mode and says why; the next reload retries it" {
	truncate -s 16M "$VC_SRC/disk.img"
	rl_conf disk.img writeback
	VCACHEFS_FAULT=open:1:EIO vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	mh_open_fd '<>' "$VC_MNT/disk.img"
	rl_conf disk.img none
	rl_hup
	grep -F 'disk.img: stays cache=writeback aio=threads: cache=none: cannot open the backing file: Input/output error' "$VC_LOG"
	grep -F 'reload: 0 image(s) switched' "$VC_LOG"
	rl_assert_mode "$VC_SRC/disk.img" writeback
	echo ok | dd of="$VC_MNT/disk.img" bs=4k conv=sync,notrunc status=none
	# Same file again: what is pending is tried again.
	rl_hup
	grep -F 'reload: 1 image(s) switched' "$VC_LOG"
	rl_assert_mode "$VC_SRC/disk.img" none
	vc_check_log
}
