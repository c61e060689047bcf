#!/usr/bin/env bats
# libvirt's virtlockd lock manager with the images on vcachefs mounted in
# place over /var/lib/libvirt/images. vcachefs keeps file locks on its own
# FUSE inodes (no getlk/setlk/flock), so they do not protect an image
# across hosts on shared storage; this shows what does:
#   - with file_lockspace_dir outside the mount (standing for a directory
#     on the shared store), virtlockd holds a lease file there, named by
#     the SHA-256 of the disk path and fcntl-locked, while the domain runs;
#     a second domain on the same disk is refused (on one host by QEMU's
#     own locks on the FUSE inode), and the domain is refused by virtlockd
#     ("resource busy") while another process, standing for the other
#     host's virtlockd, holds the lease; the lease is released when the
#     domain stops;
#   - without file_lockspace_dir virtlockd locks the image path itself:
#     through the mount that lock lands on the FUSE inode, and a process
#     on the backing file does not see it.
#
# qemu.conf and qemu-lockd.conf are backed up and put back at the end;
# virtlogd, virtlockd and libvirtd are started here (no init system on
# this machine) and stopped again. A libvirtd that runs already is not
# ours to reconfigure: the file is skipped then.

bats_require_minimum_version 1.5.0

load helper
load modes_helper
load libvirt_helper

LK_QEMU_CONF=/etc/libvirt/qemu.conf
LK_LOCKD_CONF=/etc/libvirt/qemu-lockd.conf

lk_virtlockd_up() { socat -u OPEN:/dev/null UNIX-CONNECT:/run/libvirt/virtlockd-sock 2>/dev/null; }

# qemu-lockd.conf for this test, then a libvirtd that has read it (the
# lockd plugin reads its config once, when libvirtd starts).
lk_libvirtd() {	# LOCKSPACE-DIR|""
	local p want=$LV_FTMP/qemu-lockd.conf.want
	{
		echo "auto_disk_leases = 1"
		echo "require_lease_for_disks = 1"
		[ -z "$1" ] || echo "file_lockspace_dir = \"$1\""
	} >"$want"
	cmp -s "$want" "$LK_LOCKD_CONF" && lv_libvirtd_up && return 0
	cp "$want" "$LK_LOCKD_CONF"
	if p=$(lv_pid_of /run/libvirtd.pid libvirtd) && grep -qx "$p" "$LV_FTMP/started"; then
		lv_stop_daemon "$p"
		sed -i "/^$p\$/d" "$LV_FTMP/started"
	fi
	lv_start_daemon libvirtd lv_libvirtd_up /run/libvirtd.pid
}

# Exit 0 if a read lock on byte 0 of FILE can be taken now by this new
# process (nobody holds a conflicting lock it can see), 1 if it is busy.
# With GONE-OK, a missing FILE counts as free: virtlockd deletes the lease
# files it made when it releases them.
lk_free() {	# FILE [GONE-OK]
	python3 - "$1" "${2:-}" <<'EOF'
import errno, fcntl, os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
except FileNotFoundError:
    if sys.argv[2]:
        sys.exit(0)
    raise
try:
    fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 0)
except OSError as e:
    if e.errno in (errno.EAGAIN, errno.EACCES):
        sys.exit(1)
    raise
EOF
}

# virtlockd lets go when it sees its client, the QEMU process, gone:
# after virsh destroy, not necessarily before it returns.
lk_wait_free() {	# FILE
	local end=$((SECONDS + 60))
	until lk_free "$1" gone-ok; do
		if [ "$SECONDS" -ge "$end" ]; then
			echo "$1 still locked 60 s after the domain stopped" >&2
			return 1
		fi
		sleep 0.1
	done
}

# The /proc/locks lines of PID's locks on FILE's inode.
lk_proc_locks() {	# FILE PID
	python3 - "$1" "$2" <<'EOF'
import os, sys
st = os.stat(sys.argv[1])
key = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
for line in open("/proc/locks"):
    f = line.split()
    if "->" not in f and f[4] == sys.argv[2] and f[5] == key:
        print(line.rstrip())
EOF
}

# The lease of disk PATH in lockspace DIR: libvirt's lockd driver names it
# by the SHA-256 (hex) of the path as the domain XML gives it.
lk_lease() {	# DIR PATH
	echo "$1/$(printf %s "$2" | sha256sum | cut -d' ' -f1)"
}

setup_file() {
	# Before lv_prepare_file makes LV_FTMP: a skip leaves nothing behind.
	command -v virtlockd >/dev/null ||
		skip "no virtlockd (tests/deps.sh installs libvirt-daemon-system)"
	if command -v virsh >/dev/null && lv_libvirtd_up; then
		skip "a libvirtd runs already: its lock manager is not this test's to change"
	fi
	lv_prepare_file
	cp -p "$LK_QEMU_CONF" "$LV_FTMP/qemu.conf.orig"
	cp -p "$LK_LOCKD_CONF" "$LV_FTMP/qemu-lockd.conf.orig"
	echo 'lock_manager = "lockd"' >>"$LK_QEMU_CONF"
	# Outside the mount: stands for a directory on the shared store.
	LK_SPACE=$LV_FTMP/lockspace
	mkdir "$LK_SPACE"
	export LK_SPACE

	lv_start_daemon virtlogd lv_virtlogd_up /run/virtlogd.pid
	lv_start_daemon virtlockd lk_virtlockd_up /run/virtlockd.pid
	lk_libvirtd "$LK_SPACE"
	lv_report_started
}

teardown_file() {
	local c

	[ -n "${LV_FTMP:-}" ] && [ -d "$LV_FTMP" ] || return 0
	lv_teardown_file_daemons
	for c in qemu.conf qemu-lockd.conf; do
		[ -f "$LV_FTMP/$c.orig" ] && cp -p "$LV_FTMP/$c.orig" "/etc/libvirt/$c"
	done
	rm -rf "$LV_FTMP"
}

setup() {
	LK_HOLDER=
	lv_setup
}

teardown() {
	[ -z "$LK_HOLDER" ] || kill "$LK_HOLDER" 2>/dev/null || true
	lv_teardown
}

# Wait until FILE exists, while process PID lives.
lk_wait_file() {	# FILE PID
	until [ -e "$1" ]; do
		kill -0 "$2" 2>/dev/null || { echo "pid $2 ended before $1 appeared" >&2; return 1; }
		sleep 0.1
	done
}

lk_assert_running() {
	assert_equal "$(lv_state)" running
}

@test "lockd, file_lockspace_dir outside the mount: the lease is fcntl-locked there while the domain runs; a second domain, or one whose lease is held elsewhere, is refused; the lease is released when it stops" {
	local img=$LV_DIR/lease.raw lease lockd first

	lk_libvirtd "$LK_SPACE"
	lockd=$(lv_pid_of /run/virtlockd.pid virtlockd)
	lv_raw lease.raw
	lv_mount
	lv_define first raw "" "$img" 1
	first=$LV_DOM
	# Running, not paused: libvirt takes the leases when the CPUs start.
	lv_virsh start "$first" >/dev/null
	lk_assert_running

	lease=$(lk_lease "$LK_SPACE" "$img")
	assert_exist "$lease"
	run -0 lk_proc_locks "$lease" "$lockd"
	echo "$output"
	assert_line --regexp '^[0-9]+: POSIX +ADVISORY +WRITE '
	run -1 lk_free "$lease"

	# Same disk, second domain on this host: QEMU's own image locks, kept
	# on the FUSE inode, refuse it first (libvirt asks virtlockd only when
	# the CPUs start). Another host has no share in those locks: what it
	# meets is the lease, shown next.
	lv_define second raw "" "$img" 1
	run ! lv_virsh start "$LV_DOM"
	echo "$output"
	assert_output --partial 'Failed to get "write" lock'
	assert_equal "$(lv_state)" "shut off"

	LV_DOM=$first
	lv_virsh destroy "$first" >/dev/null
	# Released: unlocked, or deleted (virtlockd removes the leases it made).
	lk_wait_free "$lease"

	# What the other host's virtlockd does with the lockspace on shared
	# storage: an fcntl lock on the lease file. This host's start fails.
	python3 - "$lease" "$VC_TMP/held" 3>&- <<'EOF' &
import fcntl, os, signal, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
open(sys.argv[2], "w").close()
signal.pause()
EOF
	LK_HOLDER=$!
	lk_wait_file "$VC_TMP/held" "$LK_HOLDER"
	run ! lv_virsh start "$first"
	echo "$output"
	assert_output --partial "resource busy: Lockspace resource '${lease##*/}' is locked"
	assert_equal "$(lv_state)" "shut off"
	kill "$LK_HOLDER"
	wait "$LK_HOLDER" || true
	LK_HOLDER=
	lv_virsh start "$first" >/dev/null
	lk_assert_running
	run -1 lk_free "$lease"
	lv_virsh destroy "$first" >/dev/null
	lk_wait_free "$lease"
}

@test "lockd without file_lockspace_dir: virtlockd locks the image path, which through the mount is vcachefs's FUSE inode: the backing file does not carry the lock" {
	local img=$LV_DIR/direct.raw back lockd

	lk_libvirtd ""
	lockd=$(lv_pid_of /run/virtlockd.pid virtlockd)
	lv_raw direct.raw
	back=$LV_UNDER/$LV_REL/direct.raw
	lv_mount
	lv_define direct raw "" "$img" 1
	lv_virsh start "$LV_DOM" >/dev/null
	lk_assert_running

	# The lease is the image, locked on the mount's inode ...
	run -0 lk_proc_locks "$img" "$lockd"
	echo "$output"
	assert_line --regexp '^[0-9]+: POSIX +ADVISORY +WRITE '
	run -1 lk_free "$img"
	# ... and not on the backing file, where another host's virtlockd
	# would look: same inode, no lock, free to take.
	run -0 lk_proc_locks "$back" "$lockd"
	assert_output ""
	run -0 lk_free "$back"
	assert_not_exist "$(lk_lease "$LK_SPACE" "$img")"

	lv_virsh destroy "$LV_DOM" >/dev/null
	lk_wait_free "$img"
}
