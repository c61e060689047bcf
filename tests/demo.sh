#!/usr/bin/env bash
# make demo: a demo image directory served by vcachefs in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
demo=${DEMO_DIR:-$top/demo}
mkdir -p "$demo/images" "$demo/mnt"

[ -f "$demo/images/disk.raw" ] || qemu-img create -q -f raw "$demo/images/disk.raw" 64M
[ -f "$demo/images/base.qcow2" ] || qemu-img create -q -f qcow2 "$demo/images/base.qcow2" 256M
[ -f "$demo/vcachefs.conf" ] || cat > "$demo/vcachefs.conf" <<'CONF'
; demo configuration: see etc/vcachefs.conf and vcachefs.conf(5)
[global]
cache = writeback

[base.qcow2]
cache = none

[*.iso]
readonly = yes
CONF

cat <<EOF2
vcachefs demo: serving $demo/images at $demo/mnt (Ctrl-C to stop)

Try, in another terminal:
  $top/build/vcachefs --check-config -c $demo/vcachefs.conf $demo/images
  qemu-img info $demo/mnt/base.qcow2
  qemu-io -t none -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' $demo/mnt/base.qcow2
  (exec 9<>$demo/mnt/base.qcow2; $top/build/vcachefsctl -m $demo/mnt status)
                                 # base.qcow2 open: its I/O descriptor has O_DIRECT
  fincore $demo/images/base.qcow2                    # no cached pages: cache=none
  cat /proc/mounts | grep vcachefs

EOF2
exec "$top/build/vcachefs" -f -c "$demo/vcachefs.conf" "$demo/images" "$demo/mnt"
