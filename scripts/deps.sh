#!/bin/sh
# Install the apt packages the real-stack tests need, only those missing.
#
# Idempotent: asks dpkg-query first; runs `apt-get update` once and
# `apt-get install` only when something is missing. Needs root (or sudo).
# Prints one summary line; apt's own output goes to a log shown on failure.
# Debian 12 / Ubuntu. Called by the Makefile; safe to run by hand.
set -eu

PACKAGES="libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
dnsmasq-base iptables nftables iproute2 mmdebstrap openssh-client libvirt-dev
pkg-config gcc python3-venv python3-dev ovmf e2fsprogs genisoimage fdisk
dosfstools mtools grub-pc-bin grub-efi-amd64-bin"
# Test-only (aivm never needs them at run time, so not in aivm/host/deps.py): the OCI
# registry and htpasswd of the binary cache tests (tests/cache, tests/e2e/test_binary_cache.py),
# sshd for the remote-host tests (tests/e2e/remotehost.py).
TEST_PACKAGES="docker-registry apache2-utils openssh-server"

missing=""
for pkg in $PACKAGES $TEST_PACKAGES; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing="$missing $pkg"
done

if [ -z "$missing" ]; then
    echo "deps: all $(echo $PACKAGES $TEST_PACKAGES | wc -w) packages present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "deps: missing:$missing; run this script as root (sudo is not installed)" >&2
    exit 1
fi

log=$(mktemp /tmp/aivm-deps.XXXXXX.log)
export DEBIAN_FRONTEND=noninteractive
if ! $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 \
   || ! $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -q -y \
        $missing >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "deps: apt-get failed installing:$missing (full log: $log)" >&2
    exit 1
fi
rm -f "$log"
echo "deps: installed$missing"
