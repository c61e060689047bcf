#!/usr/bin/env bats
# Two hosts over one real GlusterFS volume, and the handoff of an image
# between them as a live migration does it.
#
# Why two glusterds and two client mounts: a migration's risk is that host
# B reads the image through its own caches (its kernel's page cache of its
# own gluster mount, its own gluster client's translators) while host A
# writes through its own. So each host here has its own network namespace,
# address, glusterd (own /var/lib/glusterd, logs and /run in a private mount
# namespace), brick and FUSE client process, and one vcachefs over its
# client mount with its own configuration. The volume is replica 2, one
# brick per host; A and B talk over a veth pair that exists only between
# the two namespaces (gluster_helper.bash has the details). The volume is
# set up once for the file (setup_file) and torn down in teardown_file,
# whatever failed; each test mounts its own pair of vcachefs daemons.
#
# Each handoff: A creates the image, B reads it once (so B's caches hold the
# old data, as a destination that had the image open would), A writes new
# data through its vcachefs and runs `vcachefsctl flush`, B does the hook's
# part (drop-cache), B reads and compares with cmp.

load helper
load gluster_helper

: "${VCTL:=$BATS_TEST_DIRNAME/../../build/asan/vcachefsctl}"

setup_file() {
	local why
	why=$(gl_cannot_run)
	[ -z "$why" ] || skip "$why"
	gl_up >&3 2>&1 || { gl_down; return 1; }
}

teardown_file() {
	gl_down
}

setup() {
	vc_setup
	VA=$VC_TMP/a
	VB=$VC_TMP/b
	mkdir -p "$VA" "$VB"
	OLD=$VC_TMP/old
	NEW=$VC_TMP/new
	head -c 1M /dev/urandom >"$OLD"
	head -c 1M /dev/urandom >"$NEW"
	HELD=()
}

teardown() {
	local fd
	for fd in "${HELD[@]}"; do exec {fd}<&-; done
	vc_teardown
}

# hosts CONF_A CONF_B: host A's vcachefs over its gluster mount with the
# configuration text CONF_A, and B's likewise.
hosts() {
	printf '%b' "$1" >"$VC_TMP/a.conf"
	printf '%b' "$2" >"$VC_TMP/b.conf"
	vc_mount -c "$VC_TMP/a.conf" "$GL_MA" "$VA"
	vc_mount -c "$VC_TMP/b.conf" "$GL_MB" "$VB"
}

# hold PATH: keep PATH open for reading until the test ends, as QEMU keeps
# its image open (flush and drop-cache act on open images).
hold() {
	local fd
	exec {fd}<"$1"
	HELD+=("$fd")
}

# Host A makes IMG with the old data, B reads it once, then A writes the
# new data and flushes.
prepare() {	# IMG
	dd if="$OLD" of="$VA/$1" bs=64k status=none
	hold "$VA/$1"
	"$VCTL" -m "$VA" flush "$1"
	cmp "$OLD" "$VB/$1"
}

a_writes() {	# IMG
	dd if="$NEW" of="$VA/$1" bs=64k conv=notrunc status=none
	"$VCTL" -m "$VA" flush "$1"
}

# The hook's part on B: drop the image's host cache there.
b_hook() {	# IMG
	hold "$VB/$1"
	"$VCTL" -m "$VB" drop-cache "$1"
}

# One handoff in B's configuration line CONF (A has the same, writable).
handoff() {	# IMG CONF_A CONF_B
	hosts "[$1]\n$2\n" "[$1]\n$3\n"
	prepare "$1"
	a_writes "$1"
	b_hook "$1"
	cmp "$NEW" "$VB/$1"
}

@test "gluster: two hosts, two glusterds, one replica 2 volume over the test's own veth pair" {
	run gl_cli 1 volume info "$GL_VOL"
	assert_success
	assert_output --partial "Type: Replicate"
	assert_output --partial "Brick1: $GL_NET.1:"
	assert_output --partial "Brick2: $GL_NET.2:"
	run gl_cli 2 peer status
	assert_output --partial "Hostname: $GL_NET.1"
	assert_output --partial "Peer in Cluster (Connected)"
	# Each client talks from its own namespace; the machine's own
	# namespace has no route to the volume.
	run ip -4 route get "$GL_NET.1"
	refute_output --partial "dev vga"
	gl_is_mounted "$GL_MA"
	gl_is_mounted "$GL_MB"
}

@test "gluster: handoff in cache=none: B reads exactly A's flushed data" {
	handoff none.raw "cache = none" "cache = none"
}

@test "gluster: handoff in cache=directsync: B reads exactly A's flushed data" {
	handoff directsync.raw "cache = directsync" "cache = directsync"
}

@test "gluster: handoff of an image readonly on B (writeback there): B reads exactly the data A wrote before" {
	# A wrote it before the VM used it read-only (A's config has it
	# writable); nothing writes it after the hook, so B's drop is enough.
	handoff ro.raw "cache = writeback" "cache = writeback\nreadonly = yes"
	run dd if="$NEW" of="$VB/ro.raw" bs=64k conv=notrunc status=none
	assert_failure
	assert_output --partial "Read-only file system"
}

@test "gluster: handoff in writeback on B without the drop: B reads the stale data it read before" {
	hosts "[wb.raw]\ncache = writeback\n" "[wb.raw]\ncache = writeback\n"
	prepare wb.raw
	hold "$VB/wb.raw"
	a_writes wb.raw
	# The old pages are in B's page cache of its gluster file, under
	# B's buffered backing descriptor.
	run fincore -nb -o RES "$GL_MB/wb.raw"
	assert_output 1048576
	cmp "$OLD" "$VB/wb.raw"
	! cmp -s "$NEW" "$VB/wb.raw"
}

@test "gluster: writeback on B: the hook's drop comes before A's last writes, so B still reads stale data" {
	# The hook runs before the incoming QEMU starts; QEMU then opens and
	# reads the image; the source's last writes come at switchover, with
	# no hook after them.
	hosts "[wb2.raw]\ncache = writeback\n" "[wb2.raw]\ncache = writeback\n"
	prepare wb2.raw
	b_hook wb2.raw
	cmp "$OLD" "$VB/wb2.raw"	# the incoming QEMU reads
	a_writes wb2.raw		# switchover
	cmp "$OLD" "$VB/wb2.raw"
	# A drop after the switchover would have helped: the stale data was
	# only B's page cache.
	"$VCTL" -m "$VB" drop-cache wb2.raw
	cmp "$NEW" "$VB/wb2.raw"
}
