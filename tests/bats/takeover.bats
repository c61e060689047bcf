#!/usr/bin/env bats
# vcachefs --takeover: a new daemon takes the mount's FUSE connection over
# from the running one (an upgrade) without unmounting. fio verifying its
# data and qemu-io holding an image open keep going without an I/O error;
# the pid serving the mount changes, the old daemon exits, the mount never
# leaves /proc/mounts, and the images' backing descriptors in the new
# daemon have their modes' flags. A takeover that is refused or fails at
# any step leaves the old daemon serving. The same through systemd's fd
# store, with a stand-in for systemd.

load helper
load modes_helper
load data_helper

: "${VCTL:=$BATS_TEST_DIRNAME/../../build/asan/vcachefsctl}"

setup() {
	# With FUSE over io_uring only the refusal can be tested (README, Limits).
	if [ "${VC_FUSE_URING:-0}" = 1 ] && [[ "$BATS_TEST_DESCRIPTION" != *io_uring* ]]; then
		skip "the takeover needs requests through /dev/fuse"
	fi
	mh_setup
	dh_setup
	TK_CTL=$VC_TMP/ctl.sock
	DH_QEMU_TRIES=400	# qemu-io waits out a takeover's pause
	TK_WATCH=
	TK_TMPFS=
}

teardown() {
	[ -n "${VC_TMP:-}" ] || return 0	# skipped before set-up
	if [ -n "${TK_WATCH:-}" ]; then
		kill "$TK_WATCH" 2>/dev/null || true
		wait "$TK_WATCH" 2>/dev/null || true
	fi
	dh_cleanup
	vc_stop_all
	if [ -n "${TK_TMPFS:-}" ]; then
		umount "$TK_TMPFS" 2>/dev/null || umount -l "$TK_TMPFS" 2>/dev/null || true
	fi
	mh_teardown
}

# Record, until stopped, whether the mount ever left /proc/mounts.
tk_watch_start() {
	: >"$VC_TMP/watch.out"
	(
		while :; do
			vc_is_mounted "$VC_MNT" || echo gone >>"$VC_TMP/watch.out"
			sleep 0.01
		done
	) &
	TK_WATCH=$!
}

tk_watch_stop() {
	kill "$TK_WATCH"
	wait "$TK_WATCH" 2>/dev/null || true
	TK_WATCH=
	if [ -s "$VC_TMP/watch.out" ]; then
		echo "the mount left /proc/mounts during the takeover" >&2
		return 1
	fi
}

# The daemon holding /dev/fuse for the mount is PID.
tk_serves() {	# PID
	ls -l /proc/"$1"/fd 2>/dev/null | grep -q ' -> /dev/fuse$'
}

# tk_takeover [OPTIONS...] [SOURCE] MOUNTPOINT: start a new daemon with
# the same command line plus --takeover. Sets TK_NEW. Returns 0 once the
# old daemon (VC_PID) has exited and the new one serves; 1 when the new
# one exited instead (a refused takeover), with its status in TK_STATUS.
tk_takeover() {
	local i n0
	n0=$(grep -c 'takeover: .* taken over' "$VC_LOG" || true)
	# Without the test shell's descriptors of the mount (-f keeps
	# inherited ones), which would keep it busy at the end.
	(
		for fd in "${MH_FDS[@]}"; do eval "exec $fd>&-"; done
		# shellcheck disable=SC2086
		exec "$VCACHEFS" -f ${VC_EXTRA_OPTS:-} "$@" --takeover >>"$VC_LOG" 2>&1
	) &
	TK_NEW=$!
	VC_PIDS+=("$TK_NEW")
	TK_STATUS=
	for i in $(seq 1 600); do
		if ! kill -0 "$TK_NEW" 2>/dev/null; then
			TK_STATUS=0
			wait "$TK_NEW" || TK_STATUS=$?
			echo "the new daemon exited with status $TK_STATUS; log:" >&2
			cat "$VC_LOG" >&2
			return 1
		fi
		if [ "$(grep -c 'takeover: .* taken over' "$VC_LOG" || true)" -gt "$n0" ] &&
		    ! kill -0 "$VC_PID" 2>/dev/null; then
			TK_OLD_STATUS=0
			wait "$VC_PID" 2>/dev/null || TK_OLD_STATUS=$?
			return 0
		fi
		sleep 0.05
	done
	echo "no takeover within 30 s; log:" >&2
	cat "$VC_LOG" >&2
	return 2
}


# The image's backing descriptor in the daemon VC_PID has MODE's flags,
# and is writable when the image has a writer.
tk_assert_mode() {	# FILE MODE ACCMODE
	mh_backing_fd "$1"
	echo "pid $VC_PID: $1: fd $MH_BFD flags 0$MH_BFLAGS, want cache=$2"
	mh_assert_mode_flags "$2" "$MH_BFLAGS"
	[ "$(mh_accmode "$MH_BFLAGS")" -eq "$3" ]
}

tk_mount() {	# CONF LINES...
	mh_conf "$@"
	vc_mount -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC" "$VC_MNT"
}

@test "fio --verify=crc32c and qemu-io keep running across a takeover: new pid, old one gone, mount never left, modes kept" {
	truncate -s 32M "$VC_SRC/fio.img"
	truncate -s 16M "$VC_SRC/q.img"
	mkdir "$VC_SRC/dir"
	touch "$VC_SRC/dir/a" "$VC_SRC/dir/b" "$VC_SRC/dir/c"
	tk_mount writeback "[fio.img]" "cache = none" "[q.img]" "cache = writethrough"
	local old=$VC_PID
	dh_qemu_start "$VC_MNT/q.img"
	dh_qemu "write -P 0x11 0 1M"
	# Rate-limited, so that it writes before, during and after the
	# takeover; verify_backlog checks the data as it goes.
	fio --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_backlog=64 \
		--verify_state_save=0 --rw=randwrite --bs=4k --size=16M \
		--filename="$VC_MNT/fio.img" \
		--name=buffered --ioengine=psync --rate_iops=300 --offset=0 \
		--name=direct --ioengine=libaio --direct=1 --iodepth=8 \
		--rate_iops=300 --offset=16M >"$VC_TMP/fio.out" 2>&1 &
	local fio=$!
	dh_bg "$fio"
	# A directory handle open across the takeover, half read.
	exec {dfd}<"$VC_MNT/dir"
	MH_FDS+=("$dfd")
	local i
	for i in $(seq 1 200); do
		[ -n "$(mh_backing_fds "$VC_SRC/fio.img")" ] && break
		sleep 0.05
	done
	tk_assert_mode "$VC_SRC/fio.img" none "$MH_O_RDWR"
	tk_assert_mode "$VC_SRC/q.img" writethrough "$MH_O_RDWR"
	tk_watch_start
	tk_takeover -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC" "$VC_MNT"
	# fio was still writing when the new daemon took over.
	kill -0 "$fio"
	VC_PID=$TK_NEW
	[ "$TK_NEW" != "$old" ]
	! kill -0 "$old" 2>/dev/null
	[ "$TK_OLD_STATUS" -eq 0 ]	# the old daemon left cleanly
	tk_serves "$TK_NEW"
	grep -q "takeover: the new daemon serves $VC_MNT; leaving without unmounting" "$VC_LOG"
	# The modes, in the new daemon's descriptors.
	tk_assert_mode "$VC_SRC/fio.img" none "$MH_O_RDWR"
	tk_assert_mode "$VC_SRC/q.img" writethrough "$MH_O_RDWR"
	# qemu-io's image: what was written before, and writes after.
	dh_qemu "read -P 0x11 0 1M"
	dh_qemu "write -P 0x22 1M 1M"
	dh_qemu "flush"
	dh_qemu "read -P 0x22 1M 1M"
	wait "$fio" || { cat "$VC_TMP/fio.out"; false; }
	output=$(cat "$VC_TMP/fio.out")
	echo "$output" | grep -E 'err=|verify|READ|WRITE'
	dh_fio_clean "$output"
	echo "$output" | grep -qE 'READ: .*io=[1-9]'
	tk_watch_stop
	# The directory opened before the takeover lists in the new one.
	[ "$(ls "/proc/self/fd/$dfd/" | tr '\n' ' ')" = "a b c " ]
	exec {dfd}<&-
	dh_qemu_quit
	cmp <(head -c 1M /dev/zero | tr '\0' '\021') \
		<(dd if="$VC_SRC/q.img" bs=1M count=1 status=none)
	cmp <(head -c 1M /dev/zero | tr '\0' '\042') \
		<(dd if="$VC_SRC/q.img" bs=1M skip=1 count=1 status=none)
	# The new daemon unmounts as any would, and its log is clean.
	vc_umount "$VC_MNT" "$TK_NEW"
	! vc_is_mounted "$VC_MNT"
	vc_check_log
}

@test "a second takeover: the new daemon hands over in its turn; the control socket follows" {
	truncate -s 8M "$VC_SRC/disk.img"
	tk_mount writeback "[disk.img]" "cache = directsync"
	dh_qemu_start "$VC_MNT/disk.img"
	dh_qemu "write -P 0x33 0 1M"
	tk_takeover -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC" "$VC_MNT"
	VC_PID=$TK_NEW
	# The new daemon answers on the same control socket.
	run "$VCTL" --socket "$TK_CTL" status
	echo "$output"
	[[ "$output" == *"pid $TK_NEW)"* ]]
	tk_takeover -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC" "$VC_MNT"
	VC_PID=$TK_NEW
	tk_assert_mode "$VC_SRC/disk.img" directsync "$MH_O_RDWR"
	dh_qemu "read -P 0x33 0 1M"
	dh_qemu "write -P 0x44 1M 1M"
	dh_qemu "read -P 0x44 1M 1M"
	dh_qemu_quit
	[ "$(grep -c 'leaving without unmounting' "$VC_LOG")" -eq 2 ]
	vc_umount "$VC_MNT" "$TK_NEW"
	vc_check_log
}

# aio = native and aio = io_uring. Its name must not say io_uring: setup()
# runs such tests on the FUSE ring pass, where a takeover is refused.
@test "images in aio=native and in the uring aio engine, open across a takeover, keep their engine in the new daemon" {
	truncate -s 8M "$VC_SRC/u.img" "$VC_SRC/n.img"
	tk_mount writeback "[u.img]" "aio = io_uring" "[n.img]" "cache = none" "aio = native"
	exec {ufd}<>"$VC_MNT/u.img"
	MH_FDS+=("$ufd")
	exec {nfd}<>"$VC_MNT/n.img"
	MH_FDS+=("$nfd")
	run "$VCTL" --socket "$TK_CTL" status
	echo "$output"
	echo "$output" | grep -qE '^u\.img +writeback +io_uring '
	echo "$output" | grep -qE '^n\.img +none +native '
	tk_takeover -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC" "$VC_MNT"
	VC_PID=$TK_NEW
	run "$VCTL" --socket "$TK_CTL" status
	echo "$output"
	[[ "$output" == *"pid $TK_NEW)"* ]]
	echo "$output" | grep -qE '^u\.img +writeback +io_uring '
	echo "$output" | grep -qE '^n\.img +none +native '
	! grep 'io_uring is not available here' "$VC_LOG"
	echo data >&"$ufd"
	exec {ufd}<&- {nfd}<&-
	[ "$(head -c 4 "$VC_SRC/u.img")" = data ]
	vc_umount "$VC_MNT" "$TK_NEW"
	vc_check_log
}

@test "the new daemon cannot open the control socket after the takeover: it serves on without it, the mount stays" {
	truncate -s 8M "$VC_SRC/disk.img"
	tk_mount writeback "[disk.img]" "cache = none"
	dh_qemu_start "$VC_MNT/disk.img"
	dh_qemu "write -P 0x55 0 1M"
	VCACHEFS_FAULT=control_open:1:EADDRINUSE tk_takeover -c "$MH_CONF" \
		--control "$TK_CTL" "$VC_SRC" "$VC_MNT"
	VC_PID=$TK_NEW
	grep -q "takeover: no control socket; serving $VC_MNT on without one" "$VC_LOG"
	tk_serves "$TK_NEW"
	vc_is_mounted "$VC_MNT"
	dh_qemu "read -P 0x55 0 1M"
	dh_qemu "write -P 0x66 1M 1M"
	dh_qemu "read -P 0x66 1M 1M"
	dh_qemu_quit
	vc_umount "$VC_MNT" "$TK_NEW"
	vc_check_log
}

@test "SIGTERM to the old daemon while it waits for the new one's ack: it does not unmount; the new daemon serves" {
	truncate -s 4M "$VC_SRC/disk.img"
	tk_mount writeback
	local old=$VC_PID
	# No image open: without the takeover the signal would unmount.
	(
		for i in $(seq 1 600); do
			grep -q 'waiting for the new daemon' "$VC_LOG" && break
			sleep 0.05
		done
		kill -TERM "$old"
	) &
	local killer=$!
	tk_watch_start
	# The new daemon is slow to answer (its INIT replay waits 3 s).
	VCACHEFS_FAULT=takeover_init:1:delay=3000 tk_takeover -c "$MH_CONF" \
		--control "$TK_CTL" "$VC_SRC" "$VC_MNT"
	VC_PID=$TK_NEW
	wait "$killer"
	tk_watch_stop
	grep -q 'a takeover is under way or done; not unmounting' "$VC_LOG"
	[ ! -s "$VC_TMP/watch.out" ]
	vc_is_mounted "$VC_MNT"
	tk_serves "$TK_NEW"
	echo data >"$VC_MNT/disk.img"
	[ "$(cat "$VC_SRC/disk.img")" = data ]
	vc_umount "$VC_MNT" "$TK_NEW"
	vc_check_log
}

@test "refused: no vcachefs mount there, or no daemon at the control socket; the old daemon goes on" {
	run "$VCACHEFS" -f --takeover "$VC_SRC" "$VC_TMP"
	[ "$status" -ne 0 ]
	echo "$output"
	[[ "$output" == *"--takeover: no vcachefs mount at $VC_TMP"* ]]
	truncate -s 4M "$VC_SRC/disk.img"
	tk_mount writeback
	run "$VCACHEFS" -f ${VC_EXTRA_OPTS:-} -c "$MH_CONF" --control "$VC_TMP/none.sock" \
		--takeover "$VC_SRC" "$VC_MNT"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"takeover: no daemon answers at $VC_TMP/none.sock"* ]]
	tk_serves "$VC_PID"
	echo data >"$VC_MNT/disk.img"
	[ "$(cat "$VC_SRC/disk.img")" = data ]
	vc_umount
	vc_check_log
}

# A takeover that fails after the old daemon paused and sent everything:
# it resumes, and the image it holds open keeps working.
tk_failed_takeover() {	# FAULT MESSAGE
	truncate -s 8M "$VC_SRC/disk.img"
	tk_mount writeback "[disk.img]" "cache = none"
	dh_qemu_start "$VC_MNT/disk.img"
	dh_qemu "write -P 0x55 0 1M"
	local st=0
	VCACHEFS_FAULT=$1 tk_takeover -c "$MH_CONF" --control "$TK_CTL" \
		"$VC_SRC" "$VC_MNT" || st=$?
	[ "$st" -eq 1 ]
	[ "$TK_STATUS" -ne 0 ]
	grep -q "$2" "$VC_LOG" || { cat "$VC_LOG"; false; }
	grep -q "takeover refused: the new daemon refused: .*; serving on" "$VC_LOG"
	tk_serves "$VC_PID"
	! tk_serves "$TK_NEW" 2>/dev/null
	dh_qemu "read -P 0x55 0 1M"
	dh_qemu "write -P 0x66 1M 1M"
	dh_qemu "read -P 0x66 1M 1M"
	tk_assert_mode "$VC_SRC/disk.img" none "$MH_O_RDWR"
	dh_qemu_quit
	# And a later takeover still works.
	tk_takeover -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC" "$VC_MNT"
	VC_PID=$TK_NEW
	cat "$VC_MNT/disk.img" >/dev/null
	vc_umount "$VC_MNT" "$TK_NEW"
	vc_check_log
}

@test "failed: the new daemon cannot reopen an image; the old one resumes serving it" {
	tk_failed_takeover open:1:EIO "takeover: reopening image .*: Input/output error; the old daemon goes on serving"
}

@test "failed: the new daemon would negotiate another INIT; the old one resumes" {
	tk_failed_takeover takeover_init:1:EIO "INIT reply differs from the one the kernel got .*max_write"
}

@test "with FUSE over io_uring the takeover is refused with the kernel's reason; the old daemon goes on" {
	[ "${VC_FUSE_URING:-0}" = 1 ] || skip "needs the io_uring pass (tests/run pass 2)"
	truncate -s 4M "$VC_SRC/disk.img"
	tk_mount writeback
	local st=0
	tk_takeover -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC" "$VC_MNT" || st=$?
	[ "$st" -eq 1 ]
	grep -q "takeover refused by the daemon of $TK_CTL: takeover: requests go through FUSE over io_uring" "$VC_LOG"
	tk_serves "$VC_PID"
	echo data >"$VC_MNT/disk.img"
	[ "$(cat "$VC_SRC/disk.img")" = data ]
	vc_umount
	vc_check_log
}

@test "in place (no SOURCE): the source directory under the mount is handed over; a tmpfs below it (no file handles) too" {
	truncate -s 8M "$VC_SRC/disk.img"
	# Objects on another filesystem below SOURCE have no handle the
	# daemon can reopen: their descriptors are handed over.
	mkdir "$VC_SRC/t"
	mount -t tmpfs -o size=16M tmpfs "$VC_SRC/t"
	TK_TMPFS=$VC_SRC/t
	truncate -s 4M "$VC_SRC/t/other.img"
	mh_conf writeback "[disk.img]" "cache = none"
	vc_mount -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC"
	VC_MNT=$VC_SRC
	dh_qemu_start "$VC_SRC/disk.img"
	dh_qemu "write -P 0x77 0 1M"
	exec {ofd}<>"$VC_SRC/t/other.img"
	MH_FDS+=("$ofd")
	echo before >&"$ofd"
	tk_takeover -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC"
	VC_PID=$TK_NEW
	grep -q "serving $VC_SRC at $VC_SRC (pid $TK_NEW)" "$VC_LOG"
	dh_qemu "read -P 0x77 0 1M"
	dh_qemu "write -P 0x78 1M 1M"
	dh_qemu "read -P 0x78 1M 1M"
	echo after >&"$ofd"
	exec {ofd}>&-
	[ "$(head -c 13 "$VC_SRC/t/other.img")" = "$(printf 'before\nafter')" ]
	tk_assert_mode "$VC_SRC/disk.img" none "$MH_O_RDWR"
	dh_qemu_quit
	vc_umount "$VC_SRC" "$TK_NEW"
	umount "$TK_TMPFS"
	TK_TMPFS=
	vc_check_log
}

@test "in place, a qcow2 overlay whose backing file is named by its path under the mount: qemu-io reads the chain across a takeover" {
	qemu-img create -q -f qcow2 "$VC_SRC/base.qcow2" 16M
	qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' "$VC_SRC/base.qcow2" >/dev/null
	mh_conf writeback "[base.qcow2]" "cache = none" "[top.qcow2]" "cache = writethrough"
	vc_mount -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC"
	VC_MNT=$VC_SRC
	# Absolute backing name: through the mount, i.e. through the daemon.
	qemu-img create -q -f qcow2 -F qcow2 -b "$VC_SRC/base.qcow2" "$VC_SRC/top.qcow2"
	dh_qemu_start "$VC_SRC/top.qcow2" qcow2
	dh_qemu "write -P 0x5b 1M 1M"
	tk_takeover -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC"
	VC_PID=$TK_NEW
	dh_qemu "read -P 0x5a 0 1M"
	dh_qemu "read -P 0x5b 1M 1M"
	dh_qemu "write -P 0x5c 2M 1M"
	dh_qemu "read -P 0x5c 2M 1M"
	# Both images in their modes in the new daemon (base read-only).
	tk_assert_mode "$VC_SRC/top.qcow2" writethrough "$MH_O_RDWR"
	tk_assert_mode "$VC_SRC/base.qcow2" none "$MH_O_RDONLY"
	dh_qemu_quit
	vc_umount "$VC_SRC" "$TK_NEW"
	qemu-io -f qcow2 -c 'read -P 0x5c 2M 1M' "$VC_SRC/top.qcow2" | grep -q 'read 1048576/1048576'
	vc_check_log
}

# A stand-in for systemd (not PID 1 here): starts the daemon with
# NOTIFY_SOCKET, keeps what it stores (FDSTORE=1, FDNAME=), drops what it
# removes (FDSTOREREMOVE=1), and when the daemon exits 0 with a store,
# starts the same command line again with the store passed as systemd
# does (descriptors from 3, LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES). Logs
# "start PID", "exit PID STATUS", "store NAME", "remove NAME".
tk_minisd() {	# LOG SOCKET COMMAND...
	python3 - "$@" <<'PYEOF'
import array, os, socket, sys
log = open(sys.argv[1], "a", buffering=1)
sock, argv = sys.argv[2], sys.argv[3:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock)
s.settimeout(0.1)
store = []	# (name, fd), in the order stored

def start():
    names = [n for n, _ in store]
    pid = os.fork()
    if pid == 0:
        env = dict(os.environ, NOTIFY_SOCKET=sock)
        # systemd 254+ tells the service its store size; TK_FDSTORE=""
        # plays an older systemd that does not.
        if os.environ.get("TK_FDSTORE", "4096"):
            env["FDSTORE"] = os.environ.get("TK_FDSTORE", "4096")
        else:
            env.pop("FDSTORE", None)
        if store:
            for i, (_, fd) in enumerate(store):
                os.dup2(fd, 3 + i, inheritable=True)
            env.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(store)),
                       LISTEN_FDNAMES=":".join(names))
        os.execve(argv[0], argv, env)
    log.write("start %d\n" % pid)
    return pid

child = start()
while True:
    try:
        msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(4 * 8))
        fds = array.array("i")
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % 4])
        kv = dict(l.split("=", 1) for l in msg.decode().split("\n") if "=" in l)
        name = kv.get("FDNAME", "stored")
        if kv.get("FDSTORE") == "1":
            for fd in fds:
                store.append((name, fd))
            log.write("store %s\n" % name)
        elif kv.get("FDSTOREREMOVE") == "1":
            for n, fd in [e for e in store if e[0] == name]:
                os.close(fd)
                store.remove((n, fd))
            log.write("remove %s\n" % name)
    except socket.timeout:
        pass
    pid, st = os.waitpid(child, os.WNOHANG)
    if pid == 0:
        continue
    log.write("exit %d %d\n" % (pid, os.waitstatus_to_exitcode(st)))
    if os.waitstatus_to_exitcode(st) == 0 and store:
        child = start()
    else:
        break
PYEOF
}

tk_sd_wait() {	# ERE [N]
	local i n
	for i in $(seq 1 600); do
		n=$(grep -cE -- "$1" "$VC_TMP/sd.log" 2>/dev/null) || n=0
		[ "$n" -ge "${2:-1}" ] && return 0
		sleep 0.05
	done
	echo "no '$1' in the stand-in's log:" >&2
	cat "$VC_TMP/sd.log" "$VC_LOG" >&2
	return 1
}

@test "systemd's fd store (emulated): vcachefsctl fdstore, the restarted daemon takes over from LISTEN_FDS and empties the store; fio and qemu-io go on" {
	truncate -s 32M "$VC_SRC/fio.img"
	truncate -s 8M "$VC_SRC/q.img"
	mh_conf writeback "[fio.img]" "cache = none" "[q.img]" "cache = writethrough"
	# shellcheck disable=SC2086
	tk_minisd "$VC_TMP/sd.log" "$VC_TMP/notify.sock" "$VCACHEFS" -f \
		${VC_EXTRA_OPTS:-} -c "$MH_CONF" --control "$TK_CTL" "$VC_SRC" "$VC_MNT" \
		>>"$VC_LOG" 2>&1 &
	TK_SD=$!
	dh_bg "$TK_SD"
	VC_MOUNTS+=("$VC_MNT")
	tk_sd_wait '^start '
	local old new i
	old=$(awk '$1 == "start" { print $2; exit }' "$VC_TMP/sd.log")
	VC_PIDS+=("$old")
	for i in $(seq 1 200); do vc_is_mounted "$VC_MNT" && break; sleep 0.05; done
	vc_is_mounted "$VC_MNT"
	VC_PID=$old
	dh_qemu_start "$VC_MNT/q.img"
	dh_qemu "write -P 0x61 0 1M"
	fio --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_backlog=64 \
		--verify_state_save=0 --rw=randwrite --bs=4k --size=16M \
		--filename="$VC_MNT/fio.img" --name=direct --ioengine=libaio \
		--direct=1 --iodepth=8 --rate_iops=300 >"$VC_TMP/fio.out" 2>&1 &
	local fio=$!
	dh_bg "$fio"
	for i in $(seq 1 200); do
		[ -n "$(mh_backing_fds "$VC_SRC/fio.img")" ] && break
		sleep 0.05
	done
	tk_watch_start
	run "$VCTL" --socket "$TK_CTL" fdstore
	echo "$output"
	[ "$status" -eq 0 ]
	tk_sd_wait "^exit $old 0\$"
	tk_sd_wait '^start ' 2
	new=$(awk '$1 == "start" { p = $2 } END { print p }' "$VC_TMP/sd.log")
	VC_PIDS+=("$new")
	[ "$new" != "$old" ]
	# Serving, it took its descriptors out of the store.
	tk_sd_wait '^remove vcachefs-fuse$'
	kill -0 "$fio"
	grep -q "fdstore: taking over $VC_MNT from systemd's fd store" "$VC_LOG"
	grep -q '^store vcachefs-state$' "$VC_TMP/sd.log"
	VC_PID=$new
	tk_serves "$new"
	tk_assert_mode "$VC_SRC/fio.img" none "$MH_O_RDWR"
	tk_assert_mode "$VC_SRC/q.img" writethrough "$MH_O_RDWR"
	dh_qemu "read -P 0x61 0 1M"
	dh_qemu "write -P 0x62 1M 1M"
	dh_qemu "read -P 0x62 1M 1M"
	wait "$fio" || { cat "$VC_TMP/fio.out"; false; }
	output=$(cat "$VC_TMP/fio.out")
	dh_fio_clean "$output"
	tk_watch_stop
	dh_qemu_quit
	fusermount3 -u "$VC_MNT"
	tk_sd_wait "^exit $new 0\$"
	! vc_is_mounted "$VC_MNT"
	vc_check_log
}

@test "fdstore under a systemd that does not give its store size (\$FDSTORE unset, systemd < 254) is refused; the daemon goes on" {
	truncate -s 4M "$VC_SRC/disk.img"
	# shellcheck disable=SC2086
	TK_FDSTORE="" tk_minisd "$VC_TMP/sd.log" "$VC_TMP/notify.sock" "$VCACHEFS" -f \
		${VC_EXTRA_OPTS:-} -c /dev/null --control "$TK_CTL" "$VC_SRC" "$VC_MNT" \
		>>"$VC_LOG" 2>&1 &
	TK_SD=$!
	dh_bg "$TK_SD"
	VC_MOUNTS+=("$VC_MNT")
	tk_sd_wait '^start '
	local pid i
	pid=$(awk '$1 == "start" { print $2; exit }' "$VC_TMP/sd.log")
	VC_PIDS+=("$pid")
	for i in $(seq 1 200); do vc_is_mounted "$VC_MNT" && break; sleep 0.05; done
	VC_PID=$pid
	exec 8<>"$VC_MNT/disk.img"
	run "$VCTL" --socket "$TK_CTL" fdstore
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *'$FDSTORE unset'* ]]
	# Nothing was stored, and the daemon serves on.
	! grep -q '^store ' "$VC_TMP/sd.log"
	tk_serves "$pid"
	echo data >&8
	exec 8>&-
	[ "$(cat "$VC_SRC/disk.img")" = data ]
	fusermount3 -u "$VC_MNT"
	tk_sd_wait "^exit $pid 0\$"
	vc_check_log
}

@test "fdstore without systemd (no NOTIFY_SOCKET) is refused; the daemon goes on" {
	truncate -s 4M "$VC_SRC/disk.img"
	tk_mount writeback
	run "$VCTL" --socket "$TK_CTL" fdstore
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"fdstore: no systemd here (NOTIFY_SOCKET is unset)"* ]]
	tk_serves "$VC_PID"
	echo data >"$VC_MNT/disk.img"
	[ "$(cat "$VC_SRC/disk.img")" = data ]
	vc_umount
	vc_check_log
}
