#!/usr/bin/env bats
# Real guests under libvirt, with their disk XML unchanged, on vcachefs
# mounted in place over /var/lib/libvirt/images (SOURCE == MOUNTPOINT).
# The guest is tests/guest/mkguest.sh's (direct kernel boot, type='qemu':
# TCG), its serial console goes to a file. For a disk with cache='none'
# io='native', one with no cache attribute, and a qcow2 overlay whose
# backing file is on the mount too:
#   - the daemon's backing descriptor has the flags of the mode
#     vcachefs.conf names, not the XML's (QEMU's own descriptor on the
#     mount has the XML's);
#   - libvirt's DAC labelling works through the mount: the image is chowned
#     to the qemu user and its old owner kept in trusted.libvirt.security.*
#     while the domain runs, and both are undone when it stops (guest
#     poweroff and virsh destroy);
#   - the guest's pattern is in the backing file byte for byte;
#   - vcachefsctl stats counts the guest's writes and flushes, and a reload
#     that switches the running guest's image from writeback to none is
#     followed by the guest finishing without error;
#   - virt-aa-helper (AppArmor, dry run) finds the backing file through the
#     mount and names both images by their paths on it;
#   - an unmount on the host is not refused while a guest runs (its QEMU
#     has a mount namespace of its own): the daemon serves it to the end.
# The backing files are looked at through a read-only bind mount of the
# directory taken before the overmount.
#
# libvirtd and virtlogd are started here if none answers (no init system
# starts them on this machine) and stopped again at the end; a libvirt
# that was running is used and left running. What was in
# /var/lib/libvirt/images stays: the test works in a directory of its own
# there and removes it, and puts the directory's mtime back.

bats_require_minimum_version 1.5.0

load helper
load modes_helper
load libvirt_helper

setup_file() { lv_setup_file; }
teardown_file() { lv_teardown_file; }
setup() { lv_setup; }
teardown() { lv_teardown; }

@test "libvirt: disk XML cache='none' io='native', writethrough in vcachefs.conf: the conf's flags, DAC labels through the mount, the pattern on the backing file" {
	local img=$LV_DIR/native.raw

	lv_raw native.raw
	lv_mount "[$LV_REL/native.raw]" 'cache = writethrough' 'aio = threads'
	lv_define native raw " cache='none' io='native'" "$img" 1
	lv_virsh start "$LV_DOM" >/dev/null
	lv_wait_line "VCGUEST HOLD seed=$LV_SEED"

	lv_assert_labelled native.raw
	mh_backing_fd "$img"
	mh_assert_mode_flags writethrough "$MH_BFLAGS"
	assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDWR"
	# QEMU did what the XML says on its side of the mount: O_DIRECT.
	lv_assert_qemu_direct "$img" 1
	lv_assert_status "$LV_REL/native.raw" writethrough

	lv_release "$img"
	lv_wait_done
	lv_assert_restored native.raw
	mh_wait_no_backing "$img"
	lv_assert_disk "$LV_UNDER/$LV_REL/native.raw" 1
}

@test "libvirt: disk XML without a cache attribute, directsync in vcachefs.conf: the conf's flags; virsh destroy undoes the DAC labels" {
	local img=$LV_DIR/plain.raw

	lv_raw plain.raw
	lv_mount "[$LV_REL/plain.raw]" 'cache = directsync' 'aio = native'
	lv_define plain raw "" "$img" 1
	lv_virsh start "$LV_DOM" >/dev/null
	lv_wait_line "VCGUEST HOLD seed=$LV_SEED"

	lv_assert_labelled plain.raw
	mh_backing_fd "$img"
	mh_assert_mode_flags directsync "$MH_BFLAGS"
	# QEMU's default is writeback: no O_DIRECT on its side.
	lv_assert_qemu_direct "$img" 0
	lv_assert_status "$LV_REL/plain.raw" directsync

	# The guest is holding: its writes are done and fsync'ed.
	lv_virsh destroy "$LV_DOM" >/dev/null
	assert_equal "$(lv_state)" "shut off"
	lv_assert_restored plain.raw
	mh_wait_no_backing "$img"
	lv_assert_disk "$LV_UNDER/$LV_REL/plain.raw" 0
}

@test "libvirt: qcow2 overlay on a backing file under the mount: the overlay labelled and restored, both none (the base inherits), the guest's data in the overlay" {
	local top=$LV_DIR/top.qcow2 base=$LV_DIR/base.qcow2 sum

	# The base holds data past the guest's part of the disk (7 MiB on).
	qemu-img create -q -f qcow2 "$base" "$LV_SIZE"
	qemu-io -f qcow2 -c "write -P 0x5a 7M 1M" "$base" >/dev/null
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$top"
	chown "$LV_OWNER" "$top" "$base"
	sum=$(sha256sum <"$base")
	lv_mount "[$LV_REL/top.qcow2]" 'cache = none'
	lv_define top qcow2 " cache='writeback'" "$top" 0
	# Paused: QEMU has opened the chain and libvirt has labelled it, and
	# the guest cannot finish before the checks.
	lv_virsh start --paused "$LV_DOM" >/dev/null
	assert_equal "$(lv_state)" paused

	lv_assert_labelled top.qcow2
	# libvirt chowns a read-only backing file too, but remembers nothing
	# and never gives it back (other domains may share it), mount or not.
	assert_equal "$(stat -c %u:%g "$LV_UNDER/$LV_REL/base.qcow2")" "$LV_QEMU_OWNER"
	lv_assert_no_xattrs base.qcow2
	mh_backing_fd "$top"
	mh_assert_mode_flags none "$MH_BFLAGS"
	assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDWR"
	mh_backing_fd "$base"
	mh_assert_mode_flags none "$MH_BFLAGS"
	assert_equal "$(mh_accmode "$MH_BFLAGS")" "$MH_O_RDONLY"
	lv_assert_qemu_direct "$top" 0

	lv_virsh resume "$LV_DOM" >/dev/null
	lv_wait_done
	lv_assert_restored top.qcow2
	lv_assert_no_xattrs base.qcow2
	mh_wait_no_backing "$top"
	mh_wait_no_backing "$base"
	qemu-img check -q "$LV_UNDER/$LV_REL/top.qcow2"
	qemu-img convert -O raw "$LV_UNDER/$LV_REL/top.qcow2" "$VC_TMP/disk.raw"
	"$LV_EXPECT" "$LV_SEED" "$VC_TMP/disk.raw"
	# The base's data shows through, and the base itself is unchanged.
	qemu-io -f raw -c "read -P 0x5a 7M 1M" "$VC_TMP/disk.raw" | grep -q 'read 1048576/1048576'
	assert_equal "$(sha256sum <"$LV_UNDER/$LV_REL/base.qcow2")" "$sum"
}

@test "libvirt: stats count the running guest's writes and flushes; a reload switches its image from writeback to none and the guest finishes" {
	local img=$LV_DIR/reload.raw

	lv_raw reload.raw
	lv_mount "[$LV_REL/reload.raw]" 'cache = writeback'
	lv_define reload raw "" "$img" 1
	lv_virsh start "$LV_DOM" >/dev/null
	lv_wait_line "VCGUEST HOLD seed=$LV_SEED"

	mh_backing_fd "$img"
	mh_assert_mode_flags writeback "$MH_BFLAGS"
	# The guest wrote 2 MiB + 512 bytes (the kernel may send its last
	# sector as a whole page) and fsync'ed three times, each a flush.
	run -0 "$VCTL" -s "$LV_CTL" stats --json "$LV_REL/reload.raw"
	echo "$output"
	python3 -c '
import json, sys
a = json.loads(sys.argv[1])["images"][0]
n = int(sys.argv[2])
low, high = 2 * 1024 * 1024 + 512, 2 * 1024 * 1024 + 4096
assert a["write_ops"] > 0, a
assert low <= a["write_bytes"] <= high, "write_bytes %d not in [%d, %d]" % (a["write_bytes"], low, high)
assert a["flush_ops"] == n, "flush_ops %d, want %d" % (a["flush_ops"], n)
assert a["flush_ignored"] == 0 and a["errors"] == 0, a
assert a["read_ops"] > 0, a
' "$output" "$LV_FSYNCS"

	# The guest keeps reading its mailbox (O_DIRECT, every 0.2 s) while
	# the image switches under it.
	mh_conf writeback "[$LV_REL/reload.raw]" 'cache = none'
	run -0 "$VCTL" -s "$LV_CTL" reload
	echo "$output"
	grep -F "reload: 1 image(s) switched" "$VC_LOG"
	mh_backing_fd "$img"
	mh_assert_mode_flags none "$MH_BFLAGS"
	lv_assert_status "$LV_REL/reload.raw" none

	# GO reaches the guest through the new descriptor.
	lv_release "$img"
	lv_wait_done
	lv_assert_restored reload.raw
	mh_wait_no_backing "$img"
	lv_assert_disk "$LV_UNDER/$LV_REL/reload.raw" 1
	vc_check_log
}

@test "libvirt AppArmor: virt-aa-helper (dry run) reads the backing chain through the mount and names both images by their paths on it" {
	local top=$LV_DIR/top.qcow2 base=$LV_DIR/base.qcow2 uuid

	[ -x "$LV_AA_HELPER" ] || skip "no $LV_AA_HELPER (libvirt-daemon ships it)"
	qemu-img create -q -f qcow2 "$base" "$LV_SIZE"
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$top"
	lv_mount
	lv_define aa qcow2 "" "$top" 0
	uuid=$(lv_virsh domuuid "$LV_DOM")
	lv_virsh dumpxml "$LV_DOM" >"$VC_TMP/aa.dump.xml"
	# -d: print the rules only, load and write nothing (no AppArmor in
	# this kernel is needed for that).
	run -0 "$LV_AA_HELPER" -d -c -u "libvirt-$uuid" <"$VC_TMP/aa.dump.xml"
	echo "$output"
	assert_line "  \"$top\" rwk,"
	assert_line "  \"$base\" rk,"
	assert_line "  deny \"$base\" w,"
	assert_not_exist "/etc/apparmor.d/libvirt/libvirt-$uuid"
	assert_not_exist "/etc/apparmor.d/libvirt/libvirt-$uuid.files"
}

@test "libvirt: an unmount on the host is not refused while a guest runs (QEMU's own mount namespace); the daemon serves the guest until it stops, then exits" {
	local img=$LV_DIR/ns.raw qpid

	lv_raw ns.raw
	lv_mount "[$LV_REL/ns.raw]" 'cache = none'
	lv_define ns raw "" "$img" 1
	lv_virsh start "$LV_DOM" >/dev/null
	lv_wait_line "VCGUEST HOLD seed=$LV_SEED"
	qpid=$(cat "/run/libvirt/qemu/$LV_DOM.pid")
	# QEMU's namespace has its own copy of the mount.
	awk -v m="$LV_IMAGES" '$2 == m && $3 == "fuse.vcachefs" { f = 1 } END { exit !f }' \
	    "/proc/$qpid/mounts"

	# Not "busy": the image is open in the other namespace only.
	fusermount3 -u "$LV_IMAGES"
	run -1 vc_is_mounted "$LV_IMAGES"
	# Still serving: status answers, the image is open, the guest's
	# mailbox reads go on through the daemon.
	lv_assert_status "$LV_REL/ns.raw" none
	mh_backing_fd "$img"
	mh_assert_mode_flags none "$MH_BFLAGS"
	# GO through the mount, where it still is: in QEMU's namespace.
	printf 'VCGUEST GO seed=%s\n' "$LV_SEED" |
	    nsenter -t "$qpid" -m dd of="$img" bs=512 seek=$((LV_MAILBOX / 512)) \
	    conv=notrunc,fsync status=none
	lv_wait_done
	# The last close ends the daemon, as an unmount does.
	vc_wait_exit "$VC_PID" 60
	lv_assert_restored ns.raw
	lv_assert_disk "$LV_UNDER/$LV_REL/ns.raw" 1
}
