# Shared code of qemu.bats, fio.bats, posix.bats and difftest.bats: a
# reference directory on the plain filesystem, the two ways of mounting
# (SOURCE MOUNTPOINT, and in place over the image directory), background
# clients that teardown always stops, and small comparison helpers.
#
# In a test file:
#   load helper
#   load data_helper
#   setup()    { vc_setup; dh_setup; }
#   teardown() { dh_cleanup; vc_teardown; }
#
# dh_cleanup stops what the test started in the background and removes the
# bind mount of the in-place mode, so that vc_teardown can unmount and
# remove everything even when a test fails half-way.

dh_setup() {
	DH_REF=$VC_TMP/ref	# plain directory: the same operations, for reference
	mkdir -p "$DH_REF"
	DH_BG=()		# background clients
	DH_BINDS=()		# bind mounts made by dh_mount inplace
	DH_MNT=			# where clients go (the FUSE mount)
	DH_BACK=		# where the backing files are seen directly
	DH_MODE=
}

dh_cleanup() {
	local p i

	for p in "${DH_BG[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	DH_BG=()
	# The FUSE mount goes first: it may sit on top of a bound directory.
	for ((i = ${#VC_MOUNTS[@]} - 1; i >= 0; i--)); do
		if vc_is_mounted "${VC_MOUNTS[i]}"; then
			fusermount3 -u "${VC_MOUNTS[i]}" 2>/dev/null ||
				umount -l "${VC_MOUNTS[i]}" 2>/dev/null
		fi
	done
	for p in "${DH_BINDS[@]}"; do
		umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null
	done
	DH_BINDS=()
	return 0
}

# qemu-io reading its commands from a fifo, so it keeps the image open.
# One command at a time, each waited for: qemu-io reads stdin through
# stdio, so lines that arrive together would wait for more input. Each
# wait polls up to DH_QEMU_TRIES times 50 ms (default 200).
dh_qemu_start() {	# IMG [FORMAT]
	mkfifo "$VC_TMP/q.fifo"
	stdbuf -oL qemu-io -f "${2:-raw}" "$1" <"$VC_TMP/q.fifo" >"$VC_TMP/q.out" 2>&1 &
	DH_QPID=$!
	dh_bg "$DH_QPID"
	exec {DH_QFD}>"$VC_TMP/q.fifo"
	MH_FDS+=("$DH_QFD")
	DH_QN=0
	dh_qemu_wait
}

# Wait for qemu-io's prompt after the commands sent so far.
dh_qemu_wait() {
	local i
	for i in $(seq 1 "${DH_QEMU_TRIES:-200}"); do
		[ "$(grep -o 'qemu-io> ' "$VC_TMP/q.out" | wc -l)" -gt "$DH_QN" ] && return 0
		kill -0 "$DH_QPID" 2>/dev/null || break
		sleep 0.05
	done
	echo "qemu-io did not finish command $DH_QN:" >&2
	cat "$VC_TMP/q.out" >&2
	return 1
}

dh_qemu() {	# COMMAND
	echo "$1" >&"$DH_QFD"
	DH_QN=$((DH_QN + 1))
	dh_qemu_wait
}

# Send quit and wait for qemu-io's exit status.
dh_qemu_quit() {
	echo quit >&"$DH_QFD"
	exec {DH_QFD}>&-
	wait "$DH_QPID"
}

# Remember a background process for dh_cleanup: cmd & dh_bg $!
dh_bg() {
	DH_BG+=("$1")
}

# Stop one background process now (and forget it).
dh_bg_stop() {	# PID
	local i

	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	for i in "${!DH_BG[@]}"; do
		[ "${DH_BG[i]}" = "$1" ] && unset 'DH_BG[i]'
	done
	DH_BG=("${DH_BG[@]}")
	return 0
}

# dh_mount MODE [vcachefs OPTIONS...]
#   source:  vcachefs VC_SRC VC_MNT; clients use VC_MNT, backing is VC_SRC.
#   inplace: vcachefs VC_SRC (over itself); clients use VC_SRC, and the
#            backing files stay visible through a bind mount of VC_SRC at
#            VC_TMP/under made before the overmount.
# Sets DH_MODE, DH_MNT, DH_BACK.
dh_mount() {
	local mode=$1
	shift
	DH_MODE=$mode
	case $mode in
	source)
		vc_mount "$@" "$VC_SRC" "$VC_MNT" || return 1
		DH_MNT=$VC_MNT
		DH_BACK=$VC_SRC
		;;
	inplace)
		mkdir -p "$VC_TMP/under"
		mount --bind "$VC_SRC" "$VC_TMP/under" || return 1
		DH_BINDS+=("$VC_TMP/under")
		vc_mount "$@" "$VC_SRC" || return 1
		VC_MNT=$VC_SRC	# vc_umount's default
		DH_MNT=$VC_SRC
		DH_BACK=$VC_TMP/under
		;;
	*)
		echo "dh_mount: unknown mode $mode" >&2
		return 2
		;;
	esac
	# The mount really is the FUSE one and the backing view is not.
	vc_is_mounted "$DH_MNT" || { echo "$DH_MNT is not a FUSE mount" >&2; return 1; }
	if [ "$(stat -c %d "$DH_MNT")" = "$(stat -c %d "$DH_BACK")" ]; then
		echo "$DH_MNT and $DH_BACK are on the same device: not a FUSE mount" >&2
		return 1
	fi
}

# A config file whose [global] cache is MODE; prints its path.
dh_conf() {	# MODE
	printf '[global]\ncache = %s\n' "$1" >"$VC_TMP/vcachefs.conf"
	echo "$VC_TMP/vcachefs.conf"
}

# Random bytes: dh_random FILE KIB
dh_random() {
	head -c "$(($2 * 1024))" /dev/urandom >"$1"
}

# Byte-for-byte equality with a readable diagnosis.
dh_cmp() {	# A B
	if ! cmp "$1" "$2"; then
		echo "files differ: $1 $2" >&2
		ls -ls "$1" "$2" >&2
		return 1
	fi
}

# Assert that two strings are equal, printing both when they are not. An
# empty value fails too: it means the command that made it failed, and two
# failures must not pass as agreement.
dh_same() {	# WHAT A B
	if [ -z "$2" ] || [ -z "$3" ]; then
		printf '%s: empty value (a command failed?): first=[%s] second=[%s]\n' "$1" "$2" "$3" >&2
		return 1
	fi
	if [ "$2" != "$3" ]; then
		printf '%s differ:\n--- first\n%s\n--- second\n%s\n' "$1" "$2" "$3" >&2
		return 1
	fi
}

# Drop a file's clean pages from the page cache. On ext4, SEEK_DATA (and so
# qemu-img map) counts an unwritten (zeroed) extent as data while its pages
# are cached: maps are compared with nothing cached on either side.
dh_evict() {	# FILE...
	local f
	for f in "$@"; do
		dd of="$f" oflag=nocache conv=notrunc,fdatasync count=0 status=none || return 1
	done
}

# Size and allocated 512-byte blocks: "SIZE BLOCKS".
dh_alloc() {	# FILE
	stat -c '%s %b' "$1"
}

# qemu-img info --output=json without the fields that name the path.
dh_img_info() {	# [qemu-img info options...] FILE
	qemu-img info --output=json "$@" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for i in (d if isinstance(d, list) else [d]):
    for k in ("filename", "backing-filename", "full-backing-filename"):
        i.pop(k, None)
print(json.dumps(d, sort_keys=True))'
}

# A small Python tool for locks and syscalls that coreutils do not expose.
# Written once per test into VC_TMP; run as: dh_py ARGS...
dh_py() {
	dh_py_file
	python3 "$DH_PY" "$@"
}

# Write the tool (once per test); sets DH_PY to its path.
dh_py_file() {
	DH_PY=$VC_TMP/dh_tool.py
	[ -f "$DH_PY" ] || cat >"$DH_PY" <<'EOF'
import ctypes, errno, fcntl, os, struct, sys, time

# struct flock on Linux x86_64/aarch64: short l_type, short l_whence,
# off_t l_start, off_t l_len, pid_t l_pid (+ padding) = 32 bytes.
FLOCK = "hhqqi4x"

def setlk(fd, kind, start, length, ltype=fcntl.F_WRLCK, wait=False):
    if kind == "posix":
        cmd = fcntl.F_SETLKW if wait else fcntl.F_SETLK
    else:
        cmd = fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK
    fcntl.fcntl(fd, cmd, struct.pack(FLOCK, ltype, os.SEEK_SET, start, length, 0))

def getlk(fd, kind, start, length, ltype=fcntl.F_WRLCK):
    cmd = fcntl.F_GETLK if kind == "posix" else fcntl.F_OFD_GETLK
    r = fcntl.fcntl(fd, cmd, struct.pack(FLOCK, ltype, os.SEEK_SET, start, length, 0))
    t, _, s, l, p = struct.unpack(FLOCK, r)
    names = {fcntl.F_UNLCK: "unlocked", fcntl.F_WRLCK: "write", fcntl.F_RDLCK: "read"}
    return "%s %d %d pid=%d" % (names.get(t, str(t)), s, l, p)

def main(a):
    cmd = a[0]
    if cmd == "hold":
        # hold KIND PATH START LEN READYFILE: lock, say so, sleep until killed
        kind, path, start, length, ready = a[1], a[2], int(a[3]), int(a[4]), a[5]
        fd = os.open(path, os.O_RDWR)
        setlk(fd, kind, start, length)
        open(ready, "w").write("%d\n" % os.getpid())
        while True:
            time.sleep(60)
    if cmd == "try":
        # try KIND PATH START LEN: exit 0 locked, 3 conflict, 2 other error
        kind, path, start, length = a[1], a[2], int(a[3]), int(a[4])
        fd = os.open(path, os.O_RDWR)
        try:
            setlk(fd, kind, start, length)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                print("conflict", errno.errorcode[e.errno])
                return 3
            print("error", e)
            return 2
        print("locked")
        return 0
    if cmd == "getlk":
        # getlk KIND PATH START LEN: print the conflicting lock, if any
        kind, path, start, length = a[1], a[2], int(a[3]), int(a[4])
        fd = os.open(path, os.O_RDWR)
        print(getlk(fd, kind, start, length))
        return 0
    if cmd == "ofd-self":
        # ofd-self PATH: two open file descriptions in one process conflict
        # (OFD semantics), while POSIX locks of one process never do.
        path = a[1]
        fd1 = os.open(path, os.O_RDWR)
        fd2 = os.open(path, os.O_RDWR)
        setlk(fd1, "ofd", 0, 100)
        try:
            setlk(fd2, "ofd", 50, 100)
            print("ofd: second description got the lock")
        except OSError as e:
            print("ofd: conflict", errno.errorcode[e.errno])
        print("ofd getlk:", getlk(fd2, "ofd", 0, 0))
        setlk(fd1, "posix", 200, 10)
        setlk(fd2, "posix", 200, 10)
        print("posix: same process relocks")
        os.close(fd2)
        # Closing fd2 drops this process's POSIX locks, not fd1's OFD lock.
        fd3 = os.open(path, os.O_RDWR)
        print("after close:", getlk(fd3, "ofd", 0, 0))
        return 0
    if cmd == "renameat2":
        # renameat2 FLAGS OLD NEW: FLAGS noreplace|exchange|0
        flags = {"0": 0, "noreplace": 1, "exchange": 2}[a[1]]
        libc = ctypes.CDLL(None, use_errno=True)
        AT_FDCWD = -100
        r = libc.renameat2(AT_FDCWD, a[2].encode(), AT_FDCWD, a[3].encode(), flags)
        if r != 0:
            e = ctypes.get_errno()
            print(errno.errorcode.get(e, str(e)))
            return 1
        print("ok")
        return 0
    if cmd == "open-rename":
        # open-rename OLD NEW: open OLD, rename it to NEW while open, then
        # write through the old descriptor and read through both.
        fd = os.open(a[1], os.O_RDWR)
        before = os.pread(fd, 1 << 20, 0)
        os.rename(a[1], a[2])
        os.pwrite(fd, b"AFTER-RENAME", 3)
        os.fsync(fd)
        via_fd = os.pread(fd, 1 << 20, 0)
        via_name = open(a[2], "rb").read()
        st_fd, st_name = os.fstat(fd), os.stat(a[2])
        print("before", before.hex())
        print("via_fd", via_fd.hex())
        print("via_name", via_name.hex())
        print("same_ino", st_fd.st_ino == st_name.st_ino)
        print("old_exists", os.path.exists(a[1]))
        return 0
    if cmd == "copy-range":
        # copy-range SRC DST SRCOFF DSTOFF LEN: os.copy_file_range loop
        src, dst = os.open(a[1], os.O_RDONLY), os.open(a[2], os.O_WRONLY | os.O_CREAT, 0o644)
        so, do, n = int(a[3]), int(a[4]), int(a[5])
        total = 0
        while total < n:
            c = os.copy_file_range(src, dst, n - total, so + total, do + total)
            if c == 0:
                break
            total += c
        print(total)
        return 0
    if cmd == "seek":
        # seek PATH: the data segments by SEEK_DATA/SEEK_HOLE, "start end" lines
        fd = os.open(a[1], os.O_RDONLY)
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                d = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            h = os.lseek(fd, d, os.SEEK_HOLE)
            print(d, h)
            off = h
        return 0
    print("dh_tool: unknown command", cmd, file=sys.stderr)
    return 2

sys.exit(main(sys.argv[1:]))
EOF
}

# Start "dh_py hold KIND PATH START LEN" in the background and wait until
# it holds the lock. Sets DH_HOLDER to its pid.
dh_hold_lock() {	# KIND PATH START LEN
	local ready=$VC_TMP/held.$RANDOM i

	rm -f "$ready"
	dh_py_file
	python3 "$DH_PY" hold "$@" "$ready" </dev/null >/dev/null 2>&1 &
	DH_HOLDER=$!
	dh_bg "$DH_HOLDER"
	for i in $(seq 1 200); do
		[ -s "$ready" ] && return 0
		kill -0 "$DH_HOLDER" 2>/dev/null || { echo "lock holder died" >&2; return 1; }
		sleep 0.05
	done
	echo "lock holder did not get its lock in 10 s" >&2
	return 1
}

# fio output has no verification error and every job ended with err=0.
dh_fio_clean() {	# OUTPUT
	if grep -qiE 'verify.*(fail|bad|error)|bad magic|crc32c.*(fail|bad)|got pattern|mismatch' <<<"$1"; then
		echo "fio reported a verification error" >&2
		return 1
	fi
	if grep -qE 'err= *[1-9]' <<<"$1"; then
		echo "a fio job ended with an error" >&2
		return 1
	fi
	grep -qE 'err= *0' <<<"$1" || { echo "no fio job reported err=0" >&2; return 1; }
}
