#!/usr/bin/env bats
# Image awareness: formats and backing chains decide the modes of images
# that no section names; image contents never steer another image's mode.

load helper
load modes_helper

setup() {
	mh_setup
	cd "$VC_SRC"
}

teardown() {
	cd /
	mh_teardown
}

check() {	# run --check-config with MH_CONF over VC_SRC
	run "$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
}

chain3() {	# base.qcow2 <- mid.qcow2 <- top.qcow2
	qemu-img create -q -f qcow2 base.qcow2 16M
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
	qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
}

@test "check-config shows format, virtual size and the chain of 3" {
	chain3
	mh_conf writeback '[top.qcow2]' 'cache = none'
	check
	assert_success
	assert_line "top.qcow2: cache=none aio=threads readonly=no (from [top.qcow2])"
	assert_line "    format=qcow2 virtual-size=16777216 chain: top.qcow2 -> mid.qcow2 -> base.qcow2"
	assert_line "mid.qcow2: cache=none aio=threads readonly=no (from inherited down from top.qcow2)"
	assert_line "base.qcow2: cache=none aio=threads readonly=no (from inherited down from top.qcow2)"
}

@test "the backing file of a none overlay is opened O_DIRECT while qemu-io reads the overlay" {
	chain3
	qemu-io -f qcow2 -c 'write -P 0x42 0 1M' base.qcow2 >/dev/null
	mh_mount writeback '[top.qcow2]' 'cache = none'
	qemu-io -f qcow2 -c 'read -P 0x42 0 1M' -c 'sleep 4000' "$VC_MNT/top.qcow2" \
		>"$VC_TMP/qio.out" 2>&1 &
	local qio=$! i
	for i in $(seq 1 100); do
		[ -n "$(mh_backing_fds "$VC_SRC/base.qcow2")" ] && break
		sleep 0.05
	done
	mh_backing_fd "$VC_SRC/base.qcow2"
	mh_assert_mode_flags none "$MH_BFLAGS"
	mh_backing_fd "$VC_SRC/mid.qcow2"
	mh_assert_mode_flags none "$MH_BFLAGS"
	wait "$qio"
	grep -q "read 1048576/1048576" "$VC_TMP/qio.out"
}

@test "a snapshot made with qemu-img create -b on a none image runs as none" {
	qemu-img create -q -f qcow2 disk.qcow2 16M
	mh_mount writeback '[disk.qcow2]' 'cache = none' 'aio = native'
	qemu-img create -q -f qcow2 -b disk.qcow2 -F qcow2 "$VC_MNT/snap1.qcow2"
	run "$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
	assert_line "snap1.qcow2: cache=none aio=native readonly=no (from inherited up from disk.qcow2 [disk.qcow2])"
	mh_open_fd "<>" "$VC_MNT/snap1.qcow2"
	mh_backing_fd "$VC_SRC/snap1.qcow2"
	mh_assert_mode_flags none "$MH_BFLAGS"
}

@test "an explicit section on the base beats inheritance" {
	chain3
	mh_conf writeback '[top.qcow2]' 'cache = none' '[base.qcow2]' 'cache = writeback'
	check
	assert_success
	assert_line "base.qcow2: cache=writeback aio=threads readonly=no (from [base.qcow2])"
	assert_line "mid.qcow2: cache=none aio=threads readonly=no (from inherited down from top.qcow2)"
}

@test "an unsafe overlay does not make its base unsafe" {
	chain3
	mh_conf writethrough '[top.qcow2]' 'cache = unsafe'
	check
	assert_success
	assert_line "top.qcow2: cache=unsafe aio=threads readonly=no (from [top.qcow2])"
	assert_line "base.qcow2: cache=writethrough aio=threads readonly=no (from [global] (as safe as its overlay top.qcow2))"
}

@test "the safest of two overlays wins below them, and readonly never travels" {
	qemu-img create -q -f qcow2 base.qcow2 16M
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 a.qcow2
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 b.qcow2
	mh_conf writeback '[a.qcow2]' 'cache = none' '[b.qcow2]' 'cache = directsync' \
		'readonly = yes'
	check
	assert_success
	assert_line "base.qcow2: cache=directsync aio=threads readonly=no (from inherited down from b.qcow2)"
}

@test "a raw image whose guest wrote a qcow2 header naming another image changes nothing" {
	qemu-img create -q -f qcow2 victim.qcow2 16M
	qemu-img create -q -f qcow2 -b victim.qcow2 -F qcow2 evil.qcow2
	cp evil.qcow2 guest.img		# raw image: its content is the guest's
	rm evil.qcow2
	mh_conf writeback '[guest.img]' 'cache = directsync'
	check
	assert_success
	assert_line "guest.img: cache=directsync aio=threads readonly=no (from [guest.img])"
	assert_line "victim.qcow2: cache=writeback aio=threads readonly=no (from [global])"
	# Through the mount as well: victim opens buffered.
	mh_mount writeback '[guest.img]' 'cache = directsync'
	mh_open_fd "<>" "$VC_MNT/guest.img"
	mh_open_fd "<" "$VC_MNT/victim.qcow2"
	mh_backing_fd "$VC_SRC/victim.qcow2"
	mh_assert_mode_flags writeback "$MH_BFLAGS"
}

@test "format = qcow2 probes other names; format = raw stops probing" {
	qemu-img create -q -f qcow2 base.qcow2 16M
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 vm.disk
	qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 plain.qcow2
	mh_conf writeback '[vm.disk]' 'cache = none' 'format = qcow2' \
		'[plain.qcow2]' 'cache = unsafe' 'format = raw'
	check
	assert_success
	assert_line "    format=qcow2 virtual-size=16777216 chain: vm.disk -> base.qcow2"
	assert_line "base.qcow2: cache=none aio=threads readonly=no (from inherited down from vm.disk)"
	# plain.qcow2 is read as raw: no chain, and base is not its overlay's.
	run "$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
	local n
	n=$(grep -A1 '^plain.qcow2:' <<<"$output" | tail -1)
	[ "$n" = "    format=raw" ]
}

@test "[format:qcow2] applies to qcow2 images no name section claims" {
	qemu-img create -q -f qcow2 a.qcow2 16M
	qemu-img create -q -f raw r.img 16M
	mh_conf writeback '[format:qcow2]' 'cache = none' '[format:raw]' 'cache = writethrough'
	check
	assert_success
	assert_line "a.qcow2: cache=none aio=threads readonly=no (from [format:qcow2])"
	assert_line "r.img: cache=writethrough aio=threads readonly=no (from [format:raw])"
}

@test "qcow2 v2, v3, LUKS, zstd and extended_l2 images are recognised, their chains kept" {
	qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 16M
	qemu-img create -q -f qcow2 -o compat=1.1 v3.qcow2 16M
	# LUKS times its key derivation; under load qemu-img may fail to: retry.
	for i in 1 2 3; do
		qemu-img create -q -f qcow2 --object secret,id=s0,data=pass \
			-o encrypt.format=luks,encrypt.key-secret=s0 luks.qcow2 16M && break
	done
	[ -s luks.qcow2 ]
	qemu-img create -q -f qcow2 -o compression_type=zstd -b v3.qcow2 -F qcow2 zstd.qcow2
	qemu-img create -q -f qcow2 -o extended_l2=on -b v2.qcow2 -F qcow2 ext.qcow2
	mh_conf writeback '[zstd.qcow2]' 'cache = none' '[ext.qcow2]' 'cache = directsync'
	check
	assert_success
	assert_line "    format=qcow2 virtual-size=16777216 chain: zstd.qcow2 -> v3.qcow2"
	assert_line "    format=qcow2 virtual-size=16777216 chain: ext.qcow2 -> v2.qcow2"
	assert_line "v3.qcow2: cache=none aio=threads readonly=no (from inherited down from zstd.qcow2)"
	assert_line "v2.qcow2: cache=directsync aio=threads readonly=no (from inherited down from ext.qcow2)"
	assert_line "    format=qcow2 virtual-size=16777216 chain: luks.qcow2"
	refute_output --partial "warning"
}

@test "a chain loop and a missing backing file are reported, not fatal" {
	qemu-img create -q -f qcow2 a.qcow2 16M
	qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
	qemu-img rebase -u -f qcow2 -b b.qcow2 -F qcow2 a.qcow2
	qemu-img create -q -f qcow2 c.qcow2 16M
	qemu-img create -q -f qcow2 -b c.qcow2 -F qcow2 d.qcow2
	rm c.qcow2
	mh_conf writeback
	check
	assert_success
	assert_output --partial "note: a.qcow2: backing chain loops at a.qcow2"
	assert_output --partial "note: d.qcow2: backing file c.qcow2 is missing"
	mh_mount writeback
	run qemu-img info -U "$VC_MNT/d.qcow2"
	assert_success
	cat "$VC_MNT/a.qcow2" >/dev/null
}

@test "backing names outside the mount, json: and protocol names are ignored" {
	qemu-img create -q -f qcow2 base.qcow2 16M
	qemu-img create -q -f qcow2 -b "$VC_SRC/base.qcow2" -F qcow2 abs.qcow2
	qemu-img create -q -f qcow2 -u -b /etc/hostname -F raw out.qcow2 16M
	qemu-img create -q -f qcow2 -u -b 'nbd://127.0.0.1:1/x' -F raw nbd.qcow2 16M
	qemu-img create -q -f qcow2 -u -b '../../etc/passwd' -F raw esc.qcow2 16M
	mh_conf writeback '[abs.qcow2]' 'cache = none'
	check
	assert_success
	assert_line "base.qcow2: cache=none aio=threads readonly=no (from inherited down from abs.qcow2)"
	assert_output --partial "note: out.qcow2: backing file ignored: absolute backing name outside the mount"
	assert_output --partial "note: nbd.qcow2: backing file ignored: protocol backing name"
	assert_output --partial "note: esc.qcow2: backing file ignored: backing name escapes the mount"
}

@test "opening an overlay switches a base already open to the mode it implies" {
	chain3
	# A glob names top, so top is no configured overlay until it is open.
	mh_mount writeback '[top*.qcow2]' 'cache = none'
	mh_open_fd "<" "$VC_MNT/base.qcow2"
	mh_backing_fd "$VC_SRC/base.qcow2"
	mh_assert_mode_flags writeback "$MH_BFLAGS"
	mh_open_fd "<" "$VC_MNT/top.qcow2"
	# Switched live before top's open returned (reload.bats has more).
	grep -q "base.qcow2: cache=writeback aio=threads -> cache=none .*(top.qcow2 opened)" "$VC_LOG"
	mh_backing_fd "$VC_SRC/base.qcow2"
	mh_assert_mode_flags none "$MH_BFLAGS"
}

@test "probing a none image leaves none of it in the page cache" {
	qemu-img create -q -f qcow2 base.qcow2 16M
	mh_evict base.qcow2
	mh_mount writeback '[base.qcow2]' 'cache = none'
	qemu-io -f qcow2 -t none -c 'write -P 0x11 0 1M' -c 'read -P 0x11 0 1M' \
		"$VC_MNT/base.qcow2" >/dev/null
	[ "$(mh_resident "$VC_SRC/base.qcow2")" -eq 0 ]
}

@test "every crafted bad header is probed without harm and served as a plain file" {
	local f n=0
	for f in "$BATS_TEST_DIRNAME"/../images/bad/*; do
		case $f in *.note|*.txt|*.md|*.py) continue ;; esac
		cp "$f" "$VC_SRC/"
		n=$((n + 1))
	done
	[ "$n" -gt 10 ]
	mh_conf writeback '[format:qcow2]' 'cache = none'
	run timeout 30 "$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
	assert_success
	mh_mount writeback '[format:qcow2]' 'cache = none'
	for f in "$VC_SRC"/*; do
		cmp "$f" "$VC_MNT/${f##*/}"
	done
	vc_check_log
}
