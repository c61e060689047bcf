#!/usr/bin/env bats
# The Debian package: make deb builds it (dpkg-buildpackage -us -uc -b, with
# hardening=+all and -Werror), lintian has no errors and no warnings outside
# the allow-list, real apt installs it, the installed programs run, dpkg -L
# lists the files where they are, and a purge takes everything away again,
# the conffile too. The tests run in order; each needs the one before.
#
# It installs into the system (/usr/sbin, /etc/vcachefs.conf), so it runs
# only as root, and not when a vcachefs package or an /etc/vcachefs.conf
# that is not this suite's is already there.

bats_require_minimum_version 1.5.0
load helper

REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
VERSION=$(sed -n 's/^VERSION *:= *//p' "$REPO/Makefile")
PKGVER=$VERSION-1
ARCH=$(dpkg --print-architecture)
DEB_DIR=$BATS_FILE_TMPDIR/deb
DEB=$DEB_DIR/vcachefs_${PKGVER}_$ARCH.deb
STATE=$BATS_FILE_TMPDIR/installed	# exists while this suite has it installed

# Lintian warnings that are expected, each explained in debian/README.source.
LINTIAN_ALLOWED=(
	initial-upload-closes-no-bugs	# no ITP bug: the package is built upstream
)

# apt and dpkg wait for the lock (other package work on the host) instead
# of failing at once.
APT=(apt-get -y -q -o DPkg::Lock::Timeout=600)

setup_file() {
	[ "$(id -u)" -eq 0 ] || return 0
	# What is there already is the host's (an interrupted run of this suite
	# leaves nothing: teardown_file purges) and stays untouched.
	if dpkg-query -W -f='${Status}' vcachefs 2>/dev/null | grep -q installed; then
		echo "vcachefs package already installed" >"$BATS_FILE_TMPDIR/refuse"
	elif [ -e /etc/vcachefs.conf ]; then
		echo "/etc/vcachefs.conf exists on this machine" >"$BATS_FILE_TMPDIR/refuse"
	fi
}

teardown_file() {
	# However the tests ended, what this suite installed goes again.
	if [ -e "$STATE" ]; then
		"${APT[@]}" purge vcachefs >&3 2>&1 || true
	fi
}

setup() {
	[ "$(id -u)" -eq 0 ] || skip "needs root (installs a package)"
	[ ! -e "$BATS_FILE_TMPDIR/refuse" ] || skip "$(cat "$BATS_FILE_TMPDIR/refuse")"
}

# say MESSAGE: a TAP comment in the suite's output.
say() { echo "# $*" >&3; }

# phase NAME COMMAND...: runs COMMAND and reports how long it took.
phase() {
	local name=$1 t0=$EPOCHREALTIME rc
	shift
	"$@"
	rc=$?
	say "$name: $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
	return $rc
}

@test "make deb: dpkg-buildpackage -b with hardening=+all and -Werror; binaries hardened, no sanitizer runtime" {
	# The build gets only the package's flags, not those of a make check
	# that runs this suite.
	run phase "make deb" env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u CFLAGS \
	    -u CPPFLAGS -u LDFLAGS make -C "$REPO" --no-print-directory deb DEB_DIR="$DEB_DIR"
	echo "$output" >"$BATS_FILE_TMPDIR/build.log"
	assert_success
	assert_file_exists "$DEB"
	[ ! -e "$DEB_DIR/vcachefs-$VERSION" ] || fail "make deb left its copy of the tree"
	# The Makefile's own -Werror next to dpkg-buildflags' hardening flags.
	grep -E '^cc .*-Werror .*-D_FORTIFY_SOURCE=2 .*-fstack-protector-strong .*-c -o build/obj/vcachefs/main.o' \
	    "$BATS_FILE_TMPDIR/build.log" >/dev/null || fail "main.o not compiled with -Werror and the hardening flags"
	grep -E '^cc .*-Wl,-z,relro -Wl,-z,now( .*)? -o build/vcachefs ' "$BATS_FILE_TMPDIR/build.log" >/dev/null ||
	    fail "vcachefs not linked with the hardening LDFLAGS"

	local x d
	d=$BATS_FILE_TMPDIR/x
	dpkg-deb -x "$DEB" "$d"
	for x in "$d/usr/sbin/vcachefs" "$d/usr/sbin/vcachefsctl"; do
		run readelf -W -d -h "$x"
		assert_output --regexp 'Type: +DYN'		# PIE
		assert_output --regexp 'FLAGS_1\).*NOW'	# bindnow
		refute_output --regexp 'NEEDED.*lib(asan|ubsan|lsan|tsan)'
		run readelf -W -l "$x"
		assert_output --partial GNU_RELRO
		run readelf -W --dyn-syms "$x"
		assert_output --partial __stack_chk_fail
		assert_output --regexp '__[a-z]+_chk@'	# fortified calls
		refute_output --partial __asan_
		refute_output --partial __ubsan_
	done
}

@test "lintian: no errors, no warnings outside the allow-list" {
	local changes=$DEB_DIR/vcachefs_${PKGVER}_$ARCH.changes
	assert_file_exists "$changes"
	run phase lintian lintian --display-experimental --pedantic "$changes"
	# lintian's own exit status: 0, or 1 when it reports an error.
	[ "$status" -le 1 ] || fail "lintian failed: $output"
	sed 's/^/# /' <<<"$output" >&3
	refute_line --regexp '^E: '
	local line tag bad=()
	while read -r line; do
		tag=$(awk '{ print $3 }' <<<"$line")
		[[ " ${LINTIAN_ALLOWED[*]} " == *" $tag "* ]] || bad+=("$line")
	done < <(grep -E '^W: ' <<<"$output")
	[ ${#bad[@]} -eq 0 ] || fail "lintian warnings not in the allow-list: ${bad[*]}"
}

@test "apt-get install ./deb: the dependencies resolve on this release; the binaries use only its libraries" {
	assert_file_exists "$DEB"
	touch "$STATE"
	run phase "apt-get install" "${APT[@]}" install "$DEB"
	assert_success
	run dpkg-query -W -f='${Status} ${Version}' vcachefs
	assert_output "install ok installed $PKGVER"
	run dpkg-query -W -f='${Depends}' vcachefs
	assert_output --regexp '(^|, )fuse3(,|$)'
	assert_output --partial libfuse3-3

	# Each library the programs are linked to comes from a package in
	# Depends, and each dependency has a version in this release's archive
	# (the one apt just resolved against) that satisfies it.
	local codename dep name op want lib path pkg x n=0
	codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
	run dpkg-query -W -f='${Depends}' vcachefs
	local depends=$output
	while read -r dep; do
		read -r name op want <<<"$(sed -E 's/^([^ ]+)( \((..?) ([^)]+)\))?$/\1 \3 \4/' <<<"$dep")"
		apt-cache madison "$name" | awk -F'|' -v c="$codename" '$3 ~ (" " c "[-/]") {
		    gsub(/ /, "", $2); print $2 }' >"$BATS_FILE_TMPDIR/versions"
		local v ok=
		while read -r v; do
			if [ -z "$op" ] || dpkg --compare-versions "$v" "$op" "$want"; then ok=$v; fi
		done <"$BATS_FILE_TMPDIR/versions"
		[ -n "$ok" ] || fail "Depends $dep: no version in $codename satisfies it"
		say "Depends $dep: $name $ok in $codename"
	done < <(tr ',' '\n' <<<"$depends" | sed 's/^ *//')
	for x in /usr/sbin/vcachefs /usr/sbin/vcachefsctl; do
		run readelf -W -d "$x"
		refute_output --regexp 'NEEDED.*lib(asan|ubsan|lsan|tsan)'
		while read -r lib path; do
			grep -q "\[$lib\]" <<<"$output" || continue	# loaded by another library
			path=$(realpath "$path")
			# usr-merged path, or the one dpkg knows from before
			pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "${path#/usr}" 2>/dev/null) ||
			    fail "$lib ($path) is in no package"
			pkg=${pkg%%:*}
			[[ ", $depends," == *", $pkg "[,\(]* || ", $depends," == *", $pkg,"* ]] ||
			    fail "$x needs $lib of $pkg, which Depends lacks"
			n=$((n + 1))
		done < <(ldd "$x" | awk '$2 == "=>" { print $1, $3 }')
	done
	[ "$n" -ge 5 ] || fail "only $n linked libraries found"
}

@test "the installed programs run: --version, --check-config on the conffile, vcachefsctl --help" {
	[ -e "$STATE" ] || fail "not installed"
	run --separate-stderr /usr/sbin/vcachefs --version
	assert_success
	assert_output "vcachefs $VERSION"
	# The default configuration path finds the conffile.
	run --separate-stderr vcachefs --check-config
	assert_success
	assert_output --partial "/etc/vcachefs.conf: configuration OK"
	# ... and, as installed, only its [global] applies: the example
	# sections are commented out, so an install changes no image's mode.
	local src
	src=$(mktemp -d /var/tmp/vcachefs-deb.XXXXXX)
	touch "$src/debian.iso" "$src/win10.qcow2"
	run --separate-stderr vcachefs --check-config -c /etc/vcachefs.conf "$src"
	rm -rf "$src"
	assert_success
	assert_output --regexp 'debian\.iso: cache=writeback .*readonly=no .*\[global\]'
	assert_output --regexp 'win10\.qcow2: cache=writeback .*\[global\]'
	run --separate-stderr vcachefsctl --help
	assert_success
	assert_output --partial "usage: vcachefsctl"
}

@test "dpkg -L: binaries, unit, man pages and conffile are where it says; the template unit is not enabled" {
	[ -e "$STATE" ] || fail "not installed"
	local list f m sec expect=(/usr/sbin/vcachefs /usr/sbin/vcachefsctl /etc/vcachefs.conf
	    /etc/libvirt/hooks/qemu.d/vcachefs)
	list=$(dpkg -L vcachefs)
	for m in "$REPO"/man/*.[58]; do
		sec=${m##*.}
		expect+=("/usr/share/man/man$sec/$(basename "$m").gz")
		# The installed page is the source's.
		cmp <(zcat "/usr/share/man/man$sec/$(basename "$m").gz") "$m" ||
		    fail "installed $(basename "$m") differs from man/"
	done
	expect+=(/lib/systemd/system/vcachefs@.service)
	for f in "${expect[@]}"; do
		grep -qx -- "$f" <<<"$list" || fail "dpkg -L does not list $f"
		[ -f "$f" ] || fail "$f listed but not there"
	done
	cmp /lib/systemd/system/vcachefs@.service "$REPO/etc/vcachefs@.service"
	# The programs the unit runs are the package's.
	local progs
	progs=$(grep -oE '^Exec[A-Za-z]+=-?/[^ ]+' /lib/systemd/system/vcachefs@.service | sed 's/^[^=]*=-\?//' | sort -u)
	[ -n "$progs" ] || fail "the unit runs no program"
	for f in $progs; do
		grep -qx -- "$f" <<<"$list" || fail "the unit runs $f, which the package lacks"
	done
	# A template has no instance to enable or start: no maintainer
	# script and no symlink for it.
	run find /etc/systemd -name 'vcachefs*'
	assert_output ""
	for f in postinst prerm postrm; do
		! grep -qs vcachefs@ "$(dpkg-query --control-path vcachefs "$f")" ||
		    fail "$f handles the template unit"
	done
	run dpkg-query -W -f='${Conffiles}' vcachefs
	# Every file under /etc is a conffile (dh_installdeb): the config and
	# the libvirt hook.
	assert_output --regexp '^ ?/etc/libvirt/hooks/qemu.d/vcachefs [0-9a-f]{32}
 ?/etc/vcachefs.conf [0-9a-f]{32}$|^ ?/etc/vcachefs.conf [0-9a-f]{32}
 ?/etc/libvirt/hooks/qemu.d/vcachefs [0-9a-f]{32}$'
	cmp /etc/vcachefs.conf "$REPO/etc/vcachefs.conf"
	cmp /etc/libvirt/hooks/qemu.d/vcachefs "$REPO/etc/libvirt/hooks/qemu.d/vcachefs"
	[ -x /etc/libvirt/hooks/qemu.d/vcachefs ]
}

@test "apt-get purge: every file goes, the conffile too" {
	[ -e "$STATE" ] || fail "not installed"
	local list f
	# Directories other packages share (libvirt's hooks too) stay.
	list=$(dpkg -L vcachefs | grep -vE '^/(\.|etc|etc/libvirt(/hooks(/qemu\.d)?)?|lib|usr|usr/sbin|usr/share(/doc|/man(/man[58])?)?|lib/systemd(/system)?)$')
	run phase "apt-get purge" "${APT[@]}" purge vcachefs
	assert_success
	rm -f "$STATE"
	run dpkg-query -W -f='${Status}' vcachefs
	refute_output --partial installed
	[ ! -e /etc/vcachefs.conf ] || fail "the conffile survived the purge"
	while read -r f; do
		[ ! -e "$f" ] || fail "$f survived the purge"
	done <<<"$list"
}
