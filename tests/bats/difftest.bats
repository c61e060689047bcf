#!/usr/bin/env bats
# The randomized differential tester: the same seeded pwrite/pread/
# ftruncate/fallocate/fstat sequence on a file through the mount and on a
# reference file in a plain directory must give the same results and the
# same bytes, buffered, O_DIRECT, O_DSYNC and with fdatasync, in every cache
# mode and mounted in place. The backing file must equal the reference
# afterwards. Injected corruption must be caught, so that the suite cannot
# pass vacuously.

load helper
load data_helper

setup() {
	vc_setup
	dh_setup
	DT=$VC_TOOLS/difftest
	if [ ! -x "$DT" ]; then
		echo "difftest is not built: $DT (run make asan)" >&2
		return 1
	fi
}

teardown() {
	dh_cleanup
	vc_teardown
}

# dt NAME ARGS...: run difftest on $DH_MNT/NAME against $DH_REF/NAME.ref,
# expect agreement, then compare the backing file and the mount's view
# with the reference once more, outside difftest.
dt() {
	local name=$1
	shift
	run "$DT" --test "$DH_MNT/$name" --ref "$DH_REF/$name.ref" "$@"
	assert_success
	assert_output --regexp 'seed [0-9]+: [0-9]+ ops, [1-9][0-9]* comparisons, OK'
	dh_cmp "$DH_BACK/$name" "$DH_REF/$name.ref"
	dh_cmp "$DH_MNT/$name" "$DH_REF/$name.ref"
	dh_same "$name size" "$(stat -c %s "$DH_BACK/$name")" "$(stat -c %s "$DH_REF/$name.ref")"
}

@test "difftest buffered, seed 1, 3000 ops" {
	dh_mount source
	dt a --seed 1 --ops 3000
}

@test "difftest buffered, seed 2, 3000 ops" {
	dh_mount source
	dt a --seed 2 --ops 3000
}

@test "difftest buffered, seed 3, 3000 ops, 64 MiB files" {
	dh_mount source
	dt a --seed 3 --ops 3000 --max-size 64M
}

@test "difftest O_DIRECT, seed 1, 3000 ops" {
	dh_mount source
	dt a --seed 1 --ops 3000 --direct
}

@test "difftest O_DIRECT, seed 2, 3000 ops" {
	dh_mount source
	dt a --seed 2 --ops 3000 --direct
}

@test "difftest O_DIRECT, seed 3, 3000 ops, 64 MiB files" {
	dh_mount source
	dt a --seed 3 --ops 3000 --direct --max-size 64M
}

@test "difftest O_DSYNC, seed 4, 3000 ops" {
	dh_mount source
	dt a --seed 4 --ops 3000 --dsync
}

@test "difftest O_DIRECT|O_DSYNC with fdatasync every 10 ops, seed 5" {
	dh_mount source
	dt a --seed 5 --ops 3000 --direct --dsync --fsync-every 10
}

@test "difftest buffered with fdatasync every 7 ops and a compare every op, seed 6" {
	dh_mount source
	dt a --seed 6 --ops 1000 --fsync-every 7 --batch 1
}

@test "difftest, two files at once through the mount (buffered and O_DIRECT), seed 7" {
	dh_mount source
	"$DT" --test "$DH_MNT/p" --ref "$DH_REF/p.ref" --seed 7 --ops 3000 >"$VC_TMP/p.out" 2>&1 &
	local p=$!
	dh_bg "$p"
	dt q --seed 8 --ops 3000 --direct
	wait "$p" || { cat "$VC_TMP/p.out"; false; }
	dh_cmp "$DH_BACK/p" "$DH_REF/p.ref"
}

# One buffered and one O_DIRECT run in each cache mode.
dt_mode() {	# MODE
	dh_mount source -c "$(dh_conf "$1")"
	dt buf --seed 11 --ops 2000
	dt dio --seed 12 --ops 2000 --direct
	dt sync --seed 13 --ops 1000 --dsync --fsync-every 5
}

@test "difftest in cache=writeback" { dt_mode writeback; }
@test "difftest in cache=writethrough" { dt_mode writethrough; }
@test "difftest in cache=none" { dt_mode none; }
@test "difftest in cache=directsync" { dt_mode directsync; }
@test "difftest in cache=unsafe" { dt_mode unsafe; }

@test "difftest mounted in place over the image directory, buffered and O_DIRECT" {
	dh_mount inplace
	dt a --seed 21 --ops 3000
	dt b --seed 22 --ops 3000 --direct
}

# ---- the tester can fail ----

inject() {	# ARGS...
	dh_mount source
	run "$DT" --test "$DH_MNT/f" --ref "$DH_REF/f.ref" --seed 1 --ops 3000 "$@"
	assert_failure 1
	assert_output --partial "inject-fault: flipped byte"
	assert_output --regexp 'seed 1: FAIL at step [0-9]+'
	assert_output --partial "replay: --seed 1"
	refute_output --partial "comparisons, OK"
}

@test "difftest detects an injected corruption (buffered)" {
	inject --inject-fault 500
}

@test "difftest detects an injected corruption (O_DIRECT)" {
	inject --inject-fault 700 --direct
}

@test "difftest exits 2 on a setup error, not 0 or 1" {
	dh_mount source
	run "$DT" --test "$DH_MNT/f" --ref "$VC_TMP/no/such/dir/f.ref" --seed 1 --ops 10
	assert_failure 2
}

# ---- concurrent aligned and unaligned writes over the same blocks ----

# Per round and lane, one thread's aligned pwrite and another's unaligned
# pwrite overlapping it, at once. An edge rewrite used to run under the
# aligned write and put old bytes back inside its range.
dt_overlap() {	# CACHE AIO [difftest options...]
	printf '[global]\ncache = %s\naio = %s\n' "$1" "$2" >"$VC_TMP/vcachefs.conf"
	shift 2
	dh_mount source -c "$VC_TMP/vcachefs.conf"
	run timeout 120 "$DT" --test "$DH_MNT/ov" --overlap --seed 31 "$@"
	assert_success
	assert_output --regexp 'seed 31: overlap: [0-9]+ rounds x [0-9]+ lanes, OK'
}

@test "difftest --overlap: aligned and unaligned writers over the same blocks, cache=none" {
	dt_overlap none threads --rounds 600
}

@test "difftest --overlap: aligned and unaligned writers over the same blocks, cache=directsync" {
	dt_overlap directsync threads --rounds 600
}

@test "difftest --overlap: aligned writes through io_uring (aio=native), cache=none" {
	dt_overlap none native --rounds 600
}

@test "difftest --overlap: O_DIRECT client, cache=none" {
	dt_overlap none threads --rounds 400 --direct
}
