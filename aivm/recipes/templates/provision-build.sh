#!/bin/bash
# aivm provision builder, run in the throw-away builder guest by aivm-build.service
# (after cloud-init is done). Its output goes to the second serial port, which the
# host keeps as the node's build log. Layout written by the build seed:
#   /var/lib/aivm-build/nonce            the result marker's nonce (the node key)
#   /var/lib/aivm-build/steps/NNN.title  what step NNN is, one line
#   /var/lib/aivm-build/steps/NNN.sh     step NNN, run as root with bash -e
#   /var/lib/aivm-build/files/NNN        a file the steps install
#   /var/lib/aivm-build/sources.list     the build's apt sources (optional)
set -u
B=/var/lib/aivm-build
exec >/dev/ttyS1 2>&1
NONCE=$(cat "$B/nonce")
PROXY=http://10.0.2.100:3128/
say() { echo "aivm-provision: $*"; }
finish() {
    say "result $1"
    echo "AIVM-PROVISION-RESULT $NONCE $1"
    sync
    systemctl poweroff --no-block
    exit 0
}

# --- the build's environment: apt through the fence, the declared sources --------
mkdir -p "$B/saved"
if [ -s "$B/sources.list" ]; then
    [ -e /etc/apt/sources.list ] && mv /etc/apt/sources.list "$B/saved/"
    [ -d /etc/apt/sources.list.d ] && mv /etc/apt/sources.list.d "$B/saved/"
    mkdir -p /etc/apt/sources.list.d
    cp "$B/sources.list" /etc/apt/sources.list
fi
cat >/etc/apt/apt.conf.d/00aivm-build <<EOF
Acquire::http::Proxy "$PROXY";
Acquire::https::Proxy "$PROXY";
Acquire::http::Pipeline-Depth "0";
Acquire::Retries "3";
Dpkg::Options { "--force-confold"; "--force-confdef"; };
EOF
export DEBIAN_FRONTEND=noninteractive http_proxy=$PROXY https_proxy=$PROXY \
    HTTP_PROXY=$PROXY HTTPS_PROXY=$PROXY HOME=/root
unset no_proxy NO_PROXY
cd /root

# what the reset below must not let through to a VM (tests compare against it)
say "builder machine-id: $(cat /etc/machine-id)"
for key in /etc/ssh/ssh_host_*_key.pub; do
    [ -e "$key" ] && say "builder host key: $(ssh-keygen -lf "$key")"
done

# --- the declared steps, in order; the first failure ends the build --------------
for step in "$B"/steps/*.sh; do
    [ -e "$step" ] || continue
    n=$(basename "$step" .sh)
    say "step $n: $(cat "$B/steps/$n.title")"
    started=$(date +%s)
    (cd /root && bash -e "$step")
    rc=$?
    say "step $n exit $rc after $(( $(date +%s) - started )) s"
    [ "$rc" -eq 0 ] || finish "failed $n $rc"
done

# --- reset what must differ per VM, then leave the disk clean --------------------
say "reset: apt, identity, leases, random seed, cloud-init state, logs"
(
    set -e
    rm -f /etc/apt/apt.conf.d/00aivm-build
    if [ -s "$B/sources.list" ]; then
        rm -rf /etc/apt/sources.list /etc/apt/sources.list.d
        [ -e "$B/saved/sources.list" ] && mv "$B/saved/sources.list" /etc/apt/
        if [ -d "$B/saved/sources.list.d" ]; then mv "$B/saved/sources.list.d" /etc/apt/
        else mkdir -p /etc/apt/sources.list.d; fi
    fi
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    systemctl stop networking.service 2>/dev/null || ifdown -a --force 2>/dev/null || true
    pkill -x dhclient 2>/dev/null || true
    rm -f /var/lib/dhcp/*.leases /var/lib/dhcp/dhclient* /var/lib/dhcpcd/*.lease* \
        /var/lib/NetworkManager/*.lease /var/lib/systemd/network/*.lease 2>/dev/null || true
    systemctl stop systemd-random-seed.service 2>/dev/null || true
    rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret
    rm -f /etc/ssh/ssh_host_*
    cloud-init clean --logs --machine-id 2>/dev/null || cloud-init clean --logs
    umount /etc/machine-id 2>/dev/null || true
    : >/etc/machine-id
    if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
        rm -f /var/lib/dbus/machine-id
    fi
    echo localhost >/etc/hostname
    for f in /var/log/dpkg.log /var/log/apt/history.log /var/log/apt/term.log \
             /var/log/alternatives.log /var/log/aivm-provision.log; do
        [ -e "$f" ] && : >"$f"
    done
    rm -f /var/log/apt/eipp.log.xz
    journalctl --rotate >/dev/null 2>&1 || true
    journalctl --vacuum-time=1s >/dev/null 2>&1 || true
    rm -rf /etc/systemd/system/aivm-build.service /root/.cache "$B/steps" "$B/files" \
        "$B/sources.list" "$B/saved"
    fstrim -a >/dev/null 2>&1 || true
) || finish "failed reset $?"
rm -rf "$B"
finish ok
