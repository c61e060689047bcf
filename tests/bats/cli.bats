#!/usr/bin/env bats
# Command line: --help, -V, one-line errors with exit 1 for bad input,
# missing /dev/fuse, allow_other without privilege, -c, and what
# /proc/mounts shows (vcachefs(8)).

bats_require_minimum_version 1.5.0
load helper

setup() {
	vc_setup
	# A daemon that wrongly mounts in an error test is unmounted too.
	VC_MOUNTS+=("$VC_MNT")
}

teardown() {
	vc_teardown
}

# The run before failed the contract way: exit 1, nothing on stdout, exactly
# one line on stderr that starts with "vcachefs: " and contains every WORD
# (case-insensitive). Needs run --separate-stderr.
assert_one_error() {	# [--] WORD...
	local w
	[ "${1-}" != -- ] || shift
	if [ "$status" -ne 1 ]; then
		fail "exit status $status, expected 1; stderr: $stderr"
	fi
	assert_equal "$output" ""
	if [ "${#stderr_lines[@]}" -ne 1 ]; then
		fail "expected one line on stderr, got ${#stderr_lines[@]}: $stderr"
	fi
	case $stderr in
	"vcachefs: "*) ;;
	*) fail "stderr does not start with 'vcachefs: ': $stderr" ;;
	esac
	for w in "$@"; do
		case ${stderr,,} in
		*"${w,,}"*) ;;
		*) fail "stderr does not mention '$w': $stderr" ;;
		esac
	done
}

assert_not_mounted() {	# MOUNTPOINT
	if vc_is_mounted "$1"; then
		fail "$1 is mounted: $(grep -F " $1 " /proc/mounts)"
	fi
}

# Number of mounts whose mount point is exactly $1.
mount_count() {
	awk -v m="$1" '$5 == m' /proc/self/mountinfo | wc -l
}

# The mountinfo line of the mount at $1 (topmost).
mountinfo_of() {
	awk -v m="$1" '$5 == m' /proc/self/mountinfo | tail -1
}

# A foreground daemon that must fail before mounting; never hangs the suite.
vc_fail() {	# ARGS...
	timeout -k 2 10 "$VCACHEFS" "$@"
}

@test "--help prints the usage on stdout, mentions every option, exits 0" {
	run --separate-stderr "$VCACHEFS" --help
	assert_success
	assert_equal "$stderr" ""
	assert_line --index 0 --regexp '^usage: vcachefs '
	local opt
	for opt in -c --config -f --foreground -d --debug -o --threads \
	    --log-file --force --check-config -V --version -h --help \
	    SOURCE MOUNTPOINT; do
		assert_output --partial -- "$opt"
	done
	local help=$output
	run --separate-stderr "$VCACHEFS" -h
	assert_success
	assert_equal "$output" "$help"
}

@test "-V and --version print 'vcachefs VERSION' (the Makefile's version)" {
	local version
	version=$(sed -n 's/^VERSION *:= *//p' "$BATS_TEST_DIRNAME/../../Makefile")
	[ -n "$version" ]
	run --separate-stderr "$VCACHEFS" -V
	assert_success
	assert_equal "$stderr" ""
	assert_equal "$output" "vcachefs $version"
	run --separate-stderr "$VCACHEFS" --version
	assert_success
	assert_equal "$output" "vcachefs $version"
}

@test "no arguments: one error line naming MOUNTPOINT, exit 1" {
	run --separate-stderr vc_fail
	assert_one_error MOUNTPOINT
	run --separate-stderr vc_fail -f
	assert_one_error MOUNTPOINT
}

@test "SOURCE that does not exist: one error line, exit 1, nothing mounted" {
	run --separate-stderr vc_fail -f "$VC_TMP/nosuch" "$VC_MNT"
	assert_one_error "$VC_TMP/nosuch" "no such file"
	assert_not_mounted "$VC_MNT"
}

@test "SOURCE that is a file: one error line 'not a directory', exit 1" {
	echo data >"$VC_TMP/file"
	run --separate-stderr vc_fail -f "$VC_TMP/file" "$VC_MNT"
	assert_one_error "$VC_TMP/file" "not a directory"
	assert_not_mounted "$VC_MNT"
}

@test "MOUNTPOINT that is a file: one error line 'not a directory', exit 1" {
	echo data >"$VC_TMP/file"
	run --separate-stderr vc_fail -f "$VC_SRC" "$VC_TMP/file"
	assert_one_error "$VC_TMP/file" "not a directory"
	assert_not_mounted "$VC_TMP/file"
	# In place, too.
	run --separate-stderr vc_fail -f "$VC_TMP/file"
	assert_one_error "$VC_TMP/file" "not a directory"
	assert_not_mounted "$VC_TMP/file"
}

@test "MOUNTPOINT that does not exist: one error line, exit 1" {
	run --separate-stderr vc_fail -f "$VC_SRC" "$VC_TMP/nosuch"
	assert_one_error "$VC_TMP/nosuch" "no such file"
	[ ! -e "$VC_TMP/nosuch" ]
	run --separate-stderr vc_fail -f "$VC_TMP/nosuch"
	assert_one_error "$VC_TMP/nosuch" "no such file"
}

@test "unknown option: one error line naming it, exit 1" {
	run --separate-stderr vc_fail --bogus "$VC_SRC" "$VC_MNT"
	assert_one_error "--bogus"
	run --separate-stderr vc_fail -x "$VC_SRC" "$VC_MNT"
	assert_one_error "-x"
	assert_not_mounted "$VC_MNT"
}

@test "an option without its argument: one error line naming it, exit 1" {
	local opt
	for opt in --threads -c --config --log-file -o; do
		run --separate-stderr vc_fail -f "$opt"
		assert_one_error -- "$opt" "argument"
	done
}

@test "-c naming a config file that does not exist: one error line, exit 1" {
	run --separate-stderr vc_fail -f -c "$VC_TMP/nosuch.conf" "$VC_SRC" "$VC_MNT"
	assert_one_error "$VC_TMP/nosuch.conf"
	assert_not_mounted "$VC_MNT"
}

@test "too many arguments: one error line, exit 1" {
	mkdir "$VC_TMP/third"
	run --separate-stderr vc_fail -f "$VC_SRC" "$VC_MNT" "$VC_TMP/third"
	assert_one_error "too many"
	assert_not_mounted "$VC_MNT"
	assert_not_mounted "$VC_TMP/third"
}

@test "--threads 0, abc, 257, -1, 4x: one error line naming --threads, exit 1" {
	local n
	for n in 0 abc 257 -1 4x ""; do
		run --separate-stderr vc_fail -f --threads "$n" "$VC_SRC" "$VC_MNT"
		assert_one_error "--threads" "'$n'"
	done
	assert_not_mounted "$VC_MNT"
}

@test "--threads 1 and 256 are accepted" {
	echo one >"$VC_SRC/a.img"
	vc_mount --threads 1 "$VC_SRC" "$VC_MNT"
	assert_equal "$(cat "$VC_MNT/a.img")" one
	vc_umount
	vc_mount --threads 256 "$VC_SRC" "$VC_MNT"
	assert_equal "$(cat "$VC_MNT/a.img")" one
	vc_umount
}

@test "a mountpoint that is already a live vcachefs mount: error, not mounted twice" {
	echo first >"$VC_SRC/a.img"
	vc_mount "$VC_SRC" "$VC_MNT"
	assert_equal "$(mount_count "$VC_MNT")" 1
	mkdir "$VC_TMP/other"
	run --separate-stderr vc_fail -f "$VC_TMP/other" "$VC_MNT"
	assert_one_error "$VC_MNT" "already mounted"
	# In place over the live mount, and with --force: refused as well.
	run --separate-stderr vc_fail -f "$VC_MNT"
	assert_one_error "$VC_MNT" "already mounted"
	run --separate-stderr vc_fail -f --force "$VC_TMP/other" "$VC_MNT"
	assert_one_error "$VC_MNT" "already mounted"
	assert_equal "$(mount_count "$VC_MNT")" 1
	# The first mount is untouched and still serves.
	kill -0 "$VC_PID"
	assert_equal "$(cat "$VC_MNT/a.img")" first
	vc_umount
	assert_equal "$(mount_count "$VC_MNT")" 0
}

@test "no /dev/fuse (private mount namespace): one error line naming /dev/fuse, exit 1" {
	# Hide /dev behind an empty tmpfs in a private namespace; only
	# /dev/null is recreated there.
	run --separate-stderr timeout -k 2 10 unshare -m sh -c '
		mount -t tmpfs -o mode=755 none /dev || exit 99
		mknod -m 666 /dev/null c 1 3 || exit 99
		exec "$0" -f "$1" "$2"' "$VCACHEFS" "$VC_SRC" "$VC_MNT"
	[ "$status" -ne 99 ] || skip "cannot hide /dev in a private mount namespace: $stderr"
	assert_one_error "/dev/fuse" "no such file"
	assert_not_mounted "$VC_MNT"
}

# Run as nobody in a private mount namespace in which /dev/fuse may be opened
# by anyone and /etc/fuse.conf has no user_allow_other (the host files are
# left alone). ARGS are passed to vcachefs.
as_nobody() {	# ARGS...
	local dev=$VC_TMP/dev
	mkdir -p "$dev"
	printf '# no user_allow_other here\n#user_allow_other\n' >"$VC_TMP/fuse.conf"
	chmod 644 "$VC_TMP/fuse.conf"
	timeout -k 2 20 unshare -m sh -c '
		dev=$1 conf=$2; shift 2
		mount -t tmpfs -o mode=755 none "$dev" || exit 99
		mknod -m 666 "$dev/fuse" c 10 229 || exit 99
		mount --bind "$dev/fuse" /dev/fuse || exit 99
		if [ -e /etc/fuse.conf ]; then
			mount --bind "$conf" /etc/fuse.conf || exit 99
		fi
		exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
	' sh "$dev" "$VC_TMP/fuse.conf" "$@"
}

@test "-o allow_other as non-root without user_allow_other: one error line, exit 1" {
	chown 65534:65534 "$VC_SRC" "$VC_MNT"
	run --separate-stderr as_nobody "$VCACHEFS" -f -o allow_other "$VC_SRC" "$VC_MNT"
	[ "$status" -ne 99 ] || skip "cannot set up the private namespace: $stderr"
	assert_one_error "allow_other" "user_allow_other"
	assert_not_mounted "$VC_MNT"
}

@test "as non-root: mounted with default_permissions and without allow_other" {
	chown 65534:65534 "$VC_SRC" "$VC_MNT"
	echo hello >"$VC_SRC/a.img"
	chown 65534:65534 "$VC_SRC/a.img"
	# In the namespace: mount as nobody, print the mountinfo line and what
	# a read through the mount gives, unmount, report the daemon status.
	cat >"$VC_TMP/nobody.sh" <<'EOF'
vc=$1 src=$2 mnt=$3 log=$4
"$vc" -f "$src" "$mnt" 2>"$log" &
pid=$!
i=0
while ! awk -v m="$mnt" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; do
	i=$((i + 1))
	if [ $i -gt 200 ] || ! kill -0 $pid 2>/dev/null; then
		echo "not mounted"; cat "$log"; exit 98
	fi
	sleep 0.05
done
echo "mountinfo: $(awk -v m="$mnt" '$5 == m' /proc/self/mountinfo)"
echo "read: $(cat "$mnt/a.img")"
fusermount3 -u "$mnt"
wait $pid
echo "daemon exit: $?"
EOF
	mkdir "$VC_TMP/nobody"
	chown 65534:65534 "$VC_TMP/nobody"
	run --separate-stderr as_nobody sh "$VC_TMP/nobody.sh" "$VCACHEFS" \
	    "$VC_SRC" "$VC_MNT" "$VC_TMP/nobody/daemon.log"
	[ "$status" -ne 99 ] || skip "cannot set up the private namespace: $stderr"
	echo "$output"
	echo "stderr: $stderr"
	cat "$VC_TMP/nobody/daemon.log" >>"$VC_LOG"
	assert_success
	assert_line "read: hello"
	assert_line "daemon exit: 0"
	local line super
	line=$(printf '%s\n' "$output" | sed -n 's/^mountinfo: //p')
	[ -n "$line" ]
	super=${line##* }
	[[ ,$super, == *,default_permissions,* ]] || fail "no default_permissions: $line"
	[[ ,$super, != *,allow_other,* ]] || fail "allow_other as non-root: $line"
	[[ ,$super, == *,user_id=65534,* ]] || fail "not mounted by uid 65534: $line"
	assert_not_mounted "$VC_MNT"
}

@test "-c with a valid config file is used (readonly image refuses writes)" {
	printf '[global]\ncache = writeback\n\n[ro.img]\nreadonly = yes\n' >"$VC_TMP/vc.conf"
	echo before >"$VC_SRC/ro.img"
	echo before >"$VC_SRC/rw.img"
	vc_mount -c "$VC_TMP/vc.conf" "$VC_SRC" "$VC_MNT"
	echo after >"$VC_MNT/rw.img"
	run sh -c 'echo after >"$1"' sh "$VC_MNT/ro.img"
	assert_failure
	assert_output --partial "Read-only file system"
	assert_equal "$(cat "$VC_MNT/ro.img")" before
	vc_umount
	assert_equal "$(cat "$VC_SRC/ro.img")" before
	assert_equal "$(cat "$VC_SRC/rw.img")" after
}

@test "-c with a config file that has errors: exit 1, not mounted, one FILE:LINE line an error" {
	printf '[global]\ncache = sometimes\nbogus = 1\n' >"$VC_TMP/bad.conf"
	run --separate-stderr vc_fail -f -c "$VC_TMP/bad.conf" "$VC_SRC" "$VC_MNT"
	assert_equal "$status" 1
	assert_equal "$output" ""
	# Two mistakes, two lines, and no summary line after them.
	assert_equal "$stderr" "vcachefs: $VC_TMP/bad.conf:2: cache: unknown mode 'sometimes' (expected writeback, writethrough, none, directsync, unsafe)
vcachefs: $VC_TMP/bad.conf:3: unknown key 'bogus' (expected cache, aio, readonly, format, shareable)"
	[[ $stderr == *"$VC_TMP/bad.conf"* ]] || fail "the file is not named: $stderr"
	[[ $stderr == vcachefs:* ]] || fail "stderr does not start with vcachefs: $stderr"
	[[ $stderr == *sometimes* ]] || fail "the bad value is not named: $stderr"
	assert_not_mounted "$VC_MNT"
}

@test "without -c, a missing default config means built-in defaults" {
	[ ! -e /etc/vcachefs.conf ] || skip "/etc/vcachefs.conf exists on this machine"
	echo data >"$VC_SRC/a.img"
	vc_mount "$VC_SRC" "$VC_MNT"
	assert_equal "$(cat "$VC_MNT/a.img")" data
	echo more >>"$VC_MNT/a.img"
	vc_umount
	assert_equal "$(cat "$VC_SRC/a.img")" "$(printf 'data\nmore')"
}

@test "/proc/mounts: type fuse.vcachefs, absolute SOURCE as source; allow_other,default_permissions as root" {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
	cd "$VC_TMP"
	# A relative SOURCE, shown absolute.
	vc_mount src "$VC_MNT"
	run awk -v m="$VC_MNT" '$2 == m { print $1, $3 }' /proc/mounts
	assert_output "$VC_SRC fuse.vcachefs"
	local line fields
	line=$(mountinfo_of "$VC_MNT")
	echo "mountinfo: $line"
	read -r -a fields <<<"${line#* - }"
	assert_equal "${fields[0]}" fuse.vcachefs
	assert_equal "${fields[1]}" "$VC_SRC"
	[[ ,${fields[2]}, == *,allow_other,* ]] || fail "no allow_other: $line"
	[[ ,${fields[2]}, == *,default_permissions,* ]] || fail "no default_permissions: $line"
	# Without -o: neither noatime nor noexec (the in-place test sets them).
	[[ ,$(awk '{ print $6 }' <<<"$line"), != *,noexec,* ]] || fail "noexec without -o: $line"
	[[ ,$(awk '{ print $6 }' <<<"$line"), != *,noatime,* ]] || fail "noatime without -o: $line"
	vc_umount
}

@test "/proc/mounts in place: source is the mountpoint itself; extra -o options reach the mount" {
	local rel
	cd "$VC_TMP"
	vc_mount -o noatime -o noexec "$VC_MNT"
	run awk -v m="$VC_MNT" '$2 == m { print $1, $3 }' /proc/mounts
	assert_output "$VC_MNT fuse.vcachefs"
	local line
	line=$(mountinfo_of "$VC_MNT")
	echo "mountinfo: $line"
	# Per-mount options (field 6).
	rel=$(awk '{ print $6 }' <<<"$line")
	[[ ,$rel, == *,noatime,* ]] || fail "-o noatime not applied: $line"
	[[ ,$rel, == *,noexec,* ]] || fail "-o noexec not applied: $line"
	vc_umount
}
