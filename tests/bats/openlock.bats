#!/usr/bin/env bats
# Opening images: no mount-wide lock is held across I/O (one busy image
# never stalls the opens of another), and the daemon reaches backing
# files only through its own descriptors or names it opens beneath the
# source directory with no symlink on the way.

load helper
load modes_helper

setup() {
	mh_setup
	cd "$VC_SRC"
}

teardown() {
	cd /
	mh_teardown
}

# strace the daemon like mh_strace_start, with path arguments and the
# paths behind descriptors shown (-s 512 -y).
ol_strace_start() {	# OUT SYSCALLS
	local i s all

	mh_bg strace -f -qq -y -s 512 -e trace="$2" -p "$VC_PID" -o "$1"
	MH_STRACE_PID=$!
	for i in $(seq 1 200); do
		all=1
		for s in /proc/"$VC_PID"/task/*/status; do
			awk '$1 == "TracerPid:" { exit $2 == 0 }' "$s" 2>/dev/null || all=0
		done
		[ "$all" = 1 ] && return 0
		kill -0 "$MH_STRACE_PID" 2>/dev/null || { echo "strace exited" >&2; return 1; }
		sleep 0.05
	done
	echo "strace did not attach to every thread of $VC_PID in 10 s" >&2
	return 1
}

# Successful calls in an strace log whose path argument is PREFIX...:
# the daemon reached something under that name.
ol_reached() {	# LOG PREFIX
	mh_strace_calls "$1" | grep -F "\"$2" | grep -vE '= -1 ' || true
}

@test "an open of one image does not wait for another image's flush behind an upgrade" {
	dd if=/dev/zero of=a.img bs=1M count=1 status=none
	dd if=/dev/zero of=b.img bs=1M count=1 status=none
	export VCACHEFS_FAULT=fsync:*:delay=5000
	mh_mount writeback 'aio = threads'
	unset VCACHEFS_FAULT

	# Thread 1 flushes a.img (5 s, a's fdlock held for reading); thread 2
	# opens a.img for writing, an upgrade that waits for that flush; then
	# b.img is opened. Ordering facts, not durations: when b's open has
	# returned, the daemon must still be inside the flush's delay
	# (a thread of it in nanosleep) and thread 1 still inside fsync(2).
	run timeout 60 python3 - "$VC_MNT/a.img" "$VC_MNT/b.img" "$VC_PID" <<'EOF'
import os, sys, threading, time
a, b, daemon = sys.argv[1], sys.argv[2], sys.argv[3]
NR = {'fsync': 74, 'openat': 257, 'nanosleep': (35, 230)}  # x86_64

def syscall_of(path):
    try:
        with open(path) as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return ''

def in_syscall(tid, nr):
    return syscall_of('/proc/self/task/%d/syscall' % tid) == str(nr)

def daemon_sleeping():
    d = '/proc/%s/task' % daemon
    return any(syscall_of('%s/%s/syscall' % (d, t)) in
               [str(n) for n in NR['nanosleep']] for t in os.listdir(d))

def wait_for(cond, what, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            print('timed out waiting for', what); sys.exit(2)
        time.sleep(0.01)

if daemon_sleeping():
    print('a daemon thread sleeps before the test: cannot tell'); sys.exit(2)
tids, done, res = {}, threading.Event(), {}
fd1 = os.open(a, os.O_RDONLY)

def flusher():
    tids[1] = threading.get_native_id()
    os.fsync(fd1)
    done.set()

def upgrader():
    tids[2] = threading.get_native_id()
    try:
        res['rw'] = os.open(a, os.O_RDWR)
    except OSError as e:
        res['rw'] = e

t1 = threading.Thread(target=flusher); t1.start()
wait_for(lambda: 1 in tids and in_syscall(tids[1], NR['fsync']), 'fsync')
wait_for(daemon_sleeping, 'the flush in the daemon')
t2 = threading.Thread(target=upgrader); t2.start()
wait_for(lambda: 2 in tids and in_syscall(tids[2], NR['openat']), 'open O_RDWR')
time.sleep(0.3)        # let the daemon reach the upgrade's wait
if done.is_set():
    print('the flush ended before b was opened: cannot tell'); sys.exit(2)
fdb = os.open(b, os.O_RDONLY)
sleeping, flushing = daemon_sleeping(), not done.is_set()
os.close(fdb)
print('b opened: daemon in the flush delay=%s, fsync(2) running=%s' %
      (sleeping, flushing))
t1.join(30); t2.join(30)
if t1.is_alive() or t2.is_alive():
    print('fsync or the O_RDWR open did not return'); sys.exit(2)
if isinstance(res['rw'], OSError):
    print('O_RDWR open failed:', res['rw']); sys.exit(2)
os.write(res['rw'], b'x')
os.close(res['rw']); os.close(fd1)
sys.exit(0 if sleeping and flushing else 1)
EOF
	echo "$output"
	assert_success
	assert_output --partial "delay=True, fsync(2) running=True"
}

@test "a none image's probed pages are dropped through its O_DIRECT descriptor, never by name" {
	qemu-img create -q -f qcow2 img.qcow2 16M
	qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' img.qcow2 >/dev/null
	mh_evict img.qcow2
	export ASAN_OPTIONS=detect_leaks=0
	mh_mount writeback '[img.qcow2]' 'cache = none'
	ol_strace_start "$VC_TMP/strace.log" openat,openat2,open,fadvise64
	python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_RDONLY))' \
		"$VC_MNT/img.qcow2"
	mh_wait_no_backing "$VC_SRC/img.qcow2"
	mh_strace_stop
	mh_strace_calls "$VC_TMP/strace.log" >"$VC_TMP/calls"
	run python3 - "$VC_TMP/calls" "$VC_SRC/img.qcow2" <<'EOF'
import re, sys
calls = [l.split(' ', 3)[3] for l in open(sys.argv[1])]
path = sys.argv[2]
direct = None
for i, c in enumerate(calls):
    m = re.match(r'openat\(.*O_DIRECT.*\) = (\d+)<(.*)>$', c)
    if m and m.group(2) == path:
        direct = i, m.group(1)
        break
if direct is None:
    print('no O_DIRECT open of', path); sys.exit(1)
i, fd = direct
bad = [c for c in calls[i + 1:]
       if re.match(r'openat2?\(', c) and '"img.qcow2"' in c and 'O_PATH' not in c]
drop = [c for c in calls[i + 1:]
        if c.startswith('fadvise64(%s<%s>,' % (fd, path)) and 'POSIX_FADV_DONTNEED' in c]
print('O_DIRECT descriptor', fd)
for c in bad:
    print('opened by name after it:', c)
print('DONTNEED through it:', len(drop))
sys.exit(0 if not bad and drop else 1)
EOF
	echo "$output"
	assert_success
	# The probe read the header through the page cache; nothing of it stays.
	[ "$(mh_resident "$VC_SRC/img.qcow2")" -eq 0 ]
}

@test "a backing name through a symlinked directory out of the tree is refused, never reached" {
	mkdir "$VC_TMP/elsewhere"
	qemu-img create -q -f qcow2 "$VC_TMP/elsewhere/base.qcow2" 16M
	ln -s "$VC_TMP/elsewhere" out
	qemu-img create -q -f qcow2 -u -b out/base.qcow2 -F qcow2 top.qcow2 16M
	export ASAN_OPTIONS=detect_leaks=0
	mh_conf writeback '[top.qcow2]' 'cache = none'
	run strace -f -qq -s 512 -o "$VC_TMP/check.log" \
		-e trace=openat,openat2,open,newfstatat,statx,stat,lstat \
		"$VCACHEFS" --check-config -c "$MH_CONF" "$VC_SRC"
	echo "$output"
	assert_success
	local checked=$output
	run ol_reached "$VC_TMP/check.log" out/
	[ -z "$output" ] || fail "--check-config reached out/: $output"
	run echo "$checked"
	assert_output --partial "note: top.qcow2: backing file out/base.qcow2 refused"

	mh_mount writeback '[top.qcow2]' 'cache = none'
	ol_strace_start "$VC_TMP/strace.log" openat,openat2,open,newfstatat,statx,stat,lstat
	python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.read(fd, 512); os.close(fd)' \
		"$VC_MNT/top.qcow2"
	mh_wait_no_backing "$VC_SRC/top.qcow2"
	mh_strace_stop
	run ol_reached "$VC_TMP/strace.log" out/
	[ -z "$output" ] || fail "the daemon reached out/: $output"
	grep -q "top.qcow2: backing file out/base.qcow2 refused" "$VC_LOG"
}
