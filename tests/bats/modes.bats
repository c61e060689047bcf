#!/usr/bin/env bats
# The five cache modes, each checked on what can be observed from outside
# the daemon: the flags of its backing descriptor, the host page cache, the
# system calls it makes (strace), the flushes that reach a block device,
# and real clients (qemu-io, qemu-img, fio) reading back what they wrote.
#
#   mode          page cache  write acked when     guest fsync
#   writeback     used        in page cache        forwarded
#   writethrough  used        committed (O_DSYNC)  forwarded
#   none          bypassed    device accepted it   forwarded
#   directsync    bypassed    committed            forwarded
#   unsafe        used        in page cache        dropped

bats_require_minimum_version 1.5.0

load helper
load modes_helper

setup() { mh_setup; }
teardown() { mh_teardown; }

# Calls traced in the sync tests: every way to write or to sync a file.
SYNCS='fsync,fdatasync,sync_file_range,syncfs,sync,msync'
WRITES='pwrite64,pwritev,pwritev2,write'
SYNC_RE=' (fsync|fdatasync|sync_file_range|syncfs|sync|msync)\('

# --- 1. flags of the backing descriptor --------------------------------------

check_fdinfo() {	# MODE
	local mode=$1 fd

	truncate -s 1M "$VC_SRC/img"
	mh_mount "$mode"

	mh_open_fd '<>' "$VC_MNT/img"
	fd=$MH_OPENED
	mh_backing_fd "$VC_SRC/img"
	mh_assert_mode_flags "$mode" "$MH_BFLAGS"
	assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDWR"
	mh_close_fd "$fd"
	mh_wait_no_backing "$VC_SRC/img"

	# A reader alone gets a read-only descriptor with the same mode.
	mh_open_fd '<' "$VC_MNT/img"
	mh_backing_fd "$VC_SRC/img"
	mh_assert_mode_flags "$mode" "$MH_BFLAGS"
	assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDONLY"
}

@test "fdinfo: writeback backing fd is buffered, no O_DSYNC" { check_fdinfo writeback; }
@test "fdinfo: writethrough backing fd has O_DSYNC, no O_DIRECT" { check_fdinfo writethrough; }
@test "fdinfo: none backing fd has O_DIRECT, no O_DSYNC" { check_fdinfo none; }
@test "fdinfo: directsync backing fd has O_DIRECT and O_DSYNC" { check_fdinfo directsync; }
@test "fdinfo: unsafe backing fd is buffered, no O_DSYNC" { check_fdinfo unsafe; }

# --- 2. host page cache -------------------------------------------------------

check_fincore() {	# MODE
	local mode=$1 res

	dd if=/dev/urandom of="$VC_SRC/img" bs=1M count=8 status=none
	mh_evict "$VC_SRC/img"
	assert_equal "$(mh_resident "$VC_SRC/img")" 0	# else the test means nothing
	mh_mount "$mode"

	dd if=/dev/urandom of="$VC_MNT/img" bs=1M count=8 conv=notrunc,fsync status=none
	# Unaligned too: O_DIRECT modes read-modify-write the edges.
	dd if=/dev/urandom of="$VC_MNT/img" bs=3000 count=5 seek=1000 \
	    oflag=seek_bytes conv=notrunc,fsync status=none
	dd if="$VC_MNT/img" of=/dev/null bs=1M status=none
	dd if="$VC_MNT/img" of=/dev/null bs=3000 skip=777 iflag=skip_bytes \
	    count=3 status=none

	res=$(mh_resident "$VC_SRC/img")
	if mh_want_direct "$mode"; then
		assert_equal "$res" 0
	elif ! (( res > 0 )); then
		fail "cache=$mode: backing file has $res bytes in the page cache after 8 MiB of I/O, want > 0"
	fi
}

@test "fincore: writeback uses the host page cache" { check_fincore writeback; }
@test "fincore: writethrough uses the host page cache" { check_fincore writethrough; }
@test "fincore: none bypasses the host page cache" { check_fincore none; }
@test "fincore: directsync bypasses the host page cache" { check_fincore directsync; }
@test "fincore: unsafe uses the host page cache" { check_fincore unsafe; }

# --- 3. system calls of the daemon --------------------------------------------

# Mount MODE so that strace can attach (LeakSanitizer cannot run under
# ptrace), over a 4 MiB image. aio=threads: the backing I/O is then made of
# system calls strace sees (io_uring requests are not).
strace_mount() {	# MODE
	export ASAN_OPTIONS=detect_leaks=0
	dd if=/dev/zero of="$VC_SRC/img" bs=1M count=4 status=none
	mh_mount "$1" 'aio = threads'
}

# Hold the image open (so the backing descriptor and its flags are known:
# MH_BFD, MH_BFLAGS), trace SYSCALLS while CLIENT runs, then close the
# holder and wait for the release, so closes are traced too. The completed
# calls end up in $CALLS (see mh_strace_calls).
traced_client() {	# SYSCALLS CLIENT...
	local trace=$1 holder
	shift

	mh_open_fd '<>' "$VC_MNT/img"
	holder=$MH_OPENED
	mh_backing_fd "$VC_SRC/img"
	mh_strace_start "$VC_TMP/strace.log" "$trace"
	"$@"
	mh_close_fd "$holder"
	mh_wait_no_backing "$VC_SRC/img"
	mh_strace_stop
	CALLS=$VC_TMP/calls
	mh_strace_calls "$VC_TMP/strace.log" >"$CALLS"
}

# Backing writes seen in $CALLS (on MH_BFD), all of them or those matching RE.
count_writes() {	# [RE]
	grep -E "^[0-9]+ [0-9]+ [0-9]+ (pwrite64|pwritev|pwritev2|write)\($MH_BFD," "$CALLS" |
	    grep -cE "${1:-.}" || true
}

refute_syncs() {	# MODE WHAT
	if grep -E "$SYNC_RE" "$CALLS"; then
		fail "cache=$1: $2: the daemon synced (calls above), want no sync at all"
	fi
}

# 3a and 7: write and close(2) without fsync: no sync in any mode; FLUSH,
# sent at each close, is not a sync either.
check_nosync() {	# MODE
	local mode=$1 n

	strace_mount "$mode"
	traced_client "$SYNCS,$WRITES" dd if=/dev/urandom of="$VC_MNT/img" \
	    bs=64k count=16 conv=notrunc status=none
	n=$(count_writes)
	(( n >= 16 )) || fail "strace saw $n backing writes on fd $MH_BFD, want >= 16: $(cat "$CALLS")"
	refute_syncs "$mode" "write+close without fsync"
	# The client did not ask for O_DSYNC: no per-write sync either...
	assert_equal "$(count_writes RWF_DSYNC)" 0
	# ...and the writes went to a descriptor with the mode's flags.
	mh_assert_mode_flags "$mode" "$MH_BFLAGS"
}

@test "strace: writeback write+close without fsync makes no sync" { check_nosync writeback; }
@test "strace: writethrough write+close without fsync makes no sync, fd is O_DSYNC" { check_nosync writethrough; }
@test "strace: none write+close without fsync makes no sync" { check_nosync none; }
@test "strace: directsync write+close without fsync makes no sync, fd is O_DSYNC" { check_nosync directsync; }
@test "strace: unsafe write+close without fsync makes no sync" { check_nosync unsafe; }

# 3b: the guest's fsync/fdatasync reach the backing file, except in unsafe.
fsync_client() {
	dd if=/dev/urandom of="$VC_MNT/img" bs=64k count=4 conv=notrunc,fsync status=none
	dd if=/dev/urandom of="$VC_MNT/img" bs=64k count=4 seek=8 \
	    conv=notrunc,fdatasync status=none
}

check_fsync() {	# MODE
	local mode=$1 n

	strace_mount "$mode"
	traced_client "$SYNCS,$WRITES" fsync_client
	n=$(count_writes)
	(( n >= 8 )) || fail "strace saw $n backing writes on fd $MH_BFD, want >= 8: $(cat "$CALLS")"
	if [ "$mode" = unsafe ]; then
		refute_syncs "$mode" "dd conv=fsync and conv=fdatasync"
		return 0
	fi
	grep -qE " fsync\($MH_BFD\)" "$CALLS" ||
	    fail "cache=$mode: dd conv=fsync: no fsync($MH_BFD) by the daemon: $(cat "$CALLS")"
	grep -qE " fdatasync\($MH_BFD\)" "$CALLS" ||
	    fail "cache=$mode: dd conv=fdatasync: no fdatasync($MH_BFD) by the daemon: $(cat "$CALLS")"
}

@test "strace: writeback forwards fsync and fdatasync" { check_fsync writeback; }
@test "strace: writethrough forwards fsync and fdatasync" { check_fsync writethrough; }
@test "strace: none forwards fsync and fdatasync" { check_fsync none; }
@test "strace: directsync forwards fsync and fdatasync" { check_fsync directsync; }
@test "strace: unsafe drops fsync and fdatasync" { check_fsync unsafe; }

# 3c: a client's O_DSYNC write is made durable (RWF_DSYNC, or an O_DSYNC
# descriptor), except in unsafe.
check_dsync() {	# MODE
	local mode=$1 n

	strace_mount "$mode"
	traced_client "$SYNCS,$WRITES" dd if=/dev/urandom of="$VC_MNT/img" \
	    bs=64k count=4 oflag=dsync conv=notrunc status=none
	n=$(count_writes)
	(( n >= 4 )) || fail "strace saw $n backing writes on fd $MH_BFD, want >= 4: $(cat "$CALLS")"
	mh_assert_mode_flags "$mode" "$MH_BFLAGS"
	case $mode in
	writeback|none)
		# Buffered or O_DIRECT without O_DSYNC: each write needs RWF_DSYNC.
		assert_equal "$(count_writes RWF_DSYNC)" "$n"
		;;
	writethrough|directsync)
		# The descriptor is O_DSYNC (checked above): every write is durable.
		;;
	unsafe)
		assert_equal "$(count_writes RWF_DSYNC)" 0
		refute_syncs "$mode" "dd oflag=dsync"
		;;
	esac
}

@test "strace: writeback turns client O_DSYNC writes into RWF_DSYNC" { check_dsync writeback; }
@test "strace: writethrough writes client O_DSYNC writes on an O_DSYNC fd" { check_dsync writethrough; }
@test "strace: none turns client O_DSYNC writes into RWF_DSYNC" { check_dsync none; }
@test "strace: directsync writes client O_DSYNC writes on an O_DSYNC fd" { check_dsync directsync; }
@test "strace: unsafe ignores client O_DSYNC" { check_dsync unsafe; }

# 3d: in writethrough/directsync each write is on storage before its reply:
# the backing write (on the O_DSYNC fd) returns before libfuse starts the
# writev of the reply (16-byte header + 8-byte fuse_write_out).
check_order() {	# MODE
	local mode=$1 ffd seq

	# Through io_uring the reply is a commit inside io_uring_enter(2), which
	# strace cannot tie to one request; the /dev/fuse pass checks the order
	# (io.c composes the reply only after the backing write returned).
	[ -z "${VC_FUSE_URING:-}" ] || skip "replies go through io_uring here"

	strace_mount "$mode"
	ffd=$(mh_fuse_fd)
	traced_client 'pwrite64,pwritev,pwritev2,write,writev' \
	    dd if=/dev/urandom of="$VC_MNT/img" bs=4k count=8 oflag=direct \
	    conv=notrunc status=none
	mh_assert_mode_flags "$mode" "$MH_BFLAGS"
	# W at the return of a backing write, R at the start of a WRITE reply.
	seq=$(awk -v fd="$MH_BFD" -v ffd="$ffd" '
	    $4 ~ "^(pwrite64|pwritev|pwritev2|write)\\(" fd "," { print $2, "W" }
	    $4 ~ "^writev\\(" ffd "," && /\], 2\) *= 24$/ { print $1, "R" }
	    ' "$CALLS" | sort -n -k1,1 | awk '{ printf "%s", $2 }')
	[ "$seq" = WRWRWRWRWRWRWRWR ] ||
	    fail "cache=$mode: backing write (W) / write reply (R) order is '$seq', want 8 x WR: $(cat "$CALLS")"
}

@test "strace: writethrough write is on storage before its reply" { check_order writethrough; }
@test "strace: directsync write is on storage before its reply" { check_order directsync; }

# --- 4. flushes that reach the block device -----------------------------------

@test "loop flushes: writeback guest fsync reaches the device" { mh_check_flushes writeback; }
@test "loop flushes: writethrough guest fsync reaches the device" { mh_check_flushes writethrough; }
@test "loop flushes: none guest fsync reaches the device" { mh_check_flushes none; }
@test "loop flushes: directsync guest fsync reaches the device" { mh_check_flushes directsync; }
@test "loop flushes: unsafe guest fsync never reaches the device" { mh_check_flushes unsafe; }

# --- 5. real clients -----------------------------------------------------------

# qemu-io through the mount, O_DIRECT (-t none) and buffered (-t writeback),
# at aligned and unaligned offsets over old non-zero data; the backing file
# must then equal a reference made by the same commands on a plain file.
check_qemu_io() {	# MODE
	local mode=$1
	local a=(-c 'write -P 0x5a 1000 3000' -c 'write -P 0xa5 4090 20'
	    -c 'write -P 0x3c 65536 131072' -c 'write -P 0x77 300001 1')
	local b=(-c 'write -P 0x66 5000 7000' -c 'write -z 204800 8192'
	    -c 'write -P 0x99 1048000 576')

	qemu-img create -q -f raw "$VC_SRC/img" 1M
	qemu-io -f raw -c 'write -P 0x11 0 1M' "$VC_SRC/img" >/dev/null
	cp "$VC_SRC/img" "$VC_TMP/ref"
	mh_mount "$mode"

	run qemu-io -f raw -t none "${a[@]}" -c 'read -P 0x5a 1000 3000' \
	    -c 'read -P 0x11 0 1000' -c 'read -P 0x11 4000 90' \
	    -c 'read -P 0xa5 4090 20' -c 'read -P 0x11 4110 890' \
	    -c 'read -P 0x77 300001 1' -c 'read -P 0x11 300002 4000' "$VC_MNT/img"
	assert_success
	refute_output --partial 'failed'
	run qemu-io -f raw -t writeback "${b[@]}" -c 'read -P 0x66 5000 7000' \
	    -c 'read -P 0 204800 8192' -c 'read -P 0x5a 1000 3000' \
	    -c 'read -P 0x3c 65536 131072' -c 'read -P 0x99 1048000 576' "$VC_MNT/img"
	assert_success
	refute_output --partial 'failed'
	# What the buffered client wrote, read back with O_DIRECT.
	run qemu-io -f raw -t none -c 'read -P 0x66 5000 7000' \
	    -c 'read -P 0 204800 8192' -c 'read -P 0x99 1048000 576' "$VC_MNT/img"
	assert_success
	refute_output --partial 'failed'

	qemu-io -f raw "${a[@]}" "$VC_TMP/ref" >/dev/null
	qemu-io -f raw "${b[@]}" "$VC_TMP/ref" >/dev/null
	run qemu-io -f raw -c 'read -P 0x5a 1000 3000' "$VC_SRC/img"
	assert_success
	refute_output --partial 'failed'
	cmp "$VC_SRC/img" "$VC_TMP/ref"
}

@test "qemu-io: writeback, O_DIRECT and buffered clients, aligned and not" { check_qemu_io writeback; }
@test "qemu-io: writethrough, O_DIRECT and buffered clients, aligned and not" { check_qemu_io writethrough; }
@test "qemu-io: none, O_DIRECT and buffered clients, aligned and not" { check_qemu_io none; }
@test "qemu-io: directsync, O_DIRECT and buffered clients, aligned and not" { check_qemu_io directsync; }
@test "qemu-io: unsafe, O_DIRECT and buffered clients, aligned and not" { check_qemu_io unsafe; }

check_convert() {	# MODE
	local mode=$1 fd

	qemu-img create -q -f raw "$VC_TMP/src.raw" 4M
	qemu-io -f raw -c 'write -P 0x33 100000 70000' -c 'write -P 0x44 3000000 5000' \
	    -c 'write -P 0x55 4193300 1000' "$VC_TMP/src.raw" >/dev/null
	mh_mount "$mode"

	run qemu-img convert -f raw -O qcow2 -t none "$VC_TMP/src.raw" "$VC_MNT/disk.qcow2"
	assert_success
	# The new image got the mode too.
	mh_open_fd '<' "$VC_MNT/disk.qcow2"
	fd=$MH_OPENED
	mh_backing_fd "$VC_SRC/disk.qcow2"
	mh_assert_mode_flags "$mode" "$MH_BFLAGS"
	mh_close_fd "$fd"
	run qemu-img compare -f raw -F qcow2 "$VC_TMP/src.raw" "$VC_MNT/disk.qcow2"
	assert_success
	run qemu-img check -f qcow2 "$VC_MNT/disk.qcow2"
	assert_success
	# And on the backing file itself, bypassing the daemon.
	run qemu-img compare -f raw -F qcow2 "$VC_TMP/src.raw" "$VC_SRC/disk.qcow2"
	assert_success
}

@test "qemu-img convert to qcow2 into a writeback image" { check_convert writeback; }
@test "qemu-img convert to qcow2 into a writethrough image" { check_convert writethrough; }
@test "qemu-img convert to qcow2 into a none image" { check_convert none; }
@test "qemu-img convert to qcow2 into a directsync image" { check_convert directsync; }
@test "qemu-img convert to qcow2 into an unsafe image" { check_convert unsafe; }

# --- 6. fio with verify on the O_DIRECT modes ---------------------------------

# fio writes 3000-byte blocks (never aligned) with O_DIRECT through the
# mount and verifies them through the mount; then the same job verifies the
# backing file directly (--verify_only), so bytes that only the daemon
# would read back right do not pass.
check_fio() {	# MODE FIO-ARGS...
	local mode=$1
	shift
	local job=(--name=v --ioengine=psync --bs=3000 --rw=randwrite
	    --verify=crc32c --verify_fatal=1 --verify_state_save=0 "$@")

	cd "$VC_TMP"	# fio may leave files in its working directory
	truncate -s 20M "$VC_SRC/img"
	mh_mount "$mode"
	run fio "${job[@]}" --direct=1 --do_verify=1 --filename="$VC_MNT/img"
	assert_success
	run fio "${job[@]}" --direct=0 --verify_only --filename="$VC_SRC/img"
	assert_success
}

@test "fio: none, 3000-byte random writes verified" {
	check_fio none --size=16M
}
@test "fio: directsync, 3000-byte random writes verified" {
	check_fio directsync --size=16M
}
@test "fio: none, 4 jobs sharing edge blocks, verified" {
	check_fio none --numjobs=4 --size=4200000 --offset_increment=4200000
}
@test "fio: directsync, 4 jobs sharing edge blocks, verified" {
	check_fio directsync --numjobs=4 --size=4200000 --offset_increment=4200000
}
@test "fio: none, writes from unaligned offset 1000, verified" {
	check_fio none --size=16M --offset=1000
}
@test "fio: directsync, writes from unaligned offset 1000, verified" {
	check_fio directsync --size=16M --offset=1000
}

# --- 8. one backing descriptor per open image ---------------------------------

# A reader opens, then a writer: both share one backing descriptor (upgraded
# to read-write) that keeps the mode's flags, also after the first closes.
check_shared() {	# MODE
	local mode=$1 a b

	truncate -s 1M "$VC_SRC/img"
	mh_mount "$mode"
	mh_open_fd '<' "$VC_MNT/img"
	a=$MH_OPENED
	mh_backing_fd "$VC_SRC/img"
	mh_assert_mode_flags "$mode" "$MH_BFLAGS"
	assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDONLY"

	mh_open_fd '<>' "$VC_MNT/img"
	b=$MH_OPENED
	mh_backing_fd "$VC_SRC/img"
	mh_assert_mode_flags "$mode" "$MH_BFLAGS"
	assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDWR"

	mh_close_fd "$a"
	sleep 0.2	# RELEASE is asynchronous
	mh_backing_fd "$VC_SRC/img"
	mh_assert_mode_flags "$mode" "$MH_BFLAGS"
	assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDWR"
	printf 'still-open' >&"$b"
	assert_equal "$(head -c 10 "$VC_SRC/img")" still-open

	mh_close_fd "$b"
	mh_wait_no_backing "$VC_SRC/img"
}

@test "shared fd: none image keeps one O_DIRECT fd across openers" { check_shared none; }
@test "shared fd: writethrough image keeps one O_DSYNC fd across openers" { check_shared writethrough; }
@test "shared fd: directsync image keeps one fd across openers" { check_shared directsync; }

# --- 9. --check-config --------------------------------------------------------

@test "--check-config: exact beats glob, first glob wins, else [global]" {
	local f

	for f in win10.qcow2 build-1.qcow2 build-22.qcow2 other.qcow2 debian.iso data.raw; do
		truncate -s 1M "$VC_SRC/$f"
	done
	cat >"$MH_CONF" <<'EOF'
[global]
cache = writethrough
aio = io_uring

[build-*.qcow2]
cache = unsafe

[*.qcow2]
cache = directsync
aio = native

[win10.qcow2]
cache = none
aio = threads

[*.iso]
readonly = yes

[missing.img]
cache = none
EOF
	run --separate-stderr "$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
	assert_success
	assert_equal "${lines[0]}" "$MH_CONF: configuration OK"
	# One settings line per image; indented lines tell what probing found.
	local images
	images=$(printf '%s\n' "${lines[@]:1}" | grep -v '^ ' | LC_ALL=C sort)
	assert_equal "$(grep -c . <<<"$images")" 6
	assert_equal "$images" \
"build-1.qcow2: cache=unsafe aio=io_uring readonly=no (from [build-*.qcow2])
build-22.qcow2: cache=unsafe aio=io_uring readonly=no (from [build-*.qcow2])
data.raw: cache=writethrough aio=io_uring readonly=no (from [global])
debian.iso: cache=writethrough aio=io_uring readonly=yes (from [*.iso])
other.qcow2: cache=directsync aio=native readonly=no (from [*.qcow2])
win10.qcow2: cache=none aio=threads readonly=no (from [win10.qcow2])"
}

@test "--check-config over an empty SOURCE: OK and the unmatched-section warning, nothing else" {
	printf '[global]\ncache = writeback\n[a.img]\ncache = none\n' >"$MH_CONF"
	run --separate-stderr "$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
	assert_success
	assert_output "$MH_CONF: configuration OK"
	# No sanitizer report (an empty list once went to qsort as NULL).
	assert_equal "$stderr" "vcachefs: $MH_CONF:3: warning: [a.img] matches no file under $VC_SRC"
}

@test "--check-config: a broken config exits 1 and names file and line" {
	truncate -s 1M "$VC_SRC/a.img"
	printf '[global]\ncache = writeback\n[a.img]\ncache = fast\n' >"$MH_CONF"
	run --separate-stderr "$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
	assert_failure 1
	refute_output --partial 'configuration OK'
	[[ $stderr == *"$MH_CONF:4"* ]] ||
	    fail "stderr does not name $MH_CONF:4: $stderr"
	# One line for the one error: no summary after it.
	assert_equal "$(grep -c . <<<"$stderr")" 1
	# The same config does not mount either.
	run timeout 10 "$VCACHEFS" -f -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	assert_failure 1
	run vc_is_mounted "$VC_MNT"
	assert_failure
}
