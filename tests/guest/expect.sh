#!/bin/sh
# expect.sh SEED [FILE]: the bytes the test guest (mkguest.sh) leaves on its
# disk for vcguest.seed=SEED, LBA 0..4096 (2 MiB + 512 bytes).
#   expect.sh SEED        writes them to stdout
#   expect.sh SEED FILE   compares FILE (a raw image) with them: exit 0 if
#                         equal, else 1 and the first differing sector,
#                         with what it holds, on stderr
set -eu

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 SEED [FILE]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
seed=$1
case $seed in ''|*[!0-9]*) echo "expect.sh: SEED must be a decimal number" >&2; exit 2 ;; esac

gen() {
	awk -v seed="$seed" -v region=direct -v first=0 -v count=2048 -f "$here/pattern.awk"
	awk -v seed="$seed" -v region=buffered -v first=2048 -v count=2048 -f "$here/pattern.awk"
	awk -v seed="$seed" -v region=done -v first=4096 -v count=1 -f "$here/pattern.awk"
}

if [ $# -eq 1 ]; then
	gen
	exit 0
fi

file=$2
n=$((4097 * 512))
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
gen >"$tmp"
[ "$(wc -c <"$tmp")" -eq "$n" ] || { echo "expect.sh: generated $(wc -c <"$tmp") bytes, not $n" >&2; exit 1; }
size=$(wc -c <"$file")
if [ "$size" -lt "$n" ]; then
	echo "expect.sh: $file has $size bytes, fewer than the $n the guest writes" >&2
	exit 1
fi
# cmp -l lists every differing byte (1-based offsets): the first one names
# the sector.
first=$(cmp -l -n "$n" "$tmp" "$file" 2>/dev/null | awk 'NR == 1 { print $1 - 1 }') || true
[ -z "$first" ] && exit 0
lba=$((first / 512))
echo "expect.sh: $file differs from seed $seed's pattern first at byte $first (LBA $lba)" >&2
printf 'expect.sh:   want: %s\n' "$(dd if="$tmp" bs=512 skip="$lba" count=1 2>/dev/null | tr -d '\000' | head -n 1 | sed 's/ *$//')" >&2
printf 'expect.sh:   have: %s\n' "$(dd if="$file" bs=512 skip="$lba" count=1 2>/dev/null | tr -d '\000' | head -n 1 | sed 's/ *$//' | cut -c 1-120)" >&2
exit 1
