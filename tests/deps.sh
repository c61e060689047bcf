#!/usr/bin/env bash
# Install what building and testing vcachefs needs, if anything is missing.
# Runs as root on Debian 12; elsewhere it only says what is missing.
set -euo pipefail

pkgs=(build-essential pkg-config libfuse3-dev fuse3 liburing-dev libqcow-dev
      libinih-dev bats bats-assert bats-support bats-file fio qemu-utils
      strace attr util-linux-extra psmisc e2fsprogs python3 xfsprogs
      stress-ng clang libclang-rt-14-dev acl prometheus tmux socat
      qemu-system-x86 busybox-static cpio libvirt-daemon-system libvirt-clients
      libsystemd-dev systemd man-db libxml2-utils jq)

# tests/bats/gluster.bats: two GlusterFS hosts in network namespaces
pkgs+=(glusterfs-server glusterfs-client iproute2)

# make deb and tests/bats/deb.bats
pkgs+=(debhelper dpkg-dev fakeroot lintian)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]} (run as root to install them)" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
