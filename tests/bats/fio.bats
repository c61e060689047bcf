#!/usr/bin/env bats
# fio with crc32c verification through the mount: psync and io_uring,
# buffered and O_DIRECT, 4k and 64k random writes, four jobs on four files
# and four jobs on regions of one file. After each run the backing files
# are verified again, directly, by fio --verify_only: the data that fio
# checked through the mount is the data on the backing store.

load helper
load data_helper

setup() {
	vc_setup
	dh_setup
	vc_mount "$VC_SRC" "$VC_MNT"
}

teardown() {
	dh_cleanup
	vc_teardown
}

# fio_run ARGS...: a verified random-write run through the mount; ARGS hold
# --directory=... or --filename=... and the job options.
fio_run() {
	run fio --name=v --rw=randwrite --verify=crc32c --do_verify=1 \
		--verify_fatal=1 --verify_state_save=0 --unlink=0 "$@"
	echo "$output" | grep -E 'err=|verify|bad|fail' || true
	assert_success
	dh_fio_clean "$output"
}

# The same job again with --verify_only on the backing files, directly.
fio_reverify() {	# ARGS... (with the path option already pointing at the backing dir)
	run fio --name=v --rw=randwrite --verify=crc32c --verify_only=1 \
		--verify_fatal=1 --verify_state_save=0 --unlink=0 "$@"
	assert_success
	dh_fio_clean "$output"
	# It did read (and so check) the data.
	assert_output --regexp 'READ: .*io=[1-9]'
}

# Four jobs, each on its own file (v.0.0 .. v.3.0).
separate_files() {	# ENGINE DIRECT BS
	local opts=(--ioengine="$1" --direct="$2" --bs="$3" --size=16M --numjobs=4 --iodepth=8)
	fio_run --directory="$VC_MNT" "${opts[@]}"
	[ "$(ls "$VC_SRC" | grep -c '^v\.[0-3]\.0$')" -eq 4 ]
	fio_reverify --directory="$VC_SRC" "${opts[@]}"
}

# Four jobs on one file, each in its own 8 MiB region (offset_increment).
one_file() {	# ENGINE DIRECT BS
	local opts=(--ioengine="$1" --direct="$2" --bs="$3" --size=8M --numjobs=4
		--offset_increment=8M --iodepth=8)
	fio_run --filename="$VC_MNT/one.img" "${opts[@]}"
	[ "$(stat -c %s "$VC_SRC/one.img")" -eq $((32 << 20)) ]
	fio_reverify --filename="$VC_SRC/one.img" "${opts[@]}"
}

@test "fio psync, buffered, 4k random writes, 4 jobs on 4 files, crc32c verified" {
	separate_files psync 0 4k
}

@test "fio psync, O_DIRECT, 64k random writes, 4 jobs on 4 files, crc32c verified" {
	separate_files psync 1 64k
}

@test "fio io_uring, buffered, 64k random writes, 4 jobs on 4 files, crc32c verified" {
	separate_files io_uring 0 64k
}

@test "fio io_uring, O_DIRECT, 4k random writes, 4 jobs on 4 files, crc32c verified" {
	separate_files io_uring 1 4k
}

@test "fio psync, buffered, 4k random writes, 4 jobs on regions of one file (offset_increment)" {
	one_file psync 0 4k
}

@test "fio io_uring, O_DIRECT, 64k random writes, 4 jobs on regions of one file (offset_increment)" {
	one_file io_uring 1 64k
}

@test "fio io_uring, O_DIRECT, 4k random writes, 4 jobs on regions of one file, iodepth 32" {
	local opts=(--ioengine=io_uring --direct=1 --bs=4k --size=8M --numjobs=4
		--offset_increment=8M --iodepth=32)
	fio_run --filename="$VC_MNT/one.img" "${opts[@]}"
	fio_reverify --filename="$VC_SRC/one.img" "${opts[@]}"
}

@test "fio mixed random read/write with fsync, buffered and O_DIRECT jobs on one file" {
	# Buffered and O_DIRECT openers of the same file at the same time, in
	# disjoint regions: the page cache and direct I/O must stay coherent.
	run fio --filename="$VC_MNT/mix.img" --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--verify_state_save=0 --unlink=0 --rw=randwrite --bs=16k --size=8M \
		--fsync=7 --ioengine=psync \
		--name=buf --direct=0 --offset=0 \
		--name=dio --direct=1 --offset=8M \
		--name=uring --direct=1 --ioengine=io_uring --iodepth=16 --offset=16M
	assert_success
	dh_fio_clean "$output"
	[ "$(stat -c %s "$VC_SRC/mix.img")" -eq $((24 << 20)) ]
}

@test "fio --verify_only detects a corrupted byte (the checks above can fail)" {
	local opts=(--ioengine=psync --direct=0 --bs=4k --size=4M --numjobs=1)
	fio_run --filename="$VC_MNT/c.img" "${opts[@]}"
	fio_reverify --filename="$VC_SRC/c.img" "${opts[@]}"
	# Flip two bytes in the middle of the backing file: the same
	# verification must now fail.
	printf '\x5a' | dd of="$VC_SRC/c.img" bs=1 seek=2000000 conv=notrunc status=none
	printf '\xa5' | dd of="$VC_SRC/c.img" bs=1 seek=2000001 conv=notrunc status=none
	run fio --name=v --rw=randwrite --verify=crc32c --verify_only=1 --verify_fatal=1 \
		--verify_state_save=0 --unlink=0 --filename="$VC_SRC/c.img" "${opts[@]}"
	assert_failure
	run dh_fio_clean "$output"
	assert_failure
}
