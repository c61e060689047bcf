#!/usr/bin/env bats
# QEMU's own tools through the mount, with SOURCE and mounted in place over
# the image directory: qemu-img create/info/convert/check/compare/map and
# qemu-io with O_DIRECT and buffered I/O give the same images and answers as
# on the plain directory; QEMU's image locks (OFD) and POSIX/OFD locks
# conflict through the mount exactly as they do on the plain directory.

load helper
load data_helper

setup() {
	vc_setup
	dh_setup
}

teardown() {
	dh_cleanup
	vc_teardown
}

# ---- create, info ----

check_create_info() {	# MODE
	dh_mount "$1"
	local m=$DH_MNT b=$DH_BACK r=$DH_REF f

	for d in "$m" "$r"; do
		qemu-img create -q -f raw "$d/a.raw" 64M
		qemu-img create -q -f qcow2 "$d/a.qcow2" 64M
		qemu-img create -q -f qcow2 -o cluster_size=4096,lazy_refcounts=on "$d/small.qcow2" 10M
		qemu-img create -q -f raw -o preallocation=falloc "$d/falloc.raw" 8M
		qemu-img create -q -f raw -o preallocation=full "$d/full.raw" 4M
		qemu-img create -q -f qcow2 -o preallocation=metadata "$d/meta.qcow2" 16M
		qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 "$d/overlay.qcow2"
	done

	run qemu-img info --output=json "$m/a.raw"
	assert_success
	assert_output --partial '"format": "raw"'
	assert_output --partial '"virtual-size": 67108864'
	run qemu-img info --output=json "$m/a.qcow2"
	assert_success
	assert_output --partial '"format": "qcow2"'
	assert_output --partial '"virtual-size": 67108864'
	run qemu-img info "$m/overlay.qcow2"
	assert_success
	assert_output --partial "backing file: a.qcow2"

	for f in a.raw a.qcow2 small.qcow2 falloc.raw full.raw meta.qcow2 overlay.qcow2; do
		# The image file made through the mount is the one made on a plain
		# dir, byte for byte, in size and in allocation.
		dh_cmp "$b/$f" "$r/$f"
		dh_same "$f size, blocks" "$(dh_alloc "$b/$f")" "$(dh_alloc "$r/$f")"
		# info through the mount = info of the backing file read directly
		# = info of the plain copy (actual-size included).
		dh_same "$f info (mount vs backing)" "$(dh_img_info "$m/$f")" "$(dh_img_info "$b/$f")"
		dh_same "$f info (mount vs plain)" "$(dh_img_info "$m/$f")" "$(dh_img_info "$r/$f")"
	done
	dh_same "overlay chain" "$(dh_img_info --backing-chain "$m/overlay.qcow2")" \
		"$(dh_img_info --backing-chain "$r/overlay.qcow2")"
	# preallocation=falloc really allocated.
	[ "$(stat -c %b "$b/falloc.raw")" -ge $((8 << 11)) ]
}

@test "qemu-img create raw/qcow2 and info (SOURCE)" { check_create_info source; }
@test "qemu-img create raw/qcow2 and info (in place)" { check_create_info inplace; }

# ---- convert, check, compare, map ----

# A 32 MiB raw image with data in a few places and holes elsewhere.
make_raw() {	# FILE [qemu-io options]
	qemu-img create -q -f raw "$1" 32M
	qemu-io -f raw "${@:2}" -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1m 1m' \
		-c 'write -P 0x33 5000 3000' -c 'write -P 0x44 20m 4k' \
		-c 'write -z 1m 4k' -c 'write -P 0x55 32764k 4k' "$1" >/dev/null
}

check_convert() {	# MODE
	dh_mount "$1"
	local m=$DH_MNT b=$DH_BACK r=$DH_REF

	make_raw "$r/src.raw"
	cp --sparse=always "$r/src.raw" "$m/src.raw"
	dh_cmp "$b/src.raw" "$r/src.raw"

	for d in "$m" "$r"; do
		# raw -> qcow2, then qcow2 -> raw, through the mount.
		qemu-img convert -f raw -O qcow2 "$d/src.raw" "$d/a.qcow2"
		qemu-img convert -f qcow2 -O raw "$d/a.qcow2" "$d/back.raw"
		# The same with O_DIRECT on both ends, and compressed.
		qemu-img convert -t none -T none -f raw -O qcow2 "$d/src.raw" "$d/direct.qcow2"
		qemu-img convert -t none -T none -f qcow2 -O raw "$d/direct.qcow2" "$d/direct.raw"
		qemu-img convert -c -f raw -O qcow2 "$d/src.raw" "$d/comp.qcow2"
	done

	for f in a.qcow2 back.raw direct.qcow2 direct.raw comp.qcow2; do
		dh_cmp "$b/$f" "$r/$f"
	done
	# The round trip is the original.
	dh_cmp "$b/back.raw" "$b/src.raw"
	dh_cmp "$m/direct.raw" "$r/src.raw"

	for f in a.qcow2 direct.qcow2 comp.qcow2; do
		run qemu-img check "$m/$f"
		assert_success
		assert_output --partial "No errors were found on the image."
		run qemu-img compare "$m/src.raw" "$m/$f"
		assert_success
		assert_output "Images are identical."
		# Mounted image vs the reference made on the plain dir.
		run qemu-img compare "$m/$f" "$r/$f"
		assert_success
		assert_output "Images are identical."
	done
	run qemu-img compare -f raw -F raw "$m/back.raw" "$r/src.raw"
	assert_success
	# compare does see a difference when there is one.
	qemu-io -f qcow2 -c 'write -P 0x66 300k 512' "$m/a.qcow2" >/dev/null
	run qemu-img compare "$m/a.qcow2" "$r/a.qcow2"
	assert_failure 1
	assert_output --partial "Content mismatch at offset 307200"
}

@test "qemu-img convert raw<->qcow2, check, compare (SOURCE)" { check_convert source; }
@test "qemu-img convert raw<->qcow2, check, compare (in place)" { check_convert inplace; }

check_map() {	# MODE
	dh_mount "$1"
	local m=$DH_MNT b=$DH_BACK r=$DH_REF f

	# A sparse raw written through the mount, and a qcow2 with data and
	# zero clusters, each made the same way on the plain dir.
	for d in "$m" "$r"; do
		make_raw "$d/sparse.raw"
		qemu-img create -q -f qcow2 "$d/q.qcow2" 32M
		qemu-io -f qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x22 3m 192k' \
			-c 'write -z 8m 128k' -c 'write -P 0x33 31m 4k' "$d/q.qcow2" >/dev/null
		qemu-img convert -f raw -O raw -S 4k "$d/sparse.raw" "$d/conv.raw"
	done
	for f in sparse.raw q.qcow2 conv.raw; do
		dh_evict "$b/$f" "$r/$f"
		mnt=$(qemu-img map --output=json "$m/$f")
		back=$(qemu-img map --output=json "$b/$f")
		ref=$(qemu-img map --output=json "$r/$f")
		echo "$f: $mnt"
		dh_same "$f map (mount vs backing)" "$mnt" "$back"
		dh_same "$f map (mount vs plain)" "$mnt" "$ref"
		# The human format names the file: compare it without the path.
		dh_same "$f map (human)" "$(qemu-img map "$m/$f" | sed "s|$m/||")" \
			"$(qemu-img map "$b/$f" | sed "s|$b/||")"
	done
	# The raw map really has holes and data (it is not one extent).
	run qemu-img map --output=json "$m/sparse.raw"
	assert_output --partial '"data": false'
	assert_output --partial '"data": true'
	[ "$(echo "$output" | grep -c '"data": true')" -ge 3 ]
}

@test "qemu-img map of sparse raw and qcow2 equals map of the backing file (SOURCE)" { check_map source; }
@test "qemu-img map of sparse raw and qcow2 equals map of the backing file (in place)" { check_map inplace; }

# ---- qemu-io, O_DIRECT and buffered ----

# Writes for -t none (qemu aligns them itself) and -t writeback, aligned
# to 512 and 4096 and not aligned at all.
QIO_WRITES=(-c 'write -P 0xab 0 4096' -c 'write -P 0xcd 512 512' -c 'write -P 0xef 8192 65536'
	-c 'write -P 0x5a 1000 3000' -c 'write -P 0x17 100001 7' -c 'write -P 0x99 1048575 2'
	-c 'write -z 70000 10000' -c 'write -P 0x42 4190000 4000')
QIO_READS=(-c 'read -P 0xab 0 512' -c 'read -P 0xcd 512 488' -c 'read -P 0x5a 1000 3000'
	-c 'read -P 0xab 4000 96' -c 'read -P 0xef 8192 61808' -c 'read -P 0 70000 10000'
	-c 'read -P 0 80000 20001' -c 'read -P 0 4096 4096' -c 'read -P 0x17 100001 7' -c 'read -P 0x99 1048575 2'
	-c 'read -P 0x42 4190000 4000' -c 'read -P 0 4194000 304')

check_qemu_io() {	# MODE CACHE FORMAT
	dh_mount "$1"
	local m=$DH_MNT b=$DH_BACK r=$DH_REF cache=$2 fmt=$3

	for d in "$m" "$r"; do
		qemu-img create -q -f "$fmt" "$d/io.img" 4M
	done
	run qemu-io -t "$cache" -f "$fmt" "${QIO_WRITES[@]}" "$m/io.img"
	assert_success
	refute_output --partial "error"
	qemu-io -t "$cache" -f "$fmt" "${QIO_WRITES[@]}" "$r/io.img" >/dev/null

	# Read back through the mount, with the same cache mode and the other one.
	for c in "$cache" none writeback; do
		run qemu-io -t "$c" -f "$fmt" "${QIO_READS[@]}" "$m/io.img"
		assert_success
		refute_output --partial "Pattern verification failed"
	done
	# The bytes are in the backing file: read it directly.
	run qemu-io -f "$fmt" "${QIO_READS[@]}" "$b/io.img"
	assert_success
	refute_output --partial "Pattern verification failed"
	# The whole image is the one made with the same writes on the plain dir.
	dh_cmp "$b/io.img" "$r/io.img"
	run qemu-img compare -f "$fmt" -F "$fmt" "$m/io.img" "$r/io.img"
	assert_success
	# A wrong pattern is caught (the reads above can fail).
	run qemu-io -t "$cache" -f "$fmt" -c 'read -P 0xac 0 512' "$m/io.img"
	assert_failure
	assert_output --partial "Pattern verification failed"
}

@test "qemu-io -t none (O_DIRECT) raw: patterns aligned and not (SOURCE)" { check_qemu_io source none raw; }
@test "qemu-io -t writeback raw: patterns aligned and not (SOURCE)" { check_qemu_io source writeback raw; }
@test "qemu-io -t none qcow2: patterns aligned and not (SOURCE)" { check_qemu_io source none qcow2; }
@test "qemu-io -t none (O_DIRECT) raw: patterns aligned and not (in place)" { check_qemu_io inplace none raw; }
@test "qemu-io -t writeback raw: patterns aligned and not (in place)" { check_qemu_io inplace writeback raw; }
@test "qemu-io -t writeback qcow2: patterns aligned and not (in place)" { check_qemu_io inplace writeback qcow2; }

# The AIO engines QEMU uses for aio=native (Linux AIO) and aio=io_uring,
# with O_DIRECT, and discard/write-zeroes with unmap (punch hole, zero
# range), whose allocation must match the plain dir's too.
check_qemu_aio() {	# MODE AIO FORMAT
	dh_mount "$1"
	local m=$DH_MNT b=$DH_BACK r=$DH_REF aio=$2 fmt=$3 d
	local more=(-c 'write -P 0x61 2m 1m' -c 'discard 2m 256k' -c 'write -z -u 2621440 64k'
		-c 'write -z 3m 4k' -c 'aio_write -P 0x62 3670016 65536' -c 'aio_flush'
		-c 'flush')
	for d in "$m" "$r"; do
		qemu-img create -q -f "$fmt" "$d/aio.img" 4M
	done
	run qemu-io -t none -i "$aio" -d unmap -f "$fmt" "${QIO_WRITES[@]}" "${more[@]}" "$m/aio.img"
	assert_success
	refute_output --partial "error"
	qemu-io -t none -i "$aio" -d unmap -f "$fmt" "${QIO_WRITES[@]}" "${more[@]}" "$r/aio.img" >/dev/null
	run qemu-io -t none -i "$aio" -f "$fmt" "${QIO_READS[@]}" -c 'read -P 0 2m 256k' \
		-c 'read -P 0x61 2359296 262144' -c 'read -P 0 2621440 64k' -c 'read -P 0x62 3670016 65536' \
		"$m/aio.img"
	assert_success
	refute_output --partial "Pattern verification failed"
	dh_evict "$b/aio.img" "$r/aio.img"
	dh_same "map" "$(qemu-img map --output=json -f "$fmt" "$m/aio.img")" \
		"$(qemu-img map --output=json -f "$fmt" "$r/aio.img")"
	dh_same "allocation" "$(dh_alloc "$b/aio.img")" "$(dh_alloc "$r/aio.img")"
	dh_cmp "$b/aio.img" "$r/aio.img"
}

@test "qemu-io -t none -i native (Linux AIO), discard and unmap, raw (SOURCE)" { check_qemu_aio source native raw; }
@test "qemu-io -t none -i io_uring, discard and unmap, raw (in place)" { check_qemu_aio inplace io_uring raw; }
@test "qemu-io -t none -i native, discard and unmap, qcow2 (in place)" { check_qemu_aio inplace native qcow2; }
@test "qemu-io -t none -i io_uring, discard and unmap, qcow2 (SOURCE)" { check_qemu_aio source io_uring qcow2; }

@test "offsets past 4 GiB: 2 TiB sparse raw and qcow2 images" {
	dh_mount source
	local m=$DH_MNT b=$DH_BACK r=$DH_REF d f
	local w=(-c 'write -P 0x71 4294966784 1024' -c 'write -P 0x72 1099511627776 65536'
		-c 'write -P 0x73 2199023251456 4096' -c 'write -P 0x74 6000000000 3000')
	local rd=(-c 'read -P 0x71 4294966784 1024' -c 'read -P 0x72 1099511627776 65536'
		-c 'read -P 0x73 2199023251456 4096' -c 'read -P 0x74 6000000000 3000'
		-c 'read -P 0 4294967808 512')
	for d in "$m" "$r"; do
		qemu-img create -q -f raw "$d/big.raw" 2T
		qemu-img create -q -f qcow2 "$d/big.qcow2" 2T
	done
	for f in raw qcow2; do
		for d in "$m" "$r"; do
			qemu-io -f "$f" "${w[@]}" "$d/big.$f" >/dev/null
		done
		for c in none writeback; do
			run qemu-io -t "$c" -f "$f" "${rd[@]}" "$m/big.$f"
			assert_success
			refute_output --partial "Pattern verification failed"
		done
		run qemu-io -f "$f" "${rd[@]}" "$b/big.$f"
		assert_success
		dh_same "big.$f size, blocks" "$(dh_alloc "$b/big.$f")" "$(dh_alloc "$r/big.$f")"
		dh_same "big.$f map" "$(qemu-img map --output=json "$m/big.$f")" \
			"$(qemu-img map --output=json "$r/big.$f")"
	done
	[ "$(stat -c %s "$b/big.raw")" -eq $((2 << 40)) ]
	dh_cmp "$b/big.qcow2" "$r/big.qcow2"
	run qemu-img compare "$m/big.raw" "$m/big.qcow2"
	assert_success
}

@test "qemu-img resize, snapshot, commit, rebase, amend give the plain dir's images" {
	dh_mount inplace
	local m=$DH_MNT b=$DH_BACK r=$DH_REF d f
	for d in "$m" "$r"; do
		qemu-img create -q -f qcow2 "$d/base.qcow2" 32M
		qemu-io -f qcow2 -c 'write -P 0x11 0 1m' -c 'write -P 0x12 10m 64k' "$d/base.qcow2" >/dev/null
		qemu-img snapshot -c snap1 "$d/base.qcow2"
		qemu-io -f qcow2 -c 'write -P 0x13 0 64k' "$d/base.qcow2" >/dev/null
		qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$d/top.qcow2"
		qemu-io -f qcow2 -c 'write -P 0x14 5m 128k' -c 'write -z 10m 4k' "$d/top.qcow2" >/dev/null
		qemu-img commit -q "$d/top.qcow2"
		qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$d/top2.qcow2"
		qemu-io -f qcow2 -c 'write -P 0x15 20m 64k' "$d/top2.qcow2" >/dev/null
		qemu-img convert -O qcow2 "$d/base.qcow2" "$d/newbase.qcow2"
		qemu-img rebase -f qcow2 -b newbase.qcow2 -F qcow2 "$d/top2.qcow2"
		qemu-img rebase -f qcow2 -b '' "$d/top2.qcow2"
		qemu-img snapshot -a snap1 "$d/base.qcow2"
		qemu-img snapshot -c snap2 "$d/base.qcow2"
		qemu-img snapshot -d snap1 "$d/base.qcow2"
		qemu-img resize -q "$d/base.qcow2" 64M
		qemu-img amend -f qcow2 -o lazy_refcounts=on "$d/base.qcow2"
		qemu-img create -q -f raw "$d/r.raw" 8M
		qemu-io -f raw -c 'write -P 0x16 0 8m' "$d/r.raw" >/dev/null
		qemu-img resize -q -f raw --shrink "$d/r.raw" 5000000
		qemu-img resize -q -f raw --preallocation=falloc "$d/r.raw" 12M
		qemu-img resize -q -f raw "$d/r.raw" +1M
	done
	# Snapshots carry timestamps: base.qcow2 is compared by content, per
	# snapshot, the others byte for byte.
	for f in top.qcow2 top2.qcow2 newbase.qcow2 r.raw; do
		dh_cmp "$b/$f" "$r/$f"
		dh_same "$f size, blocks" "$(dh_alloc "$b/$f")" "$(dh_alloc "$r/$f")"
	done
	dh_same "base.qcow2 size" "$(stat -c %s "$b/base.qcow2")" "$(stat -c %s "$r/base.qcow2")"
	for f in base.qcow2 top.qcow2 top2.qcow2 newbase.qcow2 r.raw; do
		if [ "${f##*.}" = qcow2 ]; then
			run qemu-img check "$m/$f"
			assert_success
		fi
		run qemu-img compare "$m/$f" "$r/$f"
		assert_success
	done
	for d in "$m" "$r"; do
		qemu-img convert -l snapshot.name=snap2 -O raw "$d/base.qcow2" "$VC_TMP/snap2.${d##*/}"
	done
	dh_cmp "$VC_TMP/snap2.${m##*/}" "$VC_TMP/snap2.${r##*/}"
	dh_same "qemu-img info" "$(dh_img_info "$m/base.qcow2" | sed 's/"date-[a-z]*": [0-9]*//g; s/"vm-clock-[a-z]*": [0-9]*//g')" \
		"$(dh_img_info "$r/base.qcow2" | sed 's/"date-[a-z]*": [0-9]*//g; s/"vm-clock-[a-z]*": [0-9]*//g')"
	run qemu-img snapshot -l "$m/base.qcow2"
	assert_output --partial snap2
	refute_output --partial snap1
	[ "$(stat -c %s "$b/r.raw")" -eq $((13 << 20)) ]
	run qemu-io -f raw -c 'read -P 0x16 0 5000000' -c 'read -P 0 5000000 8631488' "$m/r.raw"
	assert_success
	refute_output --partial "Pattern verification failed"
}

@test "qemu-img convert -W -m 16 -t none (parallel, out of order O_DIRECT writes)" {
	dh_mount source
	local m=$DH_MNT b=$DH_BACK r=$DH_REF
	make_raw "$VC_TMP/orig.raw"
	qemu-io -f raw -c 'write -P 0x77 2m 16m' "$VC_TMP/orig.raw" >/dev/null
	# cp --sparse=always (SEEK_DATA, zero detection) into both.
	cp --sparse=always "$VC_TMP/orig.raw" "$m/src.raw"
	cp --sparse=always "$VC_TMP/orig.raw" "$r/src.raw"
	dh_cmp "$b/src.raw" "$r/src.raw"
	dh_same "sparse copy allocation" "$(dh_alloc "$b/src.raw")" "$(dh_alloc "$r/src.raw")"
	qemu-img convert -W -m 16 -t none -T none -f raw -O raw "$m/src.raw" "$m/out.raw"
	qemu-img convert -W -m 16 -t none -f raw -O qcow2 -o cluster_size=16k "$m/src.raw" "$m/out.qcow2"
	dh_cmp "$b/out.raw" "$r/src.raw"
	run qemu-img compare "$m/out.qcow2" "$r/src.raw"
	assert_success
	run qemu-img check "$m/out.qcow2"
	assert_success
}

@test "qemu-img map and qemu-io in cache=none (the daemon's O_DIRECT backing)" {
	dh_mount source -c "$(dh_conf none)"
	local m=$DH_MNT b=$DH_BACK r=$DH_REF d f
	# The reference is written with O_DIRECT too: on ext4, whether a zeroed
	# (unwritten) range counts as data for SEEK_DATA depends on the page cache.
	for d in "$m" "$r"; do
		make_raw "$d/sparse.raw" -t none
		qemu-img create -q -f qcow2 "$d/q.qcow2" 32M
		qemu-io -f qcow2 -t none -c 'write -P 0x11 0 64k' -c 'write -P 0x22 3m 192k' \
			-c 'write -z 8m 128k' -c 'write -P 0x33 100000 3000' "$d/q.qcow2" >/dev/null
	done
	for f in sparse.raw q.qcow2; do
		dh_evict "$b/$f" "$r/$f"
		dh_same "$f map (mount vs backing)" "$(qemu-img map --output=json "$m/$f")" \
			"$(qemu-img map --output=json "$b/$f")"
		dh_same "$f map (mount vs plain)" "$(qemu-img map --output=json "$m/$f")" \
			"$(qemu-img map --output=json "$r/$f")"
		dh_same "$f size, blocks" "$(dh_alloc "$b/$f")" "$(dh_alloc "$r/$f")"
	done
	for f in sparse.raw q.qcow2; do
		dh_cmp "$b/$f" "$r/$f"
	done
}

# ---- QEMU image locking ----

# QEMU's image locks are OFD locks on bytes 100+ (permissions held) and
# 200+ (permissions not shared) of the image file. A qemu-io holds the
# write permission; a qcow2 node never shares write on its file, and
# qemu-img convert never shares write on its source, so those openers
# conflict with the holder. Raw openers without -U share everything.

# Does process PID hold IMG open with an OFD lock line matching PATTERN
# (/proc/PID/fdinfo lists the locks of each descriptor)?
holds_lock() {	# PID IMG PATTERN
	local f
	for f in /proc/"$1"/fd/*; do
		[ "$(readlink "$f" 2>/dev/null)" = "$2" ] || continue
		grep -q "^lock:.*OFDLCK.*$3" /proc/"$1"/fdinfo/"${f##*/}" 2>/dev/null && return 0
	done
	return 1
}

# Start a qemu-io that holds IMG open read-write for a long time, and wait
# until it has taken all its lock bytes (the last one is 101 for raw, the
# "resize not shared" byte 203 for qcow2). Sets QHOLDER.
qemu_hold() {	# FORMAT IMG
	local i last=' 100 101$'
	[ "$1" = qcow2 ] && last=' 203 203$'
	qemu-io -f "$1" -c 'sleep 600000' "$2" >"$VC_TMP/holder.out" 2>&1 </dev/null &
	QHOLDER=$!
	dh_bg "$QHOLDER"
	for i in $(seq 1 200); do
		holds_lock "$QHOLDER" "$2" "$last" && return 0
		kill -0 "$QHOLDER" 2>/dev/null || { cat "$VC_TMP/holder.out" >&2; return 1; }
		sleep 0.05
	done
	echo "qemu-io did not take its image locks in 10 s:" >&2
	cat /proc/locks >&2
	return 1
}

# One command: "rc=N" and its output, with the image's directory removed.
q() {	# DIR CMD...
	local d=$1 out rc
	shift
	out=$("$@" 2>&1) && rc=0 || rc=$?
	printf '%s: rc=%s\n%s\n' "$*" "$rc" "$out" | sed "s|$d/||g; s|; [0-9:.]* sec .*||"
}

# The answers of second openers while a writer holds DIR/lock.img, and
# after it has gone: a transcript to compare between mount and plain dir.
lock_transcript() {	# FORMAT DIR
	local f=$1 d=$2 img=$2/lock.img
	qemu_hold "$f" "$img" || return 1
	echo "== while held"
	q "$d" qemu-img info -f "$f" "$img"
	q "$d" qemu-img convert -f "$f" -O raw "$img" "$VC_TMP/c.raw"
	q "$d" qemu-img convert -U -f "$f" -O raw "$img" "$VC_TMP/c.raw"
	q "$d" qemu-io -f "$f" -c 'read 0 512' "$img"
	q "$d" qemu-io -r -f "$f" -c 'read 0 512' "$img"
	q "$d" qemu-img info -U -f "$f" "$img"
	q "$d" qemu-io -r -U -f "$f" -c 'read 0 512' "$img"
	q "$d" qemu-img resize -f "$f" "$img" 32M
	dh_bg_stop "$QHOLDER"
	echo "== after the holder exited"
	q "$d" qemu-img info -f "$f" "$img"
	q "$d" qemu-img convert -f "$f" -O raw "$img" "$VC_TMP/c.raw"
	q "$d" qemu-io -f "$f" -c 'write -P 1 0 512' "$img"
	q "$d" qemu-img resize -f "$f" "$img" 32M
}

check_locks() {	# MODE FORMAT
	local f=$2
	dh_mount "$1"
	qemu-img create -q -f "$f" "$DH_MNT/lock.img" 16M
	qemu-img create -q -f "$f" "$DH_REF/lock.img" 16M
	# The plain directory: this is what QEMU expects.
	# (Not in $(...): the holder must stay known to dh_cleanup.)
	lock_transcript "$f" "$DH_REF" >"$VC_TMP/ref.txt"
	# Through the mount: the same.
	lock_transcript "$f" "$DH_MNT" >"$VC_TMP/mnt.txt"
	ref=$(cat "$VC_TMP/ref.txt")
	mnt=$(cat "$VC_TMP/mnt.txt")
	echo "$mnt"
	dh_same "lock conflicts (mount vs plain)" "$mnt" "$ref"

	# And the essential facts, explicitly.
	held=${mnt%%== after*}
	after=${mnt#*== after}
	grep -A2 "^qemu-img convert -f $f .*: rc=1$" <<<"$held" | grep -q 'Failed to get shared "write" lock'
	grep -q "^qemu-img convert -U .*: rc=0$" <<<"$held"
	grep -q "^qemu-img info -U .*: rc=0$" <<<"$held"
	grep -q "^qemu-io -r -U .*: rc=0$" <<<"$held"
	if [ "$f" = qcow2 ]; then
		grep -A1 "^qemu-img info -f qcow2 lock.img: rc=1$" <<<"$held" | grep -q 'Failed to get shared "write" lock'
		grep -A1 "^qemu-io -f qcow2 .*: rc=1$" <<<"$held" | grep -q 'Failed to get "write" lock'
		grep -A1 "^qemu-img resize .*: rc=1$" <<<"$held" | grep -q 'lock'
	fi
	run grep -E 'rc=[1-9]|Failed to get' <<<"$after"
	assert_failure

	# A holder of one image does not block another image on the mount.
	qemu-img create -q -f "$f" "$DH_MNT/other.img" 16M
	qemu_hold "$f" "$DH_MNT/lock.img"
	run qemu-img convert -f "$f" -O raw "$DH_MNT/other.img" "$VC_TMP/o.raw"
	assert_success
	run qemu-img info -f "$f" "$DH_MNT/other.img"
	assert_success
}

@test "qemu image lock: openers conflict with a qemu-io holding a raw image (SOURCE)" { check_locks source raw; }
@test "qemu image lock: openers conflict with a qemu-io holding a qcow2 image (SOURCE)" { check_locks source qcow2; }
@test "qemu image lock: openers conflict with a qemu-io holding a raw image (in place)" { check_locks inplace raw; }
@test "qemu image lock: openers conflict with a qemu-io holding a qcow2 image (in place)" { check_locks inplace qcow2; }

# ---- POSIX and OFD locks between processes ----

check_fcntl_locks() {	# KIND DIR
	local kind=$1 d=$2 other
	other=posix
	[ "$kind" = posix ] && other=ofd
	head -c 8192 /dev/zero >"$d/lk"
	dh_hold_lock "$kind" "$d/lk" 0 4096
	# Overlapping range, same kind and the other kind: conflict.
	run dh_py try "$kind" "$d/lk" 100 10
	assert_failure 3
	run dh_py try "$other" "$d/lk" 4095 10
	assert_failure 3
	# A range beside it: no conflict.
	run dh_py try "$kind" "$d/lk" 4096 4096
	assert_success
	run dh_py getlk "$kind" "$d/lk" 0 0
	if [ "$kind" = posix ]; then
		assert_output "write 0 4096 pid=$DH_HOLDER"
	else
		assert_output "write 0 4096 pid=-1"
	fi
	# Released when the holder exits.
	dh_bg_stop "$DH_HOLDER"
	run dh_py try "$kind" "$d/lk" 100 10
	assert_success
	run dh_py getlk "$kind" "$d/lk" 0 0
	assert_output --partial "unlocked"
}

@test "fcntl F_SETLK (POSIX) locks conflict between processes through the mount" {
	dh_mount source
	check_fcntl_locks posix "$DH_REF"
	check_fcntl_locks posix "$DH_MNT"
}

@test "fcntl F_OFD_SETLK locks conflict between processes and descriptions through the mount" {
	dh_mount inplace
	check_fcntl_locks ofd "$DH_REF"
	check_fcntl_locks ofd "$DH_MNT"
	# Within one process: two open file descriptions conflict with OFD locks.
	echo x >"$DH_REF/self"
	echo x >"$DH_MNT/self"
	mnt=$(dh_py ofd-self "$DH_MNT/self")
	ref=$(dh_py ofd-self "$DH_REF/self")
	echo "$mnt"
	dh_same "OFD locks in one process" "$mnt" "$ref"
	echo "$mnt" | grep -q "^ofd: conflict"
}

@test "flock(2) locks conflict between processes through the mount, as on the plain dir" {
	dh_mount source
	local d
	for d in "$DH_REF" "$DH_MNT"; do
		: >"$d/fl"
		flock -x "$d/fl" sleep 600 </dev/null >/dev/null 2>&1 &
		local p=$!
		dh_bg "$p"
		# Wait until the holder has its lock: a non-blocking try fails.
		for i in $(seq 1 200); do
			flock -n -s "$d/fl" true || break
			sleep 0.05
		done
		run flock -n -x "$d/fl" true
		assert_failure 1
		run flock -n -s "$d/fl" true
		assert_failure 1
		# A different file is not locked.
		: >"$d/fl2"
		run flock -n -x "$d/fl2" true
		assert_success
		# The lock goes with the holder (kill the sleep, flock's child, too).
		pkill -P "$p" 2>/dev/null || true
		dh_bg_stop "$p"
		run flock -w 10 -x "$d/fl" true
		assert_success
	done
}
