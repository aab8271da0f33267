#!/bin/sh
# The apt packages only the benchmarks need: the peers aivm is timed against
# (virt-install, Vagrant, vagrant-libvirt). scripts/deps.sh installs what aivm
# and its tests need; `make bench` runs both. Root only, as the benchmarks are.
# --no-install-recommends keeps out virt-viewer, NFS servers and the like.
set -eu
missing=$(for pkg in virtinst vagrant vagrant-libvirt; do
    dpkg-query -W -f='${db:Status-Status}\n' "$pkg" 2>/dev/null | grep -qx installed \
        || echo "$pkg"
done)
if [ -z "$missing" ]; then
    echo "bench-deps: virtinst vagrant vagrant-libvirt present"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -q -y --no-install-recommends $missing
echo "bench-deps: installed" $missing
