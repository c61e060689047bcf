#!/usr/bin/env bats
# Resource limits: a directory of any size cannot starve image opens of
# descriptors.

load helper

setup() {
	vc_setup
}

teardown() {
	vc_teardown
}

# Start the daemon under RLIMIT_NOFILE N (soft and hard, so it cannot
# raise it).
vc_mount_nofile() {	# N ARGS...
	local n=$1
	shift
	cat >"$VC_TMP/vcachefs-nofile" <<EOF
#!/bin/sh
ulimit -n $n
exec "$VCACHEFS" "\$@"
EOF
	chmod +x "$VC_TMP/vcachefs-nofile"
	VCACHEFS=$VC_TMP/vcachefs-nofile vc_mount "$@"
}

@test "ulimit -n 1024: ls -l of 5000 files, then qemu-img info and writes still work" {
	mkdir "$VC_SRC/many"
	(cd "$VC_SRC/many" && seq 1 5000 | xargs touch)
	qemu-img create -q -f qcow2 "$VC_SRC/disk.qcow2" 64M
	vc_mount_nofile 1024 "$VC_SRC" "$VC_MNT"
	[ "$(awk '/Max open files/ { print $4 }' "/proc/$VC_PID/limits")" = 1024 ]
	ls -l "$VC_MNT/many" >/dev/null
	[ "$(ls "$VC_MNT/many" | wc -l)" = 5000 ]
	nfd=$(ls "/proc/$VC_PID/fd" | wc -l)
	echo "daemon descriptors after ls -l: $nfd"
	[ "$nfd" -lt 1000 ]
	run qemu-img info "$VC_MNT/disk.qcow2"
	echo "$output"
	[ "$status" -eq 0 ]
	qemu-io -c 'write -P 0x5a 0 64k' "$VC_MNT/disk.qcow2" >/dev/null
	run qemu-io -c 'read -P 0x5a 0 64k' "$VC_MNT/disk.qcow2"
	[ "$status" -eq 0 ]
	[[ "$output" != *"Pattern verification failed"* ]]
	# Inodes whose descriptors were closed come back from their handles.
	stat "$VC_MNT/many/1" "$VC_MNT/many/2500" "$VC_MNT/many/5000" >/dev/null
	echo more >"$VC_MNT/many/17"
	[ "$(cat "$VC_SRC/many/17")" = more ]
	vc_umount
}
