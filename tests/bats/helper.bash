# Shared set-up for the bats suites: start vcachefs, wait for the mount,
# and always unmount and stop it again, even when a test fails.
#
# In a test file:
#   load helper
#   setup()    { vc_setup; }
#   teardown() { vc_teardown; }

bats_load_library bats-support
bats_load_library bats-assert
bats_load_library bats-file

: "${VCACHEFS:=$BATS_TEST_DIRNAME/../../build/asan/vcachefs}"
: "${VC_TOOLS:=$BATS_TEST_DIRNAME/../../build/tools}"
# LeakSanitizer cannot run under ptrace; strace tests turn it off.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

VC_MOUNTS=()	# mountpoints started by vc_mount in this test
VC_PIDS=()	# their daemons

# A scratch directory on a disk filesystem (tmpfs may refuse O_DIRECT).
vc_setup() {
	VC_TMP=$(mktemp -d /var/tmp/vcachefs-test.XXXXXX)
	VC_SRC=$VC_TMP/src
	VC_MNT=$VC_TMP/mnt
	VC_LOG=$VC_TMP/daemon.log
	mkdir -p "$VC_SRC" "$VC_MNT"
	chmod 755 "$VC_TMP"
}

vc_is_mounted() {	# MOUNTPOINT (no spaces: /proc/mounts escapes them)
	awk -v m="$1" '$2 == m && $3 ~ /^fuse/ { f = 1 } END { exit !f }' /proc/mounts
}

# vc_mount [OPTIONS...] [SOURCE] MOUNTPOINT
# Starts the daemon in the foreground, in the background of the test, and
# waits until the mount is up. Sets VC_PID. Fails with the daemon's log.
# VC_EXTRA_OPTS (tests/run) adds options, such as the FUSE transport.
vc_mount() {
	local mnt=${!#} i
	# shellcheck disable=SC2086
	"$VCACHEFS" -f ${VC_EXTRA_OPTS:-} "$@" >>"$VC_LOG" 2>&1 &
	VC_PID=$!
	VC_PIDS+=("$VC_PID")
	VC_MOUNTS+=("$mnt")
	for i in $(seq 1 200); do
		vc_is_mounted "$mnt" && return 0
		if ! kill -0 "$VC_PID" 2>/dev/null; then
			echo "vcachefs exited before mounting; log:" >&2
			cat "$VC_LOG" >&2
			return 1
		fi
		sleep 0.05
	done
	echo "vcachefs did not mount $mnt within 10 s; log:" >&2
	cat "$VC_LOG" >&2
	return 1
}

# Wait for a daemon to exit; prints its status. vc_wait_exit PID [SECONDS]
vc_wait_exit() {
	local pid=$1 t=${2:-20} i
	for i in $(seq 1 $((t * 20))); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid"; return $?; }
		sleep 0.05
	done
	echo "daemon $pid still running after $t s" >&2
	return 124
}

# Processes in other mount namespaces that still have the mount of
# device MAJOR:MINOR: "PID COMMAND" per line.
vc_mount_holders() {	# MAJOR:MINOR
	local f p self
	self=$(readlink /proc/self/ns/mnt)
	for f in /proc/[0-9]*/mountinfo; do
		p=${f#/proc/}
		p=${p%%/*}
		[ "$(readlink "/proc/$p/ns/mnt" 2>/dev/null)" = "$self" ] && continue
		awk -v d="$1" '$3 == d { f = 1 } END { exit !f }' "$f" 2>/dev/null || continue
		echo "$p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c 1-80)"
	done
}

# Unmount cleanly and return the daemon's exit status. A process in
# another mount namespace made while the mount was up (unshare -m,
# libvirt's QEMU, another suite's daemons) keeps a copy of it, and with
# it the FUSE connection: the daemon then never hears of the unmount. In
# that case only, the connection is ended through fusectl, as an
# administrator would, and the daemon must still stop as it should.
vc_umount() {	# [MNT [PID [SECONDS]]]
	local mnt=${1:-$VC_MNT} pid=${2:-$VC_PID} t=${3:-20} dev conn holders
	dev=$(mountpoint -d "$mnt" 2>/dev/null) || dev=""
	conn=$(stat -c %d "$mnt" 2>/dev/null) || conn=""
	fusermount3 -u "$mnt" || return 1
	if [ -n "$dev" ] && ! kill -0 "$pid" 2>/dev/null; then
		: # already gone
	elif [ -n "$dev" ]; then
		holders=$(vc_mount_holders "$dev")
		if [ -n "$holders" ]; then
			echo "# the mount lives on in other mount namespaces; aborting FUSE connection $conn. Holders:" >&3
			echo "$holders" | sed 's/^/#   /' >&3
			echo 1 2>/dev/null >"/sys/fs/fuse/connections/$conn/abort" || true
		fi
	fi
	vc_wait_exit "$pid" "$t"
}

# Sanitizer reports in the daemon log fail the test.
vc_check_log() {
	if [ -f "$VC_LOG" ] && grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$VC_LOG"; then
		echo "sanitizer report in daemon log:" >&2
		cat "$VC_LOG" >&2
		return 1
	fi
}

# PIDs get reused fast here: only signal a process that is still ours.
vc_is_daemon() {	# PID
	tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q vcachefs
}

# Unmount every mount this test made and stop its daemons. Safe to call
# more than once.
vc_stop_all() {
	local m p
	for m in "${VC_MOUNTS[@]}"; do
		if vc_is_mounted "$m"; then
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		fi
	done
	for p in "${VC_PIDS[@]}"; do
		if vc_is_daemon "$p"; then
			vc_wait_exit "$p" 5 >/dev/null 2>&1 ||
				{ vc_is_daemon "$p" && kill -9 "$p" 2>/dev/null; } || true
		fi
	done
}

vc_teardown() {
	local rc=0
	vc_stop_all
	vc_check_log || rc=1
	[ -n "${VC_TMP:-}" ] && rm -rf "$VC_TMP"
	return $rc
}
