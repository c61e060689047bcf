# Helpers for the suites that run real guests under libvirt on vcachefs
# mounted in place over /var/lib/libvirt/images (libvirt.bats, lockd.bats).
# Load after helper and modes_helper. lv_setup_file starts virtlogd and
# libvirtd when none answers and lv_teardown_file stops only those;
# lv_setup/lv_teardown give each test its directory under the images
# directory and a read-only bind mount of the real directory (LV_UNDER).

: "${VCTL:=$BATS_TEST_DIRNAME/../../build/asan/vcachefsctl}"
LV_IMAGES=/var/lib/libvirt/images
LV_GUEST_BUILD=${VC_GUEST_DIR:-$BATS_TEST_DIRNAME/../../build/guest}
LV_EXPECT=$BATS_TEST_DIRNAME/../guest/expect.sh
LV_AA_HELPER=/usr/lib/libvirt/virt-aa-helper
# TCG boots take seconds, many more on a busy machine: the waits are bounded
# only so that a stuck guest or daemon ends the test.
LV_WAIT=${VC_GUEST_WAIT:-300}
LV_SIZE=$((8 << 20))		# image size
LV_MAILBOX=$((6144 * 512))	# guest offset of the mailbox sector (mkguest.sh)
LV_FSYNCS=3			# the guest's fsyncs before it holds
LV_OWNER=4242:4243		# the images' owner before libvirt takes them

lv_virsh() { timeout 120 virsh -q -c qemu:///system "$@"; }

# Start a daemon that forks into the background, without the test's
# descriptors (bats waits for its fd 3 to close) and outside any mount.
lv_spawn() {	# LOG COMMAND...
	local log=$1 fd
	shift
	(
		cd / || exit 1
		for fd in /proc/$BASHPID/fd/*; do
			fd=${fd##*/}
			[ "$fd" -gt 2 ] && eval "exec $fd>&-"
		done
		exec "$@" </dev/null >>"$log" 2>&1
	)
}

lv_virtlogd_up() { socat -u OPEN:/dev/null UNIX-CONNECT:/run/libvirt/virtlogd-sock 2>/dev/null; }
lv_libvirtd_up() { virsh -q -c qemu:///system version >/dev/null 2>&1; }

lv_wait_up() {	# WHAT FUNCTION
	local end=$((SECONDS + 60))
	until "$2"; do
		if [ "$SECONDS" -ge "$end" ]; then
			echo "$1 does not answer 60 s after its start; log:" >&2
			cat "$LV_FTMP/daemons.log" >&2
			return 1
		fi
		sleep 0.2
	done
}

# The pid in PIDFILE, if that process is NAME: only signal what we started.
lv_pid_of() {	# PIDFILE NAME
	local p
	p=$(cat "$1" 2>/dev/null) || return 1
	[ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] && echo "$p"
}

lv_stop_daemon() {	# PID
	local i
	kill -TERM "$1" 2>/dev/null || return 0
	for i in $(seq 1 300); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "pid $1 ignored SIGTERM for 30 s: killed" >&2
	kill -KILL "$1" 2>/dev/null || true
}

# The checks and files every libvirt suite needs; starts no daemon.
lv_prepare_file() {
	export LV_FTMP=
	command -v virsh >/dev/null && command -v libvirtd >/dev/null &&
	    command -v virtlogd >/dev/null ||
		skip "libvirt is not installed (tests/deps.sh installs libvirt-daemon-system)"
	[ -d "$LV_IMAGES" ] || skip "no $LV_IMAGES (libvirt-daemon-system makes it)"
	if mountpoint -q "$LV_IMAGES"; then
		skip "$LV_IMAGES is a mount point already (a deployment, or another test): not mounting over it"
	fi

	# Cached under build/guest: only the first run downloads and builds.
	"$BATS_TEST_DIRNAME/../guest/mkguest.sh" "$LV_GUEST_BUILD"
	LV_FTMP=$(mktemp -d /var/tmp/vcachefs-libvirt.XXXXXX)
	chmod 755 "$LV_FTMP"
	# A copy that libvirt may relabel (it chowns the kernel and initrd too).
	cp "$LV_GUEST_BUILD/vmlinuz" "$LV_GUEST_BUILD/initrd.img" "$LV_FTMP/"
	: >"$LV_FTMP/started"
}

# Start a libvirt daemon (it forks: -d) unless one answers, and note its
# pid in LV_FTMP/started for lv_teardown_file.
lv_start_daemon() {	# NAME UP-FUNCTION PIDFILE
	local p

	"$2" && return 0
	lv_spawn "$LV_FTMP/daemons.log" "$1" -d
	lv_wait_up "$1" "$2"
	p=$(lv_pid_of "$3" "$1") ||
		{ echo "$1 runs, but $3 does not name it" >&2; return 1; }
	echo "$p" >>"$LV_FTMP/started"
}

lv_report_started() {
	echo "# libvirt daemons started by this file: $(tr '\n' ' ' <"$LV_FTMP/started")" >&3
}

lv_setup_file() {
	lv_prepare_file
	# Without systemd nothing socket-activates the daemons: start them.
	# libvirtd hands each QEMU's log to virtlogd (qemu.conf stdio_handler
	# = "logd"), so virtlogd comes first.
	lv_start_daemon virtlogd lv_virtlogd_up /run/virtlogd.pid
	lv_start_daemon libvirtd lv_libvirtd_up /run/libvirtd.pid
	lv_report_started
}

# Stop the daemons lv_start_daemon started, the last started first.
lv_teardown_file_daemons() {
	local p pids=()

	mapfile -t pids <"$LV_FTMP/started"
	for ((p = ${#pids[@]} - 1; p >= 0; p--)); do
		lv_stop_daemon "${pids[p]}"
	done
}

lv_teardown_file() {
	[ -n "${LV_FTMP:-}" ] && [ -d "$LV_FTMP" ] || return 0
	lv_teardown_file_daemons
	rm -rf "$LV_FTMP"
}

lv_setup() {
	local qemu_label

	mh_setup
	LV_DOMS=()	# domains this test defined
	LV_UNDER=	# the read-only bind mount of the real directory
	LV_DIR=		# our directory in $LV_IMAGES
	LV_MTIME=$(stat -c %y "$LV_IMAGES")
	# The qemu user and group that libvirt's DAC driver gives the images.
	qemu_label=$(lv_virsh capabilities |
	    sed -n "s|.*<baselabel type='qemu'>+\([0-9]*\):+\([0-9]*\)</baselabel>.*|\1:\2|p")
	[ -n "$qemu_label" ] || fail "no qemu baselabel in virsh capabilities"
	LV_QEMU_OWNER=$qemu_label

	LV_UNDER=$(mktemp -d /var/tmp/vcachefs-libvirt-under.XXXXXX)
	mount --bind "$LV_IMAGES" "$LV_UNDER"
	mount -o remount,bind,ro "$LV_UNDER"
	# Made before the mount, so that the config can name its images.
	LV_DIR=$(mktemp -d "$LV_IMAGES/vcachefs-test.XXXXXX")
	chmod 755 "$LV_DIR"	# the qemu user walks through it
	LV_REL=${LV_DIR##*/}
}

lv_teardown() {
	local d

	# Guests first: QEMU holds images open on the mount.
	for d in "${LV_DOMS[@]}"; do
		lv_virsh destroy "$d" >/dev/null 2>&1 || true
		lv_virsh undefine "$d" >/dev/null 2>&1 || true
	done
	vc_stop_all
	# Unmounted now (or lazily detached): this is the real directory.
	if [ -n "$LV_DIR" ] && [ -d "$LV_DIR" ] && ! mountpoint -q "$LV_IMAGES"; then
		rm -rf "$LV_DIR"
	fi
	if [ -n "$LV_UNDER" ]; then
		umount "$LV_UNDER" 2>/dev/null || umount -l "$LV_UNDER" 2>/dev/null || true
		rmdir "$LV_UNDER" 2>/dev/null || true	# never rm -r: it was the real directory
	fi
	touch -d "$LV_MTIME" "$LV_IMAGES" 2>/dev/null || true
	mh_teardown
}

# lv_mount [LINE...]: vcachefs in place over $LV_IMAGES, [global] writeback
# plus LINEs, with a control socket of this test's.
lv_mount() {
	mh_conf writeback "$@"
	LV_CTL=$VC_TMP/ctl.sock
	vc_mount -c "$MH_CONF" --control "$LV_CTL" "$LV_IMAGES"
}

# The domain XML: direct kernel boot of the test guest, one virtio disk
# with the given <driver> attributes, the serial console to a file.
# Sets LV_DOM, LV_SEED (new for every domain) and LV_CON.
lv_define() {	# NAME TYPE 'DRIVER-ATTRS' SOURCE HOLD(0|1)
	LV_DOM=vcachefs-test-$$-$1
	LV_SEED=$(( (RANDOM << 15 | RANDOM) + 1 ))
	LV_CON=$VC_TMP/$1.console
	cat >"$VC_TMP/$1.xml" <<EOF
<domain type='qemu'>
  <name>$LV_DOM</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$LV_FTMP/vmlinuz</kernel>
    <initrd>$LV_FTMP/initrd.img</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet vcguest.seed=$LV_SEED vcguest.hold=$5</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='$2'$3/>
      <source file='$4'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='$LV_CON'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
	lv_virsh define "$VC_TMP/$1.xml" >/dev/null
	LV_DOMS+=("$LV_DOM")
}

lv_state() { lv_virsh domstate "$LV_DOM" 2>/dev/null | head -n 1; }

lv_console() {
	echo "--- console of $LV_DOM (seed $LV_SEED):" >&2
	tr -d '\r' <"$LV_CON" >&2 2>/dev/null
	echo "--- /var/log/libvirt/qemu/$LV_DOM.log:" >&2
	tail -n 20 "/var/log/libvirt/qemu/$LV_DOM.log" >&2 2>/dev/null
}

# Wait until the console shows LINE (a fixed string); fails if the domain
# stops first or after LV_WAIT seconds.
lv_wait_line() {	# LINE
	local end=$((SECONDS + LV_WAIT))
	until grep -qF "$1" "$LV_CON" 2>/dev/null; do
		if [ "$(lv_state)" != running ]; then
			echo "$LV_DOM is $(lv_state) before its console said: $1" >&2
			lv_console
			return 1
		fi
		if [ "$SECONDS" -ge "$end" ]; then
			echo "no '$1' on the console after $LV_WAIT s" >&2
			lv_console
			return 1
		fi
		sleep 0.2
	done
}

# Wait until the domain is shut off and check the guest's ok line.
lv_wait_done() {
	local end=$((SECONDS + LV_WAIT))
	while [ "$(lv_state)" != "shut off" ]; do
		if [ "$SECONDS" -ge "$end" ]; then
			echo "$LV_DOM still $(lv_state) after $LV_WAIT s" >&2
			lv_console
			return 1
		fi
		sleep 0.2
	done
	if ! tr -d '\r' <"$LV_CON" | grep -qE "^VCGUEST RESULT ok seed=$LV_SEED mode=write uptime="; then
		echo "no ok result line for seed $LV_SEED" >&2
		lv_console
		return 1
	fi
}

# Release the holding guest: GO at guest offset LV_MAILBOX of a raw image,
# written through the mount and fsync'ed, where QEMU's reads see it.
lv_release() {	# IMAGE-ON-MOUNT
	printf 'VCGUEST GO seed=%s\n' "$LV_SEED" |
	    dd of="$1" bs=512 seek=$((LV_MAILBOX / 512)) conv=notrunc,fsync status=none
}

# A raw image of ours, owned by LV_OWNER (so that restoring is visible).
lv_raw() {	# NAME
	truncate -s "$LV_SIZE" "$LV_DIR/$1"
	chown "$LV_OWNER" "$LV_DIR/$1"
	chmod 0640 "$LV_DIR/$1"
}

lv_xattr() {	# FILE NAME
	getfattr --absolute-names --only-values -n "trusted.libvirt.security.$2" "$1"
}

# While the domain runs: the real file belongs to the qemu user, and
# libvirt has remembered the old owner in its xattrs, on the backing file
# and as seen through the mount.
lv_assert_labelled() {	# RELPATH
	local f
	assert_equal "$(stat -c %u:%g "$LV_UNDER/$LV_REL/$1")" "$LV_QEMU_OWNER"
	for f in "$LV_UNDER/$LV_REL/$1" "$LV_DIR/$1"; do
		assert_equal "$(lv_xattr "$f" dac)" "+${LV_OWNER%:*}:+${LV_OWNER#*:}"
		assert_equal "$(lv_xattr "$f" ref_dac)" 1
		lv_xattr "$f" timestamp_dac >/dev/null
	done
}

# After the domain stopped: the owner is back and libvirt's xattrs are
# gone. libvirt restores while it tears the domain down: waited for.
lv_assert_restored() {	# RELPATH
	local f=$LV_UNDER/$LV_REL/$1 i left
	for i in $(seq 1 300); do
		[ "$(stat -c %u:%g "$f")" = "$LV_OWNER" ] && break
		sleep 0.1
	done
	assert_equal "$(stat -c %u:%g "$f")" "$LV_OWNER"
	lv_assert_no_xattrs "$1"
}

lv_assert_no_xattrs() {	# RELPATH
	local left
	left=$(getfattr --absolute-names -d -m '^trusted\.libvirt\.security\.' \
	    "$LV_UNDER/$LV_REL/$1" 2>&1)
	assert_equal "$left" ""
}

# QEMU's own descriptor of the image on the mount: its open flags (octal).
lv_qemu_flags() {	# PATH-ON-MOUNT
	local pid f
	pid=$(cat "/run/libvirt/qemu/$LV_DOM.pid") || return 1
	for f in /proc/"$pid"/fd/*; do
		[ "$(readlink "$f" 2>/dev/null)" = "$1" ] || continue
		awk '$1 == "flags:" { print $2 }' "/proc/$pid/fdinfo/${f##*/}"
		return 0
	done
	echo "QEMU ($pid) has no descriptor of $1" >&2
	return 1
}

lv_assert_qemu_direct() {	# PATH-ON-MOUNT 0|1
	local fl
	fl=$(lv_qemu_flags "$1")
	assert_equal "$(( (8#$fl & MH_O_DIRECT) != 0 ))" "$2"
}

# The guest's LBA 0..4096 are seed LV_SEED's pattern; with GO=1 the
# mailbox holds the GO record; zeros everywhere else.
lv_assert_disk() {	# RAWFILE GO(0|1)
	local want=$VC_TMP/want
	"$LV_EXPECT" "$LV_SEED" "$1"
	"$LV_EXPECT" "$LV_SEED" >"$want"
	truncate -s "$LV_SIZE" "$want"
	if [ "$2" = 1 ]; then
		printf 'VCGUEST GO seed=%s\n' "$LV_SEED" |
		    dd of="$want" bs=512 seek=$((LV_MAILBOX / 512)) conv=notrunc status=none
	fi
	assert_equal "$(stat -c %s "$1")" "$LV_SIZE"
	cmp "$want" "$1"
}

lv_assert_status() {	# RELPATH MODE
	local re=${1//./\\.}
	run -0 "$VCTL" -s "$LV_CTL" status
	echo "$output"
	assert_line --regexp "^$re +$2 +"
}

