#!/usr/bin/env bats
# Per-image counters agree with what a client did: N writes of 4 KiB and
# M fsyncs show as exactly N writes and M flushes, forwarded or ignored
# as the mode says, on every aio engine (and, through tests/run's ring
# pass, on both FUSE transports).
#
# The counters are read as an administrator reads them, with
# `vcachefsctl stats --json` while the image is open, and from the line
# the daemon logs (-d) when the image's last opener closes it.

load helper

: "${VCTL:=$BATS_TEST_DIRNAME/../../build/asan/vcachefsctl}"

N=37	# writes
M=5	# fsyncs

setup() {
	vc_setup
	VC_CONF=$VC_TMP/vcachefs.conf
	truncate -s 1M "$VC_SRC/img"
}

teardown() {
	vc_teardown
}

conf() {	# conf CACHE AIO
	printf '[global]\ncache = %s\naio = %s\n' "$1" "$2" >"$VC_CONF"
}

# Wait (bounded) for the image's close line; prints the last one.
closed_line() {
	local i l
	for i in $(seq 1 100); do
		l=$(grep -a "img: closed: " "$VC_LOG" | tail -1)
		[ -n "$l" ] && { echo "$l"; return 0; }
		sleep 0.05
	done
	echo "no close line for img in the log" >&2
	return 1
}

# vc_stat KEY: the counter KEY of img's last close line.
vc_stat() {
	closed_line | sed -n "s/.* $1=\([0-9-]*\).*/\1/p"
}

# vc_stat_sum KEY: KEY summed over all of img's close lines.
vc_stat_sum() {
	grep -a "img: closed: " "$VC_LOG" | sed -n "s/.* $1=\([0-9]*\).*/\1/p" |
	    awk '{ s += $1 } END { print s + 0 }'
}

# The client: N writes of 4 KiB at distinct offsets, an fsync after
# every N/M-th, M in all; FLAGS are extra os.open flags.
client_write() {	# [FLAGS]
	python3 - "$VC_MNT/img" "$N" "$M" "${1:-0}" <<'PY'
import os, sys
path, n, m, flags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_RDWR | flags)
buf = bytes(range(256)) * 16
synced = 0
for i in range(n):
    assert os.pwrite(fd, buf, i * 4096) == 4096
    if synced < m and (i + 1) % (n // m) == 0:
        os.fsync(fd)
        synced += 1
assert synced == m
os.close(fd)
PY
}

check_counts() {	# CACHE AIO FORWARDED(1|0)
	conf "$1" "$2"
	vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	# Held open, so that vcachefsctl sees the image after the client.
	exec {hold}<"$VC_MNT/img"
	run client_write
	assert_success
	run -0 "$VCTL" -m "$VC_MNT" stats --json img
	python3 -c '
import json, sys
a = json.loads(sys.argv[1])["images"][0]
n, m, fwd = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
assert a["write_ops"] == n and a["write_bytes"] == n * 4096, a
assert a["read_ops"] == 0 and a["errors"] == 0 and a["inflight"] == 0, a
assert a["flush_ops"] == (m if fwd else 0), a
assert a["flush_ignored"] == (0 if fwd else m), a
' "$output" "$N" "$M" "$3"
	exec {hold}<&-
	closed_line
	[ "$(vc_stat writes)" -eq "$N" ]
	[ "$(vc_stat write_bytes)" -eq $((N * 4096)) ]
	[ "$(vc_stat reads)" -eq 0 ]
	[ "$(vc_stat errors)" -eq 0 ]
	[ "$(vc_stat inflight)" -eq 0 ]
	if [ "$3" = 1 ]; then
		[ "$(vc_stat flushes)" -eq "$M" ]
		[ "$(vc_stat flush_ignored)" -eq 0 ]
	else
		[ "$(vc_stat flushes)" -eq 0 ]
		[ "$(vc_stat flush_ignored)" -eq "$M" ]
	fi
	# The bytes are there (the counters describe I/O that happened).
	python3 -c '
import sys
d = open(sys.argv[1], "rb").read(int(sys.argv[2]) * 4096)
assert d == bytes(range(256)) * 16 * int(sys.argv[2])' "$VC_SRC/img" "$N"
}

@test "stats: writeback, aio=threads: N writes, M flushes forwarded" {
	check_counts writeback threads 1
}

@test "stats: none, aio=native: N writes, M flushes forwarded" {
	check_counts none native 1
}

@test "stats: writeback, aio=io_uring: N writes, M flushes forwarded" {
	check_counts writeback io_uring 1
}

@test "stats: none, aio=io_uring: N writes, M flushes forwarded" {
	check_counts none io_uring 1
}

@test "stats: unsafe, aio=threads: N writes, M flushes ignored" {
	check_counts unsafe threads 0
}

@test "stats: unsafe, aio=io_uring: N writes, M flushes ignored" {
	check_counts unsafe io_uring 0
}

@test "stats: directsync, aio=native: N writes, M flushes forwarded" {
	check_counts directsync native 1
}

@test "stats: reads are counted with their bytes, on each engine" {
	for aio in threads native io_uring; do
		: >"$VC_LOG"
		conf none "$aio"
		vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
		run python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for i in range(int(sys.argv[2])):
    assert len(os.pread(fd, 4096, i * 4096)) == 4096
os.close(fd)' "$VC_MNT/img" "$N"
		assert_success
		closed_line
		[ "$(vc_stat reads)" -eq "$N" ]
		[ "$(vc_stat read_bytes)" -eq $((N * 4096)) ]
		[ "$(vc_stat writes)" -eq 0 ]
		vc_umount
	done
}

@test "stats: O_DSYNC writes count as FUA writes" {
	conf writeback threads
	vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	run client_write "$(python3 -c 'import os; print(os.O_DSYNC)')"
	assert_success
	closed_line
	[ "$(vc_stat writes)" -eq "$N" ]
	[ "$(vc_stat fua_writes)" -eq "$N" ]
}

@test "stats: unaligned O_DIRECT writes and reads are counted as bounced" {
	conf none threads
	vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	# 3 unaligned writes, 2 unaligned reads, 1 aligned write (not bounced).
	run python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for off in (1, 5000, 9000):
    assert os.pwrite(fd, b"u" * 100, off) == 100
os.pread(fd, 10, 3)
os.pread(fd, 4096, 100)
assert os.pwrite(fd, b"a" * 4096, 65536) == 4096
os.close(fd)' "$VC_MNT/img"
	assert_success
	closed_line
	[ "$(vc_stat bounced)" -eq 5 ]
	[ "$(vc_stat writes)" -eq 4 ]
	[ "$(vc_stat reads)" -eq 2 ]
}

@test "stats: a failed flush is counted as an error, not as a flush" {
	conf writeback threads
	VCACHEFS_FAULT=fsync:2:EIO vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	run client_write
	assert_failure	# the client sees the EIO of its second fsync
	closed_line
	[ "$(vc_stat flushes)" -eq 1 ]
	[ "$(vc_stat errors)" -eq 1 ]
	[ "$(vc_stat inflight)" -eq 0 ]
}

@test "stats: fallocate and hole punches are counted apart" {
	conf writeback threads
	vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	run fallocate -o 0 -l 8192 "$VC_MNT/img"
	assert_success
	run fallocate -p -o 0 -l 4096 "$VC_MNT/img"
	assert_success
	run fallocate -p -o 4096 -l 4096 "$VC_MNT/img"
	assert_success
	# Each command opened and closed the image: one close line each.
	for i in $(seq 1 100); do
		[ "$(grep -ac "img: closed: " "$VC_LOG")" -ge 3 ] && break
		sleep 0.05
	done
	[ "$(vc_stat_sum fallocates)" -eq 1 ]
	[ "$(vc_stat_sum discards)" -eq 2 ]
}

@test "stats: VCACHEFS_NO_STATS=1 records nothing" {
	conf writeback threads
	VCACHEFS_NO_STATS=1 vc_mount -d -c "$VC_CONF" "$VC_SRC" "$VC_MNT"
	run client_write
	assert_success
	closed_line
	[ "$(vc_stat writes)" -eq 0 ]
	[ "$(vc_stat flushes)" -eq 0 ]
}
