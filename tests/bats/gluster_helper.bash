# Two GlusterFS hosts on this machine, for tests/bats/gluster.bats.
#
# gl_up builds, in GL_TMP:
#   - two network namespaces (hosts A and B) joined by one veth pair, with
#     10.213.N.1 and 10.213.N.2/24, N picked so that no route or address of
#     the machine is in 10.213.N.0/24. Both ends live inside the namespaces:
#     no packet of the test can reach or leave through the machine's own
#     interfaces, and two runs that pick the same N do not meet.
#   - one glusterd per host, each in its own mount namespace (ip netns exec
#     makes one; unshare -m makes it private) with private bind mounts over
#     /var/lib/glusterd, /var/log/glusterfs and /run (the CLI socket and
#     /run/gluster), so the two daemons keep separate state as two machines
#     would. The bricks and self-heal daemons glusterd starts inherit both
#     namespaces.
#   - a trusted pool of the two (peer probe by address; gluster's CLI
#     refuses loopback brick addresses) and a replica 2 volume with one
#     brick per host.
#   - one FUSE client mount per host (GL_MA on A, GL_MB on B): each client
#     process runs in its host's network namespace (nsenter --net) but in
#     the test's mount namespace, so vcachefs and the test see the mounts.
#
# Client and volume options: Debian's defaults, except four timeouts,
# GL_CLIENT_TIMEOUT (600 s) instead of 1 s: the client's --attribute-timeout
# and --entry-timeout, the volume's performance.md-cache-timeout and
# performance.qr-cache-timeout (quick-read keeps files up to 64 KiB whole
# in the client, and serves them from there until then, O_DIRECT or not). With
# the defaults, B drops its cached pages of a file once it fetches the
# file's attributes again and sees a new mtime: the kernel does it when its
# attributes expire (FUSE auto-invalidation), md-cache when its own do (it
# tells the kernel to invalidate the inode). Both happen about a second
# after B last asked, and only if B asks. That window is real but short, so
# a test proving stale data in it would depend on timing; 600 s makes it
# deterministic, and only ever makes B cache more, never less.
#
# gl_down undoes all of it from what GL_TMP/state recorded, whatever failed
# before: client mounts, volume, daemons (every process in the two network
# namespaces), namespaces (the veth pair goes with them), GL_TMP.

GL_CLIENT_TIMEOUT=${GL_CLIENT_TIMEOUT:-600}
GL_VOL=vcvol

# Why gluster cannot run here, or nothing. gl_cannot_run
# GL_TEST_CANNOT_RUN=REASON pretends it cannot (to see the suite skip).
gl_cannot_run() {
	[ -z "${GL_TEST_CANNOT_RUN:-}" ] || { echo "$GL_TEST_CANNOT_RUN"; return; }
	local t
	for t in glusterd glusterfs gluster ip nsenter unshare; do
		command -v "$t" >/dev/null ||
			{ echo "$t not installed (tests/deps.sh: glusterfs-server glusterfs-client iproute2)"; return; }
	done
	[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces, glusterd)"; return; }
	[ -c /dev/fuse ] || echo "no /dev/fuse"
}

gl_state() {	# KEY VALUE: record for gl_down
	echo "$1 $2" >>"$GL_TMP/state"
}

# A /24 in 10.213.0.0/16 that no route (any table) or address here uses.
gl_pick_net() {
	local n used
	used=$(ip -4 route show table all; ip -4 addr show)
	for n in $(shuf -i 1-254); do
		grep -q "10\.213\.$n\." <<<"$used" && continue
		grep -qE "10\.213\.0\.0/16|10\.0\.0\.0/8|10\.213\.$n\.0/24" <<<"$used" && continue
		echo "$n"
		return 0
	done
	return 1
}

# gluster CLI of host I (1 or 2), in its glusterd's namespaces.
gl_cli() {
	local i=$1
	shift
	timeout 120 nsenter -t "$(cat "$GL_TMP/node$i/pid")" -m -n gluster --mode=script "$@"
}

# Wait up to T seconds for a command to succeed. gl_until T CMD...
gl_until() {
	local t=$1 i
	shift
	for i in $(seq 1 $((t * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	"$@"
}

gl_bricks_online() {
	[ "$(gl_cli 1 volume status "$GL_VOL" detail | grep -c '^Online.*: Y')" -eq 2 ]
}

# A file one client writes is visible through the other: both clients are
# connected to both bricks.
gl_clients_see() {
	echo "$1" >"$GL_MA/.probe" && [ "$(cat "$GL_MB/.probe")" = "$1" ] &&
		echo "$1" >"$GL_MB/.probe" && [ "$(cat "$GL_MA/.probe")" = "$1" ]
}

gl_up() {
	local n i ns addr s
	GL_TMP=$(mktemp -d /var/tmp/vcachefs-gluster.XXXXXX)
	chmod 755 "$GL_TMP"
	: >"$GL_TMP/state"
	n=$(gl_pick_net) || { echo "no free 10.213.N.0/24" >&2; return 1; }
	GL_NET=10.213.$n
	GL_NSA=vcgl${n}a$$
	GL_NSB=vcgl${n}b$$
	ip netns add "$GL_NSA" && gl_state netns "$GL_NSA" || return 1
	ip netns add "$GL_NSB" && gl_state netns "$GL_NSB" || return 1
	ip -n "$GL_NSA" link add vga type veth peer name vgb netns "$GL_NSB" || return 1
	ip -n "$GL_NSA" addr add "$GL_NET.1/24" dev vga || return 1
	ip -n "$GL_NSB" addr add "$GL_NET.2/24" dev vgb || return 1
	for ns in "$GL_NSA" "$GL_NSB"; do
		ip -n "$ns" link set lo up || return 1
	done
	ip -n "$GL_NSA" link set vga up && ip -n "$GL_NSB" link set vgb up || return 1

	i=1
	for ns in "$GL_NSA" "$GL_NSB"; do
		s=$GL_TMP/node$i
		mkdir -p "$s/lib" "$s/run/gluster" "$s/log" "$s/brick"
		# The package's option groups (group virt, ...); not its hook
		# scripts, which would only start glusterfind and samba jobs.
		cp -a /var/lib/glusterd/groups "$s/lib/" 2>/dev/null || true
		ip netns exec "$ns" unshare -m --propagation private sh -c '
			mount --bind "$1/lib" /var/lib/glusterd &&
			mount --bind "$1/log" /var/log/glusterfs &&
			mount --bind "$1/run" /run &&
			exec glusterd -N' sh "$s" >"$s/glusterd.out" 2>&1 &
		echo $! >"$s/pid"
		gl_state glusterd "$!"
		i=$((i + 1))
	done
	for i in 1 2; do
		gl_until 30 gl_cli "$i" pool list || { gl_dump; return 1; }
	done
	gl_cli 1 peer probe "$GL_NET.2" || { gl_dump; return 1; }
	gl_until 30 sh -c "nsenter -t $(cat "$GL_TMP/node1/pid") -m -n gluster --mode=script peer status |
		grep -q 'Peer in Cluster (Connected)'" || { gl_dump; return 1; }
	# force: the bricks are on the root filesystem.
	gl_cli 1 volume create "$GL_VOL" replica 2 \
	    "$GL_NET.1:$GL_TMP/node1/brick" "$GL_NET.2:$GL_TMP/node2/brick" force ||
		{ gl_dump; return 1; }
	gl_state volume "$GL_VOL"
	gl_cli 1 volume set "$GL_VOL" performance.md-cache-timeout "$GL_CLIENT_TIMEOUT" &&
	    gl_cli 1 volume set "$GL_VOL" performance.qr-cache-timeout "$GL_CLIENT_TIMEOUT" ||
		{ gl_dump; return 1; }
	gl_cli 1 volume start "$GL_VOL" || { gl_dump; return 1; }
	gl_until 60 gl_bricks_online || { gl_dump; return 1; }

	GL_MA=$GL_TMP/ma
	GL_MB=$GL_TMP/mb
	gl_client "$GL_NSA" "$GL_NET.1" "$GL_MA" a || return 1
	gl_client "$GL_NSB" "$GL_NET.2" "$GL_MB" b || return 1
	gl_until 60 gl_clients_see up || { gl_dump; return 1; }
	rm -f "$GL_MA/.probe"
	export GL_TMP GL_NET GL_NSA GL_NSB GL_MA GL_MB
}

# gl_client NETNS SERVER MOUNTPOINT NAME [OPTIONS...]: host NAME's client.
gl_client() {
	local ns=$1 srv=$2 mnt=$3 name=$4
	shift 4
	mkdir -p "$mnt"
	gl_state mount "$mnt"
	nsenter --net="/run/netns/$ns" glusterfs --volfile-server="$srv" \
	    --volfile-id="$GL_VOL" --attribute-timeout="$GL_CLIENT_TIMEOUT" \
	    --entry-timeout="$GL_CLIENT_TIMEOUT" --pid-file="$GL_TMP/client-$name.pid" \
	    --log-file="$GL_TMP/client-$name.log" "$@" "$mnt" || { gl_dump; return 1; }
	gl_state client "$GL_TMP/client-$name.pid"
	gl_until 30 gl_is_mounted "$mnt" || { gl_dump; return 1; }
}

gl_is_mounted() {	# MOUNTPOINT
	awk -v m="$1" '$2 == m && $3 == "fuse.glusterfs" { f = 1 } END { exit !f }' /proc/mounts
}

# gl_remount NAME [OPTIONS...]: host NAME's client again, with these options.
gl_remount() {
	local name=$1 mnt ns srv
	shift
	if [ "$name" = a ]; then mnt=$GL_MA ns=$GL_NSA srv=$GL_NET.1
	else mnt=$GL_MB ns=$GL_NSB srv=$GL_NET.2; fi
	umount "$mnt" || return 1
	gl_until 30 sh -c "! kill -0 \$(cat $GL_TMP/client-$name.pid 2>/dev/null) 2>/dev/null"
	gl_client "$ns" "$srv" "$mnt" "$name" "$@"
}

# The logs, when setting up failed.
gl_dump() {
	local f
	for f in "$GL_TMP"/node*/glusterd.out "$GL_TMP"/node*/log/glusterd.log "$GL_TMP"/client-*.log; do
		[ -f "$f" ] || continue
		echo "--- $f" >&2
		tail -n 30 "$f" >&2
	done
}

gl_down() {
	local key val pid ns rc=0
	[ -n "${GL_TMP:-}" ] && [ -f "$GL_TMP/state" ] || return 0
	# Client mounts first: nothing may hold the volume.
	while read -r key val; do
		[ "$key" = mount ] || continue
		gl_is_mounted "$val" && { umount "$val" 2>/dev/null || umount -l "$val" || rc=1; }
	done <"$GL_TMP/state"
	while read -r key val; do
		[ "$key" = client ] || continue
		pid=$(cat "$val" 2>/dev/null) || continue
		# Ours only if it is still a glusterfs client of this test.
		tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$GL_TMP" &&
			kill "$pid" 2>/dev/null
	done <"$GL_TMP/state"
	if grep -q '^volume ' "$GL_TMP/state"; then
		gl_cli 1 volume stop "$GL_VOL" >/dev/null 2>&1
		gl_cli 1 volume delete "$GL_VOL" >/dev/null 2>&1
	fi
	# glusterd, bricks, self-heal daemons: every process in our namespaces.
	while read -r key val; do
		[ "$key" = netns ] || continue
		for pid in $(ip netns pids "$val" 2>/dev/null); do
			kill "$pid" 2>/dev/null
		done
	done <"$GL_TMP/state"
	while read -r key val; do
		[ "$key" = netns ] || continue
		gl_until 20 sh -c "[ -z \"\$(ip netns pids $val)\" ]" >/dev/null 2>&1 ||
			for pid in $(ip netns pids "$val"); do kill -9 "$pid" 2>/dev/null; done
		ip netns del "$val" || rc=1
	done <"$GL_TMP/state"
	for ns in $(awk '$1 == "netns" { print $2 }' "$GL_TMP/state"); do
		[ -e "/run/netns/$ns" ] && { echo "netns $ns still there" >&2; rc=1; }
	done
	rm -rf "$GL_TMP"
	return $rc
}
