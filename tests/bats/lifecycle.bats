#!/usr/bin/env bats
# Lifecycle: in-place overmount, SOURCE mode, stopping by signal and by
# fusermount3 -u, the 5 s forced-stop window, stale mounts, busy
# directories, self-protection, daemon mode (vcachefs(8)).

bats_require_minimum_version 1.5.0
load helper

HOLDERS=()	# background processes holding files open; killed in teardown
DAEMONS=()	# detached daemons (not children of the test shell)

setup() {
	vc_setup
}

teardown() {
	local p
	for p in "${HOLDERS[@]}"; do
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	vc_teardown
	local rc=$?
	for p in "${DAEMONS[@]}"; do
		if vc_is_daemon "$p"; then
			kill -TERM "$p" 2>/dev/null || true
			gone "$p" 5 || { vc_is_daemon "$p" && kill -9 "$p" 2>/dev/null; } || true
		fi
	done
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

# Wait until the daemon log has at least N lines matching the ERE.
wait_log() {	# ERE [N] [SECONDS]
	local i n
	for i in $(seq 1 $((${3:-5} * 20))); do
		n=$(grep -cE -- "$1" "$VC_LOG" 2>/dev/null) || n=0
		[ "$n" -ge "${2:-1}" ] && return 0
		sleep 0.05
	done
	echo "log has $n line(s) matching '$1', expected ${2:-1}; log:" >&2
	cat "$VC_LOG" >&2
	return 1
}

assert_not_mounted() {	# MOUNTPOINT
	if vc_is_mounted "$1"; then
		fail "$1 is still mounted: $(grep -F " $1 " /proc/mounts)"
	fi
}

mount_count() {	# MOUNTPOINT
	awk -v m="$1" '$5 == m' /proc/self/mountinfo | wc -l
}

sha() {
	sha256sum <"$1" | cut -d' ' -f1
}

# A 4 MiB image with random content; its sha256 is in SHA.
make_image() {	# PATH
	head -c 4M /dev/urandom >"$1"
	SHA=$(sha "$1")
}

# Hold PATH open (read-write) from a background process; sets HOLDER.
hold_open() {	# PATH
	sleep 100 3>&- 9<>"$1" &
	HOLDER=$!
	HOLDERS+=("$HOLDER")
	# The redirection happens in the child: wait until it is in place.
	local i
	for i in $(seq 1 100); do
		[ "$(readlink "/proc/$HOLDER/fd/9" 2>/dev/null)" = "$1" ] && return 0
		sleep 0.05
	done
	fail "holder $HOLDER did not open $1"
}

release_holder() {
	kill -9 "$HOLDER" 2>/dev/null || true
	wait "$HOLDER" 2>/dev/null || true
}

@test "in place: files of the directory are served unchanged; new files land in it" {
	make_image "$VC_SRC/disk.img"
	local before_dev
	before_dev=$(stat -c %d "$VC_SRC/disk.img")
	vc_mount "$VC_SRC"
	# The directory is now covered by the mount...
	run awk -v m="$VC_SRC" '$2 == m { print $1, $3 }' /proc/mounts
	assert_output "$VC_SRC fuse.vcachefs"
	[ "$(stat -c %d "$VC_SRC/disk.img")" != "$before_dev" ] ||
		fail "disk.img is still on the backing filesystem"
	# ...and serves what was there before.
	assert_equal "$(sha "$VC_SRC/disk.img")" "$SHA"
	local new_sha
	head -c 1M /dev/urandom >"$VC_TMP/new"
	new_sha=$(sha "$VC_TMP/new")
	cp "$VC_TMP/new" "$VC_SRC/new.img"
	assert_equal "$(sha "$VC_SRC/new.img")" "$new_sha"
	vc_umount "$VC_SRC"
	assert_not_mounted "$VC_SRC"
	assert_equal "$(stat -c %d "$VC_SRC/disk.img")" "$before_dev"
	assert_equal "$(sha "$VC_SRC/disk.img")" "$SHA"
	assert_equal "$(sha "$VC_SRC/new.img")" "$new_sha"
}

@test "with SOURCE: SOURCE is served at MOUNTPOINT, writes land in SOURCE" {
	make_image "$VC_SRC/disk.img"
	vc_mount "$VC_SRC" "$VC_MNT"
	assert_equal "$(sha "$VC_MNT/disk.img")" "$SHA"
	echo written >"$VC_MNT/new.img"
	dd if=/dev/zero of="$VC_MNT/disk.img" bs=4096 count=1 seek=10 conv=notrunc status=none
	# Visible in SOURCE while mounted.
	assert_equal "$(cat "$VC_SRC/new.img")" written
	cmp -s <(head -c 4096 /dev/zero) <(dd if="$VC_SRC/disk.img" bs=4096 skip=10 count=1 status=none)
	local sha_mnt
	sha_mnt=$(sha "$VC_MNT/disk.img")
	vc_umount
	assert_equal "$(sha "$VC_SRC/disk.img")" "$sha_mnt"
	# The mountpoint itself got nothing.
	run ls -A "$VC_MNT"
	assert_output ""
}

@test "SIGTERM with nothing open: unmounts, exit 0" {
	make_image "$VC_SRC/disk.img"
	vc_mount "$VC_SRC" "$VC_MNT"
	kill -TERM "$VC_PID"
	vc_wait_exit "$VC_PID" 5
	assert_not_mounted "$VC_MNT"
	# The files stayed where they were.
	assert_equal "$(sha "$VC_SRC/disk.img")" "$SHA"
}

@test "SIGINT with nothing open: unmounts, exit 0" {
	vc_mount "$VC_SRC"
	kill -INT "$VC_PID"
	vc_wait_exit "$VC_PID" 5
	assert_not_mounted "$VC_SRC"
}

@test "SIGTERM with an image open: refused naming the holders' pids, still serving; a second SIGTERM within 5 s forces a lazy unmount" {
	make_image "$VC_SRC/disk.img"
	echo x >"$VC_SRC/other.img"
	vc_mount "$VC_SRC" "$VC_MNT"
	hold_open "$VC_MNT/other.img"
	local h1=$HOLDER
	hold_open "$VC_MNT/disk.img"
	kill -TERM "$VC_PID"
	wait_log 'refusing to stop: 2 image\(s\) open: '
	# Each image with the pid, command and descriptor that hold it.
	grep -F "disk.img (held by pid $HOLDER (sleep) fd 9)" "$VC_LOG" ||
		fail "the holder of disk.img is not named: $(cat "$VC_LOG")"
	grep -F "other.img (held by pid $h1 (sleep) fd 9)" "$VC_LOG" ||
		fail "the holder of other.img is not named: $(cat "$VC_LOG")"
	kill -0 "$VC_PID"
	vc_is_mounted "$VC_MNT"
	assert_equal "$(sha "$VC_MNT/disk.img")" "$SHA"
	kill -TERM "$VC_PID"
	# Lazy: the mount goes although the holder still has its descriptor.
	vc_wait_exit "$VC_PID" 5
	assert_not_mounted "$VC_MNT"
	grep -q forced "$VC_LOG" || fail "no 'forced' in the log: $(cat "$VC_LOG")"
	kill -0 "$HOLDER"
	release_holder
	# What was written before stays in SOURCE.
	assert_equal "$(sha "$VC_SRC/disk.img")" "$SHA"
}

@test "SIGINT then SIGTERM with an image open (in place): refused, then forced" {
	make_image "$VC_SRC/disk.img"
	vc_mount "$VC_SRC"
	hold_open "$VC_SRC/disk.img"
	kill -INT "$VC_PID"
	wait_log "refusing to stop: 1 image\\(s\\) open: disk\\.img \\(held by pid $HOLDER \\(sleep\\) fd 9\\); "
	vc_is_mounted "$VC_SRC"
	kill -TERM "$VC_PID"
	vc_wait_exit "$VC_PID" 5
	assert_not_mounted "$VC_SRC"
	release_holder
	assert_equal "$(sha "$VC_SRC/disk.img")" "$SHA"
}

@test "a second SIGTERM 6 s after a refusal is refused again (5 s window); a third within 5 s forces" {
	make_image "$VC_SRC/disk.img"
	vc_mount "$VC_SRC" "$VC_MNT"
	hold_open "$VC_MNT/disk.img"
	kill -TERM "$VC_PID"
	wait_log 'refusing to stop'
	sleep 6
	kill -TERM "$VC_PID"
	wait_log 'refusing to stop: 1 image\(s\) open: .*disk\.img' 2
	kill -0 "$VC_PID"
	vc_is_mounted "$VC_MNT"
	assert_equal "$(sha "$VC_MNT/disk.img")" "$SHA"
	if grep -q forced "$VC_LOG"; then
		fail "forced after the window: $(cat "$VC_LOG")"
	fi
	# The window restarts at the second refusal.
	kill -TERM "$VC_PID"
	vc_wait_exit "$VC_PID" 5
	assert_not_mounted "$VC_MNT"
	release_holder
}

@test "fusermount3 -u: the daemon exits 0" {
	echo x >"$VC_SRC/a.img"
	vc_mount "$VC_SRC" "$VC_MNT"
	cat "$VC_MNT/a.img" >/dev/null
	fusermount3 -u "$VC_MNT"
	vc_wait_exit "$VC_PID" 5
	assert_not_mounted "$VC_MNT"
}

@test "stale mount: refused quickly naming --force and fusermount3 -uz; --force replaces it" {
	make_image "$VC_SRC/disk.img"
	vc_mount "$VC_SRC"
	kill -9 "$VC_PID"
	local st=0
	vc_wait_exit "$VC_PID" 5 || st=$?
	assert_equal "$st" 137
	run timeout 5 stat "$VC_SRC"
	assert_failure
	# ENOTCONN; ECONNABORTED once requests went through FUSE over io_uring.
	assert_output --regexp "Transport endpoint is not connected|Software caused connection abort"
	run --separate-stderr timeout -k 2 10 "$VCACHEFS" -f "$VC_SRC"
	echo "stderr: $stderr"
	assert_equal "$status" 1
	assert_equal "${#stderr_lines[@]}" 1
	[[ $stderr == "vcachefs: "* ]] || fail "not a vcachefs: line"
	[[ $stderr == *stale* ]] || fail "does not say stale"
	[[ $stderr == *--force* ]] || fail "does not name --force"
	[[ $stderr == *"fusermount3 -uz"* ]] || fail "does not name fusermount3 -uz"
	assert_equal "$(mount_count "$VC_SRC")" 1
	# With --force: the stale mount is detached and a live one replaces it.
	vc_mount --force "$VC_SRC"
	wait_log "serving $VC_SRC at $VC_SRC" 2
	assert_equal "$(mount_count "$VC_SRC")" 1
	assert_equal "$(sha "$VC_SRC/disk.img")" "$SHA"
	vc_umount "$VC_SRC"
	assert_equal "$(mount_count "$VC_SRC")" 0
	assert_equal "$(sha "$VC_SRC/disk.img")" "$SHA"
}

@test "stale mount with SOURCE: refused without --force, mounted with it" {
	echo hello >"$VC_SRC/a.img"
	vc_mount "$VC_SRC" "$VC_MNT"
	kill -9 "$VC_PID"
	vc_wait_exit "$VC_PID" 5 || true
	run --separate-stderr timeout -k 2 10 "$VCACHEFS" -f "$VC_SRC" "$VC_MNT"
	assert_equal "$status" 1
	[[ $stderr == *stale*--force* || $stderr == *--force*stale* ]] ||
		fail "not a stale/--force message: $stderr"
	vc_mount --force "$VC_SRC" "$VC_MNT"
	wait_log "serving $VC_SRC at $VC_MNT" 2
	assert_equal "$(cat "$VC_MNT/a.img")" hello
	assert_equal "$(mount_count "$VC_MNT")" 1
	vc_umount
}

@test "busy directory: in-place start refuses naming pid and command; --force mounts" {
	make_image "$VC_SRC/disk.img"
	hold_open "$VC_SRC/disk.img"
	run --separate-stderr timeout -k 2 10 "$VCACHEFS" -f "$VC_SRC"
	echo "stderr: $stderr"
	assert_equal "$status" 1
	assert_equal "${#stderr_lines[@]}" 1
	[[ $stderr == "vcachefs: "* ]] || fail "not a vcachefs: line"
	[[ $stderr == *"$HOLDER"* ]] || fail "does not name pid $HOLDER"
	[[ $stderr == *sleep* ]] || fail "does not name the command sleep"
	[[ $stderr == *--force* ]] || fail "does not name --force"
	assert_not_mounted "$VC_SRC"
	vc_mount --force "$VC_SRC"
	assert_equal "$(sha "$VC_SRC/disk.img")" "$SHA"
	# The holder's descriptor is untouched (it bypasses the mount).
	assert_equal "$(readlink "/proc/$HOLDER/fd/9")" "$VC_SRC/disk.img"
	vc_umount "$VC_SRC"
}

@test "a process holding a file of SOURCE open does not stop a mount elsewhere" {
	echo hello >"$VC_SRC/a.img"
	hold_open "$VC_SRC/a.img"
	vc_mount "$VC_SRC" "$VC_MNT"
	assert_equal "$(cat "$VC_MNT/a.img")" hello
	vc_umount
}

# CAP_SYS_RESOURCE in our effective set (some containers drop it).
have_sys_resource() {
	local eff
	eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
	(( 0x$eff & (1 << 24) ))
}

# Field N (N >= 3) of /proc/PID/stat; comm (field 2) may hold spaces.
stat_field() {	# PID N
	local stat f
	stat=$(cat "/proc/$1/stat")
	read -r -a f <<<"${stat##*) }"
	echo "${f[$2 - 3]}"
}

@test "self-protection: oom_score_adj -1000, PF_LOCAL_THROTTLE and PF_MEMALLOC_NOIO set" {
	have_sys_resource || skip "no CAP_SYS_RESOURCE here (CapEff $(awk '/^CapEff:/ { print $2 }' /proc/self/status)): cannot lower oom_score_adj or set PR_SET_IO_FLUSHER"
	vc_mount "$VC_SRC" "$VC_MNT"
	assert_equal "$(cat "/proc/$VC_PID/oom_score_adj")" -1000
	local flags
	flags=$(stat_field "$VC_PID" 9)
	echo "flags: $flags"
	(( flags & 0x00100000 )) || fail "PF_LOCAL_THROTTLE not set in $flags"
	(( flags & 0x00080000 )) || fail "PF_MEMALLOC_NOIO not set in $flags"
	# Our own shell has neither: the field is the right one.
	(( ($(stat_field $$ 9) & 0x00180000) == 0 ))
	vc_umount
}

@test "without CAP_SYS_RESOURCE: warns naming it, and serves anyway" {
	local real=$VCACHEFS
	printf '#!/bin/sh\nexec setpriv --inh-caps=-sys_resource --bounding-set=-sys_resource "%s" "$@"\n' \
	    "$real" >"$VC_TMP/nores"
	chmod +x "$VC_TMP/nores"
	echo hello >"$VC_SRC/a.img"
	VCACHEFS=$VC_TMP/nores vc_mount "$VC_SRC" "$VC_MNT"
	# The wrapper exec'd the daemon: VC_PID is the daemon.
	assert_equal "$(readlink "/proc/$VC_PID/exe")" "$(readlink -f "$real")"
	local eff
	eff=$(awk '/^CapEff:/ { print $2 }' "/proc/$VC_PID/status")
	(( (0x$eff & (1 << 24)) == 0 ))
	[ "$(cat "/proc/$VC_PID/oom_score_adj")" != -1000 ]
	grep -E 'oom_score_adj.*CAP_SYS_RESOURCE' "$VC_LOG" ||
		fail "no oom_score_adj warning: $(cat "$VC_LOG")"
	grep -E 'IO_FLUSHER.*CAP_SYS_RESOURCE' "$VC_LOG" ||
		fail "no PR_SET_IO_FLUSHER warning: $(cat "$VC_LOG")"
	assert_equal "$(cat "$VC_MNT/a.img")" hello
	vc_umount
}

# Start the daemon without -f; it must return once mounted. ASan/UBSan
# reports of the detached daemon go to $VC_TMP/san.*.
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

@test "daemon mode: returns 0 once mounted, logs to --log-file, detached; unmount stops it" {
	make_image "$VC_SRC/disk.img"
	VC_MOUNTS+=("$VC_MNT")
	run --separate-stderr start_daemon --log-file "$VC_LOG" "$VC_SRC" "$VC_MNT"
	echo "stderr: $stderr"
	assert_success
	assert_output ""
	# Before detaching only the missing-capability warnings may appear.
	if have_sys_resource; then
		assert_equal "$stderr" ""
	else
		run grep -v CAP_SYS_RESOURCE <<<"$stderr"
		assert_output ""
	fi
	# Mounted by the time it returned: no waiting.
	vc_is_mounted "$VC_MNT" || fail "not mounted when vcachefs returned"
	grep -E "vcachefs: serving $VC_SRC at $VC_MNT" "$VC_LOG" ||
		fail "no startup line in the log: $(cat "$VC_LOG")"
	local pid
	pid=$(sed -n 's/.*serving .* (pid \([0-9]*\)).*/\1/p' "$VC_LOG" | tail -1)
	if [ -z "$pid" ]; then
		pid=$(pgrep -f -- "--log-file $VC_LOG") || fail "daemon pid not found"
	fi
	DAEMONS+=("$pid")
	kill -0 "$pid"
	# Detached: a session of its own, not our child.
	assert_equal "$(stat_field "$pid" 6)" "$pid"
	[ "$(stat_field "$pid" 4)" != "$$" ]
	if have_sys_resource; then
		assert_equal "$(cat "/proc/$pid/oom_score_adj")" -1000
	fi
	assert_equal "$(sha "$VC_MNT/disk.img")" "$SHA"
	echo more >"$VC_MNT/new.img"
	fusermount3 -u "$VC_MNT"
	gone "$pid" 5 || fail "daemon $pid still running after unmount"
	assert_not_mounted "$VC_MNT"
	assert_equal "$(cat "$VC_SRC/new.img")" more
	no_sanitizer_reports
}

@test "daemon mode: the start-up warnings and the stale-mount notice reach --log-file, and a refused start too" {
	echo hello >"$VC_SRC/a.img"
	vc_mount "$VC_SRC" "$VC_MNT"
	kill -9 "$VC_PID"
	vc_wait_exit "$VC_PID" 5 || true
	# Refused (stale, no --force): said on stderr and in the file.
	run --separate-stderr start_daemon --log-file "$VC_TMP/refused.log" "$VC_SRC" "$VC_MNT"
	assert_equal "$status" 1
	[[ $stderr == *stale*--force* ]] || fail "not a stale/--force message: $stderr"
	grep -E "vcachefs: $VC_MNT: stale .* mount .*--force" "$VC_TMP/refused.log" ||
		fail "the refusal is not in --log-file: $(cat "$VC_TMP/refused.log")"
	# With --force, and oom_score_adj refused as without CAP_SYS_RESOURCE.
	VC_MOUNTS+=("$VC_MNT")
	local log=$VC_TMP/started.log
	VCACHEFS_FAULT=oom_score_adj:1:EACCES run --separate-stderr \
	    start_daemon --force --log-file "$log" "$VC_SRC" "$VC_MNT"
	echo "stderr: $stderr"
	assert_success
	local pid
	pid=$(sed -n 's/.*serving .* (pid \([0-9]*\)).*/\1/p' "$log" | tail -1)
	[ -n "$pid" ] || fail "no serving line: $(cat "$log")"
	DAEMONS+=("$pid")
	cat "$log"
	grep -E "^[0-9-]+ [0-9:]+ vcachefs: $VC_MNT: lazily unmounted a stale .* mount \(--force\)$" "$log" ||
		fail "no stale-mount notice in --log-file"
	grep -E "^[0-9-]+ [0-9:]+ vcachefs: cannot set oom_score_adj to -1000 \(needs CAP_SYS_RESOURCE\): Permission denied$" "$log" ||
		fail "no oom_score_adj warning in --log-file"
	# Before detaching they were on stderr too, once each.
	assert_equal "$(grep -c 'lazily unmounted a stale' <<<"$stderr")" 1
	assert_equal "$(grep -c 'cannot set oom_score_adj' <<<"$stderr")" 1
	# Each start-up line is in the file once, in order, before serving.
	assert_equal "$(grep -c 'lazily unmounted a stale' "$log")" 1
	[ "$(grep -n 'lazily unmounted' "$log" | cut -d: -f1)" -lt \
	    "$(grep -n 'serving ' "$log" | cut -d: -f1)" ]
	assert_equal "$(cat "$VC_MNT/a.img")" hello
	fusermount3 -u "$VC_MNT"
	gone "$pid" 5 || fail "daemon $pid still running after unmount"
	no_sanitizer_reports
}

@test "daemon mode: libfuse's own message about a bad -o option is one vcachefs: line, on stderr and in --log-file" {
	local log=$VC_TMP/fuse.log
	# max_read is passed on to libfuse (unknown options are refused
	# earlier, by vcachefs itself), which refuses the value.
	run --separate-stderr start_daemon -c /dev/null --log-file "$log" -o max_read=abc "$VC_SRC" "$VC_MNT"
	echo "stderr: $stderr"
	assert_equal "$status" 1
	cat "$log"
	local want="vcachefs: fuse: invalid parameter in option \`max_read=abc'"
	assert_equal "$(grep -cxF "$want" <<<"$stderr")" 1
	assert_equal "$(grep -c -- "^[0-9-]* [0-9:]* $want\$" "$log")" 1
	# Nothing of it on a line of its own.
	run grep -c 'max_read=abc' "$log"
	assert_output 1
	assert_not_mounted "$VC_MNT"
	no_sanitizer_reports
}

@test "daemon mode: SIGTERM stops a detached daemon" {
	VC_MOUNTS+=("$VC_SRC")
	run --separate-stderr start_daemon --log-file "$VC_LOG" "$VC_SRC"
	assert_success
	vc_is_mounted "$VC_SRC"
	local pid
	pid=$(sed -n 's/.*serving .* (pid \([0-9]*\)).*/\1/p' "$VC_LOG" | tail -1)
	[ -n "$pid" ] || pid=$(pgrep -f -- "--log-file $VC_LOG")
	DAEMONS+=("$pid")
	kill -TERM "$pid"
	gone "$pid" 5 || fail "daemon $pid still running after SIGTERM"
	assert_not_mounted "$VC_SRC"
	no_sanitizer_reports
}

@test "daemon mode without --log-file and without /dev/log: warns on stderr before detaching" {
	# A private mount namespace in which /dev/log cannot be written to: if
	# it exists, a read-only bind of an empty file covers it. The mount the
	# daemon makes stays inside that namespace.
	: >"$VC_TMP/nolog"
	run --separate-stderr timeout -k 2 20 unshare -m sh -c '
		if [ -e /dev/log ] || [ -L /dev/log ]; then
			mount --bind "$0" /dev/log &&
			mount -o remount,bind,ro /dev/log || exit 99
		fi
		exec "$1" "$2" "$3" 3>&-' "$VC_TMP/nolog" "$VCACHEFS" "$VC_SRC" "$VC_MNT"
	[ "$status" -ne 99 ] || skip "cannot hide /dev/log in a private mount namespace: $stderr"
	local pid
	pid=$(pgrep -f -- "$VCACHEFS $VC_SRC $VC_MNT") || true
	[ -z "$pid" ] || DAEMONS+=("$pid")
	echo "stderr: $stderr"
	assert_success
	[[ $stderr == *"/dev/log"* ]] || fail "no warning about /dev/log: $stderr"
	[[ ${stderr,,} == *warning* ]] || fail "not a warning: $stderr"
	[[ $stderr == *--log-file* ]] || fail "does not suggest --log-file: $stderr"
	[ -n "$pid" ] || fail "the daemon is not running"
	# Mounted in its namespace only.
	awk -v m="$VC_MNT" '$5 == m { f = 1 } END { exit !f }' "/proc/$pid/mountinfo" ||
		fail "not mounted in the daemon's namespace"
	assert_not_mounted "$VC_MNT"
	kill -TERM "$pid"
	gone "$pid" 5 || fail "daemon $pid still running after SIGTERM"
}
