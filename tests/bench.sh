#!/usr/bin/env bash
# make bench: fio through vcachefs against the same I/O on the backing
# directory, in one run, alternating, and the ratio vcachefs/native per row.
# A benchmark, not a test: it never fails on a number.
#   QUICK=1  short runs (whole bench under 3 minutes)
#   ROWS="3 6"  only these rows (1-6);  MODES="none:native writeback:threads"
#   FUSE_URING=off  requests through /dev/fuse (default: through io_uring
#                   where the kernel has it; the fuse module's enable_uring
#                   parameter is set to Y for the run and put back after)
#   REPS=3  run each cell 3 times, vcachefs and native taking turns, and
#           report the run with the median ratio (this disk's speed drifts
#           several times over within minutes, so one pair of runs can mislead;
#           with an even N the lower of the two middle runs is shown)
#   BACKING=ram  the backing directory on ext4 over a loop device over a
#           file in /dev/shm (RAM: the disk drifts too much for small
#           differences); default: a directory under /var/tmp
#   STATS_AB=1  instead of the table: row 3 with per-image counting on and
#           off (VCACHEFS_NO_STATS=1), the daemon started afresh for each
#           run, the two taking turns REPS times, per mode; prints daemon
#           CPU per request of both and the relative difference
#   ANCHOR=0  leave out the libfuse anchor: by default a last block runs
#           libfuse's own passthrough_ll example (built from the copy
#           Debian's libfuse3-dev ships) with cache=never, the anchor the
#           targets are set against, so both are compared in the same run
set -euo pipefail
cd "$(dirname "$0")/.."
VCACHEFS=${VCACHEFS:-$PWD/build/vcachefs}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then runtime=2; ramp=0.5; size=256M; else runtime=10; ramp=1; size=1G; fi

work=$(mktemp -d /var/tmp/vcachefs-bench.XXXXXX)
src=$work/src; mnt=$work/mnt; conf=$work/vcachefs.conf
mkdir -p "$src" "$mnt"
pid=""
BACKING=${BACKING:-disk}
ram_file=""; ram_loop=""; ram_mnt=""
param=/sys/module/fuse/parameters/enable_uring
old_param=""
FUSE_URING=${FUSE_URING:-auto}
if [ "$FUSE_URING" != off ] && [ -w "$param" ]; then
	old_param=$(cat "$param")
	echo Y >"$param"
fi
cleanup() {
	if grep -q " $mnt fuse" /proc/mounts; then fusermount3 -u "$mnt" || umount -l "$mnt"; fi
	[ -n "$pid" ] && wait "$pid" 2>/dev/null || true
	[ -z "$old_param" ] || echo "$old_param" >"$param"
	if [ -n "$ram_mnt" ] && grep -q " $ram_mnt " /proc/mounts; then umount "$ram_mnt" || umount -l "$ram_mnt"; fi
	[ -z "$ram_loop" ] || losetup -d "$ram_loop" || true
	[ -z "$ram_file" ] || rm -f "$ram_file"
	rm -rf "$work"
}
trap cleanup EXIT

# BACKING=ram: ext4 on a loop device over a file in /dev/shm (this kernel
# has no brd). Room for the image and the native reference file.
if [ "$BACKING" = ram ]; then
	ram_mb=$(( $(numfmt --from=iec "$size") * 5 / 2 / 1048576 + 64 ))
	ram_file=$(mktemp /dev/shm/vcachefs-bench.XXXXXX)
	truncate -s "${ram_mb}M" "$ram_file"
	ram_loop=$(losetup --find --show "$ram_file")
	mkfs.ext4 -q -F "$ram_loop"
	ram_mnt=$work/ram
	mkdir -p "$ram_mnt"
	mount "$ram_loop" "$ram_mnt"
	src=$ram_mnt/src
	mkdir -p "$src"
fi

# Daemon CPU time (user+sys, all threads) in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# The same in ns, from the scheduler (finer than ticks; threads alive now).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
hz=$(getconf CLK_TCK)

# row: name rw bs iodepth engine direct extra
rows=(
	"seq-read-1M|read|1M|16|io_uring|1|"
	"seq-write-1M|write|1M|16|io_uring|1|"
	"rand-read-4k-qd32|randread|4k|32|io_uring|1|"
	"rand-write-4k-qd32|randwrite|4k|32|io_uring|1|"
	"write+fdatasync-4k-qd1|randwrite|4k|1|psync|0|--fdatasync=1"
	"warm-buffered-read-4k-qd32|randread|4k|32|io_uring|0|--pre_read=1"
)
modes=("none native" "none threads" "writeback io_uring" "writeback threads")
if [ -n "${MODES:-}" ]; then read -ra modes <<<"$MODES"; modes=("${modes[@]//:/ }"); fi
REPS=${REPS:-1}

# The anchor: libfuse's passthrough_ll example, built from Debian's copy.
anchor=""
anchor_src=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
if [ "${ANCHOR:-1}" = 1 ]; then
	anchor=build/anchor/passthrough_ll
	if [ ! -f "$anchor_src" ]; then
		echo "anchor left out: $anchor_src is missing (package libfuse3-dev)" >&2
		anchor=""
	elif [ ! -x "$anchor" ] || [ "$anchor_src" -nt "$anchor" ]; then
		mkdir -p build/anchor
		# Not our code: built as its authors wrote it, without -Werror.
		# shellcheck disable=SC2046
		cc -O2 -o "$anchor" "$anchor_src" $(pkg-config --cflags --libs fuse3) ||
			{ echo "anchor left out: passthrough_ll did not build" >&2; anchor=""; }
	fi
	[ -z "$anchor" ] || modes+=("anchor passthrough_ll")
fi
want_row() { [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $1 "* ]]; }

# run_fio FILE ROW -> prints "iops bytes"
run_fio() {
	local file=$1 row=$2 name rw bs qd eng direct extra out
	IFS='|' read -r name rw bs qd eng direct extra <<<"$row"
	# A job that fails (the anchor's O_DIRECT writes: EINVAL) counts as 0.
	out=$(fio --name=b --filename="$file" --size="$size" --rw="$rw" --bs="$bs" \
		--iodepth="$qd" --ioengine="$eng" --direct="$direct" $extra \
		--runtime="$runtime" --time_based --ramp_time="${ramp}s" --output-format=terse \
		--terse-version=3 --group_reporting 2>/dev/null) || out=""
	# terse v3: field 8 read iops, 49 write iops; 6/47 read/write KiB total;
	# field 5 the job's error (fio may report one and still exit 0).
	# %.0f: byte counts pass 2^31, where some awks' %d stops.
	awk -F';' '$5 == 0 { printf "%.0f %.0f\n", $8 + $49, ($6 + $47) * 1024; ok = 1 }
	    END { if (!ok) print "0 0" }' <<<"$out"
}

# Of the runs given as "viops niops" lines: the run whose ratio is the
# median (a failed run, if any: one failure fails the cell), then the
# lowest and the highest ratio.
median_run() {
	awk '{ r = $2 ? $1 / $2 : 0; print r, $0 }' | sort -g |
	    awk '{ l[NR] = $2 " " $3; r[NR] = $1; if ($2 == 0) failed = NR }
	    END { printf "%s %.2f %.2f\n", l[failed ? failed : int((NR + 1) / 2)], r[1], r[NR] }'
}

# Start the filesystem under test on $mnt: vcachefs with cache and aio, or
# the anchor. Sets pid and log.
start_fs() {
	log=${DAEMON_LOG:-$work/daemon.log}
	if [ "$1" = anchor ]; then
		"$anchor" -f -o source="$src",cache=never "$mnt" 2>"$log" &
	else
		printf '[global]\ncache = %s\naio = %s\n' "$1" "$2" >"$conf"
		env ${DAEMON_ENV:-} "$VCACHEFS" -f --fuse-uring "$FUSE_URING" ${VCACHEFS_OPTS:-} -c "$conf" "$src" "$mnt" 2>"$log" &
	fi
	pid=$!
	for _ in $(seq 100); do grep -q " $mnt fuse" /proc/mounts && break; sleep 0.05; done
}

stop_fs() { fusermount3 -u "$mnt"; wait "$pid" || true; pid=""; }

# STATS_AB=1: row 3, counting on and off, taking turns.
if [ "${STATS_AB:-0}" = 1 ]; then
	row=${rows[2]}
	# "pairs": each on run against the off run right after it, median and
	# range, so the spread of the machine shows beside the total.
	printf '%-20s %-4s %12s %12s %12s %24s\n' mode runs "on us/req" "off us/req" "on vs off" "pairs: median (range)"
	for m in "${modes[@]}"; do
		read -r cache aio <<<"$m"
		[ "$cache" = anchor ] && continue
		: >"$work/ab"
		for _ in $(seq "$REPS"); do
			for v in on off; do
				if [ $v = off ]; then DAEMON_ENV=VCACHEFS_NO_STATS=1; else DAEMON_ENV=; fi
				start_fs "$cache" "$aio"
				[ -s "$mnt/img" ] || fio --name=fill --filename="$mnt/img" --size="$size" \
					--rw=write --bs=1M --direct=1 --ioengine=psync >/dev/null 2>&1
				sync
				dd if="$src/img" iflag=nocache count=0 status=none
				run_fio "$mnt/img" "$row" >"$work/fio.out" &
				sleep "$ramp"; c0=$(cpu_ns "$pid")
				wait $!; c1=$(cpu_ns "$pid")
				read -r viops _ <"$work/fio.out"
				echo "$v $((c1 - c0)) $viops" >>"$work/ab"
				stop_fs
			done
		done
		DAEMON_ENV=
		awk -v m="$cache+$aio" -v rt="$runtime" -v reps="$REPS" '
		    { ns[$1] += $2; req[$1] += $3 * rt
		      us = $3 ? $2 / ($3 * rt) : 0
		      if ($1 == "on") last = us
		      else if (us > 0) d[++n] = (last - us) / us * 100 }
		    END {
			on = req["on"] ? ns["on"] / req["on"] / 1000 : 0
			off = req["off"] ? ns["off"] / req["off"] / 1000 : 0
			for (i = 2; i <= n; i++)	# insertion sort: n is REPS
				for (j = i; j > 1 && d[j - 1] > d[j]; j--) { t = d[j]; d[j] = d[j - 1]; d[j - 1] = t }
			med = n ? d[int((n + 1) / 2)] : 0
			printf "%-20s %-4d %12.2f %12.2f %+11.1f%% %+9.1f%% (%+.1f..%+.1f)\n", m, reps, on, off,
			    off ? (on - off) / off * 100 : 0, med, d[1], d[n] }' "$work/ab"
		sed 's/^/#   /' "$work/ab"
	done
	echo "machine: $(nproc) cores, $(uname -r), $BACKING backing ($(df -T "$src" | awk 'NR==2 { print $2 }')), row 3, $REPS run(s) each way, CPU from schedstat"
	exit 0
fi

printf '%-28s %-20s %10s %10s %7s %10s %10s %10s\n' row mode "mounted" "native" ratio "cpu us/req" "cpu ms/GiB" "runs"
transport=""
for m in "${modes[@]}"; do
	read -r cache aio <<<"$m"
	start_fs "$cache" "$aio"
	# Lay the files out once so every run reads real data.
	for f in "$mnt/img" "$src/ref"; do
		[ -s "$f" ] || fio --name=fill --filename="$f" --size="$size" --rw=write --bs=1M \
			--direct=1 --ioengine=psync >/dev/null 2>&1
	done
	i=0
	for row in "${rows[@]}"; do
		i=$((i + 1)); want_row $i || continue
		name=${row%%|*}
		ct=0; vbytes=0; : >"$work/runs"
		for _ in $(seq "$REPS"); do
			# Each run starts with no dirty data left by the previous row (a
			# writeback image keeps row 4's writes in the page cache, which
			# row 5's first flushes would otherwise pay for).
			sync
			# And with nothing of the backing file cached, like the native
			# run: fio drops the cache of the file it opens (invalidate=1),
			# which through vcachefs reaches only the FUSE inode. (A cached
			# image holds the folios of the fill's 1 MiB writes, on which
			# ext4 spent a quarter of the daemon's CPU in row 5.)
			dd if="$src/img" iflag=nocache count=0 status=none
			# CPU is sampled once fio's ramp is over, so it covers the measured window.
			run_fio "$mnt/img" "$row" >"$work/fio.out" &
			sleep "$ramp"; c0=$(cpu_ticks "$pid")
			wait $!; c1=$(cpu_ticks "$pid")
			read -r viops vb <"$work/fio.out"
			ct=$((ct + c1 - c0)); vbytes=$((vbytes + vb))
			sync
			read -r niops _ < <(run_fio "$src/ref" "$row")
			echo "$viops $niops" >>"$work/runs"
		done
		read -r viops niops rlo rhi < <(median_run <"$work/runs")
		# CPU per request over all the runs of the cell.
		reqs=$(awk '{ s += $1 } END { printf "%.0f", s }' "$work/runs")
		reqs=$((reqs * runtime)); [ "$reqs" -gt 0 ] || reqs=1
		label="$cache+$aio"; [ "$cache" = anchor ] && label=$aio
		awk -v n="$name" -v m="$label" -v v="$viops" -v r="$niops" \
		    -v ct="$ct" -v hz="$hz" -v q="$reqs" -v b="$vbytes" \
		    -v runs="$rlo-$rhi" -v reps="$REPS" 'BEGIN {
			if (v == 0) {	# the job failed
				printf "%-28s %-20s %10s %10d %7s %10s %10s %10s\n", n, m, "failed", r, "-", "-", "-", "-"
				exit
			}
			cpu = ct / hz
			# runs: the lowest and the highest ratio of the cell
			printf "%-28s %-20s %10d %10d %7.2f %10.1f %10.1f %10s\n", n, m, v, r,
			    r ? v / r : 0, cpu * 1e6 / q, b ? cpu * 1e3 / (b / 2^30) : 0,
			    (reps > 1 ? runs : "-") }'
	done
	if [ "$cache" != anchor ]; then
		if grep -q "go through io_uring" "$log"; then
			transport="FUSE over io_uring"
		else
			transport="/dev/fuse"
		fi
	fi
	fusermount3 -u "$mnt"; wait "$pid" || true; pid=""
done
echo "machine: $(nproc) cores, $(uname -r), $BACKING backing ($(df -T "$src" | awk 'NR==2 { print $2 }'))," \
    "vcachefs requests through ${transport:-(not run)}${anchor:+, passthrough_ll through /dev/fuse}," \
    "$REPS run(s) a cell, median shown"
