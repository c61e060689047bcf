# Shared code of modes.bats and readonly.bats: a config per test, the
# daemon's backing descriptors and their flags, strace of the daemon, and
# an ext4 filesystem on a loop device whose flush counter we can read.
# Everything a test starts (open descriptors, strace, loop devices, ext4
# mounts) is listed here and undone in mh_teardown, even when it fails.
#
# In a test file:
#   load helper
#   load modes_helper
#   setup()    { mh_setup; }
#   teardown() { mh_teardown; }

# open(2) flags as /proc/PID/fdinfo prints them (octal).
MH_O_ACCMODE=3
MH_O_RDONLY=0
MH_O_RDWR=2
MH_O_DSYNC=$((8#10000))
MH_O_DIRECT=$((8#40000))
MH_O_PATH=$((8#10000000))

mh_setup() {
	vc_setup
	MH_FDS=()	# descriptors the test shell opened through the mount
	MH_STRACE_PID=
	MH_EXT4=()	# ext4 mounts, in mount order
	MH_LOOPS=()	# loop devices
	MH_CONF=$VC_TMP/vcachefs.conf
}

mh_teardown() {
	local fd p m i

	# Runs under errexit: every step may fail and must not stop the rest.
	for fd in "${MH_FDS[@]}"; do
		exec {fd}>&- || true
	done
	MH_FDS=()
	# Our child, not yet reaped (mh_strace_stop clears it): safe to kill.
	if [ -n "$MH_STRACE_PID" ]; then
		kill "$MH_STRACE_PID" 2>/dev/null || true
		wait "$MH_STRACE_PID" 2>/dev/null || true
	fi
	# vcachefs holds files of the ext4 mounts: it goes first.
	vc_stop_all
	for ((i = ${#MH_EXT4[@]} - 1; i >= 0; i--)); do
		umount "${MH_EXT4[i]}" 2>/dev/null || umount -l "${MH_EXT4[i]}" 2>/dev/null || true
	done
	for m in "${MH_LOOPS[@]}"; do
		losetup -d "$m" 2>/dev/null || true
	done
	vc_teardown
}

# mh_conf MODE [LINE...]: a config whose [global] cache is MODE, then LINEs.
mh_conf() {
	local mode=$1 l
	shift
	printf '[global]\ncache = %s\n' "$mode" >"$MH_CONF"
	for l in "$@"; do
		printf '%s\n' "$l" >>"$MH_CONF"
	done
}

# mh_mount MODE [LINE...]: mount VC_SRC at VC_MNT with that config.
mh_mount() {
	mh_conf "$@"
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
}

mh_want_direct() { [ "$1" = none ] || [ "$1" = directsync ]; }
mh_want_dsync() { [ "$1" = writethrough ] || [ "$1" = directsync ]; }

# The daemon's data descriptors of a backing file: "FD FLAGS" per line,
# FLAGS in octal as fdinfo prints them; O_PATH descriptors are left out.
mh_backing_fds() {	# BACKINGPATH
	local f fd flags

	for f in /proc/"$VC_PID"/fd/*; do
		[ "$(readlink "$f" 2>/dev/null)" = "$1" ] || continue
		fd=${f##*/}
		flags=$(awk '$1 == "flags:" { print $2 }' \
		    /proc/"$VC_PID"/fdinfo/"$fd" 2>/dev/null)
		[ -n "$flags" ] || continue
		(( (8#$flags & MH_O_PATH) != 0 )) && continue
		echo "$fd $flags"
	done
}

# Exactly one data descriptor for the file: sets MH_BFD and MH_BFLAGS
# (octal string). Fails with the daemon's descriptor table otherwise.
mh_backing_fd() {	# BACKINGPATH
	local fds n

	fds=$(mh_backing_fds "$1")
	n=$(printf '%s' "$fds" | grep -c .)
	if [ "$n" -ne 1 ]; then
		echo "want exactly one non-O_PATH descriptor of $1 in the daemon, found $n:" >&2
		ls -l /proc/"$VC_PID"/fd >&2
		return 1
	fi
	MH_BFD=${fds%% *}
	MH_BFLAGS=${fds##* }
}

# Wait until the daemon has no data descriptor of the file (RELEASE is
# asynchronous to close(2)).
mh_wait_no_backing() {	# BACKINGPATH
	local i

	for i in $(seq 1 100); do
		[ -z "$(mh_backing_fds "$1")" ] && return 0
		sleep 0.05
	done
	echo "the daemon still holds $1 open 5 s after the last close:" >&2
	mh_backing_fds "$1" >&2
	return 1
}

# The flags of a backing descriptor are those of MODE: O_DIRECT exactly for
# none/directsync, O_DSYNC exactly for writethrough/directsync.
mh_assert_mode_flags() {	# MODE OCTALFLAGS
	local mode=$1 f=$((8#$2)) want have

	want=0; mh_want_direct "$mode" && want=1
	have=$(( (f & MH_O_DIRECT) != 0 ))
	if [ "$have" -ne "$want" ]; then
		echo "cache=$mode: backing fd flags 0$2: O_DIRECT is $have, want $want" >&2
		return 1
	fi
	want=0; mh_want_dsync "$mode" && want=1
	have=$(( (f & MH_O_DSYNC) != 0 ))
	if [ "$have" -ne "$want" ]; then
		echo "cache=$mode: backing fd flags 0$2: O_DSYNC is $have, want $want" >&2
		return 1
	fi
}

mh_accmode() {	# OCTALFLAGS
	echo $(( 8#$1 & MH_O_ACCMODE ))
}

# Open PATH in the test shell and keep it open until mh_close_fd or teardown.
# Sets MH_OPENED to the descriptor. mh_open_fd '<' PATH | mh_open_fd '<>' PATH
mh_open_fd() {	# REDIR PATH
	local fd

	case $1 in
	'<') exec {fd}<"$2" ;;
	'<>') exec {fd}<>"$2" ;;
	*) return 2 ;;
	esac || return 1
	MH_FDS+=("$fd")
	MH_OPENED=$fd
}

mh_close_fd() {	# FD
	local fd=$1 i

	exec {fd}>&-
	for i in "${!MH_FDS[@]}"; do
		[ "${MH_FDS[i]}" = "$1" ] && unset 'MH_FDS[i]'
	done
	MH_FDS=("${MH_FDS[@]}")
}

# Run a command in the background without the descriptors the test shell
# holds open through the mount (a copy would keep the image open) and
# without bats' fd 3. $! is its pid.
mh_bg() {
	(
		for fd in "${MH_FDS[@]}"; do
			exec {fd}>&-
		done
		exec "$@" 3>&-
	) &
}

# Drop the page cache of one file (it must not be dirty afterwards).
mh_evict() {	# FILE
	dd of="$1" oflag=nocache conv=notrunc,fdatasync count=0 status=none
}

mh_resident() {	# FILE -> bytes of it in the page cache
	fincore --bytes --noheadings --output RES "$1" | tr -d ' '
}

# strace the daemon (all threads) into OUT, tracing SYSCALLS; returns once
# every thread of the daemon is traced. The test must have exported
# ASAN_OPTIONS=detect_leaks=0 before vc_mount.
mh_strace_start() {	# OUT SYSCALLS
	local i s all

	mh_bg strace -f -qq -s 0 -e trace="$2" -p "$VC_PID" -o "$1"
	MH_STRACE_PID=$!
	for i in $(seq 1 200); do
		all=1
		for s in /proc/"$VC_PID"/task/*/status; do
			awk '$1 == "TracerPid:" { exit $2 == 0 }' "$s" 2>/dev/null || all=0
		done
		[ "$all" = 1 ] && return 0
		if ! kill -0 "$MH_STRACE_PID" 2>/dev/null; then
			echo "strace exited before attaching" >&2
			return 1
		fi
		sleep 0.05
	done
	echo "strace did not attach to every thread of $VC_PID in 10 s" >&2
	return 1
}

mh_strace_stop() {
	[ -n "$MH_STRACE_PID" ] || return 0
	kill -INT "$MH_STRACE_PID" 2>/dev/null
	wait "$MH_STRACE_PID" 2>/dev/null || true
	MH_STRACE_PID=
}

# Completed calls of an strace -f log, one per line, in order of return:
#   ENTRY EXIT PID CALL(ARGS) = RESULT
# ENTRY and EXIT are event numbers (line numbers of the log), so that the
# "<unfinished ...>" / "<... resumed>" halves of a call come back together.
mh_strace_calls() {	# LOG
	python3 - "$1" <<'EOF'
import re, sys
pending = {}
for n, line in enumerate(open(sys.argv[1])):
    m = re.match(r'^(\d+)\s+(.*?)\s*$', line)
    if not m:
        continue
    pid, rest = m.groups()
    if rest.endswith('<unfinished ...>'):
        pending[pid] = (n, rest[:-len('<unfinished ...>')].rstrip())
        continue
    r = re.match(r'^<\.\.\. (\w+) resumed>\s*(.*)$', rest)
    if r:
        entry, head = pending.pop(pid, (n, r.group(1) + '(?'))
        rest = head + r.group(2)
    else:
        entry = n
    if re.match(r'^\w+\(', rest):
        print(entry, n, pid, rest)
EOF
}

# The daemon's /dev/fuse descriptor (libfuse replies with writev on it).
mh_fuse_fd() {
	local f

	for f in /proc/"$VC_PID"/fd/*; do
		if [ "$(readlink "$f" 2>/dev/null)" = /dev/fuse ]; then
			echo "${f##*/}"
			return 0
		fi
	done
	return 1
}

# A 256 MiB ext4 on a loop device, mounted at $VC_TMP/ext4 with a 600 s
# journal commit interval (so background commits do not flush the device
# during a test). Sets MH_LOOPDEV (/dev/loopN) and MH_EXT4DIR.
mh_loop_ext4() {
	local dev

	truncate -s 256M "$VC_TMP/ext4.img" || return 1
	dev=$(losetup -f --show "$VC_TMP/ext4.img") || return 1
	MH_LOOPS+=("$dev")
	MH_LOOPDEV=$dev
	# Initialise everything now: no lazy-init thread writing later.
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev" || return 1
	mkdir -p "$VC_TMP/ext4"
	mount -o commit=600 "$dev" "$VC_TMP/ext4" || return 1
	MH_EXT4+=("$VC_TMP/ext4")
	MH_EXT4DIR=$VC_TMP/ext4
}

# Flush requests completed by a block device: field 16 of its stat file
# (Documentation/block/stat.rst: 16 flush I/Os, 17 flush ticks).
mh_flushes() {	# /dev/loopN
	awk 'NF >= 17 { print $16; ok = 1 } END { exit !ok }' \
	    "/sys/block/${1#/dev/}/stat"
}

# Guest fsyncs must reach the device as flushes in every mode but unsafe,
# and never in unsafe. Baseline: the same writes without fsync, on an ext4
# (commit=600) inside a loop device, whose stat field 16 counts flushes.
mh_check_flushes() {	# MODE [AIO]
	local mode=$1 aio=${2:-threads} i f0 f1 f2 base synced

	mh_loop_ext4
	VC_SRC=$MH_EXT4DIR/src
	mkdir "$VC_SRC"
	dd if=/dev/zero of="$VC_SRC/img" bs=1M count=4 conv=fsync status=none
	mh_mount "$mode" "aio = $aio"

	f0=$(mh_flushes "$MH_LOOPDEV")
	for i in $(seq 0 9); do
		dd if=/dev/urandom of="$VC_MNT/img" bs=64k count=4 seek=$((i * 4)) \
		    conv=notrunc status=none
	done
	f1=$(mh_flushes "$MH_LOOPDEV")
	for i in $(seq 0 9); do
		dd if=/dev/urandom of="$VC_MNT/img" bs=64k count=4 seek=$((i * 4)) \
		    conv=notrunc,fsync status=none
	done
	f2=$(mh_flushes "$MH_LOOPDEV")
	base=$((f1 - f0))
	synced=$((f2 - f1))
	if [ "$mode" = unsafe ]; then
		(( synced <= base )) ||
		    fail "cache=unsafe aio=$aio: 10 guest fsyncs made $synced device flushes (baseline without fsync: $base), want none beyond the baseline"
	else
		(( synced >= base + 10 )) ||
		    fail "cache=$mode aio=$aio: 10 guest fsyncs made $synced device flushes (baseline without fsync: $base), want >= baseline + 10"
	fi
}
