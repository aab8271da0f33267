"""`aivm host install_deps`: the Debian/Ubuntu packages aivm needs, as one previewed step.

The list is scripts/deps.sh's (a test keeps the two equal): libvirt and QEMU,
the tools the recipes and activation run (qemu-img, nft, mmdebstrap,
genisoimage, mkfs.ext4; sfdisk, mkfs.vfat, mtools and GRUB's BIOS and EFI images for
`layout = "disk"` images), and what building libvirt-python needs.
"""

from __future__ import annotations

from aivm.activate import plan as plans
from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.errors import AivmError
from aivm.run import Cmd, run

PACKAGES = (
    "libvirt-daemon-system", "libvirt-clients", "qemu-system-x86", "qemu-utils",
    "dnsmasq-base", "iptables", "nftables", "iproute2", "mmdebstrap", "openssh-client",
    "libvirt-dev", "pkg-config", "gcc", "python3-venv", "python3-dev", "ovmf", "e2fsprogs",
    "genisoimage", "fdisk", "dosfstools", "mtools", "grub-pc-bin", "grub-efi-amd64-bin",
)
APT_ENV = "DEBIAN_FRONTEND=noninteractive"


def install_line(package: str) -> str:
    """What to type to install one package (doctor's fixes)."""
    return f"apt-get install {package} (as root)"


def status_query(packages: tuple[str, ...] = PACKAGES) -> Cmd:
    return Cmd.of("dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\\n", *packages,
                  meaning="ask dpkg which of aivm's packages are installed")


def installed(dpkg_output: str) -> set[str]:
    """Package names dpkg-query reported as `installed`."""
    out = set()
    for line in dpkg_output.splitlines():
        name, _, state = line.partition(" ")
        if state.strip() == "installed":
            out.add(name.split(":", 1)[0])
    return out


def missing(packages: tuple[str, ...] = PACKAGES) -> tuple[str, ...]:
    """The packages not installed here; `unsupported-host` without dpkg."""
    from aivm.errors import CommandError

    try:
        result = run(status_query(packages), check=False)
    except CommandError as exc:
        raise AivmError("this host has no dpkg: install_deps knows Debian and Ubuntu only",
                        hint="install libvirt, QEMU (qemu-img), nftables, virtiofsd and "
                             "mmdebstrap with your distribution's tools; `aivm host doctor` "
                             "says what is missing", reason="unsupported-host") from exc
    have = installed(result.stdout)
    return tuple(p for p in packages if p not in have)


def install_plan(absent: tuple[str, ...], total: int = len(PACKAGES)) -> Plan:
    if not absent:
        return plans.of(f"all {total} packages aivm needs are installed")
    update = Cmd.of("env", APT_ENV, "apt-get", "update", "-q", root=True,
                    meaning="refresh the package lists")
    install = Cmd.of("env", APT_ENV, "apt-get", "install", "-q", "-y", *absent, root=True,
                     meaning=f"install {len(absent)} package(s): {' '.join(absent)}")
    return plans.of(Step("Install the packages aivm needs",
                         f"{len(absent)} of {total} are missing",
                         (Action.command(update, timeout=900),
                          Action.command(install, timeout=3600)),
                         Privilege.ROOT, Effect.SYSTEM_WRITE))
