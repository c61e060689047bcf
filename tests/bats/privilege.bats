#!/usr/bin/env bats
# Privilege and permissions through a root daemon with allow_other: the
# same operations through the mount and on a plain reference directory
# give the same owners, modes, ACL decisions and errors. Runs on both
# FUSE transports (tests/run).

load helper
load data_helper

U1=65534	# owner of the test files (nobody)
U2=12345	# another user, without a passwd entry

setup() {
	vc_setup
	dh_setup
	vc_mount "$VC_SRC" "$VC_MNT"
	M=$VC_MNT	# through the mount
	B=$VC_SRC	# the backing files, directly
	R=$DH_REF	# plain reference directory
	chmod 755 "$R"
}

teardown() {
	dh_cleanup
	vc_teardown
}

as() {	# UID COMMAND...
	local u=$1
	shift
	setpriv --reuid="$u" --regid="$u" --clear-groups "$@"
}

# ---- 1: setuid and setgid bits on write ----

privs_ops() {	# DIR
	local d=$1/privs f
	mkdir "$d"
	chmod 777 "$d"
	for f in other owner sgx-other sg-noexec sg-member root trunc; do
		echo data >"$d/$f"
		chown $U1:$U1 "$d/$f"
	done
	chmod 4757 "$d/other" "$d/owner" "$d/root" "$d/trunc"
	chmod 2777 "$d/sgx-other"
	chmod 2747 "$d/sg-noexec" "$d/sg-member"
	as $U2 sh -c "printf x >>'$d/other'"
	as $U1 sh -c "printf x >>'$d/owner'"
	as $U2 sh -c "printf x >>'$d/sgx-other'"
	as $U2 sh -c "printf x >>'$d/sg-noexec'"
	as $U1 sh -c "printf x >>'$d/sg-member'"	# in the file's group
	printf x >>"$d/root"		# root has CAP_FSETID: the bits stay
	as $U2 sh -c ": >'$d/trunc'"	# O_TRUNC open by another user
	(cd "$d" && stat -c '%n %a %s' other owner sgx-other sg-noexec sg-member root trunc)
}

@test "setuid/setgid: a write without CAP_FSETID clears them as on a plain directory (owner included)" {
	mnt=$(privs_ops "$M")
	ref=$(privs_ops "$R")
	echo "$mnt"
	dh_same "modes after writes" "$mnt" "$ref"
	[ "$(stat -c %a "$B/privs/other")" = 757 ]
	[ "$(stat -c %a "$B/privs/owner")" = 757 ]
	[ "$(stat -c %a "$B/privs/sgx-other")" = 777 ]
	# setgid without group-exec: cleared for a writer outside the file's
	# group (as Linux 6.2+ does natively), kept for a member
	[ "$(stat -c %a "$B/privs/sg-noexec")" = 747 ]
	[ "$(stat -c %a "$B/privs/sg-member")" = 2747 ]
	[ "$(stat -c %a "$B/privs/root")" = 4757 ]
	[ "$(stat -c %a "$B/privs/trunc")" = 757 ]
}

@test "setuid: a bit set again through the mount is cleared by the next write" {
	echo data >"$M/f"
	chown $U1:$U1 "$M/f"
	chmod 4777 "$M/f"
	as $U2 sh -c "printf x >>'$M/f'"
	[ "$(stat -c %a "$B/f")" = 777 ]
	chmod 4777 "$M/f"
	as $U2 sh -c "printf y >>'$M/f'"
	[ "$(stat -c %a "$B/f")" = 777 ]
	[ "$(cat "$B/f")" = "$(printf 'data\nxy')" ]
}

# ---- 2: new objects belong to the caller, and create never hands over ----

@test "create: a name swapped in during O_CREAT|O_EXCL never gives the caller a root-owned file" {
	mkdir "$B/d"
	chown $U2:$U2 "$B/d"
	echo ROOT >"$B/d/secret"
	chmod 644 "$B/d/secret"
	ino=$(stat -c %i "$B/d/secret")
	# The attacker renames root's file in and out of the name on the
	# backing directory while creating it through the mount.
	run as $U2 /usr/bin/python3 - "$M/d" "$B/d" 3000 <<'PY'
import ctypes, os, sys, threading
mnt, back, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
secret, tgt = os.path.join(back, "secret"), os.path.join(back, "t")
sino = os.stat(secret).st_ino
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_NOREPLACE = -100, 1
stop = False
def flip():
    # Root's file onto the name (replacing what was created there), and
    # back only where that replaces nothing: root's file is never lost,
    # so its inode number is never reused.
    while not stop:
        try:
            os.rename(secret, tgt)
        except OSError:
            pass
        libc.renameat2(AT_FDCWD, tgt.encode(), AT_FDCWD, secret.encode(),
                       RENAME_NOREPLACE)
th = threading.Thread(target=flip)
th.start()
made = bad = 0
for i in range(n):
    try:
        fd = os.open(os.path.join(mnt, "t"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        continue
    st = os.fstat(fd)
    made += 1
    if st.st_ino == sino or st.st_uid != os.getuid():
        bad += 1
    os.close(fd)
    # Move it out of the way; never unlink by name, which could hit
    # root's file swapped in meanwhile.
    libc.renameat2(AT_FDCWD, tgt.encode(), AT_FDCWD,
                   os.path.join(back, "mine-%d" % i).encode(), RENAME_NOREPLACE)
stop = True
th.join()
print("made", made, "got root's file", bad)
PY
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"got root's file 0" ]]
	# Root's file is intact, under one of the two names, still root's.
	f=$(find "$B/d" -inum "$ino")
	[ -n "$f" ]
	[ "$(stat -c %u:%g "$f")" = 0:0 ]
	[ "$(cat "$f")" = ROOT ]
}

make_ops() {	# DIR
	local d=$1/mk
	mkdir "$d"
	chmod 777 "$d"
	as $U2 sh -c "umask 027; echo a >'$d/file'; mkdir '$d/dir'; ln -s file '$d/link'; mkfifo '$d/fifo'; ln '$d/file' '$d/hard'"
	echo "mknod a device as a user: $(as $U2 sh -c "mknod '$d/dev' c 1 3 2>&1 >/dev/null | sed 's/.*: //'")"
	(cd "$d" && find . -mindepth 1 -printf '%P %y %u:%g %m %n\n' | LC_ALL=C sort)
}

@test "mknod, mkdir, symlink, link as a user: made as that user, with its umask and its limits" {
	mnt=$(make_ops "$M")
	ref=$(make_ops "$R")
	echo "$mnt"
	dh_same "made objects" "$mnt" "$ref"
	[ "$(stat -c %u:%g:%a "$B/mk/file")" = $U2:$U2:640 ]
	[ ! -e "$B/mk/dev" ]
}

# ---- 3: POSIX ACLs ----

acl_ops() {	# DIR
	local d=$1/acl
	mkdir "$d"
	echo secret >"$d/img"
	chmod 644 "$d/img"
	setfacl -m u:$U2:--- "$d/img"
	echo "read denied by ACL: $(as $U2 cat "$d/img" 2>&1 | sed 's/.*: //')"
	echo "read by another user: $(as $U1 cat "$d/img" 2>&1)"
	mkdir "$d/inherit"
	chmod 777 "$d/inherit"
	setfacl -d -m u:$U1:rwx,g::r-x,o::--- "$d/inherit"
	as $U2 sh -c "umask 077; echo x >'$d/inherit/new'; mkdir '$d/inherit/sub'"
	echo "new file in a default-ACL dir: $(getfacl -cp "$d/inherit/new" | tr '\n' ' ')"
	echo "new dir in a default-ACL dir: $(getfacl -cp "$d/inherit/sub" | tr '\n' ' ')"
	echo "user with ACL rwx writes: $(as $U1 sh -c "echo y >>'$d/inherit/new' && echo ok" 2>&1 | sed 's/.*: //')"
	stat -c '%n %a' "$d/inherit/new" "$d/inherit/sub" | sed "s|$1/||"
}

@test "ACL: a user denied by an ACL entry cannot read through the mount; default ACLs are inherited" {
	mnt=$(acl_ops "$M")
	ref=$(acl_ops "$R")
	echo "$mnt"
	dh_same "ACL decisions" "$mnt" "$ref"
	[[ "$mnt" == *"read denied by ACL: Permission denied"* ]]
	[[ "$mnt" == *"read by another user: secret"* ]]
	getfacl -cpn "$B/acl/inherit/new" | grep -q "^user:$U1:rwx"
}

# ---- 4: trusted.* names ----

@test "listxattr: trusted.* names are shown to root only, as on ext4" {
	echo x >"$M/f"
	chmod 644 "$M/f"
	setfattr -n trusted.libvirt.security.dac -v +107:+107 "$M/f"
	setfattr -n user.visible -v 1 "$M/f"
	list() { /usr/bin/python3 -c 'import os,sys; print(" ".join(sorted(os.listxattr(sys.argv[1]))))' "$1"; }
	size() { /usr/bin/python3 -c 'import ctypes,os,sys; l=ctypes.CDLL(None,use_errno=True); print(l.listxattr(sys.argv[1].encode(), None, 0))' "$1"; }
	cp -a "$B/f" "$R/f"
	[ "$(list "$M/f")" = "$(list "$R/f")" ]
	[[ "$(list "$M/f")" == *trusted.libvirt.security.dac* ]]
	run as $U2 bash -c "$(declare -f list size); list '$M/f'; size '$M/f'"
	echo "$output"
	mref=$(as $U2 bash -c "$(declare -f list size); list '$R/f'; size '$R/f'")
	dh_same "non-root listxattr and its size probe" "$output" "$mref"
	[[ "$output" != *trusted* ]]
	[[ "$output" == *user.visible* ]]
}
