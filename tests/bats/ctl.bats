#!/usr/bin/env bats
# The control socket and vcachefsctl: what status and stats show, the
# Prometheus output (promtool), the peer check, bad requests, flush and
# drop-cache as the backing file sees them (strace, fincore), and top
# used the way a person uses it (tmux).

bats_require_minimum_version 1.5.0

load helper
load modes_helper

: "${VCTL:=$BATS_TEST_DIRNAME/../../build/asan/vcachefsctl}"

setup() {
	mh_setup
	CT_TMUX=vcachefs-ctl-$$-$BATS_TEST_NUMBER	# our own tmux server
}

teardown() {
	tmux -L "$CT_TMUX" kill-server 2>/dev/null || true
	if [ -n "${CT_FIO_PID:-}" ]; then
		kill "$CT_FIO_PID" 2>/dev/null || true
		wait "$CT_FIO_PID" 2>/dev/null || true
	fi
	mh_teardown
}

ct_transport() { [ "${VC_FUSE_URING:-0}" = 1 ] && echo io_uring || echo /dev/fuse; }

ct_sock() { echo "/run/vcachefs/$(systemd-escape --path "$VC_MNT").sock"; }

# ct_raw SOCKET: send stdin as it is, print the reply. socat reads
# backslashes in addresses as escapes: the escaped names are full of them.
ct_raw() { socat -t 10 - UNIX-CONNECT:"${1//\\/\\\\}"; }

# A field of the status record of an image: ct_field IMAGE KEY
ct_field() {
	printf 'status\n' | ct_raw "$(ct_sock)" |
	    awk -v img="name=$1" -v key="$2" '$1 == "image" && $2 == img {
		for (i = 3; i <= NF; i++) if (index($i, key "=") == 1) print substr($i, length(key) + 2) }'
}

# Wait (10 s at most) until a command succeeds.
ct_wait() {
	local i
	for i in $(seq 1 100); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

ct_mount_two() {	# two images: a.img by name, b.img by [global]
	truncate -s 64M "$VC_SRC/a.img" "$VC_SRC/b.img"
	mh_mount writeback '[a.img]' 'cache = none' "$@"
}

@test "status: mount, transport, and per open image the mode in effect and the rule" {
	ct_mount_two
	exec {fa}<>"$VC_MNT/a.img"; MH_FDS+=("$fa")
	exec {fb}<"$VC_MNT/b.img"; MH_FDS+=("$fb")

	# The socket: where systemd-escape --path says, 0600, root's.
	assert_equal "$(stat -c '%F %a %U' "$(ct_sock)")" "socket 600 root"

	run -0 "$VCTL" -m "$VC_MNT" status
	echo "$output"
	assert_line "mount point  $VC_MNT"
	assert_line "source       $VC_SRC"
	assert_line "config       $MH_CONF"
	assert_line "transport    $(ct_transport)"
	assert_line --regexp '^uptime       [0-9]+s \(since .*, pid '"$VC_PID"'\)$'
	assert_line --regexp '^a\.img +none +threads +no +raw +64\.0M +1 .*\[a\.img\]$'
	assert_line --regexp '^b\.img +writeback +threads +no +raw +64\.0M +1 .*\[global\]$'

	# The same as records, through the raw protocol.
	run -0 ct_raw "$(ct_sock)" <<<"status"
	assert_line --index 0 --regexp "^mount mountpoint=$VC_MNT source=$VC_SRC config=$MH_CONF transport=$(ct_transport) uptime_s=[0-9]+ "
	assert_line --regexp '^image name=a\.img cache=none aio=threads readonly=no shareable=no rule=\[a\.img\] format=raw virtual_size=67108864 opencount=1 resident=[0-9]+ dirty=[0-9]+ backing_fd=[0-9]+ backing_flags=0[0-7]+ backing_flag_names=O_RDWR\|O_DIRECT\|[A-Z_|]+$'
	assert_line --index 3 ok
}

# The kernel's bit for a flag name, as fdinfo shows it (x86_64, arm64 differ).
ct_flag_bit() {	# NAME
	awk -v n="$1" '$1 == "#define" && $2 == n { print $3; exit }' \
	    /usr/include/asm-generic/fcntl.h /usr/include/"$(gcc -print-multiarch)"/asm/fcntl.h |
	    tail -1
}

@test "status: each open image's I/O descriptor, its number and flags by name, as /proc/PID/fdinfo shows them (none, writeback)" {
	ct_mount_two
	exec {fa}<>"$VC_MNT/a.img"; MH_FDS+=("$fa")
	exec {fb}<>"$VC_MNT/b.img"; MH_FDS+=("$fb")
	local img bfd bflags names direct
	run -0 "$VCTL" -m "$VC_MNT" status
	echo "$output"
	assert_line "I/O descriptors (in /proc/$VC_PID/fdinfo):"
	direct=$(ct_flag_bit O_DIRECT)
	[ -n "$direct" ] || fail "no O_DIRECT in the kernel headers"
	for img in a.img b.img; do
		# The daemon's one data descriptor of the file, from /proc.
		mh_backing_fd "$VC_SRC/$img"
		bfd=$(ct_field "$img" backing_fd)
		bflags=$(ct_field "$img" backing_flags)
		names=$(ct_field "$img" backing_flag_names)
		echo "$img: /proc says fd $MH_BFD flags $MH_BFLAGS; status says fd $bfd flags $bflags $names"
		assert_equal "$bfd" "$MH_BFD"
		assert_equal "$bflags" "$MH_BFLAGS"
		assert_line --regexp "^  $img fd $MH_BFD +$names\$"
		[[ $names == O_RDWR\|* ]] || fail "$img: not O_RDWR first: $names"
		# O_DIRECT by name exactly when fdinfo has its bit: none only.
		if (( (8#$MH_BFLAGS & $direct) != 0 )); then
			[[ $names == *"|O_DIRECT|"* || $names == *"|O_DIRECT" ]] ||
			    fail "$img: O_DIRECT set but not named: $names"
			assert_equal "$img" a.img
		else
			[[ $names != *O_DIRECT* ]] || fail "$img: O_DIRECT named but not set: $names"
			assert_equal "$img" b.img
		fi
		# Every name is a set bit, and together they are all the bits.
		local sum=0 n bit
		IFS='|' read -ra parts <<<"$names"
		for n in "${parts[@]}"; do
			[ "$n" = O_RDWR ] && { sum=$((sum | 2)); continue; }
			bit=$(ct_flag_bit "$n")
			[ -n "$bit" ] || fail "$img: unknown name $n"
			(( (8#$MH_BFLAGS & $bit) == $bit )) || fail "$img: $n is not set in $MH_BFLAGS"
			sum=$((sum | bit))
		done
		assert_equal "$(printf '%o' "$sum")" "$(printf '%o' "$((8#$MH_BFLAGS))")"
		# --json: valid JSON, the octal flags a string, fd a number.
		run -0 sh -c '"$1" -m "$2" status --json | python3 -c "
import json, sys
for i in json.load(sys.stdin)[\"images\"]:
    if i[\"name\"] == sys.argv[1]:
        print(i[\"backing_fd\"] + 0, i[\"backing_flags\"], i[\"backing_flag_names\"])
" "$3"' sh "$VCTL" "$VC_MNT" "$img"
		assert_output "$MH_BFD $MH_BFLAGS $names"
	done
}

@test "status: resident and dirty bytes are the backing file's page cache (cachestat)" {
	truncate -s 64M "$VC_SRC/u.img"
	mh_mount unsafe
	exec {fd}<>"$VC_MNT/u.img"; MH_FDS+=("$fd")
	dd if=/dev/urandom of="$VC_MNT/u.img" bs=1M count=8 conv=notrunc status=none
	run -0 ct_field u.img dirty
	(( output >= 8 * 1048576 )) || fail "dirty $output after 8 MiB unsafe writes"
	run -0 ct_field u.img resident
	assert_equal "$output" "$(mh_resident "$VC_SRC/u.img")"
}

@test "status: without cachestat, mincore gives resident and dirty is unknown" {
	truncate -s 16M "$VC_SRC/w.img"
	VCACHEFS_FAULT=cachestat:*:EINVAL mh_mount writeback
	exec {fd}<>"$VC_MNT/w.img"; MH_FDS+=("$fd")
	dd if=/dev/urandom of="$VC_MNT/w.img" bs=1M count=4 conv=notrunc,fsync status=none
	run -0 "$VCTL" -m "$VC_MNT" status
	assert_line "page cache   from mincore"
	run -0 ct_field w.img dirty
	assert_output unknown
	run -0 ct_field w.img resident
	assert_equal "$output" "$(mh_resident "$VC_SRC/w.img")"
	(( output > 0 ))
	run -0 "$VCTL" -m "$VC_MNT" status
	assert_line --regexp '^w\.img .* unknown +\[global\]$'
}

@test "stats: counters and percentiles per image, --json, --reset" {
	ct_mount_two
	exec {fa}<>"$VC_MNT/a.img"; MH_FDS+=("$fa")
	dd if=/dev/urandom of="$VC_MNT/a.img" bs=4k count=50 oflag=direct conv=notrunc,fsync status=none
	dd if="$VC_MNT/a.img" of=/dev/null bs=4k count=10 iflag=direct status=none

	run -0 "$VCTL" -m "$VC_MNT" stats a.img
	echo "$output"
	assert_line 'a.img (cache=none)'
	assert_line --regexp '^  OP +OPS +BYTES +P50 +P90 +P99 +P99\.9 +MAX$'
	assert_line --regexp '^  write +[0-9]+ '

	run -0 "$VCTL" -m "$VC_MNT" stats --json
	python3 -c '
import json, sys
d = json.loads(sys.argv[1])
img = {i["name"]: i for i in d["images"]}
a = img["a.img"]
assert a["cache"] == "none", a
assert a["write_ops"] >= 50 and a["write_bytes"] >= 50 * 4096, a
assert a["read_ops"] >= 10, a
for op in ("read", "write", "flush"):
    for q in ("p50", "p90", "p99", "p999", "max"):
        assert isinstance(a[op + "_" + q + "_ns"], int), (op, q)
assert a["write_p50_ns"] <= a["write_p99_ns"] <= a["write_max_ns"] > 0, a
for k in ("fallocate_ops", "discard_ops", "flush_ignored", "fua_writes", "bounced", "inflight", "errors"):
    assert k in a, k
assert "b.img" not in img   # not open
assert d["stats"]["time_ns"] > 0
' "$output"

	# --reset reports, then zeroes.
	run -0 "$VCTL" -m "$VC_MNT" stats --reset --json a.img
	run -0 "$VCTL" -m "$VC_MNT" stats --json a.img
	python3 -c '
import json, sys
a = json.loads(sys.argv[1])["images"][0]
assert a["write_ops"] == 0 and a["read_ops"] == 0 and a["write_max_ns"] == 0, a
' "$output"

	run -1 "$VCTL" -m "$VC_MNT" stats nosuch.img
	assert_output "vcachefsctl: stats: no open image nosuch.img"
}

@test "stats --prometheus passes promtool check metrics" {
	truncate -s 16M "$VC_SRC/a.img" "$VC_SRC/my disk \"1\".img"
	mh_mount unsafe
	exec {fa}<>"$VC_MNT/a.img"; MH_FDS+=("$fa")
	exec {fb}<>"$VC_MNT/my disk \"1\".img"; MH_FDS+=("$fb")
	dd if=/dev/zero of="$VC_MNT/a.img" bs=4k count=20 conv=notrunc,fsync status=none
	"$VCTL" -m "$VC_MNT" stats --prometheus >"$VC_TMP/metrics.prom"
	cat "$VC_TMP/metrics.prom"
	run -0 promtool check metrics <"$VC_TMP/metrics.prom"
	assert_output ''
	grep -q '^vcachefs_ops_total{image="a.img",cache_mode="unsafe",op="write"} [0-9]' "$VC_TMP/metrics.prom"
	grep -q '^vcachefs_latency_seconds{image="a.img",cache_mode="unsafe",op="write",quantile="0.99"} ' "$VC_TMP/metrics.prom"
	grep -q '^vcachefs_pagecache_dirty_bytes{image="my disk \\"1\\".img",cache_mode="unsafe"} ' "$VC_TMP/metrics.prom"
	grep -q '^# TYPE vcachefs_ops_total counter$' "$VC_TMP/metrics.prom"
}

@test "stats --interval prints rates as lines; top needs a terminal" {
	truncate -s 16M "$VC_SRC/a.img"
	mh_mount writeback
	exec {fa}<>"$VC_MNT/a.img"; MH_FDS+=("$fa")
	run -0 "$VCTL" -m "$VC_MNT" stats --interval 1 --count 2
	echo "$output"
	assert_equal "${#lines[@]}" 4
	assert_line --index 0 --regexp '^TIME +IMAGE +MODE +R/s +W/s +RMiB/s +WMiB/s +FLUSH/s +P99R +P99W +DIRTY +INFL$'
	assert_line --index 1 --regexp '^[0-9:]{8} a\.img +writeback +[0-9.]+ '
	run -2 "$VCTL" -m "$VC_MNT" top </dev/null
	assert_output --partial "top needs a terminal"
}

@test "top in tmux: a row per open image with live rates while fio runs, sorts, quits on q" {
	command -v fio >/dev/null || skip "no fio"
	truncate -s 64M "$VC_SRC/busy.img" "$VC_SRC/idle.img"
	mh_mount writeback
	exec {fi}<"$VC_MNT/idle.img"; MH_FDS+=("$fi")
	mh_bg fio --name=busy --filename="$VC_MNT/busy.img" --rw=randwrite --bs=4k \
	    --size=64M --time_based --runtime=30 --ioengine=psync --fsync=16 \
	    --output=/dev/null
	CT_FIO_PID=$!

	tmux -L "$CT_TMUX" -f /dev/null new-session -d -x 160 -y 30 \
	    "$VCTL -m $VC_MNT top; echo TOP-EXITED \$?; sleep 60"
	ct_screen() { tmux -L "$CT_TMUX" capture-pane -p; }
	# The busy image gets writes and flushes a second; the idle one none.
	ct_busy() {
		ct_screen | awk '$1 == "busy.img" && $2 == "writeback" && $4 + 0 > 0 && $7 + 0 > 0 { f = 1 } END { exit !f }'
	}
	ct_wait ct_busy || { ct_screen; fail "no busy.img row with W/s and FLUSH/s > 0"; }
	ct_screen | grep -qE '^idle\.img +writeback +0\.0 +0\.0 ' || { ct_screen; fail "no idle.img row"; }
	ct_screen | grep -q "vcachefs top - .* - $VC_MNT - $(ct_transport), up "

	# Sort by name: idle.img comes after busy.img; by write: busy first too.
	tmux -L "$CT_TMUX" send-keys n
	ct_sorted_n() {
		ct_screen | grep -q 'sort: n' &&
		    [ "$(ct_screen | grep -E '^(busy|idle)\.img' | awk '{print $1}' | tr '\n' ' ')" = "busy.img idle.img " ]
	}
	ct_wait ct_sorted_n || { ct_screen; fail "n did not sort by name"; }
	tmux -L "$CT_TMUX" send-keys w
	ct_wait sh -c "tmux -L $CT_TMUX capture-pane -p | grep -q 'sort: w'"

	tmux -L "$CT_TMUX" send-keys q
	ct_wait sh -c "tmux -L $CT_TMUX capture-pane -p | grep -q 'TOP-EXITED 0'" ||
	    { ct_screen; fail "top did not exit 0 on q"; }
	# And the terminal is back: the alternate screen is gone.
	! ct_screen | grep -q 'keys: r read'
}

@test "flush: dirty bytes of an unsafe image go to 0 through fdatasync of its backing descriptor" {
	export ASAN_OPTIONS=detect_leaks=0	# strace attaches
	truncate -s 64M "$VC_SRC/u.img"
	mh_mount unsafe
	exec {fd}<>"$VC_MNT/u.img"; MH_FDS+=("$fd")
	mh_backing_fd "$VC_SRC/u.img"
	dd if=/dev/urandom of="$VC_MNT/u.img" bs=1M count=8 conv=notrunc,fsync status=none
	# unsafe dropped the fsync: the data is still dirty on the host.
	run -0 ct_field u.img dirty
	(( output > 0 )) || fail "no dirty bytes before flush ($output)"

	mh_strace_start "$VC_TMP/strace.log" fdatasync,fsync
	run -0 "$VCTL" -m "$VC_MNT" flush u.img
	assert_output "u.img: flushed"
	mh_strace_stop
	cat "$VC_TMP/strace.log"
	grep -qE "fdatasync\($MH_BFD\) += 0" "$VC_TMP/strace.log" ||
	    fail "no fdatasync($MH_BFD) of the backing descriptor"
	run -0 ct_field u.img dirty
	assert_output 0

	# --all, and flush without arguments, do every open image.
	run -0 "$VCTL" -m "$VC_MNT" flush --all
	assert_output "u.img: flushed"
	run -2 "$VCTL" -m "$VC_MNT" flush --all u.img
}

@test "drop-cache: flushes, then the backing file has nothing in the page cache (fincore)" {
	truncate -s 64M "$VC_SRC/w.img"
	mh_mount writeback
	exec {fd}<>"$VC_MNT/w.img"; MH_FDS+=("$fd")
	dd if=/dev/urandom of="$VC_MNT/w.img" bs=1M count=8 conv=notrunc status=none
	dd if="$VC_MNT/w.img" of=/dev/null bs=1M count=8 status=none
	(( $(mh_resident "$VC_SRC/w.img") > 0 )) || fail "nothing cached: the test would mean nothing"
	run -0 "$VCTL" -m "$VC_MNT" drop-cache w.img
	assert_output --regexp '^w\.img: flushed; page cache [0-9.]+M -> 0$'
	assert_equal "$(mh_resident "$VC_SRC/w.img")" 0
	run -0 ct_field w.img dirty
	assert_output 0
	run -2 "$VCTL" -m "$VC_MNT" drop-cache
	run -1 "$VCTL" -m "$VC_MNT" drop-cache nosuch.img
}

@test "reload of a broken file: one FILE:LINE line an error, then the verdict as the one error line" {
	truncate -s 16M "$VC_SRC/a.img"
	mh_mount writeback
	printf '[global]\ncache = fast\n[a.img]\nbogus = 1\n' >"$MH_CONF"
	run --separate-stderr "$VCTL" -m "$VC_MNT" reload
	assert_equal "$status" 1
	assert_equal "$output" ""
	assert_equal "$stderr" "$MH_CONF:2: cache: unknown mode 'fast' (expected writeback, writethrough, none, directsync, unsafe)
$MH_CONF:4: unknown key 'bogus' (expected cache, aio, readonly, format, shareable)
vcachefsctl: reload rejected: 2 error(s); the old configuration stays"
	# The log says the same, once.
	assert_equal "$(grep -c 'reload rejected: 2 error(s); the old configuration stays$' "$VC_LOG")" 1
	vc_check_log
}

@test "a peer that is neither root nor the daemon's user is refused and logged" {
	mkdir -m 0777 "$VC_TMP/ctl"
	truncate -s 16M "$VC_SRC/a.img"
	mh_conf writeback
	vc_mount -c "$MH_CONF" --control "$VC_TMP/ctl/s.sock" "$VC_SRC" "$VC_MNT"
	[ ! -e "$(ct_sock)" ]	# --control replaces the default
	assert_equal "$(stat -c '%a' "$VC_TMP/ctl/s.sock")" 600
	# Open the socket to everyone, so that SO_PEERCRED is what refuses.
	chmod 0666 "$VC_TMP/ctl/s.sock"
	# socat may also see EPIPE: the daemon closes without reading.
	run setpriv --reuid=65534 --regid=65534 --clear-groups \
	    socat -t 5 - UNIX-CONNECT:"$VC_TMP/ctl/s.sock" <<<"status"
	assert_output "error permission denied: only root or the daemon's user may use the control socket"
	run -1 setpriv --reuid=65534 --regid=65534 --clear-groups \
	    "$VCTL" -s "$VC_TMP/ctl/s.sock" status
	assert_output --partial "permission denied"
	grep -qE "control: refused pid [0-9]+ uid 65534" "$VC_LOG"
	# Root still gets in.
	run -0 "$VCTL" -s "$VC_TMP/ctl/s.sock" status
	assert_line "source       $VC_SRC"
}

@test "garbage, oversized and half-sent requests get an error and a closed connection; I/O goes on" {
	truncate -s 16M "$VC_SRC/a.img"
	mh_mount writeback
	S=$(ct_sock)

	run -0 ct_raw "$S" <<<"frobnicate the disks"
	assert_output "error unknown command 'frobnicate' (status, stats, reload, flush, drop-cache, check-migration)"
	run -0 ct_raw "$S" < <(printf 'stats \001\002\n')
	assert_output --regexp '^error malformed request: control byte 0x01'
	run -0 ct_raw "$S" < <(printf 'stats a%%zz\n')
	assert_output 'error stats: bad percent-encoding in argument 1'
	# The first request is served, the bad one closes, the third is never read.
	run -0 ct_raw "$S" < <(printf 'stats\nbogus\nstatus\n')
	assert_line --index 0 --regexp '^stats time_ns='
	assert_line --index 1 ok
	assert_line --index 2 --regexp '^error unknown command'
	assert_equal "${#lines[@]}" 3
	# 5000 bytes without a newline.
	run -0 ct_raw "$S" < <(head -c 5000 /dev/zero | tr '\0' a)
	assert_output "error request longer than 4096 bytes"

	# Half-sent: the client keeps the connection open and never ends the
	# line. Meanwhile I/O through the mount and other control clients go on.
	(printf 'stat'; sleep 8) | ct_raw "$S" >"$VC_TMP/half.out" &
	HALF=$!
	dd if=/dev/urandom of="$VC_TMP/ref" bs=64k count=16 status=none
	timeout 5 dd if="$VC_TMP/ref" of="$VC_MNT/a.img" bs=64k conv=notrunc,fsync status=none
	timeout 5 cmp -n $((64 * 1024 * 16)) "$VC_TMP/ref" "$VC_MNT/a.img"
	run -0 timeout 5 "$VCTL" -m "$VC_MNT" status
	[ ! -s "$VC_TMP/half.out" ]	# not answered yet: it is not a request yet
	ct_wait test -s "$VC_TMP/half.out"
	assert_equal "$(cat "$VC_TMP/half.out")" "error request not finished within 3 s"
	# The daemon closed it: socat ends long before its stdin (sleep 8) does.
	ct_wait sh -c "! kill -0 $HALF 2>/dev/null" || true
	grep -q "closed connection of pid [0-9]* uid 0: request not finished" "$VC_LOG"
	# A line cut by EOF is no request either.
	run -0 ct_raw "$S" < <(printf 'status')
	assert_output "error request ends without a newline"
	# Keep-alive: many requests on one connection.
	run -0 ct_raw "$S" < <(printf 'status\nstats\nstatus\n')
	assert_equal "$(grep -c '^ok$' <<<"$output")" 3
}

@test "a stale socket is replaced; a live one of another daemon is not" {
	truncate -s 16M "$VC_SRC/a.img"
	mh_conf writeback
	# Stale: bound, then its owner went away.
	python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$VC_TMP/c.sock"
	[ -S "$VC_TMP/c.sock" ]
	vc_mount -c "$MH_CONF" --control "$VC_TMP/c.sock" "$VC_SRC" "$VC_MNT"
	grep -q "replaced the stale socket $VC_TMP/c.sock" "$VC_LOG"
	run -0 "$VCTL" -s "$VC_TMP/c.sock" status
	first=$VC_PID

	# A second mount asking for the same socket: refused, the first still answers.
	mkdir "$VC_TMP/src2" "$VC_TMP/mnt2"
	run -1 "$VCACHEFS" -f -c "$MH_CONF" --control "$VC_TMP/c.sock" "$VC_TMP/src2" "$VC_TMP/mnt2"
	assert_output --partial "control: $VC_TMP/c.sock is in use by another daemon; use --control PATH"
	! vc_is_mounted "$VC_TMP/mnt2"
	run -0 "$VCTL" -s "$VC_TMP/c.sock" status
	assert_line --regexp "pid $first\)\$"

	# Unmounting removes the socket.
	vc_umount
	[ ! -e "$VC_TMP/c.sock" ]
}

@test "vcachefsctl: bad usage exits 2, a missing daemon 1, each with one line" {
	run -2 "$VCTL"
	assert_output "vcachefsctl: missing COMMAND (see --help)"
	run -2 "$VCTL" frobnicate
	assert_output "vcachefsctl: unknown command 'frobnicate' (see --help)"
	run -2 "$VCTL" -s /nonexistent stats --interval 0
	assert_output "vcachefsctl: stats: --interval: '0' is not a number from 1 to 86400"
	run -2 "$VCTL" -s /nonexistent stats --json --prometheus
	run -2 "$VCTL" -s /nonexistent status extra
	run -2 "$VCTL" -s /nonexistent -m /tmp status
	run -1 "$VCTL" -s "$VC_TMP/none.sock" status
	assert_output "vcachefsctl: $VC_TMP/none.sock: No such file or directory (is vcachefs running with this control socket?)"
	run -0 "$VCTL" --help
	assert_line --partial "drop-cache IMAGE..."
	run -0 "$VCTL" --version
	assert_output --regexp '^vcachefsctl [0-9]'
}
