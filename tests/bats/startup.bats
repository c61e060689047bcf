#!/usr/bin/env bats
# Start-up hardening: signals during start-up, working and root directories
# inside an in-place mount, descriptors a detached daemon inherits, the
# descriptor limit, libgcc_s for pthread_cancel, and CAP_SYS_RESOURCE
# (ext4's reserved blocks) (vcachefs(8)).

bats_require_minimum_version 1.5.0
load helper

HOLDERS=()	# background processes of the test; killed in teardown
DAEMONS=()	# detached daemons (not children of the test shell)
LOOPS=()	# loop-mounted file systems, unmounted last
: "${VCACHEFS_PLAIN:=$BATS_TEST_DIRNAME/../../build/vcachefs}"

setup() {
	vc_setup
}

teardown() {
	local p m rc=0
	for p in "${HOLDERS[@]}"; do
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	vc_stop_all
	for p in "${DAEMONS[@]}"; do
		if vc_is_daemon "$p"; then
			kill -TERM "$p" 2>/dev/null || true
			gone "$p" 5 || { vc_is_daemon "$p" && kill -9 "$p" 2>/dev/null; } || true
		fi
	done
	for m in "${LOOPS[@]}"; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	vc_teardown || rc=1
	return $rc
}

# Wait until process PID is gone (for processes that are not our children).
gone() {	# PID [SECONDS]
	local i
	for i in $(seq 1 $((${2:-10} * 20))); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.05
	done
	return 1
}

# Wait until the daemon log has a line matching the ERE.
wait_log() {	# ERE [SECONDS]
	local i
	for i in $(seq 1 $((${2:-5} * 20))); do
		grep -qE -- "$1" "$VC_LOG" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "log has no line matching '$1'; log:" >&2
	cat "$VC_LOG" >&2
	return 1
}

assert_not_mounted() {	# MOUNTPOINT
	if vc_is_mounted "$1"; then
		fail "$1 is still mounted: $(grep -F " $1 " /proc/mounts)"
	fi
}

# A wrapper script at $VC_TMP/NAME that runs shell code, then execs BINARY.
wrapper() {	# NAME BINARY SHELL-CODE
	printf '#!/bin/sh\n%s\nexec "%s" "$@"\n' "$3" "$2" >"$VC_TMP/$1"
	chmod +x "$VC_TMP/$1"
	echo "$VC_TMP/$1"
}

have_sys_resource() {
	local eff
	eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
	(( 0x$eff & (1 << 24) ))
}

# --- signals during start-up ---------------------------------------------

@test "SIGHUP storm during start-up: the daemon survives, serves, and stops with exit 0" {
	echo hello >"$VC_SRC/a.img"
	# The configuration is a FIFO: the daemon waits in main() to open it,
	# long after the ASan runtime started, and before it mounts.
	mkfifo "$VC_TMP/conf"
	# shellcheck disable=SC2086
	"$VCACHEFS" -f ${VC_EXTRA_OPTS:-} -c "$VC_TMP/conf" "$VC_SRC" "$VC_MNT" \
	    >>"$VC_LOG" 2>&1 &
	VC_PID=$!
	VC_PIDS+=("$VC_PID")
	VC_MOUNTS+=("$VC_MNT")
	local i sent=0
	for i in $(seq 1 200); do
		[ "$(cat "/proc/$VC_PID/wchan" 2>/dev/null)" = wait_for_partner ] && break
		sleep 0.05
	done
	assert_equal "$(cat "/proc/$VC_PID/wchan")" wait_for_partner
	# Blocked in open(): a SIGHUP now would kill an unprotected daemon.
	for i in $(seq 1 20); do
		kill -HUP "$VC_PID" 2>/dev/null && sent=$((sent + 1))
		sleep 0.005
	done
	# Feed the configuration from a background writer; keep signalling
	# until the mount is up.
	echo '[global]' >"$VC_TMP/conf" &
	HOLDERS+=($!)
	for i in $(seq 1 2000); do
		vc_is_mounted "$VC_MNT" && break
		kill -0 "$VC_PID" 2>/dev/null || break
		kill -HUP "$VC_PID" 2>/dev/null && sent=$((sent + 1))
		sleep 0.005
	done
	echo "sent $sent SIGHUPs"
	if ! kill -0 "$VC_PID" 2>/dev/null; then
		wait "$VC_PID"
		fail "daemon died during start-up (exit $?); log: $(cat "$VC_LOG")"
	fi
	vc_is_mounted "$VC_MNT" || fail "not mounted; log: $(cat "$VC_LOG")"
	# The signals stayed pending and the signal thread took them: each
	# reload refuses the FIFO (a reload never blocks on one).
	wait_log 'SIGHUP: reloading'
	wait_log 'not a regular file'
	kill -HUP "$VC_PID"
	assert_equal "$(cat "$VC_MNT/a.img")" hello
	kill -0 "$VC_PID"
	vc_umount
}

@test "SIGTERM during start-up: handled once serving (nothing open: unmounts, exit 0)" {
	mkfifo "$VC_TMP/conf"
	# shellcheck disable=SC2086
	"$VCACHEFS" -f ${VC_EXTRA_OPTS:-} -c "$VC_TMP/conf" "$VC_SRC" "$VC_MNT" \
	    >>"$VC_LOG" 2>&1 &
	VC_PID=$!
	VC_PIDS+=("$VC_PID")
	VC_MOUNTS+=("$VC_MNT")
	local i
	for i in $(seq 1 200); do
		[ "$(cat "/proc/$VC_PID/wchan" 2>/dev/null)" = wait_for_partner ] && break
		sleep 0.05
	done
	assert_equal "$(cat "/proc/$VC_PID/wchan")" wait_for_partner
	kill -TERM "$VC_PID"
	echo '[global]' >"$VC_TMP/conf" &
	HOLDERS+=($!)
	local rc=0
	vc_wait_exit "$VC_PID" || rc=$?
	cat "$VC_LOG"
	assert_equal "$rc" 0
	grep -q "serving $VC_SRC at $VC_MNT" "$VC_LOG"
	grep -q 'Terminated: no image open, unmounting' "$VC_LOG"
	assert_not_mounted "$VC_MNT"
}

# --- working and root directories inside an in-place mount ---------------

@test "in place: a process whose cwd is in the directory makes start refuse, naming pid and cwd; --force mounts and warns" {
	echo hello >"$VC_SRC/a.img"
	mkdir "$VC_SRC/sub"
	(cd "$VC_SRC/sub" && exec sleep 100) &
	local holder=$!
	HOLDERS+=("$holder")
	local i
	for i in $(seq 1 100); do
		[ "$(readlink "/proc/$holder/cwd")" = "$VC_SRC/sub" ] &&
			[ "$(cat "/proc/$holder/comm")" = sleep ] && break
		sleep 0.05
	done
	assert_equal "$(readlink "/proc/$holder/cwd")" "$VC_SRC/sub"
	run --separate-stderr timeout -k 2 10 "$VCACHEFS" -f --fuse-uring off "$VC_SRC"
	echo "stderr: $stderr"
	assert_equal "$status" 1
	assert_equal "${#stderr_lines[@]}" 1
	[[ $stderr == "vcachefs: "* ]] || fail "not a vcachefs: line"
	[[ $stderr == *"pid $holder (sleep) cwd $VC_SRC/sub"* ]] ||
		fail "does not name pid $holder, sleep, cwd and the path"
	[[ $stderr == *--force* ]] || fail "does not name --force"
	assert_not_mounted "$VC_SRC"
	vc_mount --force "$VC_SRC"
	grep -E "will bypass the mount \(--force\): .*pid $holder \(sleep\) cwd $VC_SRC/sub" "$VC_LOG" ||
		fail "no --force warning naming the holder: $(cat "$VC_LOG")"
	assert_equal "$(cat "$VC_SRC/a.img")" hello
	# The holder's cwd is the directory under the mount, not the mount.
	[ "$(stat -c %d "/proc/$holder/cwd/.")" != "$(stat -c %d "$VC_SRC")" ]
	vc_umount "$VC_SRC"
}

@test "in place: a process whose root is in the directory makes start refuse, naming it as root" {
	mkdir "$VC_SRC/jail"
	# chroot without chdir: only its root is inside, its cwd is not.
	python3 -c 'import os, sys, time
os.chroot(sys.argv[1]); time.sleep(100)' "$VC_SRC/jail" &
	local holder=$!
	HOLDERS+=("$holder")
	local i
	for i in $(seq 1 100); do
		[ "$(readlink "/proc/$holder/root")" = "$VC_SRC/jail" ] && break
		sleep 0.05
	done
	assert_equal "$(readlink "/proc/$holder/root")" "$VC_SRC/jail"
	[[ $(readlink "/proc/$holder/cwd") != "$VC_SRC"* ]]
	run --separate-stderr timeout -k 2 10 "$VCACHEFS" -f --fuse-uring off "$VC_SRC"
	echo "stderr: $stderr"
	assert_equal "$status" 1
	[[ $stderr == *"pid $holder (python3) root $VC_SRC/jail"* ]] ||
		fail "does not name pid $holder as root in $VC_SRC/jail"
	assert_not_mounted "$VC_SRC"
}

# --- descriptors a detached daemon inherits ------------------------------

# Start detached, as lifecycle.bats does; ASan reports go to $VC_TMP/san.*.
start_daemon() {	# ARGS...
	ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$VC_TMP/san" \
	UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$VC_TMP/san" \
	    timeout -k 2 20 "$VCACHEFS" "$@" 3>&-
}

no_sanitizer_reports() {
	local f
	for f in "$VC_TMP"/san.*; do
		[ -e "$f" ] || continue
		cat "$f" >&2
		fail "sanitizer report from the daemon: $f"
	done
}

daemon_pid() {
	local pid
	pid=$(sed -n 's/.*serving .* (pid \([0-9]*\)).*/\1/p' "$VC_LOG" | tail -1)
	[ -n "$pid" ] || pid=$(pgrep -f -- " $VC_MNT\$") || return 1
	echo "$pid"
}

# Start detached with a file on fd 7 and a pipe on fd 9; neither may stay
# open in the daemon, which still serves and stops cleanly.
detached_without_inherited_fds() {	# EXTRA-ENV...
	echo hello >"$VC_SRC/a.img"
	VC_MOUNTS+=("$VC_MNT")
	local pipe pid
	exec 9< <(echo from-the-pipe)
	pipe=$(readlink /proc/$$/fd/9)
	[[ $pipe == pipe:* ]] || fail "fd 9 is not a pipe: $pipe"
	run --separate-stderr env "$@" bash -c 'start_daemon "$@" 7>"$VC_TMP/somefile"' \
	    _ -d --log-file "$VC_LOG" "$VC_SRC" "$VC_MNT"
	exec 9<&-
	echo "stderr: $stderr"
	assert_success
	pid=$(daemon_pid) || fail "daemon pid not found; log: $(cat "$VC_LOG")"
	DAEMONS+=("$pid")
	local fds
	fds=$(for f in /proc/"$pid"/fd/*; do echo "${f##*/} -> $(readlink "$f")"; done)
	echo "daemon fds:"; echo "$fds"
	[[ $fds != *"$VC_TMP/somefile"* ]] || fail "fd 7 (somefile) is still open in the daemon"
	[[ $fds != *"$pipe"* ]] || fail "the pipe on fd 9 is still open in the daemon"
	# The daemon's own descriptors are there.
	[[ $fds == *"/dev/fuse"* ]] || fail "no /dev/fuse descriptor?"
	[[ $fds == *"$VC_LOG"* ]] || fail "no log file descriptor?"
	assert_equal "$(cat "$VC_MNT/a.img")" hello
	fusermount3 -u "$VC_MNT"
	gone "$pid" 5 || fail "daemon $pid still running after unmount"
	assert_not_mounted "$VC_MNT"
	grep -q 'vcachefs: stopped' "$VC_LOG" || fail "no clean stop: $(cat "$VC_LOG")"
	no_sanitizer_reports
}

# The bash -c of the tests runs it.
export -f start_daemon
export VCACHEFS VC_TMP ASAN_OPTIONS UBSAN_OPTIONS

@test "detached: descriptors inherited from the caller (a file on fd 7, a pipe on fd 9) are closed; serves and stops" {
	detached_without_inherited_fds
}

@test "detached: without close_range(2) (fault injected) the /proc/self/fd fallback closes them too" {
	detached_without_inherited_fds VCACHEFS_FAULT=close_range:1:EINVAL
	# Said on stderr: the log file is opened later.
	[[ $stderr == *"closed inherited descriptors through /proc/self/fd"* ]] ||
		fail "the fallback did not run"
}

@test "foreground: inherited descriptors are left alone (a service manager may pass some)" {
	echo hello >"$VC_SRC/a.img"
	exec 7>"$VC_TMP/somefile"
	vc_mount "$VC_SRC" "$VC_MNT"
	exec 7>&-
	assert_equal "$(readlink "/proc/$VC_PID/fd/7")" "$VC_TMP/somefile"
	vc_umount
}

@test "detached with stderr closed: the source directory's descriptor is not replaced by /dev/null" {
	echo hello >"$VC_SRC/a.img"
	VC_MOUNTS+=("$VC_MNT")
	run --separate-stderr bash -c 'start_daemon --log-file "$1" "$2" "$3" 2>&-' \
	    _ "$VC_LOG" "$VC_SRC" "$VC_MNT"
	assert_success
	local pid
	pid=$(daemon_pid) || fail "daemon pid not found; log: $(cat "$VC_LOG")"
	DAEMONS+=("$pid")
	run cat "$VC_MNT/a.img"
	assert_success
	assert_output hello
	fusermount3 -u "$VC_MNT"
	gone "$pid" 5 || fail "daemon $pid still running after unmount"
	run grep -E 'syncfs|Not a directory' "$VC_LOG"
	assert_failure
	no_sanitizer_reports
}

# --- descriptor limit and libgcc_s ---------------------------------------

@test "RLIMIT_NOFILE: a soft limit of 256 is raised to the hard limit" {
	local hard
	hard=$(ulimit -H -n)
	[ "$hard" = unlimited ] || [ "$hard" -gt 256 ] ||
		skip "hard descriptor limit is $hard: nothing to raise"
	VCACHEFS=$(wrapper lowfd "$VCACHEFS" 'ulimit -S -n 256') vc_mount -d "$VC_SRC" "$VC_MNT"
	local soft
	read -r soft hard < <(awk '/^Max open files/ { print $4, $5 }' "/proc/$VC_PID/limits")
	echo "daemon: soft $soft hard $hard"
	assert_equal "$soft" "$hard"
	[ "$soft" != 256 ]
	grep -E "RLIMIT_NOFILE: soft limit raised from 256 to the hard limit $hard" "$VC_LOG" ||
		fail "no debug line: $(cat "$VC_LOG")"
	vc_umount
}

@test "libgcc_s is mapped right after start (release build)" {
	[ -x "$VCACHEFS_PLAIN" ] || skip "no release build at $VCACHEFS_PLAIN (make all)"
	VCACHEFS=$VCACHEFS_PLAIN vc_mount "$VC_SRC" "$VC_MNT"
	grep -q 'libgcc_s\.so' "/proc/$VC_PID/maps" ||
		fail "libgcc_s is not loaded: glibc would dlopen it at the first pthread_cancel"
	vc_umount
}

@test "descriptors exhausted: a forced stop exits 0, without 'libgcc_s.so.1 must be installed' (release build)" {
	[ -x "$VCACHEFS_PLAIN" ] || skip "no release build at $VCACHEFS_PLAIN (make all)"
	local i
	for i in $(seq 1 200); do : >"$VC_SRC/f$i.img"; done
	# Soft and hard: nothing to raise to.
	VCACHEFS=$(wrapper fd64 "$VCACHEFS_PLAIN" 'ulimit -n 64') vc_mount "$VC_SRC" "$VC_MNT"
	# Images held open keep the mount busy, so the stop has to be forced,
	# and each holds descriptors the inode table cannot close: with 60
	# of them every descriptor is in use (some opens fail with EMFILE).
	python3 -c '
import os, sys, time
for i in range(1, 61):
    try:
        os.open(sys.argv[1] + "/f%d.img" % i, os.O_RDONLY)
    except OSError:
        pass
print("held", flush=True)
time.sleep(100)' "$VC_MNT" >"$VC_TMP/holder.out" 3>&- &
	HOLDERS+=($!)
	for i in $(seq 1 200); do
		grep -q held "$VC_TMP/holder.out" 2>/dev/null && break
		sleep 0.05
	done
	local n
	n=$(ls "/proc/$VC_PID/fd" | wc -l)
	echo "daemon descriptors: $n"
	[ "$n" -ge 62 ] || fail "only $n descriptors in use: not exhausted"
	kill -TERM "$VC_PID"
	wait_log 'refusing to stop'
	kill -TERM "$VC_PID"
	local rc=0
	vc_wait_exit "$VC_PID" || rc=$?
	echo "log: $(cat "$VC_LOG")"
	assert_equal "$rc" 0
	run grep -F 'must be installed for pthread_cancel' "$VC_LOG"
	assert_failure
	grep -q 'stopped (forced)' "$VC_LOG"
}

# --- CAP_SYS_RESOURCE and ext4's reserved blocks --------------------------

# A 64 MiB ext4 with 20 % reserved blocks, loop-mounted at $VC_TMP/e4 and
# used as SOURCE. OPTS are extra mount options. Sets RESERVED (blocks).
make_ext4() {	# [MOUNT-OPTS]
	truncate -s 64M "$VC_TMP/e4.img"
	mkfs.ext4 -q -F -m 20 -b 4096 "$VC_TMP/e4.img" >/dev/null 2>&1 ||
		skip "mkfs.ext4 failed"
	mkdir -p "$VC_TMP/e4"
	mount -o "loop${1:+,$1}" "$VC_TMP/e4.img" "$VC_TMP/e4" 2>/dev/null ||
		skip "cannot loop-mount an ext4 image here"
	LOOPS+=("$VC_TMP/e4")
	RESERVED=$(tune2fs -l "$VC_TMP/e4.img" | awk -F: '/^Reserved block count/ { print $2 + 0 }')
	[ "$RESERVED" -gt 1000 ] || fail "reserved blocks: $RESERVED"
}

# Write through the mount until the first error; prints its errno name.
fill() {	# PATH
	python3 - "$1" <<'EOF'
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
buf = b"\0" * (1 << 20)
try:
    for _ in range(1000):
        os.write(fd, buf)
    os.fsync(fd)
    print("no error")
except OSError as e:
    print(errno.errorcode[e.errno])
EOF
}

# Free and available blocks of the backing file system: "FREE AVAIL".
ext4_free() {
	sync -f "$VC_TMP/e4"
	stat -f -c '%f %a' "$VC_TMP/e4"
}

@test "ext4 reserve (reserved for another uid): writes through the mount stop with ENOSPC, the reserve stays free" {
	make_ext4 resuid=65534,resgid=65534
	vc_mount "$VC_TMP/e4" "$VC_MNT"
	run fill "$VC_MNT/fill.img"
	assert_output ENOSPC
	local free avail
	read -r free avail < <(ext4_free)
	echo "reserved $RESERVED, free $free, available $avail"
	# Filled up to the reserve, which is (almost all) still free.
	[ "$avail" -lt $((RESERVED / 20)) ] || fail "not filled: $avail blocks available"
	[ "$free" -ge $((RESERVED * 9 / 10)) ] || fail "the reserve was used: $free free of $RESERVED"
	vc_umount
}

@test "ext4 reserve with the default resuid 0: the daemon (uid 0) may use it (documented limit)" {
	make_ext4
	vc_mount "$VC_TMP/e4" "$VC_MNT"
	run fill "$VC_MNT/fill.img"
	assert_output ENOSPC
	local free avail
	read -r free avail < <(ext4_free)
	echo "reserved $RESERVED, free $free, available $avail"
	[ "$free" -lt $((RESERVED / 2)) ] || fail "the reserve was not used: $free free"
	vc_umount
}

@test "CAP_SYS_RESOURCE is dropped after set-up (every thread), so a reserve for another uid holds" {
	have_sys_resource || skip "root has no CAP_SYS_RESOURCE here (CapEff $(awk '/^CapEff:/ { print $2 }' /proc/self/status))"
	make_ext4 resuid=65534,resgid=65534
	vc_mount -d "$VC_TMP/e4" "$VC_MNT"
	# Set-up used it: oom_score_adj is set.
	assert_equal "$(cat "/proc/$VC_PID/oom_score_adj")" -1000
	local t set v
	for t in /proc/"$VC_PID"/task/*; do
		for set in CapEff CapPrm CapInh CapBnd; do
			v=$(awk -v s="$set:" '$1 == s { print $2 }' "$t/status")
			(( (0x$v & (1 << 24)) == 0 )) || fail "$t: $set $v has CAP_SYS_RESOURCE"
		done
	done
	grep -q 'CAP_SYS_RESOURCE dropped' "$VC_LOG" || fail "no debug line: $(cat "$VC_LOG")"
	run fill "$VC_MNT/fill.img"
	assert_output ENOSPC
	local free avail
	read -r free avail < <(ext4_free)
	echo "reserved $RESERVED, free $free, available $avail"
	[ "$free" -ge $((RESERVED * 9 / 10)) ] || fail "the reserve was used: $free free of $RESERVED"
	vc_umount
}
