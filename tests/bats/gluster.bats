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
# Every test uses image names of its own: B's kernel keeps a name's entry
# and attributes for the whole file (the timeouts in gluster_helper.bash).
#
# Each handoff: A creates the image, B reads it once (so B's caches hold the
# old data, as a host that served the image before would), A writes new
# data through its vcachefs and runs `vcachefsctl flush`, B runs the libvirt
# hook's migrate phase with recorded domain XML (check-migration, then
# drop-cache of the image, not open on B yet, as before QEMU starts), B
# reads and compares with cmp.

bats_require_minimum_version 1.5.0

load helper
load gluster_helper

: "${VCTL:=$BATS_TEST_DIRNAME/../../build/asan/vcachefsctl}"

# bats 1.8 (Debian 12) fails a setup_file that calls skip: the reason is
# handed to setup(), which skips each test with it.
setup_file() {
	export GL_SKIP
	GL_SKIP=$(gl_cannot_run)
	[ -n "$GL_SKIP" ] && return 0
	gl_up >/dev/null || { gl_down; return 1; }
}

teardown_file() {
	gl_down
}

setup() {
	[ -z "$GL_SKIP" ] || skip "$GL_SKIP"
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

# Host A makes IMG with the old data and keeps it open, as its QEMU would;
# B reads it once (B's caches now hold it).
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

GL_HOOK=$BATS_TEST_DIRNAME/../../etc/libvirt/hooks/qemu.d/vcachefs

# The libvirt hook on B, as libvirtd runs it, with the recorded domain XML
# whose disk is IMG on B's vcachefs mount. gl_hook OPERATION IMG
gl_hook() {
	sed -e "s|@MNT@|$VB|g" -e "s|@IMG@|$2|g" \
	    "$BATS_TEST_DIRNAME/../migration/vm-gluster.xml" |
		VCACHEFSCTL=$VCTL "$GL_HOOK" gl01 "$1" begin -
}

# One handoff: A writes and flushes, the hook's migrate phase on B lets it
# go on and drops B's cache, B reads exactly A's data.
handoff() {	# IMG CONF_A CONF_B
	hosts "[$1]\n$2\n" "[$1]\n$3\n"
	prepare "$1"
	a_writes "$1"
	run --separate-stderr gl_hook migrate "$1"
	[ "$status" -eq 0 ] || fail "hook refused: $stderr"
	[ -z "$output" ] || fail "hook wrote to stdout: $output"
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
	# The test's network exists only between the two namespaces: each
	# has lo and its end of the veth pair, and the machine's own
	# namespace has no address in it.
	run -0 ip -n "$GL_NSA" -o link show
	assert_equal "$(awk '{ sub(/@.*/, "", $2); print $2 }' <<<"$output" | tr '\n' ' ')" "lo: vga "
	run -0 ip -4 -o addr show
	refute_output --partial "$GL_NET."
	run -0 ip -n "$GL_NSB" -4 -o addr show dev vgb
	assert_output --partial "inet $GL_NET.2/24"
	gl_is_mounted "$GL_MA"
	gl_is_mounted "$GL_MB"
}

@test "gluster: check-migration calls the volume shared, not a cluster filesystem: only none, directsync, readonly and shareable are safe" {
	local m
	hosts "" "[cm-n.raw]\ncache = none\n[cm-d.raw]\ncache = directsync\n[cm-wt.raw]\ncache = writethrough\n[cm-u.raw]\ncache = unsafe\n[cm-ro.raw]\nreadonly = yes\n[cm-sh.raw]\nshareable = yes\n[cm-wb.raw]\ncache = writeback\n"
	for m in n d wt u ro sh wb; do truncate -s 1M "$VA/cm-$m.raw"; done
	run -0 "$VCTL" -m "$VB" check-migration cm-n.raw cm-d.raw cm-ro.raw cm-sh.raw
	assert_line "cm-n.raw: safe: cache=none bypasses the host page cache on fuse.glusterfs, a shared filesystem"
	assert_line "cm-d.raw: safe: cache=directsync bypasses the host page cache on fuse.glusterfs, a shared filesystem"
	assert_line --partial "cm-ro.raw: safe: readonly = yes on fuse.glusterfs"
	assert_line --partial "cm-sh.raw: safe: shareable = yes on fuse.glusterfs"
	for m in wb wt; do
		run -1 "$VCTL" -m "$VB" check-migration "cm-$m.raw"
		assert_output --partial "cm-$m.raw: unsafe: cache=$([ $m = wb ] && echo writeback || echo writethrough) keeps the image in the host page cache on fuse.glusterfs, a shared filesystem that is not a cluster filesystem"
	done
	run -1 "$VCTL" -m "$VB" check-migration cm-u.raw
	assert_output --partial "cm-u.raw: unsafe: cache=unsafe drops the guest's flushes"
	run -0 "$VCTL" -m "$VB" check-migration --json cm-n.raw
	run -0 jq -r '.images[0] | "\(.fs) \(.class)"' <<<"$output"
	assert_output "fuse.glusterfs shared"
}

@test "gluster: handoff in cache=none: B reads exactly A's flushed data" {
	handoff none.raw "cache = none" "cache = none"
}

@test "gluster: handoff in cache=directsync: B reads exactly A's flushed data" {
	handoff directsync.raw "cache = directsync" "cache = directsync"
}

@test "gluster: handoff of an image readonly on B (writeback there): B reads exactly the data A wrote before" {
	# A wrote it before the VM used it read-only (A's config has it
	# writable). Nothing writes it after the hook, so the hook's drop
	# clears what B cached before, and B's pages stay right.
	handoff ro.raw "cache = writeback" "cache = writeback\nreadonly = yes"
	run dd if="$NEW" of="$VB/ro.raw" bs=64k conv=notrunc status=none
	assert_failure
	assert_output --partial "Read-only file system"
}

@test "gluster: handoff of a shareable image (writeback): B reads exactly A's flushed data" {
	# libvirt exempts shareable disks from the cache rule: the guests
	# coordinate their writes. Here nothing writes after the hook, so its
	# drop leaves B nothing stale.
	handoff sh.raw "cache = writeback\nshareable = yes" "cache = writeback\nshareable = yes"
}

@test "gluster: writeback on B: the hook refuses, and B, which read the image once, reads stale data" {
	hosts "[wb.raw]\ncache = writeback\n" "[wb.raw]\ncache = writeback\n"
	prepare wb.raw
	hold "$VB/wb.raw"
	a_writes wb.raw
	run --separate-stderr gl_hook migrate wb.raw
	assert_equal "$status" 1
	[[ $stderr == *"refusing the migration"*"wb.raw: unsafe: cache=writeback keeps the image in the host page cache on fuse.glusterfs"* ]] ||
		fail "hook said: $stderr"
	# Going on anyway (virsh migrate --unsafe): the old pages are in B's
	# page cache of its gluster file, under B's buffered backing
	# descriptor, and that is what B reads.
	run fincore -nb -o RES "$GL_MB/wb.raw"
	assert_output 1048576
	cmp "$OLD" "$VB/wb.raw"
	! cmp -s "$NEW" "$VB/wb.raw"
}

@test "gluster: writeback on B: the hook's drop comes before A's last writes, so B still reads stale data" {
	# The hook runs before the incoming QEMU starts (prepare, migrate);
	# QEMU then opens and reads the image; the source's last writes come
	# at switchover, with no hook after them.
	hosts "[wb2.raw]\ncache = writeback\n" "[wb2.raw]\ncache = writeback\n"
	prepare wb2.raw
	run --separate-stderr gl_hook prepare wb2.raw
	assert_success
	hold "$VB/wb2.raw"
	cmp "$OLD" "$VB/wb2.raw"	# the incoming QEMU reads
	a_writes wb2.raw		# switchover
	cmp "$OLD" "$VB/wb2.raw"
	# A drop after the switchover would have helped: the stale data was
	# only B's page cache. No hook runs then.
	"$VCTL" -m "$VB" drop-cache wb2.raw
	cmp "$NEW" "$VB/wb2.raw"
}

@test "gluster: quick-read in B's client serves a small image stale even in cache=none; with performance.quick-read off B reads A's data" {
	# Last in the file: it turns quick-read off for the volume.
	head -c 32k /dev/urandom >"$OLD"
	head -c 32k /dev/urandom >"$NEW"
	hosts "[qr.raw]\ncache = none\n" "[qr.raw]\ncache = none\n"
	prepare qr.raw
	a_writes qr.raw
	run --separate-stderr gl_hook migrate qr.raw
	assert_success
	# O_DIRECT and the hook's drop reach B's kernel, not the copy of the
	# file in B's gluster client process.
	cmp "$OLD" "$VB/qr.raw"
	for fd in "${HELD[@]}"; do exec {fd}<&-; done
	HELD=()
	vc_stop_all
	VC_MOUNTS=() VC_PIDS=()
	gl_cli 1 volume set "$GL_VOL" performance.quick-read off
	# New clients: their graph is the volume's as it is now.
	gl_remount a
	gl_remount b
	gl_until 60 gl_clients_see qr-off
	handoff qr2.raw "cache = none" "cache = none"
}
