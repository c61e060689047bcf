#!/usr/bin/env bats
# Real guests on the mount: QEMU (TCG) boots the test guest that
# tests/guest/mkguest.sh builds, with its disk image on vcachefs, in each of
# the five cache modes (chosen by per-image sections of the config), once
# with -drive cache=none,aio=native and once with cache=writeback,
# aio=io_uring, and a qcow2 image. While the guest holds (vcguest.hold=1,
# after its writes and fsyncs): the daemon's backing descriptor has the
# flags of the vcachefs mode, whatever QEMU's cache option; vcachefsctl
# status names the mode and the section; vcachefsctl stats counts the
# guest's writes and its three flushes, forwarded or, in unsafe, ignored;
# QEMU's own descriptor has O_DIRECT as its -drive says. After the guest
# powers off: its result line, the backing file byte for byte
# (tests/guest/expect.sh), and a clean exit of the daemon at the unmount.

bats_require_minimum_version 1.5.0

load helper
load modes_helper

: "${VCTL:=$BATS_TEST_DIRNAME/../../build/asan/vcachefsctl}"
GU_DIR=${VC_GUEST_DIR:-$BATS_TEST_DIRNAME/../../build/guest}
GU_EXPECT=$BATS_TEST_DIRNAME/../guest/expect.sh
# A TCG boot takes seconds, many more on a busy machine: the waits are
# bounded only so that a stuck guest ends the test, not a claim of speed.
GU_WAIT=${VC_GUEST_WAIT:-300}
GU_SIZE=$((8 << 20))		# image size
GU_MAILBOX=$((6144 * 512))	# guest offset of the mailbox sector
GU_FSYNCS=3			# the guest's fsyncs before it holds

setup_file() {
	# Cached under build/guest: only the first run downloads and builds.
	"$BATS_TEST_DIRNAME/../guest/mkguest.sh" "$GU_DIR"
}

setup() {
	mh_setup
	GU_QEMU=()	# qemu processes of this test, our children
}

teardown() {
	local p
	# QEMU holds an image open on the mount: it goes before the unmount.
	for p in "${GU_QEMU[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	mh_teardown
}

# The config: [global] says writeback, and each image has its own section,
# so the mode an image gets comes from its section (status shows which).
# Daemon engines: threads for the cache=none,aio=native boots, io_uring for
# the io_uring ones, native for the qcow2 image.
gu_conf() {
	local m lines=()
	for m in writeback writethrough none directsync unsafe; do
		lines+=("[g-$m-native.raw]" "cache = $m" "aio = threads")
		lines+=("[g-$m-io_uring.raw]" "cache = $m" "aio = io_uring")
	done
	lines+=("[g-none.qcow2]" "cache = none" "aio = native")
	mh_conf writeback "${lines[@]}"
}

gu_drive() {	# native|io_uring -> QEMU's -drive cache and aio options
	case $1 in
	native) echo cache=none,aio=native ;;
	io_uring) echo cache=writeback,aio=io_uring ;;
	esac
}

# Not exited (a zombie, not yet reaped, has exited).
gu_alive() {	# PID
	local s
	s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$s" ] && [ "${s%% *}" != Z ]
}

# Boot the guest on MNT/IMAGE; sets GU_SEED (new for every boot), GU_PID
# and GU_CON (the serial console's log).
gu_start() {	# IMAGE FORMAT DRIVEOPTS
	GU_SEED=$(( (RANDOM << 15 | RANDOM) + 1 ))
	GU_CON=$VC_TMP/console-$GU_SEED.log
	GU_T0=$SECONDS
	mh_bg qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot \
	    -nodefaults -serial stdio \
	    -kernel "$GU_DIR/vmlinuz" -initrd "$GU_DIR/initrd.img" \
	    -append "console=ttyS0 panic=-1 quiet vcguest.seed=$GU_SEED vcguest.hold=1" \
	    -drive "file=$VC_MNT/$1,format=$2,if=virtio,$3" \
	    </dev/null >"$GU_CON" 2>&1
	GU_PID=$!
	GU_QEMU+=("$GU_PID")
}

gu_console() {
	echo "--- console of seed $GU_SEED:" >&2
	tr -d '\r' <"$GU_CON" >&2
}

# Wait until the console shows LINE (a fixed string); fails if QEMU exits
# first or after GU_WAIT seconds.
gu_wait_line() {	# LINE
	local end=$((SECONDS + GU_WAIT))
	while ! grep -qF "$1" "$GU_CON"; do
		if ! gu_alive "$GU_PID"; then
			echo "qemu exited before the console said: $1" >&2
			gu_console
			return 1
		fi
		if [ "$SECONDS" -ge "$end" ]; then
			echo "no '$1' on the console after $GU_WAIT s" >&2
			gu_console
			return 1
		fi
		sleep 0.2
	done
}

# Release the holding guest: the GO record at host offset OFFSET of the
# image, through the mount and fsync'ed, where the guest's reads see it.
gu_release() {	# IMAGE OFFSET
	printf 'VCGUEST GO seed=%s\n' "$GU_SEED" |
	    dd of="$VC_MNT/$1" bs=512 seek="$2" oflag=seek_bytes \
	    conv=notrunc,fsync status=none
}

# Wait for QEMU to exit and check that it exited 0 after the guest's ok.
gu_wait_exit() {
	local end=$((SECONDS + GU_WAIT)) rc=0
	while gu_alive "$GU_PID"; do
		if [ "$SECONDS" -ge "$end" ]; then
			echo "qemu still running $GU_WAIT s after GO" >&2
			gu_console
			return 1
		fi
		sleep 0.2
	done
	wait "$GU_PID" || rc=$?
	GU_QEMU=()
	echo "# seed $GU_SEED: qemu ran $((SECONDS - GU_T0)) s" >&3
	if ! grep -qE "^VCGUEST RESULT ok seed=$GU_SEED mode=write uptime=" \
	    <(tr -d '\r' <"$GU_CON"); then
		echo "no ok result line for seed $GU_SEED (qemu exit $rc)" >&2
		gu_console
		return 1
	fi
	[ "$rc" -eq 0 ] || { echo "qemu exited $rc" >&2; gu_console; return 1; }
}

# Unmount; the daemon exits 0 (in writeback and unsafe after syncing the
# guest's data, which can take a while on a busy disk). vc_umount ends
# the connection if another mount namespace (libvirt's QEMU, unshare -m)
# kept a copy of the mount.
gu_umount() {
	local t0=$SECONDS

	vc_umount "$VC_MNT" "$VC_PID" "$GU_WAIT"
	echo "# daemon exited $((SECONDS - t0)) s after the unmount" >&3
}

# The whole of a raw disk (SIZE bytes) is the guest's pattern, the GO
# record in the mailbox sector, and zeros everywhere else.
gu_check_disk() {	# RAWFILE
	local want=$VC_TMP/want

	"$GU_EXPECT" "$GU_SEED" "$1"
	"$GU_EXPECT" "$GU_SEED" >"$want"
	truncate -s "$GU_SIZE" "$want"
	printf 'VCGUEST GO seed=%s\n' "$GU_SEED" |
	    dd of="$want" bs=512 seek=$((GU_MAILBOX / 512)) conv=notrunc status=none
	assert_equal "$(stat -c %s "$1")" "$GU_SIZE"
	cmp "$want" "$1"
}

# QEMU's own descriptors of MNT/IMAGE have O_DIRECT exactly when its
# -drive says cache=none: so that the daemon's flags, checked against the
# vcachefs mode, are seen to be the daemon's choice and not QEMU's.
gu_check_qemu_fds() {	# IMAGE DRIVEOPTS
	local f fd flags n=0 want=0

	case $2 in *cache=none*) want=1 ;; esac
	for f in /proc/"$GU_PID"/fd/*; do
		[ "$(readlink "$f" 2>/dev/null)" = "$VC_MNT/$1" ] || continue
		fd=${f##*/}
		flags=$(awk '$1 == "flags:" { print $2 }' /proc/"$GU_PID"/fdinfo/"$fd")
		(( (8#$flags & MH_O_PATH) != 0 )) && continue
		n=$((n + 1))
		if [ $(( (8#$flags & MH_O_DIRECT) != 0 )) -ne "$want" ]; then
			echo "qemu -drive $2: its fd $fd of the image has flags 0$flags, O_DIRECT want $want" >&2
			return 1
		fi
	done
	[ "$n" -gt 0 ] || { echo "qemu has no descriptor of $VC_MNT/$1" >&2; ls -l /proc/"$GU_PID"/fd >&2; return 1; }
}

# While the guest holds: QEMU's and the daemon's descriptors' flags, the
# status row and the counters of IMAGE in vcachefs MODE with daemon engine
# AIO.
gu_check_running() {	# IMAGE MODE AIO DRIVEOPTS
	local img=$1 mode=$2 aio=$3 re=${1//./\\.}

	gu_check_qemu_fds "$img" "$4"
	mh_backing_fd "$VC_SRC/$img"
	mh_assert_mode_flags "$mode" "$MH_BFLAGS"
	assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDWR"

	run -0 "$VCTL" -m "$VC_MNT" status
	echo "$output"
	assert_line --regexp "^$re +$mode +$aio +no +.*\\[$re\\]\$"

	# The guest wrote 2 MiB + 512 bytes (the kernel may send its last
	# sector as a whole page) and fsync'ed three times.
	run -0 "$VCTL" -m "$VC_MNT" stats --json "$img"
	echo "$output"
	python3 -c '
import json, sys
a = json.loads(sys.argv[1])["images"][0]
fwd, n = sys.argv[2] != "unsafe", int(sys.argv[3])
low, high = 2 * 1024 * 1024 + 512, 2 * 1024 * 1024 + 4096
assert a["write_ops"] > 0, a
assert low <= a["write_bytes"] <= high, "write_bytes %d not in [%d, %d]" % (a["write_bytes"], low, high)
assert a["errors"] == 0 and a["inflight"] == 0, a
assert a["flush_ops"] == (n if fwd else 0), "flush_ops %d" % a["flush_ops"]
assert a["flush_ignored"] == (0 if fwd else n), "flush_ignored %d" % a["flush_ignored"]
' "$output" "$mode" "$GU_FSYNCS"
}

gu_boot_raw() {	# MODE native|io_uring
	local mode=$1 img=g-$1-$2.raw aio=threads

	[ "$2" = io_uring ] && aio=io_uring
	gu_conf
	truncate -s "$GU_SIZE" "$VC_SRC/$img"
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	gu_start "$img" raw "$(gu_drive "$2")"
	gu_wait_line "VCGUEST HOLD seed=$GU_SEED"
	gu_check_running "$img" "$mode" "$aio" "$(gu_drive "$2")"
	gu_release "$img" "$GU_MAILBOX"
	gu_wait_exit
	mh_wait_no_backing "$VC_SRC/$img"
	gu_check_disk "$VC_SRC/$img"
	gu_umount
}

@test "guest: writeback, -drive cache=none,aio=native" { gu_boot_raw writeback native; }
@test "guest: writeback, -drive cache=writeback,aio=io_uring" { gu_boot_raw writeback io_uring; }
@test "guest: writethrough, -drive cache=none,aio=native" { gu_boot_raw writethrough native; }
@test "guest: writethrough, -drive cache=writeback,aio=io_uring" { gu_boot_raw writethrough io_uring; }
@test "guest: none, -drive cache=none,aio=native" { gu_boot_raw none native; }
@test "guest: none, -drive cache=writeback,aio=io_uring" { gu_boot_raw none io_uring; }
@test "guest: directsync, -drive cache=none,aio=native" { gu_boot_raw directsync native; }
@test "guest: directsync, -drive cache=writeback,aio=io_uring" { gu_boot_raw directsync io_uring; }
@test "guest: unsafe (flushes ignored), -drive cache=none,aio=native" { gu_boot_raw unsafe native; }
@test "guest: unsafe (flushes ignored), -drive cache=writeback,aio=io_uring" { gu_boot_raw unsafe io_uring; }

# qcow2: preallocated metadata, so the guest's mailbox sector has a fixed
# place in the file (qemu-img map) where the test can write GO; the
# guest's disk is checked on a raw conversion.
@test "guest: qcow2 image, none, -drive cache=none,aio=native" {
	local img=g-none.qcow2 off

	gu_conf
	qemu-img create -q -f qcow2 -o preallocation=metadata "$VC_SRC/$img" "$GU_SIZE"
	off=$(qemu-img map --output=json "$VC_SRC/$img" | python3 -c '
import json, sys
want = int(sys.argv[1])
for e in json.load(sys.stdin):
    if e["start"] <= want < e["start"] + e["length"] and "offset" in e:
        print(e["offset"] + want - e["start"])
        break
' "$GU_MAILBOX")
	[ -n "$off" ] || fail "qemu-img map gives no host offset for guest offset $GU_MAILBOX"
	vc_mount -c "$MH_CONF" "$VC_SRC" "$VC_MNT"
	gu_start "$img" qcow2 "$(gu_drive native)"
	gu_wait_line "VCGUEST HOLD seed=$GU_SEED"
	gu_check_running "$img" none native "$(gu_drive native)"
	gu_release "$img" "$off"
	gu_wait_exit
	mh_wait_no_backing "$VC_SRC/$img"
	qemu-img check -q "$VC_SRC/$img"
	qemu-img convert -O raw "$VC_SRC/$img" "$VC_TMP/disk.raw"
	gu_check_disk "$VC_TMP/disk.raw"
	gu_umount
}
