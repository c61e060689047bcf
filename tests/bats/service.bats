#!/usr/bin/env bats
# Running as a service: the systemd unit (systemd-analyze verify and
# security, offline: systemd is not PID 1 here), make install, the sd_notify
# readiness protocol against a listener of our own, reload and stop under a
# service manager, and mounting through mount(8) and fstab with the FUSE
# mount helper (vcachefs(8), RUNNING AS A SERVICE and MOUNT OPTIONS).

bats_require_minimum_version 1.5.0
load helper

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
: "${VCTL:=$ROOT/build/asan/vcachefsctl}"
LISTEN=$ROOT/tests/tools/notify_listen.py

BG=()		# background helpers (listeners, holders); killed in teardown
NS_PIDS=()	# files naming daemons started inside private mount namespaces

setup() {
	vc_setup
	echo hello >"$VC_SRC/a.img"
}

teardown() {
	local p f
	for p in "${BG[@]}"; do
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	# A daemon left in a namespace takes its mount with it when it dies.
	for f in "${NS_PIDS[@]}"; do
		for p in $(cat "$f" 2>/dev/null); do
			vc_is_daemon "$p" && kill -9 "$p" 2>/dev/null || true
		done
	done
	vc_teardown
}

# Wait until FILE has a line matching the ERE (at most SECONDS, default 20).
wait_for() {	# FILE ERE [SECONDS]
	local i
	for i in $(seq 1 $((${3:-20} * 20))); do
		grep -qE -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "no line matching '$2' in $1:" >&2
	cat "$1" >&2 2>/dev/null
	echo "daemon log:" >&2
	cat "$VC_LOG" >&2 2>/dev/null
	return 1
}

# Start the stand-in for systemd's notification socket; NOTIFY is its path
# and NLOG what it received (tests/tools/notify_listen.py).
listen() {
	NOTIFY=$VC_TMP/notify
	NLOG=$VC_TMP/notify.log
	: >"$NLOG"
	python3 "$LISTEN" "$NOTIFY" "$NLOG" "$VC_MNT" a.img 3>&- &
	BG+=($!)
	wait_for_file "$NOTIFY.ready"
}

wait_for_file() {
	local i
	for i in $(seq 1 400); do
		[ -e "$1" ] && return 0
		sleep 0.05
	done
	fail "$1 did not appear"
}

# The messages received, one a line, newlines within a message as '|'.
msgs() { sed -n 's/^MSG //p' "$NLOG"; }

# Hold PATH open from a background process; sets HOLDER.
hold_open() {	# PATH
	sleep 100 3>&- 9<"$1" &
	HOLDER=$!
	BG+=("$HOLDER")
	local i
	for i in $(seq 1 100); do
		[ "$(readlink "/proc/$HOLDER/fd/9" 2>/dev/null)" = "$1" ] && return 0
		sleep 0.05
	done
	fail "holder $HOLDER did not open $1"
}

# The unit as make install writes it, with binaries and man pages that exist.
install_tree() {
	INST=$VC_TMP/inst
	make -s -C "$ROOT" install PREFIX="$INST/usr" SYSCONFDIR="$INST/etc" \
	    UNITDIR="$INST/unit" >/dev/null
	UNIT=$INST/unit/vcachefs@.service
}

@test "unit: systemd-analyze verify passes for vcachefs@var-lib-libvirt-images (installed binaries and man pages)" {
	install_tree
	assert_equal "$(systemd-escape --path /var/lib/libvirt/images)" var-lib-libvirt-images
	mkdir "$VC_TMP/check"
	cp "$UNIT" "$VC_TMP/check/vcachefs@var-lib-libvirt-images.service"
	# Documentation= is checked against these man pages.
	run -0 --separate-stderr env MANPATH="$INST/usr/share/man" systemd-analyze verify \
	    "$VC_TMP/check/vcachefs@var-lib-libvirt-images.service"
	echo "stdout: $output"; echo "stderr: $stderr"
	assert_equal "$stderr" ""
	assert_output ""
	# The check itself catches a broken unit.
	sed 's/^Type=notify$/Type=notfy/' "$UNIT" >"$VC_TMP/check/vcachefs@bad.service"
	run --separate-stderr systemd-analyze verify --man=no "$VC_TMP/check/vcachefs@bad.service"
	[[ $stderr == *"service type"* ]] || fail "a bad Type= went unnoticed: $stderr"
}

@test "unit: notify with -f in place at %f, reload by vcachefsctl, stop never becomes SIGKILL, ordered before libvirt" {
	install_tree
	local u; u=$(grep -v '^#' "$UNIT")
	grep -qx 'Type=notify' <<<"$u"
	grep -qx 'NotifyAccess=main' <<<"$u"
	grep -qx "ExecStart=$INST/usr/sbin/vcachefs -f \$VCACHEFS_OPTS %f" <<<"$u"
	grep -qx "ExecReload=$INST/usr/sbin/vcachefsctl -m %f reload" <<<"$u"
	grep -qx 'SendSIGKILL=no' <<<"$u"
	grep -qx 'TimeoutStopSec=infinity' <<<"$u"
	grep -qx 'KillMode=mixed' <<<"$u"
	grep -qx 'KillSignal=SIGTERM' <<<"$u"
	grep -qx 'Before=libvirtd.service virtqemud.service libvirt-guests.service' <<<"$u"
	# Type=notify-reload needs systemd 253; Debian 12 has 252.
	! grep -q 'notify-reload' <<<"$u"
	# Nothing that would hide the FUSE mount in a namespace of its own.
	local d
	for d in ProtectSystem ProtectHome PrivateTmp PrivateDevices PrivateMounts \
	    PrivateNetwork PrivateIPC PrivateUsers ProtectKernelTunables \
	    ProtectKernelModules ProtectKernelLogs ProtectControlGroups ProtectProc \
	    ProcSubset ReadOnlyPaths ReadWritePaths InaccessiblePaths BindPaths \
	    BindReadOnlyPaths TemporaryFileSystem RootDirectory RootImage \
	    MountFlags DynamicUser LogNamespace; do
		! grep -q "^$d=" <<<"$u" || fail "$d= would give the service a mount namespace"
	done
}

@test "unit: its ExecStart, ExecReload and KillSignal, run as systemd would for an instance, serve in place with READY=1" {
	install_tree
	# %f: the instance unescaped as a path, as systemd does.
	local inst f start reload
	inst=$(systemd-escape --path "$VC_MNT")
	f=$(systemd-escape --unescape --path "$inst")
	assert_equal "$f" "$VC_MNT"
	echo hello >"$VC_MNT/a.img"
	start=$(sed -n 's/^ExecStart=//p' "$UNIT")
	reload=$(sed -n 's/^ExecReload=//p' "$UNIT")
	start=${start//%f/$f}; start=${start//\$VCACHEFS_OPTS /}
	reload=${reload//%f/$f}
	echo "start: $start"; echo "reload: $reload"
	listen
	# shellcheck disable=SC2086
	NOTIFY_SOCKET=$NOTIFY $start ${VC_EXTRA_OPTS:-} >>"$VC_LOG" 2>&1 &
	VC_PID=$!
	VC_PIDS+=("$VC_PID")
	VC_MOUNTS+=("$VC_MNT")
	wait_for "$NLOG" '^CHECK read'
	grep -qx 'CHECK read=hello' "$NLOG"
	grep -qx 'CHECK waiting=0' "$NLOG"
	run msgs
	assert_line --index 0 "READY=1|MAINPID=$VC_PID|STATUS=serving $VC_MNT at $VC_MNT"
	# shellcheck disable=SC2086
	run -0 $reload
	wait_for "$NLOG" 'configuration reloaded'
	kill -"$(sed -n 's/^KillSignal=SIG//p' "$UNIT")" "$VC_PID"
	local rc=0
	vc_wait_exit "$VC_PID" 20 || rc=$?
	assert_equal "$rc" 0
	! vc_is_mounted "$VC_MNT"
	msgs | tail -1 | grep -q '^STOPPING=1'
}

@test "unit: systemd-analyze security --offline: exposure at most 5.0" {
	install_tree
	mkdir "$VC_TMP/check"
	cp "$UNIT" "$VC_TMP/check/vcachefs@var-lib-libvirt-images.service"
	run --separate-stderr systemd-analyze security --offline=yes --no-pager \
	    "$VC_TMP/check/vcachefs@var-lib-libvirt-images.service"
	local level
	level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$output$stderr")
	echo "# exposure $level" >&3
	[ -n "$level" ] || fail "no exposure level: $output $stderr"
	awk -v l="$level" 'BEGIN { exit !(l <= 5.0) }' || fail "exposure $level > 5.0"
}

@test "make install into DESTDIR: the file list, modes, the unit's paths; an existing vcachefs.conf stays; uninstall" {
	local D=$VC_TMP/dest
	run -0 make -s -C "$ROOT" install DESTDIR="$D" PREFIX=/usr
	(cd "$D" && find . -type f | sort) >"$VC_TMP/list"
	cat >"$VC_TMP/want" <<-EOF
	./etc/libvirt/hooks/qemu.d/vcachefs
	./etc/vcachefs.conf
	./lib/systemd/system/vcachefs@.service
	./usr/sbin/vcachefs
	./usr/sbin/vcachefsctl
	./usr/share/man/man5/vcachefs.conf.5
	./usr/share/man/man8/vcachefs.8
	./usr/share/man/man8/vcachefsctl.8
	EOF
	run diff -u "$VC_TMP/want" "$VC_TMP/list"
	assert_success
	assert_equal "$(stat -c %a "$D/usr/sbin/vcachefs")" 755
	assert_equal "$(stat -c %a "$D/lib/systemd/system/vcachefs@.service")" 644
	assert_equal "$(stat -c %a "$D/etc/vcachefs.conf")" 644
	assert_equal "$(stat -c %a "$D/etc/libvirt/hooks/qemu.d/vcachefs")" 755
	grep -qx 'ExecStart=/usr/sbin/vcachefs -f $VCACHEFS_OPTS %f' "$D/lib/systemd/system/vcachefs@.service"
	cmp "$ROOT/etc/vcachefs.conf" "$D/etc/vcachefs.conf"
	# /usr/local: the unit names the binaries there.
	run -0 make -s -C "$ROOT" install DESTDIR="$VC_TMP/local"
	grep -qx 'ExecReload=/usr/local/sbin/vcachefsctl -m %f reload' \
	    "$VC_TMP/local/usr/local/lib/systemd/system/vcachefs@.service"
	# An administrator's configuration is never replaced...
	echo "# mine" >>"$D/etc/vcachefs.conf"
	run -0 make -s -C "$ROOT" install DESTDIR="$D" PREFIX=/usr
	assert_output --partial "vcachefs.conf exists: left as it is"
	assert_equal "$(tail -1 "$D/etc/vcachefs.conf")" "# mine"
	# ...nor removed; everything else goes.
	run -0 make -s -C "$ROOT" uninstall DESTDIR="$D" PREFIX=/usr
	run find "$D" -type f
	assert_output "$D/etc/vcachefs.conf"
	# The unchanged sample goes with the rest.
	run -0 make -s -C "$ROOT" uninstall DESTDIR="$VC_TMP/local"
	run find "$VC_TMP/local" -type f
	assert_output ""
}

@test "readiness: READY=1 only once the mount answers (slow start), with MAINPID and STATUS, from the daemon itself" {
	listen
	# fault point serve: 1.5 s between mounting and serving, so a READY=1
	# sent before the mount answers would find INIT still unanswered.
	NOTIFY_SOCKET=$NOTIFY VCACHEFS_FAULT=serve:1:delay=1500 vc_mount "$VC_SRC" "$VC_MNT"
	grep -q 'fault injection active: serve:1:delay=1500' "$VC_LOG" ||
		skip "this build has no fault injection: the window is not widened"
	wait_for "$NLOG" '^CHECK read'
	cat "$NLOG"
	grep -qx 'CHECK waiting=0' "$NLOG" || fail "READY=1 before the daemon answered: $(cat "$NLOG")"
	grep -qx 'CHECK mounted=fuse.vcachefs' "$NLOG"
	grep -qx 'CHECK read=hello' "$NLOG"
	run msgs
	assert_line --index 0 "READY=1|MAINPID=$VC_PID|STATUS=serving $VC_SRC at $VC_MNT"
	# Sent by the daemon (the credentials of the datagram).
	assert_equal "$(sed -n 1p "$NLOG")" "PID $VC_PID"
	vc_umount
	wait_for "$NLOG" '^MSG STOPPING=1'
	assert_equal "$(msgs | grep -c 'READY=1')" 1
	msgs | tail -1 | grep -q '^STOPPING=1|STATUS=stopping'
}

@test "readiness, the control: during a slow start the connection's waiting count shows INIT unanswered" {
	# What the listener's check reads is real: mounted but not yet
	# serving, the kernel holds INIT for the daemon, so a READY=1 sent
	# then would have found waiting >= 1.
	VCACHEFS_FAULT=serve:1:delay=3000 vc_mount "$VC_SRC" "$VC_MNT"
	grep -q 'fault injection active' "$VC_LOG" || skip "no fault injection in this build"
	local minor w
	minor=$(awk -v m="$VC_MNT" '$5 == m { split($3, d, ":"); print d[2] }' /proc/self/mountinfo)
	[ -n "$minor" ]
	w=$(cat "/sys/fs/fuse/connections/$minor/waiting")
	assert_equal "$(cat "$VC_MNT/a.img")" hello
	[ "$w" -ge 1 ] || skip "the 3 s slow start was over before we looked (waiting=$w)"
	assert_equal "$(cat "/sys/fs/fuse/connections/$minor/waiting")" 0
	vc_umount
}

@test "readiness: nothing is sent without NOTIFY_SOCKET (strace: no datagram socket), and the trace sees it with one" {
	local wrap=$VC_TMP/wrap-vcachefs
	printf '#!/bin/sh\nexec strace -f -qq -e trace=socket,sendmsg -o "$TRACE" "%s" "$@"\n' \
	    "$VCACHEFS" >"$wrap"
	chmod +x "$wrap"
	export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0
	unset NOTIFY_SOCKET
	TRACE=$VC_TMP/trace.none VCACHEFS=$wrap vc_mount "$VC_SRC" "$VC_MNT"
	assert_equal "$(cat "$VC_MNT/a.img")" hello
	vc_umount
	[ -s "$VC_TMP/trace.none" ] || fail "no trace written"
	grep -q 'socket(AF_UNIX, SOCK_STREAM' "$VC_TMP/trace.none"	# the control socket
	run grep -E 'SOCK_DGRAM|sendmsg' "$VC_TMP/trace.none"
	assert_failure
	# The same run with a listener: the trace shows the datagrams.
	listen
	TRACE=$VC_TMP/trace.some VCACHEFS=$wrap NOTIFY_SOCKET=$NOTIFY vc_mount "$VC_SRC" "$VC_MNT"
	wait_for "$NLOG" '^CHECK read'
	vc_umount
	wait_for "$NLOG" '^MSG STOPPING=1'
	grep -q 'socket(AF_UNIX, SOCK_DGRAM' "$VC_TMP/trace.some"
	grep -q 'sendmsg(' "$VC_TMP/trace.some"
}

@test "reload under a service manager: RELOADING=1 then READY=1 for vcachefsctl reload and SIGHUP; a rejected file says so" {
	listen
	printf '[a.img]\ncache = none\n' >"$VC_TMP/vc.conf"
	NOTIFY_SOCKET=$NOTIFY vc_mount -c "$VC_TMP/vc.conf" --control "$VC_TMP/ctl.sock" \
	    "$VC_SRC" "$VC_MNT"
	wait_for "$NLOG" '^CHECK read'
	run -0 "$VCTL" -s "$VC_TMP/ctl.sock" reload
	wait_for "$NLOG" 'configuration reloaded'
	kill -HUP "$VC_PID"
	wait_for "$NLOG" 'configuration reloaded.*' 20
	local i
	for i in $(seq 1 400); do
		[ "$(msgs | grep -c 'configuration reloaded')" -ge 2 ] && break
		sleep 0.05
	done
	printf '[a.img]\ncache = sometimes\n' >"$VC_TMP/vc.conf"
	run "$VCTL" -s "$VC_TMP/ctl.sock" reload
	assert_failure
	wait_for "$NLOG" 'reload rejected'
	run msgs
	echo "$output"
	# READY, then three RELOADING=1/READY=1 pairs in order.
	assert_line --index 0 --partial 'READY=1|MAINPID='
	assert_line --index 1 --regexp '^RELOADING=1\|MONOTONIC_USEC=[0-9]+\|STATUS=reloading'
	assert_line --index 2 "READY=1|STATUS=serving $VC_SRC at $VC_MNT; configuration reloaded"
	assert_line --index 3 --regexp '^RELOADING=1\|MONOTONIC_USEC=[0-9]+\|'
	assert_line --index 4 "READY=1|STATUS=serving $VC_SRC at $VC_MNT; configuration reloaded"
	assert_line --index 5 --regexp '^RELOADING=1\|MONOTONIC_USEC=[0-9]+\|'
	assert_line --index 6 "READY=1|STATUS=serving $VC_SRC at $VC_MNT; reload rejected, the old configuration stays"
	vc_umount
}

@test "stop under a service manager with an image open: refused, STATUS names it; unmounts and exits 0 once it is closed" {
	listen
	NOTIFY_SOCKET=$NOTIFY vc_mount "$VC_SRC" "$VC_MNT"
	wait_for "$NLOG" '^CHECK read'
	hold_open "$VC_MNT/a.img"
	kill -TERM "$VC_PID"
	wait_for "$NLOG" '^MSG STATUS=stop pending: 1 image\(s\) open: a\.img'
	wait_for "$VC_LOG" 'refusing to stop: 1 image\(s\) open'
	grep -q 'stop pending (service manager)' "$VC_LOG"
	# Still serving while the image is open.
	kill -0 "$VC_PID"
	vc_is_mounted "$VC_MNT"
	assert_equal "$(cat "$VC_MNT/a.img")" hello
	! grep -q 'STOPPING=1' "$NLOG"
	# The guest closes it: the pending stop completes by itself.
	kill -9 "$HOLDER"; wait "$HOLDER" 2>/dev/null || true
	local rc=0
	vc_wait_exit "$VC_PID" 30 || rc=$?
	cat "$VC_LOG"
	assert_equal "$rc" 0
	! vc_is_mounted "$VC_MNT" || fail "still mounted"
	grep -q 'stop pending: no image open any more, unmounted' "$VC_LOG"
	msgs | tail -1 | grep -q '^STOPPING=1'
}

@test "-o: config=, log_file= and mount(8)/fstab words accepted; an unknown option refused by name; -c with config= refused" {
	printf '[a.img]\nreadonly = yes\n' >"$VC_TMP/vc.conf"
	vc_mount -o "rw,config=$VC_TMP/vc.conf,nofail,_netdev,x-systemd.before=libvirtd.service,defaults,auto" \
	    "$VC_SRC" "$VC_MNT"
	# config= was read: a.img is readonly.
	run bash -c "echo x >>'$VC_MNT/a.img'"
	assert_failure
	[[ $output == *"Read-only file system"* ]] || fail "not readonly: $output"
	vc_umount
	run --separate-stderr "$VCACHEFS" -f -o rw,frobnicate,nofail "$VC_SRC" "$VC_MNT"
	assert_failure 1
	assert_equal "$stderr" "vcachefs: -o: unknown mount option 'frobnicate' (see MOUNT OPTIONS in vcachefs(8))"
	! vc_is_mounted "$VC_MNT"
	run --separate-stderr "$VCACHEFS" -f -o fsname=other "$VC_SRC" "$VC_MNT"
	assert_failure 1
	[[ $stderr == *"vcachefs sets fsname itself"* ]] || fail "$stderr"
	run --separate-stderr "$VCACHEFS" -f -c "$VC_TMP/vc.conf" -o "config=$VC_TMP/vc.conf" "$VC_SRC" "$VC_MNT"
	assert_failure 1
	[[ $stderr == *"-c and -o config= both given"* ]] || fail "$stderr"
	run --separate-stderr "$VCACHEFS" -f -o "config=$VC_TMP/missing.conf" "$VC_SRC" "$VC_MNT"
	assert_failure 1
	[[ $stderr == *missing.conf* ]] || fail "a missing config= file was not an error: $stderr"
}

@test "-o suid,dev (what mount.fuse3 adds): the mount is nosuid,nodev all the same" {
	vc_mount -o rw,dev,suid "$VC_SRC" "$VC_MNT"
	local opts
	opts=$(awk -v m="$VC_MNT" '$5 == m { print $6 }' /proc/self/mountinfo)
	echo "options: $opts"
	[[ ,$opts, == *,nosuid,* ]] || fail "not nosuid: $opts"
	[[ ,$opts, == *,nodev,* ]] || fail "not nodev: $opts"
	vc_umount
}

# Run SCRIPT (bash) in a private mount namespace in which /usr/local/sbin
# holds only "vcachefs" (the build under test): mount.fuse3 runs it by
# /bin/sh without PATH, so it is found there as an installed one would be.
# The script may write daemon pids to $NSPIDS for the teardown.
in_ns() {	# SCRIPT ARGS...
	local sbin=$VC_TMP/sbin
	mkdir -p "$sbin"
	ln -sf "$VCACHEFS" "$sbin/vcachefs"
	NSPIDS=$VC_TMP/ns.pids
	NS_PIDS+=("$NSPIDS")
	: >"$NSPIDS"
	timeout -k 5 90 unshare -m --propagation private bash -c '
		mount --bind "$0" /usr/local/sbin || exit 99
		eval "$1"' "$sbin" "$@"
}

# daemon_pid LOG [N]: the pid of the Nth daemon (default 1) to log
# "serving ... (pid P)" to LOG, waiting for that line: the mount helper
# returns once mounted, the line may come just after.
NS_COMMON='
	set -u
	daemon_pid() {
		local i
		for i in $(seq 1 400); do
			[ "$(grep -c "serving .* (pid" "$1" 2>/dev/null)" -ge "${2:-1}" ] && break
			sleep 0.05
		done
		sed -n "s/.*serving .* (pid \([0-9]*\)).*/\1/p" "$1" | sed -n "${2:-1}p"
	}
	gone() { local i; for i in $(seq 1 400); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done; return 1; }
	mnt_opts() {	# options of the vcachefs mounts at $1 (fstype follows "-")
		awk -v m="$1" "{ for (i = 7; \$i != \"-\"; i++); if (\$5 == m && \$(i + 1) == \"fuse.vcachefs\") print \$6 }" /proc/self/mountinfo
	}
	fail() { echo "FAIL: $*"; exit 1; }
'

@test "mount -t fuse.vcachefs (mount.fuse3, daemon mode): config= applies, log_file= gets the log, nosuid,nodev; umount stops it" {
	printf '[ro.img]\nreadonly = yes\n' >"$VC_TMP/vc.conf"
	echo ro >"$VC_SRC/ro.img"
	run in_ns "$NS_COMMON"'
		S=$2 T=$3
		mount -t fuse.vcachefs -o "config=$T/vc.conf,log_file=$T/mnt.log" "$S" "$S" ||
			fail "mount: $?"
		pid=$(daemon_pid "$T/mnt.log"); echo "$pid" >>"$T/ns.pids"
		[ -n "$pid" ] || fail "no serving line: $(cat "$T/mnt.log")"
		grep "vcachefs: serving $S at $S" "$T/mnt.log" || fail "log: $(cat "$T/mnt.log")"
		o=$(mnt_opts "$S"); echo "options $o"
		case ,$o, in *,nosuid,*) ;; *) fail "not nosuid: $o";; esac
		case ,$o, in *,nodev,*) ;; *) fail "not nodev: $o";; esac
		[ "$(cat "$S/a.img")" = hello ] || fail "a.img does not read"
		if echo x >>"$S/ro.img"; then fail "config= not applied: ro.img writable"; fi
		umount "$S" || fail "umount"
		gone "$pid" || fail "daemon $pid still running after umount"
		grep -q "vcachefs: stopped" "$T/mnt.log" || fail "no stop line"
		echo ALL-OK' "$VC_SRC" "$VC_TMP"
	echo "$output"
	assert_success
	assert_line ALL-OK
	! vc_is_mounted "$VC_SRC"
}

@test "fstab: mount -a -T and mount --fstab with the README line (in place, nofail, x-systemd.before=) mount; mount -a again does nothing" {
	printf '%s %s fuse.vcachefs config=%s,log_file=%s,nofail,x-systemd.before=libvirtd.service 0 0\n' \
	    "$VC_SRC" "$VC_SRC" "$ROOT/etc/vcachefs.conf" "$VC_TMP/fstab.log" >"$VC_TMP/fstab"
	cat "$VC_TMP/fstab"
	run in_ns "$NS_COMMON"'
		S=$2 T=$3
		mount -a -T "$T/fstab" || fail "mount -a: $?"
		pid=$(daemon_pid "$T/fstab.log"); echo "$pid" >>"$T/ns.pids"
		[ -n "$pid" ] || fail "no daemon: $(cat "$T/fstab.log")"
		[ "$(cat "$S/a.img")" = hello ] || fail "a.img does not read"
		[ "$(mnt_opts "$S" | wc -l)" = 1 ] || fail "not one vcachefs mount"
		mount -a -T "$T/fstab" || fail "second mount -a: $?"
		[ "$(mnt_opts "$S" | wc -l)" = 1 ] || fail "mounted twice"
		umount "$S"; gone "$pid" || fail "daemon still running"
		mount --fstab "$T/fstab" "$S" || fail "mount --fstab: $?"
		pid=$(daemon_pid "$T/fstab.log" 2); echo "$pid" >>"$T/ns.pids"
		[ -n "$pid" ] || fail "no second daemon: $(cat "$T/fstab.log")"
		[ "$(cat "$S/a.img")" = hello ] || fail "a.img does not read (--fstab)"
		umount "$S"; gone "$pid" || fail "daemon still running"
		echo ALL-OK' "$VC_SRC" "$VC_TMP"
	echo "$output"
	assert_success
	assert_line ALL-OK
}

@test "mount -t fuse.vcachefs without log_file=: the daemon logs to syslog (/dev/log)" {
	# A private /dev (tmpfs) with the few nodes needed and a /dev/log of
	# our own, so the host's /dev is left alone.
	run in_ns "$NS_COMMON"'
		S=$2 T=$3 LISTEN=$4
		mount -t tmpfs -o mode=755 none /dev || exit 99
		mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5
		mknod -m 666 /dev/urandom c 1 9; mknod -m 666 /dev/random c 1 8
		mknod -m 666 /dev/fuse c 10 229
		python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(\"/dev/log\")
open(sys.argv[1] + \".ready\", \"w\").close()
while True:
    with open(sys.argv[1], \"ab\") as f:
        f.write(s.recv(8192) + b\"\\n\")
" "$T/syslog" &
		lp=$!
		for i in $(seq 1 200); do [ -e "$T/syslog.ready" ] && break; sleep 0.05; done
		mount -t fuse.vcachefs "$S" "$S" || { kill $lp; fail "mount: $?"; }
		for i in $(seq 1 400); do grep -q "serving" "$T/syslog" 2>/dev/null && break; sleep 0.05; done
		pid=$(sed -n "s/.*serving .* (pid \([0-9]*\)).*/\1/p" "$T/syslog" | tail -1)
		echo "$pid" >>"$T/ns.pids"
		[ "$(cat "$S/a.img")" = hello ] || fail "a.img does not read"
		umount "$S"; gone "$pid" || fail "daemon still running"
		for i in $(seq 1 400); do grep -q "stopped" "$T/syslog" && break; sleep 0.05; done
		kill $lp
		cat "$T/syslog"
		grep -q "vcachefs\[$pid\]: serving $S at $S" "$T/syslog" || fail "no serving line in syslog"
		grep -q "vcachefs\[$pid\]: stopped" "$T/syslog" || fail "no stop line in syslog"
		echo ALL-OK' "$VC_SRC" "$VC_TMP" "$LISTEN"
	[ "$status" -ne 99 ] || skip "cannot make a private /dev: $output"
	echo "$output"
	assert_success
	assert_line ALL-OK
}

@test "mount -t fuse.vcachefs with an unknown option: mount fails and the message names the option" {
	run in_ns "$NS_COMMON"'
		S=$2 T=$3
		if mount -t fuse.vcachefs -o "frobnicate,log_file=$T/bad.log" "$S" "$S" 2>"$T/err"; then
			fail "mounted with an unknown option"
		fi
		cat "$T/err"
		[ -z "$(mnt_opts "$S")" ] || fail "mounted"
		echo ALL-OK' "$VC_SRC" "$VC_TMP"
	echo "$output"
	assert_success
	assert_line ALL-OK
	assert_line "vcachefs: -o: unknown mount option 'frobnicate' (see MOUNT OPTIONS in vcachefs(8))"
}
