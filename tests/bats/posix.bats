#!/usr/bin/env bats
# POSIX behaviour through the mount equals the plain directory: xattrs,
# SEEK_DATA/SEEK_HOLE, fallocate, copy_file_range, the namespace operations,
# attributes, statfs, ownership of new files, O_DIRECT and readdir. Each
# test does the same operations through the mount and on a reference copy
# in a plain directory, and compares what is observable, including the
# backing files seen directly.

load helper
load data_helper

setup() {
	vc_setup
	dh_setup
	vc_mount "$VC_SRC" "$VC_MNT"
	M=$VC_MNT	# through the mount
	B=$VC_SRC	# the backing files, directly
	R=$DH_REF	# plain reference directory
}

teardown() {
	dh_cleanup
	vc_teardown
}

# "errno text" of a failing command, without the path it names.
err_of() {
	local e
	if e=$("$@" 2>&1 >/dev/null); then
		echo success
	else
		e=$(printf '%s\n' "$e" | tail -1)
		echo "${e##*: }"
	fi
}

# rename(2) as one syscall, printing the errno name or "ok".
py_rename() {	# OLD NEW
	python3 -c '
import errno, os, sys
try:
    os.rename(sys.argv[1], sys.argv[2]); print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])' "$1" "$2"
}

# ---- xattrs ----

@test "xattr: user.* and trusted.libvirt.security.* set through the mount are on the backing file" {
	echo data >"$M/img"
	setfattr -n user.test -v hello "$M/img"
	setfattr -n trusted.libvirt.security.dac -v "+107:+107" "$M/img"
	setfattr -n trusted.libvirt.security.ref_dac -v 1 "$M/img"
	setfattr -n trusted.libvirt.security.timestamp_dac -v 1700000000 "$M/img"
	# A binary value of 3000 bytes.
	big=0x$(head -c 3000 /dev/urandom | od -An -v -tx1 | tr -d ' \n')
	setfattr -n user.big -v "$big" "$M/img"

	# Read back directly from the backing file.
	run getfattr --absolute-names --only-values -n user.test "$B/img"
	assert_success
	assert_output "hello"
	run getfattr --absolute-names --only-values -n trusted.libvirt.security.dac "$B/img"
	assert_success
	assert_output "+107:+107"
	run sh -c 'getfattr --absolute-names -e hex -n user.big "$1" | sed -n "s/^user.big=//p"' sh "$B/img"
	assert_output "$big"
	# And through the mount.
	run sh -c 'getfattr --absolute-names -e hex -n user.big "$1" | sed -n "s/^user.big=//p"' sh "$M/img"
	assert_output "$big"

	# listxattr through the mount equals the backing file's, and the dump
	# of every namespace root can see is the same.
	mnt=$(cd "$M" && getfattr --absolute-names -d -m - -e hex img)
	back=$(cd "$B" && getfattr --absolute-names -d -m - -e hex img)
	dh_same "getfattr --absolute-names -d" "$mnt" "$back"
	echo "$mnt" | grep -q '^trusted.libvirt.security.ref_dac='
	echo "$mnt" | grep -q '^user.test='
	mnt=$(python3 -c 'import os,sys; print(sorted(os.listxattr(sys.argv[1])))' "$M/img")
	back=$(python3 -c 'import os,sys; print(sorted(os.listxattr(sys.argv[1])))' "$B/img")
	dh_same listxattr "$mnt" "$back"

	# removexattr through the mount removes it from the backing file.
	setfattr -x trusted.libvirt.security.ref_dac "$M/img"
	setfattr -x user.test "$M/img"
	run getfattr --absolute-names -n user.test "$B/img"
	assert_failure
	assert_output --partial "No such attribute"
	run getfattr --absolute-names -n trusted.libvirt.security.ref_dac "$B/img"
	assert_failure
	run getfattr --absolute-names -n user.test "$M/img"
	assert_failure
	assert_output --partial "No such attribute"
	run getfattr --absolute-names --only-values -n trusted.libvirt.security.dac "$M/img"
	assert_output "+107:+107"

	# An attribute set on the backing file directly is seen through the mount.
	setfattr -n user.direct -v fromback "$B/img"
	run getfattr --absolute-names --only-values -n user.direct "$M/img"
	assert_success
	assert_output "fromback"
	# The data is untouched.
	run cat "$B/img"
	assert_output "data"
}

@test "xattr: XATTR_CREATE/XATTR_REPLACE, missing names and directories behave as on the plain dir" {
	script='
import errno, os, sys
p = sys.argv[1]
def t(what, f):
    try:
        f(); print(what, "ok")
    except OSError as e:
        print(what, errno.errorcode[e.errno])
t("create-new", lambda: os.setxattr(p, "user.a", b"1", os.XATTR_CREATE))
t("create-again", lambda: os.setxattr(p, "user.a", b"2", os.XATTR_CREATE))
t("replace-missing", lambda: os.setxattr(p, "user.b", b"3", os.XATTR_REPLACE))
t("replace", lambda: os.setxattr(p, "user.a", b"4444", os.XATTR_REPLACE))
print("value", os.getxattr(p, "user.a"))
t("get-missing", lambda: os.getxattr(p, "user.nope"))
t("remove-missing", lambda: os.removexattr(p, "user.nope"))
t("empty-value", lambda: os.setxattr(p, "user.empty", b""))
print("empty", os.getxattr(p, "user.empty"))
t("value-8000", lambda: os.setxattr(p, "user.v8000", b"v" * 8000))
t("value-70000", lambda: os.setxattr(p, "user.v70000", b"v" * 70000))
t("name-256", lambda: os.setxattr(p, "user." + "n" * 251, b"1"))
t("no-namespace", lambda: os.setxattr(p, "nonamespace", b"1"))
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(1)
n = libc.getxattr(p.encode(), b"user.a", None, 0)
print("size-query", n)
n = libc.getxattr(p.encode(), b"user.a", buf, 0 if n == 0 else n - 1 if n > 1 else 0)
print("small-buffer", n, errno.errorcode.get(ctypes.get_errno(), "none") if n < 0 else "")
n = libc.listxattr(p.encode(), buf, 1)
print("small-list-buffer", n, errno.errorcode.get(ctypes.get_errno(), "none") if n < 0 else "")
print("list", sorted(os.listxattr(p)))
'
	mkdir "$M/dir" "$R/dir"
	echo x >"$M/f"
	echo x >"$R/f"
	for n in f dir; do
		mnt=$(python3 -c "$script" "$M/$n")
		ref=$(python3 -c "$script" "$R/$n")
		echo "$mnt"
		dh_same "xattr results on $n" "$mnt" "$ref"
		# The backing file has exactly the attributes listed through the mount.
		dh_same "backing listxattr of $n" "$(echo "$mnt" | grep '^list')" \
			"$(python3 -c 'import os,sys; print("list", sorted(os.listxattr(sys.argv[1])))' "$B/$n")"
	done
	# The directory attribute is on the backing directory.
	run getfattr --absolute-names --only-values -n user.a "$B/dir"
	assert_output "4444"
}

# ---- SEEK_DATA / SEEK_HOLE ----

sparse_cmds=(-c 'truncate 16m' -c 'pwrite -q -S 0x11 1m 64k' -c 'pwrite -q -S 0x22 8m 128k'
	-c 'pwrite -q -S 0x33 12m 5000' -c 'pwrite -q -S 0x44 16380k 4k')

@test "SEEK_DATA/SEEK_HOLE: a sparse file maps the same through the mount, on the backing file and on a plain copy" {
	xfs_io -f "${sparse_cmds[@]}" "$M/sparse"
	xfs_io -f "${sparse_cmds[@]}" "$R/sparse"
	dh_cmp "$M/sparse" "$R/sparse"
	dh_cmp "$B/sparse" "$R/sparse"

	mnt=$(xfs_io -r -c 'seek -a -r 0' "$M/sparse")
	back=$(xfs_io -r -c 'seek -a -r 0' "$B/sparse")
	ref=$(xfs_io -r -c 'seek -a -r 0' "$R/sparse")
	echo "$mnt"
	dh_same "seek -a -r through the mount vs backing" "$mnt" "$back"
	dh_same "seek -a -r through the mount vs plain" "$mnt" "$ref"
	# Not trivially "all data": there are holes.
	echo "$mnt" | grep -q HOLE
	[ "$(echo "$mnt" | grep -c DATA)" -ge 4 ]

	# Seeks from the middle of a hole and of a data segment, and past EOF.
	for off in 0 100000 1048577 9000000 16777215 16777216 20000000; do
		a=$(xfs_io -r -c "seek -d $off" -c "seek -h $off" "$M/sparse")
		b=$(xfs_io -r -c "seek -d $off" -c "seek -h $off" "$R/sparse")
		dh_same "seek at $off" "$a" "$b"
	done
	dh_same "python SEEK_DATA walk" "$(dh_py seek "$M/sparse")" "$(dh_py seek "$R/sparse")"
}

@test "SEEK_DATA/SEEK_HOLE: data written but not yet flushed (file still open) is seen as data" {
	# One xfs_io process writes and then seeks on the same open file: with
	# a write-back page cache the data may not have reached the daemon yet.
	mnt=$(xfs_io -f "${sparse_cmds[@]}" -c 'seek -a -r 0' "$M/open")
	ref=$(xfs_io -f "${sparse_cmds[@]}" -c 'seek -a -r 0' "$R/open")
	echo "$mnt"
	dh_same "seek -a -r on an open, just-written file" "$mnt" "$ref"
	dh_cmp "$B/open" "$R/open"
}

# ---- fallocate ----

# Run one fallocate command on the file through the mount and on the
# reference, then compare content, size and allocated blocks.
falloc_both() {	# ARGS... (the file name is appended)
	fallocate "$@" "$M/fa"
	fallocate "$@" "$R/fa"
	dh_cmp "$M/fa" "$R/fa"
	dh_cmp "$B/fa" "$R/fa"
	falloc_same "size, blocks after fallocate $* (backing vs plain)" \
		"$(dh_alloc "$B/fa")" "$(dh_alloc "$R/fa")"
	dh_same "size, blocks after fallocate $* (mount vs backing)" \
		"$(dh_alloc "$M/fa")" "$(dh_alloc "$B/fa")"
}

# "SIZE BLOCKS" of two files: equal sizes, and blocks within one 4 KiB
# block. st_blocks counts ext4's extent index blocks too: two files laid
# out in differently fragmented free space (other writers on the disk)
# may need one more of them after the same punch. A fallocate not passed
# on differs by far more (a 256 KiB punch is 512 blocks).
falloc_same() {	# WHAT A B
	local sa ba sb bb
	read -r sa ba <<<"$2"
	read -r sb bb <<<"$3"
	if [ -z "$ba" ] || [ -z "$bb" ] || [ "$sa" != "$sb" ] ||
	    [ $((ba - bb)) -gt 8 ] || [ $((bb - ba)) -gt 8 ]; then
		dh_same "$1" "$2" "$3"
	fi
}

@test "fallocate -l, -n, -p, -z through the mount: same content, size and blocks as on the plain dir" {
	dh_random "$VC_TMP/data" 4096
	dd if="$VC_TMP/data" of="$M/fa" bs=1M conv=fsync status=none
	dd if="$VC_TMP/data" of="$R/fa" bs=1M conv=fsync status=none
	dh_same "blocks of the written file" "$(dh_alloc "$B/fa")" "$(dh_alloc "$R/fa")"

	falloc_both -l 8M			# grow, allocated
	[ "$(stat -c %s "$B/fa")" -eq $((8 << 20)) ]
	falloc_both -n -o 8M -l 4M		# KEEP_SIZE past EOF
	[ "$(stat -c %s "$B/fa")" -eq $((8 << 20)) ]
	falloc_both -p -o 64K -l 256K		# punch a hole in data
	falloc_both -p -o 100 -l 5000		# unaligned punch: partial blocks zeroed
	falloc_both -z -o 1M -l 512K		# zero range inside data
	falloc_both -z -o 1000 -l 3000		# unaligned zero range
	falloc_both -z -o 7M -l 2M		# zero range across EOF grows the file
	[ "$(stat -c %s "$B/fa")" -eq $((9 << 20)) ]
	falloc_both -n -z -o 10M -l 1M		# zero range, KEEP_SIZE, past EOF
	[ "$(stat -c %s "$B/fa")" -eq $((9 << 20)) ]

	# The punched range really is a hole (and zeroes).
	cmp -n 262144 -i 65536:0 "$M/fa" /dev/zero
	run xfs_io -r -c 'seek -h 0' "$B/fa"
	assert_output --partial "65536"
}

@test "fallocate -l on a new, empty file through the mount" {
	fallocate -l 3M "$M/new"
	fallocate -l 3M "$R/new"
	dh_same "size, blocks" "$(dh_alloc "$B/new")" "$(dh_alloc "$R/new")"
	dh_same "size, blocks (mount)" "$(dh_alloc "$M/new")" "$(dh_alloc "$R/new")"
	dh_cmp "$M/new" "$R/new"
	[ "$(stat -c %s "$B/new")" -eq $((3 << 20)) ]
	[ "$(stat -c %b "$B/new")" -ge $((3 << 11)) ]
}

# ---- copy_file_range ----

@test "copy_file_range through the mount equals the same copy on the plain dir" {
	dh_random "$VC_TMP/s" 256
	dh_random "$VC_TMP/d" 128
	for d in "$M" "$R"; do
		cp "$VC_TMP/s" "$d/src"
		cp "$VC_TMP/d" "$d/dst"
		xfs_io -c "copy_range -s 0 -d 4096 -l 65536 $d/src" "$d/dst"
		# unaligned, and extending the destination past its end
		xfs_io -c "copy_range -s 1000 -d 120000 -l 70001 $d/src" "$d/dst"
		# a destination that does not exist yet
		dh_py copy-range "$d/src" "$d/dst2" 4097 8191 100000
		# source range past the source's EOF: short copy
		dh_py copy-range "$d/src" "$d/dst3" 200000 0 100000 >"$d/short"
	done
	dh_cmp "$M/dst" "$R/dst"
	dh_cmp "$B/dst" "$R/dst"
	dh_cmp "$B/dst2" "$R/dst2"
	dh_cmp "$B/dst3" "$R/dst3"
	dh_same "short copy length" "$(cat "$M/short")" "$(cat "$R/short")"
	[ "$(stat -c %s "$B/dst")" -eq 190001 ]
	# The copy is not vacuous: the destination changed.
	run cmp -s "$B/dst" "$VC_TMP/d"
	assert_failure
}

@test "copy_file_range copies data that was just written through a still-open descriptor" {
	for d in "$M" "$R"; do
		xfs_io -f -c 'pwrite -q -S 0x77 0 64k' -c 'pwrite -q -S 0x78 100 3000' \
			-c "copy_range -s 0 -d 131072 -l 65536 $d/self" "$d/self"
	done
	dh_cmp "$B/self" "$R/self"
	dh_cmp "$M/self" "$R/self"
}

# ---- namespace operations ----

# A listing that compares trees: path, type, link target, links, size, mode.
tree() {	# DIR
	(cd "$1" && find . -mindepth 1 -printf '%P %y %l %n %s %m\n' | LC_ALL=C sort)
}

namespace_ops() {	# DIR
	local d=$1
	mkdir "$d/a" "$d/a/b" "$d/gone"
	echo one >"$d/a/f1"
	echo two >"$d/a/b/f2"
	echo three >"$d/f3"
	rmdir "$d/gone"
	ln -s a/f2 "$d/rel"
	ln -s /nonexistent/target "$d/dangling"
	ln "$d/f3" "$d/a/f3link"
	mv "$d/a/b/f2" "$d/a/f2"		# across directories
	mv "$d/a/f1" "$d/f3"			# replaces f3 (f3link keeps the old one)
	mv "$d/a/b" "$d/a/c"			# a directory
	echo four >"$d/tmp"
	rm "$d/tmp"
	{
		echo "rmdir non-empty: $(err_of rmdir "$d/a")"
		echo "rm missing: $(err_of rm "$d/nope")"
		echo "mkdir existing: $(err_of mkdir "$d/a")"
		echo "rmdir file: $(err_of rmdir "$d/f3")"
		echo "unlink dir: $(err_of unlink "$d/a")"
		echo "mv dir onto non-empty dir: $(py_rename "$d/a/c" "$d/a")"
		echo "mv file onto dir: $(py_rename "$d/f3" "$d/a/c")"
		echo "mv dir onto file: $(py_rename "$d/a/c" "$d/f3")"
		echo "mv dir into itself: $(py_rename "$d/a" "$d/a/c/x")"
		echo "readlink rel: $(readlink "$d/rel")"
		echo "readlink dangling: $(readlink "$d/dangling")"
		echo "cat through symlink: $(cat "$d/rel" 2>&1)"
	} >"$VC_TMP/ns.$2"
}

@test "mkdir, rmdir, unlink, symlink, readlink, link and rename give the plain dir's tree and errors" {
	namespace_ops "$M" mnt
	namespace_ops "$R" ref
	cat "$VC_TMP/ns.mnt"
	dh_same "errors and link targets" "$(cat "$VC_TMP/ns.mnt")" "$(cat "$VC_TMP/ns.ref")"
	dh_same "tree through the mount vs plain" "$(tree "$M")" "$(tree "$R")"
	dh_same "tree of the backing dir vs plain" "$(tree "$B")" "$(tree "$R")"
	# The backing symlink is a symlink with the same target.
	[ -L "$B/dangling" ]
	[ "$(readlink "$B/dangling")" = /nonexistent/target ]
	[ "$(cat "$B/f3")" = one ]
	[ "$(cat "$B/a/f3link")" = three ]
}

@test "hard link: same st_ino through the mount, 2 links, and the backing st_ino" {
	echo content >"$M/orig"
	ln "$M/orig" "$M/other"
	i1=$(stat -c %i "$M/orig")
	i2=$(stat -c %i "$M/other")
	ib=$(stat -c %i "$B/orig")
	[ "$i1" = "$i2" ]
	[ "$i1" = "$ib" ]
	[ "$(stat -c %h "$M/orig")" -eq 2 ]
	[ "$(stat -c %h "$M/other")" -eq 2 ]
	[ "$(stat -c %h "$B/other")" -eq 2 ]
	[ "$(stat -c %i "$B/other")" = "$ib" ]
	# A write through one name is read through the other.
	echo changed >>"$M/other"
	[ "$(cat "$M/orig")" = "$(printf 'content\nchanged')" ]
	rm "$M/orig"
	[ "$(stat -c %h "$M/other")" -eq 1 ]
	[ "$(stat -c %h "$B/other")" -eq 1 ]
	[ ! -e "$B/orig" ]
	[ "$(cat "$M/other")" = "$(printf 'content\nchanged')" ]
	# Hard links to a symlink are links to the symlink itself.
	ln -s other "$M/sl"
	ln -P "$M/sl" "$M/sl2"
	[ "$(stat -c %i "$M/sl")" = "$(stat -c %i "$B/sl2")" ]
	[ "$(readlink "$M/sl2")" = other ]
}

@test "rename of an open file: the descriptor still reads and writes the file under its new name" {
	printf 'hello world, this is the image\n' >"$M/open.img"
	printf 'hello world, this is the image\n' >"$R/open.img"
	mnt=$(dh_py open-rename "$M/open.img" "$M/renamed.img")
	ref=$(dh_py open-rename "$R/open.img" "$R/renamed.img")
	echo "$mnt"
	dh_same "open-rename" "$mnt" "$ref"
	echo "$mnt" | grep -q '^same_ino True$'
	echo "$mnt" | grep -q '^old_exists False$'
	dh_cmp "$B/renamed.img" "$R/renamed.img"
	[ ! -e "$B/open.img" ]
	grep -q AFTER-RENAME "$B/renamed.img"
}

@test "unlink of an open file: the descriptor keeps working, the name is gone" {
	script='
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.unlink(sys.argv[1])
os.pwrite(fd, b"still here", 0)
print(os.pread(fd, 100, 0), os.fstat(fd).st_nlink, os.path.exists(sys.argv[1]))
'
	echo "some image data" >"$M/u"
	echo "some image data" >"$R/u"
	dh_same "unlink open" "$(python3 -c "$script" "$M/u")" "$(python3 -c "$script" "$R/u")"
	[ ! -e "$B/u" ]
}

@test "renameat2: RENAME_NOREPLACE fails with EEXIST, RENAME_EXCHANGE swaps" {
	for d in "$M" "$R"; do
		echo A >"$d/a"
		echo B >"$d/b"
		mkdir "$d/dir"
		echo in-dir >"$d/dir/x"
	done
	run dh_py renameat2 noreplace "$M/a" "$M/b"
	assert_failure
	assert_output EEXIST
	run dh_py renameat2 noreplace "$R/a" "$R/b"
	assert_output EEXIST
	[ "$(cat "$B/a")" = A ]
	[ "$(cat "$B/b")" = B ]

	run dh_py renameat2 noreplace "$M/a" "$M/c"
	assert_success
	[ ! -e "$B/a" ]
	[ "$(cat "$B/c")" = A ]
	[ "$(cat "$M/c")" = A ]
	[ ! -e "$M/a" ]

	ic=$(stat -c %i "$M/c")
	ib=$(stat -c %i "$M/b")
	run dh_py renameat2 exchange "$M/c" "$M/b"
	assert_success
	[ "$(cat "$M/c")" = B ]
	[ "$(cat "$M/b")" = A ]
	[ "$(cat "$B/c")" = B ]
	[ "$(cat "$B/b")" = A ]
	[ "$(stat -c %i "$M/b")" = "$ic" ]
	[ "$(stat -c %i "$M/c")" = "$ib" ]
	[ "$(stat -c %i "$B/b")" = "$ic" ]

	# Exchange a file and a directory.
	run dh_py renameat2 exchange "$M/b" "$M/dir"
	assert_success
	[ -d "$B/b" ]
	[ -f "$B/dir" ]
	[ "$(cat "$M/b/x")" = in-dir ]
	# Exchange with a missing name fails with ENOENT, as on a plain dir.
	run dh_py renameat2 exchange "$M/b" "$M/missing"
	assert_output ENOENT
	run dh_py renameat2 exchange "$R/b" "$R/missing"
	assert_output ENOENT
}

# ---- attributes ----

attrs() {	# FILE: mode, owner, size, atime, mtime (ns)
	stat -c '%a %u %g %s %x %y' "$1"
}

@test "chmod, chown, truncate, touch -d through the mount match the backing file's stat" {
	dh_random "$VC_TMP/data" 64
	cp "$VC_TMP/data" "$M/f"
	cp "$VC_TMP/data" "$R/f"

	chmod 0640 "$M/f"
	[ "$(stat -c %a "$B/f")" = 640 ]
	chmod 4755 "$M/f"
	[ "$(stat -c %a "$B/f")" = 4755 ]
	chown 123:456 "$M/f"
	[ "$(stat -c %u:%g "$B/f")" = 123:456 ]
	chown :789 "$M/f"
	[ "$(stat -c %u:%g "$B/f")" = 123:789 ]
	# Root's chown clears setuid on a plain dir; the same through the mount.
	chmod 4755 "$R/f"
	chown 123:456 "$R/f"
	chown :789 "$R/f"
	[ "$(stat -c %a "$B/f")" = "$(stat -c %a "$R/f")" ]

	for d in "$M" "$R"; do
		truncate -s 100000 "$d/f"	# grow
		truncate -s 12345 "$d/f"	# shrink
		truncate -s 20000 "$d/f"	# grow again: zeroes, not old data
	done
	dh_cmp "$B/f" "$R/f"
	dh_cmp "$M/f" "$R/f"

	touch -d '2001-02-03 04:05:06.123456789' "$M/f"
	t=$(date -d '2001-02-03 04:05:06' +%s).123456789
	[ "$(stat -c '%.9X %.9Y' "$B/f")" = "$t $t" ]
	touch -d '2001-02-03 04:05:06.123456789' "$R/f"
	dh_same "atime, mtime" "$(stat -c '%.9X %.9Y' "$B/f")" "$(stat -c '%.9X %.9Y' "$R/f")"
	touch -a -d '1999-12-31 23:59:59.5' "$M/f"
	touch -m -d '2030-01-01 00:00:00.25' "$M/f"
	touch -a -d '1999-12-31 23:59:59.5' "$R/f"
	touch -m -d '2030-01-01 00:00:00.25' "$R/f"
	dh_same "atime, mtime (separately)" "$(stat -c '%.9X %.9Y' "$B/f")" "$(stat -c '%.9X %.9Y' "$R/f")"
	[ "$(stat -c %.9Y "$B/f")" = "$(date -d '2030-01-01 00:00:00' +%s).250000000" ]
	# touch with no time sets "now".
	before=$(date +%s)
	touch "$M/f"
	m=$(stat -c %Y "$B/f")
	[ "$m" -ge "$before" ]
	[ "$m" -le $((before + 5)) ]

	# Everything the mount reports equals the backing file.
	dh_same "stat through the mount vs backing" "$(attrs "$M/f")" "$(attrs "$B/f")"
	dh_same "ino, nlink, blocks" "$(stat -c '%i %h %b' "$M/f")" "$(stat -c '%i %h %b' "$B/f")"

	# chown -h changes the symlink itself, not its target.
	ln -s f "$M/l"
	chown -h 7:8 "$M/l"
	[ "$(stat -c %u:%g "$B/l")" = 7:8 ]
	[ "$(stat -c %u:%g "$B/f")" = 123:789 ]

	# Directories too.
	mkdir "$M/d"
	chmod 0701 "$M/d"
	chown 5:6 "$M/d"
	touch -d '2010-10-10 10:10:10' "$M/d"
	dh_same "directory stat" "$(attrs "$M/d")" "$(attrs "$B/d")"
	[ "$(stat -c '%a %u %g' "$B/d")" = "701 5 6" ]
}

@test "statfs of the mount equals statfs of the backing filesystem" {
	mnt=$(stat -f -c '%S %b %c %l' "$M")
	back=$(stat -f -c '%S %b %c %l' "$B")
	dh_same "block size, total blocks, total inodes, max name length" "$mnt" "$back"
	# Free space is close (others write to this filesystem meanwhile).
	fm=$(stat -f -c %f "$M")
	fb=$(stat -f -c %f "$B")
	d=$((fm > fb ? fm - fb : fb - fm))
	[ "$d" -lt $((fb / 100 + 1000)) ]
	# And df agrees on the size.
	[ "$(df --output=size "$M" | tail -1)" = "$(df --output=size "$B" | tail -1)" ]
}

# ---- ownership ----

as_nobody() {
	setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}

nobody_ops() {	# DIR
	local d=$1/pub
	mkdir "$d"
	chmod 1777 "$d"
	echo root >"$d/rootfile"
	as_nobody sh -c "umask 022; echo hi >'$d/f' && mkdir '$d/dir' && ln -s f '$d/link' && mkfifo '$d/fifo' && touch '$d/t'"
	as_nobody sh -c "echo more >>'$d/f'; chmod 600 '$d/f'"
	echo "rm root's file in sticky dir: $(err_of as_nobody rm -f "$d/rootfile")"
	echo "write root's file: $(err_of as_nobody sh -c "echo x >>'$d/rootfile'")"
	echo "chown to root: $(err_of as_nobody chown 0 "$d/f")"
	echo secret >"$d/private"
	chmod 600 "$d/private"
	echo "read root's 0600 file: $(err_of as_nobody cat "$d/private")"
	echo "access(W) on it: $(as_nobody sh -c "test -w '$d/private' && echo yes || echo no")"
	echo "access(R) on rootfile: $(as_nobody sh -c "test -r '$d/rootfile' && echo yes || echo no")"
	echo open >"$d/shared"
	chmod 666 "$d/shared"
	touch -d '2000-01-01' "$d/shared"
	echo "touch (now) a writable file of root's: $(err_of as_nobody touch "$d/shared")"
	echo "touch -d a writable file of root's: $(err_of as_nobody touch -d '2001-01-01' "$d/shared")"
	echo "truncate a writable file of root's: $(err_of as_nobody truncate -s 2 "$d/shared")"
	echo "chmod root's file: $(err_of as_nobody chmod 777 "$d/shared")"
	echo "setfattr user.* on root's writable file: $(err_of as_nobody setfattr -n user.x -v 1 "$d/shared")"
	echo "setfattr trusted.* as nobody: $(err_of as_nobody setfattr -n trusted.x -v 1 "$d/f")"
	echo "mtime is recent: $(( $(stat -c %Y "$d/shared") > $(date -d '2001-06-01' +%s) ))"
	(cd "$d" && find . -mindepth 1 -printf '%P %y %u:%g %m %s\n' | LC_ALL=C sort)
}

@test "files created by uid 65534 in a 1777 directory belong to 65534:65534 on the backing dir" {
	mnt=$(nobody_ops "$M")
	ref=$(nobody_ops "$R")
	echo "$mnt"
	dh_same "owners, modes, errors" "$mnt" "$ref"
	for n in f dir fifo t; do
		[ "$(stat -c %u:%g "$B/pub/$n")" = 65534:65534 ]
	done
	[ "$(stat -c %u:%g "$B/pub/link")" = 65534:65534 ]	# lstat: the symlink itself
	[ -p "$B/pub/fifo" ]
	[ -L "$B/pub/link" ]
	[ -d "$B/pub/dir" ]
	[ "$(stat -c %a "$B/pub/f")" = 600 ]
	[ "$(stat -c %u:%g "$B/pub/rootfile")" = 0:0 ]
	[ -e "$B/pub/rootfile" ]
}

setgid_ops() {	# DIR
	local d=$1/sg
	mkdir "$d"
	chgrp 4321 "$d"
	chmod 2777 "$d"
	echo x >"$d/rootfile"
	mkdir "$d/rootdir"
	mkfifo "$d/rootfifo"
	as_nobody sh -c "echo y >'$d/nobodyfile'; mkdir '$d/nobodydir'"
	(cd "$d" && find . -mindepth 1 -printf '%P %y %u:%g %m\n' | LC_ALL=C sort)
}

@test "a setgid directory gives new files its group and new directories the setgid bit" {
	mnt=$(setgid_ops "$M")
	ref=$(setgid_ops "$R")
	echo "$mnt"
	dh_same "setgid inheritance" "$mnt" "$ref"
	[ "$(stat -c %u:%g "$B/sg/rootfile")" = 0:4321 ]
	[ "$(stat -c %u:%g "$B/sg/nobodyfile")" = 65534:4321 ]
	[ "$(stat -c %g "$B/sg/rootdir")" = 4321 ]
	[ $(( 0$(stat -c %a "$B/sg/rootdir") & 02000 )) -ne 0 ]
}

# ---- O_DIRECT ----

@test "O_DIRECT: dd oflag=direct and iflag=direct through the mount" {
	dh_random "$VC_TMP/data" 1024
	dd if="$VC_TMP/data" of="$M/d.img" bs=4096 count=256 oflag=direct status=none
	dd if="$M/d.img" of="$VC_TMP/back" bs=4096 iflag=direct status=none
	dh_cmp "$VC_TMP/back" "$VC_TMP/data"
	dh_cmp "$B/d.img" "$VC_TMP/data"
	# Overwrite 512-byte sectors in the middle, O_DIRECT both ways.
	cp "$VC_TMP/data" "$VC_TMP/expect"
	head -c 4096 /dev/urandom >"$VC_TMP/patch"
	dd if="$VC_TMP/patch" of="$VC_TMP/expect" bs=512 seek=77 conv=notrunc status=none
	dd if="$VC_TMP/patch" of="$M/d.img" bs=512 seek=77 oflag=direct conv=notrunc status=none
	dd if="$M/d.img" of="$VC_TMP/back2" bs=64k iflag=direct status=none
	dh_cmp "$VC_TMP/back2" "$VC_TMP/expect"
	dh_cmp "$B/d.img" "$VC_TMP/expect"
	# A buffered reader sees the O_DIRECT writes (no stale page cache).
	dh_cmp "$M/d.img" "$VC_TMP/expect"
}

# ---- readdir ----

make_tree() {	# DIR
	local d=$1 i j
	for i in 1 2 3 4; do
		mkdir "$d/dir$i"
		for j in $(seq 1 50); do
			printf '%*s' $((i * j)) '' >"$d/dir$i/file-$j with space"
		done
	done
	mkdir "$d/dir1/sub"
	ln -s ../dir2 "$d/dir1/sub/up"
	touch "$d/dir1/$(printf 'n%.0s' $(seq 1 255))"	# a 255-byte name
	touch "$d/dir1/é-ü-名前"
}

@test "readdir: a tree of 200 files lists the same names, inodes and sizes as the backing dir" {
	make_tree "$M"
	mnt=$(cd "$M" && find . -printf '%P %i %s %y\n' | LC_ALL=C sort)
	back=$(cd "$B" && find . -printf '%P %i %s %y\n' | LC_ALL=C sort)
	[ "$(echo "$mnt" | wc -l)" -ge 208 ]
	dh_same "find through the mount vs backing" "$mnt" "$back"
	# ls -la of a directory, byte for byte.
	dh_same "ls -lan" "$(cd "$M/dir3" && ls -lan --time-style=full-iso)" \
		"$(cd "$B/dir3" && ls -lan --time-style=full-iso)"
	# d_ino from getdents itself (no stat) equals the backing st_ino.
	script='
import os, sys
root = sys.argv[1]
out = []
for dp, dns, fns in os.walk(root):
    with os.scandir(dp) as it:
        for e in it:
            out.append("%s %d %s" % (os.path.relpath(e.path, root), e.inode(), e.is_dir(follow_symlinks=False)))
print("\n".join(sorted(out)))
'
	a=$(python3 -c "$script" "$M")
	b=$(python3 -c "$script" "$B")
	[ "$(echo "$a" | wc -l)" -ge 208 ]
	dh_same "getdents d_ino" "$a" "$b"
	# Entries made on the backing dir directly appear through the mount.
	touch "$B/dir2/made-behind"
	ls "$M/dir2" | grep -qx made-behind
}

@test "readdir: a directory of 2000 entries, read in several getdents calls, is complete" {
	mkdir "$M/big"
	(cd "$M/big" && seq -f 'entry-%05g' 1 2000 | xargs touch)
	mnt=$(ls -f "$M/big" | LC_ALL=C sort)
	back=$(ls -f "$B/big" | LC_ALL=C sort)
	dh_same "2000 entries" "$mnt" "$back"
	[ "$(ls "$M/big" | wc -l)" -eq 2000 ]
	# Delete half through the mount while listing: the rest remain exactly.
	(cd "$M/big" && seq -f 'entry-%05g' 1 2 2000 | xargs rm)
	[ "$(ls "$M/big" | wc -l)" -eq 1000 ]
	dh_same "after deleting" "$(ls "$M/big")" "$(ls "$B/big")"
}

# ---- more POSIX corners ----

@test "open flags: O_CREAT|O_EXCL, O_TRUNC, O_APPEND, modes under umask, EISDIR, EBADF as on the plain dir" {
	script='
import errno, os, stat, sys
d = sys.argv[1]
os.umask(0o027)
def t(what, f):
    try:
        r = f()
        print(what, "ok", "" if r is None else r)
    except OSError as e:
        print(what, errno.errorcode[e.errno])
t("creat", lambda: os.close(os.open(d + "/a", os.O_CREAT | os.O_WRONLY, 0o666)))
t("mode", lambda: oct(stat.S_IMODE(os.stat(d + "/a").st_mode)))
t("excl-existing", lambda: os.open(d + "/a", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
t("excl-new", lambda: os.close(os.open(d + "/b", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o640)))
t("mode-b", lambda: oct(stat.S_IMODE(os.stat(d + "/b").st_mode)))
def wr(path, data, flags):
    fd = os.open(path, flags)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)
t("write", lambda: wr(d + "/a", b"0123456789", os.O_WRONLY))
t("trunc", lambda: wr(d + "/a", b"xy", os.O_WRONLY | os.O_TRUNC))
t("size-after-trunc", lambda: os.stat(d + "/a").st_size)
t("append", lambda: wr(d + "/a", b"APP", os.O_WRONLY | os.O_APPEND))
def append_pwrite():
    # pwrite on an O_APPEND descriptor appends on Linux.
    fd = os.open(d + "/a", os.O_WRONLY | os.O_APPEND)
    os.pwrite(fd, b"PW", 0)
    os.close(fd)
t("append-pwrite", append_pwrite)
t("content", lambda: open(d + "/a", "rb").read())
def rdonly_write():
    fd = os.open(d + "/a", os.O_RDONLY)
    try:
        os.write(fd, b"no")
    finally:
        os.close(fd)
t("write-on-rdonly", rdonly_write)
def wronly_read():
    fd = os.open(d + "/a", os.O_WRONLY)
    try:
        os.read(fd, 1)
    finally:
        os.close(fd)
t("read-on-wronly", wronly_read)
os.mkdir(d + "/dir")
t("open-dir-wronly", lambda: os.open(d + "/dir", os.O_WRONLY))
t("open-file-as-dir", lambda: os.open(d + "/a", os.O_RDONLY | os.O_DIRECTORY))
t("open-missing", lambda: os.open(d + "/missing", os.O_RDONLY))
t("creat-in-missing-dir", lambda: os.open(d + "/nodir/x", os.O_CREAT | os.O_WRONLY))
t("nofollow", lambda: (os.symlink("a", d + "/ln"), os.open(d + "/ln", os.O_RDONLY | os.O_NOFOLLOW)))
t("path-too-long", lambda: os.open(d + "/" + "x" * 256, os.O_CREAT | os.O_WRONLY))
t("ftruncate-grow", lambda: (os.truncate(d + "/b", 10000), os.stat(d + "/b").st_size)[1])
'
	mnt=$(python3 -c "$script" "$M")
	ref=$(python3 -c "$script" "$R")
	echo "$mnt"
	dh_same "open flag results" "$mnt" "$ref"
	dh_cmp "$B/a" "$R/a"
	[ "$(stat -c %a "$B/b")" = 640 ]
}

@test "mknod: fifo, character device and socket nodes through the mount" {
	for d in "$M" "$R"; do
		mkfifo -m 0620 "$d/fifo"
		mknod -m 0600 "$d/null" c 1 3
		python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$d/sock"
	done
	for n in fifo null sock; do
		dh_same "$n" "$(stat -c '%F %a %t:%T %u:%g' "$B/$n")" "$(stat -c '%F %a %t:%T %u:%g' "$R/$n")"
		dh_same "$n (mount)" "$(stat -c '%F %a %t:%T %i' "$M/$n")" "$(stat -c '%F %a %t:%T %i' "$B/$n")"
	done
	[ -c "$B/null" ]
	[ -p "$B/fifo" ]
	[ -S "$B/sock" ]
	# A fifo through the mount passes data between two processes.
	(echo through-the-fifo >"$M/fifo") &
	dh_bg $!
	run timeout 10 cat "$M/fifo"
	assert_output through-the-fifo
}

# Images are direct_io: the kernel refuses shared mappings of them unless
# FUSE_DIRECT_IO_ALLOW_MMAP is negotiated, which libfuse 3.14 cannot do
# (documented in vcachefs(8) and the README). Private mappings work.
mmap_script='
import errno, mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 65536)
os.pwrite(fd, b"PWRITE", 100)
try:
    mmap.mmap(fd, 65536, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    print("shared: mapped")
except OSError as e:
    print("shared:", errno.errorcode[e.errno])
r = mmap.mmap(fd, 65536, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
r[0:4] = b"PRIV"        # copy-on-write: never reaches the file
print("private:", r[100:106], r[0:4])
os.close(fd)
'

@test "mmap: MAP_SHARED of an image is refused (ENODEV), MAP_PRIVATE works" {
	run python3 -c "$mmap_script" "$M/mm"
	assert_success
	assert_line "shared: ENODEV"
	assert_line "private: b'PWRITE' b'PRIV'"
	# The private write stayed private.
	[ "$(head -c 4 "$B/mm" | od -An -tx1 | tr -d ' ')" = 00000000 ]
}

@test "mmap in cache=none: MAP_SHARED refused, MAP_PRIVATE works" {
	mkdir "$VC_TMP/mnt2"
	vc_mount -c "$(dh_conf none)" "$VC_SRC" "$VC_TMP/mnt2"
	run python3 -c "$mmap_script" "$VC_TMP/mnt2/mm"
	assert_success
	assert_line "shared: ENODEV"
	assert_line "private: b'PWRITE' b'PRIV'"
}

@test "mmap MAP_PRIVATE and exec of a binary through the mount" {
	cp /bin/echo "$M/echo"
	run "$M/echo" hello from the mount
	assert_success
	assert_output "hello from the mount"
	run python3 -c '
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
m = mmap.mmap(fd, 0, mmap.MAP_PRIVATE, mmap.PROT_READ)
print(m[:4] == b"\x7fELF", len(m) == os.fstat(fd).st_size)' "$M/echo"
	assert_output "True True"
}

@test "O_APPEND from 4 processes at once: no record lost or torn" {
	script='
import os, sys
path, tag = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(500):
    rec = ("%s %05d " % (tag, i)).encode() + b"x" * 100 + b"\n"
    assert os.write(fd, rec) == len(rec)
os.close(fd)
'
	pids=()
	for t in A B C D; do
		python3 -c "$script" "$M/log" "$t" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	# 2000 whole records of 109 bytes, each writer's in order.
	[ "$(stat -c %s "$B/log")" -eq $((2000 * 109)) ]
	[ "$(grep -cE '^[ABCD] [0-9]{5} x{100}$' "$B/log")" -eq 2000 ]
	for t in A B C D; do
		[ "$(grep "^$t " "$B/log" | cut -c3-7)" = "$(seq -f '%05g' 0 499)" ]
	done
	dh_cmp "$M/log" "$B/log"
}

@test "rm -rf of a tree of 2000 files through the mount removes everything" {
	mkdir -p "$M/t/a" "$M/t/b"
	(cd "$M/t/a" && seq -f 'f%05g' 1 1000 | xargs touch)
	(cd "$M/t/b" && seq -f 'g%05g' 1 1000 | xargs -I{} sh -c 'echo {} >{}')
	rm -rf "$M/t"
	[ ! -e "$B/t" ]
	[ ! -e "$M/t" ]
}
