"""Proof by hand that this machine's stack behaves as shared/REALSTACK.md says.

Not a test (pytest does not collect it): it builds the small Debian guest
without aivm (mmdebstrap, mkfs.ext4 -d, qemu-img), starts a `RealStack`,
defines a NAT network and a hand-written domain (type qemu, q35, direct
kernel boot, cloud-init seed on virtio-scsi), waits for ssh from inside the
namespace and for cloud-init, then tears everything down and prints timings.

    sudo .venv/bin/python tests/e2e/manual_boot_check.py [--work DIR] [--rebuild] [--keep]

The image is kept in DIR (default /var/tmp/aivm-manual) and reused unless
--rebuild. DIR must be traversable by libvirt-qemu (not under /root or a 0700
pytest tmp dir) and not under /var/lib/libvirt (see harness.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aivm.run import Cmd, run
from tests.e2e.harness import RealStack, nat_network_xml, unavailable_reason

PACKAGES = ("linux-image-cloud-amd64,dbus,initramfs-tools,systemd-sysv,udev,kmod,cloud-init,"
            "openssh-server,iproute2,sudo,git,ifupdown,isc-dhcp-client,netbase,procps")
LABEL = "aivmroot"
MAC = "52:54:00:a1:7e:01"
NAME = "aivm-check"
USER = "agent"
UID = 1234


def apt_mirror() -> str:
    """The Debian mirror apt already uses here (first deb URI that serves bookworm)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        text = path.read_text()
        if "bookworm\n" in text or "bookworm " in text:
            for line in text.splitlines():
                if line.startswith("URIs:") and "security" not in line:
                    return line.split()[1]
    return "http://deb.debian.org/debian"


class Clock:
    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    def timed(self, label: str, fn: Callable[[], object]) -> object:
        t0 = time.monotonic()
        result = fn()
        self.marks[label] = time.monotonic() - t0
        print(f"  {label}: {self.marks[label]:.1f} s", flush=True)
        return result


# ---- image -------------------------------------------------------------------------


def build_image(work: Path, clock: Clock) -> None:
    rootfs = work / "rootfs"
    if rootfs.exists():
        run(Cmd.of("rm", "-rf", str(rootfs), meaning="remove the old rootfs"))
    clock.timed("mmdebstrap", lambda: run(Cmd.of(
        "mmdebstrap", "--variant=minbase", "--format=directory", f"--include={PACKAGES}",
        "bookworm", str(rootfs), apt_mirror(), meaning="build the guest rootfs"), timeout=900))
    configure_rootfs(rootfs)
    raw = work / "base.raw"
    clock.timed("mkfs.ext4 -d", lambda: run(Cmd.of(
        "mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", str(rootfs), str(raw), "3G",
        meaning="make the root filesystem image")))
    clock.timed("qemu-img convert", lambda: run(Cmd.of(
        "qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "base.qcow2"),
        meaning="compress the image to qcow2")))
    raw.unlink()
    for name in ("vmlinuz", "initrd.img"):
        (work / name).write_bytes((rootfs / name).resolve().read_bytes())


def configure_rootfs(rootfs: Path) -> None:
    (rootfs / "etc/fstab").write_text(f"LABEL={LABEL} / ext4 defaults 0 1\n")
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc/cloud/cloud.cfg.d/99-aivm.cfg").write_text(
        "datasource_list: [NoCloud, None]\nlocale: false\n")


def image_ready(work: Path) -> bool:
    return all((work / n).is_file() for n in ("base.qcow2", "vmlinuz", "initrd.img"))


# ---- per-boot files ----------------------------------------------------------------


def make_boot_files(work: Path, boot: Path) -> str:
    """Overlay, ssh key, seed ISO in `boot`; returns the private key path."""
    if boot.exists():
        run(Cmd.of("rm", "-rf", str(boot), meaning="remove the previous boot's files"))
    boot.mkdir(mode=0o755)
    run(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(work / "base.qcow2"),
               "-F", "qcow2", str(boot / "overlay.qcow2"), "8G", meaning="make the overlay"))
    key = boot / "id_ed25519"
    run(Cmd.of("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key),
               meaning="make a throwaway ssh key"))
    (boot / "user-data").write_text(user_data(key.with_suffix(".pub").read_text().strip()))
    (boot / "meta-data").write_text(f"instance-id: {NAME}-{int(time.time())}\n"
                                    f"local-hostname: {NAME}\n")
    run(Cmd.of("genisoimage", "-quiet", "-output", str(boot / "seed.iso"), "-volid", "cidata",
               "-joliet", "-rock", str(boot / "user-data"), str(boot / "meta-data"),
               meaning="make the cloud-init seed"))
    return str(key)


def user_data(pubkey: str) -> str:
    return f"""#cloud-config
users:
  - name: {USER}
    uid: {UID}
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    lock_passwd: true
    ssh_authorized_keys: ["{pubkey}"]
"""


def domain_xml(work: Path, boot: Path, network: str) -> str:
    return f"""<domain type='qemu'>
  <name>{NAME}</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{work / 'vmlinuz'}</kernel>
    <initrd>{work / 'initrd.img'}</initrd>
    <cmdline>root=/dev/vda rw console=ttyS0</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{boot / 'overlay.qcow2'}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='scsi' model='virtio-scsi'/>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{boot / 'seed.iso'}'/>
      <target dev='sda' bus='scsi'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <source network='{network}'/>
      <mac address='{MAC}'/>
      <model type='virtio'/>
    </interface>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <serial type='file'><source path='{boot / 'console.log'}'/><target port='0'/></serial>
  </devices>
</domain>"""


# ---- boot and probe ----------------------------------------------------------------


def wait_lease(net: object, deadline_s: float) -> str:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for lease in net.DHCPLeases(MAC):  # type: ignore[attr-defined]
            return str(lease["ipaddr"])
        time.sleep(1)
    raise TimeoutError(f"no DHCP lease for {MAC} within {deadline_s:.0f} s")


def ssh(stack: RealStack, key: str, ip: str, *command: str, timeout: float = 30) -> str:
    argv = ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
            "-o", "LogLevel=ERROR", f"{USER}@{ip}", *command]
    return stack.ns_run(argv, meaning="ssh into the guest", timeout=timeout).stdout


def wait_ssh(stack: RealStack, key: str, ip: str, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while True:
        try:
            if ssh(stack, key, ip, "echo", "ok").strip() == "ok":
                return
        except Exception:
            if time.monotonic() > end:
                raise
        time.sleep(2)


def boot_and_probe(stack: RealStack, work: Path, clock: Clock) -> None:
    boot = work / "boot"
    key = make_boot_files(work, boot)
    stack.watch(boot / "console.log")
    conn = stack.connect()
    net = clock.timed("network define+start", lambda: _start_network(conn))
    dom = conn.defineXML(domain_xml(work, boot, NAME))
    t0 = time.monotonic()
    dom.create()
    ip = wait_lease(net, 180)
    clock.marks["start → lease"] = time.monotonic() - t0
    print(f"  start → lease: {clock.marks['start → lease']:.1f} s ({ip})", flush=True)
    wait_ssh(stack, key, ip, 240)
    clock.marks["start → ssh ok"] = time.monotonic() - t0
    print(f"  start → ssh ok: {clock.marks['start → ssh ok']:.1f} s", flush=True)
    wait_cloud_init(stack, key, ip)
    clock.marks["start → cloud-init done"] = time.monotonic() - t0
    print(f"  start → cloud-init done: {clock.marks['start → cloud-init done']:.1f} s")
    print("  guest says:", ssh(stack, key, ip, "id", USER, "&&", "uname", "-r").strip())
    if f"uid={UID}" not in ssh(stack, key, ip, "id", USER):
        raise AssertionError(f"guest user has not uid {UID}")


def _start_network(conn: object) -> object:
    net = conn.networkDefineXML(nat_network_xml(NAME, "virbr-check"))  # type: ignore[attr-defined]
    net.create()
    return net


def wait_cloud_init(stack: RealStack, key: str, ip: str) -> None:
    """cloud-init restarts sshd after the first answer (REALSTACK P4): retry."""
    end = time.monotonic() + 180
    while True:
        try:
            out = ssh(stack, key, ip, "cloud-init", "status", "--wait", timeout=180)
            if "done" in out:
                return
            raise AssertionError(f"cloud-init: {out.strip()}")
        except Exception:
            if time.monotonic() > end:
                raise
            time.sleep(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/aivm-manual"))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the stack's work dir")
    args = parser.parse_args()
    if reason := unavailable_reason():
        print(f"cannot run: {reason}")
        return 2
    clock = Clock()
    args.work.mkdir(mode=0o755, parents=True, exist_ok=True)
    if args.rebuild or not image_ready(args.work):
        print("building the guest image", flush=True)
        build_image(args.work, clock)
    stack = RealStack(keep_work=args.keep)
    print(f"stack {stack.netns} in {stack.work}", flush=True)
    try:
        clock.timed("stack up", stack.start)
        boot_and_probe(stack, args.work, clock)
    except BaseException:
        stack.failure_logs()
        raise
    finally:
        clock.timed("stack down (destroy, undefine, stop)", stack.stop)
    print("timings:", {k: round(v, 1) for k, v in clock.marks.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
