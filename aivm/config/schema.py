"""The config schema as typed, frozen data.

The TOML file (see aivm/config/load.py) is parsed into these classes; every
field has a default, so an empty file is a valid config. Field names are the
TOML key names. `[defaults]` holds VM fields that every `[[vms]]` entry
inherits unless it sets them itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

SCHEMA_VERSION = 1

# The seed's upstream pin of Ubuntu 24.04 (see shared/DESIGN.md).
NOBLE_URL = ("https://cloud-images.ubuntu.com/releases/noble/release-20260225/"
             "ubuntu-24.04-server-cloudimg-amd64.img")
NOBLE_SHA256 = "7aa6d9f5e8a3a55c7445b138d31a73d1187871211b2b7da9da2e1a6cbf169b21"


class Accel(StrEnum):
    AUTO = "auto"
    KVM = "kvm"
    QEMU = "qemu"


class ImageSource(StrEnum):
    FETCH = "fetch"
    DEBOOTSTRAP = "debootstrap"


class ImageLayout(StrEnum):
    KERNEL = "kernel"      # root filesystem only; kernel and initrd outside (direct boot)
    DISK = "disk"          # partitioned disk with its own bootloader (BIOS and UEFI)


class Firmware(StrEnum):
    BIOS = "bios"          # SeaBIOS
    EFI = "efi"            # OVMF, Secure Boot off


class AttachMode(StrEnum):
    SHARED_ROOT = "shared-root"
    SHARED = "shared"
    GIT = "git"


class Access(StrEnum):
    RW = "rw"
    RO = "ro"


DEBOOTSTRAP_PACKAGES = (
    "linux-image-cloud-amd64", "dbus", "initramfs-tools", "systemd-sysv", "udev", "kmod",
    "cloud-init", "openssh-server", "iproute2", "sudo", "git", "ifupdown",
    "isc-dhcp-client", "netbase", "procps",
)


@dataclass(frozen=True)
class Behavior:
    yes_sudo: bool = False
    auto_approve_readonly_sudo: bool = True
    verbosity: int = 0
    restore_snapshots: bool = True  # start VMs from their saved booted state (activate/snapshot.py)


@dataclass(frozen=True)
class Firewall:
    enabled: bool = True
    allow_tcp_ports: tuple[int, ...] = ()
    allow_udp_ports: tuple[int, ...] = ()
    extra_blocked: tuple[str, ...] = ()   # extra CIDRs to drop in forward
    allow_lan_tcp: tuple[str, ...] = ()   # "ADDRESS[/PREFIX]:PORT" on the LAN (or the host)
    allow_lan_udp: tuple[str, ...] = ()


class EgressPolicy(StrEnum):
    OPEN = "open"              # the internet through NAT (the firewall still fences the LAN)
    ALLOWLIST = "allowlist"    # only allowed names (resolved by the network's dnsmasq) and CIDRs
    OFFLINE = "offline"        # nothing leaves but DNS/DHCP to the gateway and allowed host ports


@dataclass(frozen=True)
class Egress:
    policy: EgressPolicy = EgressPolicy.OPEN
    allow: tuple[str, ...] = ()          # domains; each also allows its subdomains
    allow_cidrs: tuple[str, ...] = ()    # public ranges reachable without a name
    presets: tuple[str, ...] = ()        # named domain lists (aivm/data/egress_presets.toml)
    upstream_dns: tuple[str, ...] = ()   # resolvers for allowed names (default: resolv.conf's)


@dataclass(frozen=True)
class Network:
    name: str = "aivm"
    bridge: str = "virbr-aivm"
    subnet: str = "10.77.0.0/24"
    gateway: str = "10.77.0.1"
    dhcp_start: str = "10.77.0.100"
    dhcp_end: str = "10.77.0.254"
    firewall: Firewall = field(default_factory=Firewall)
    egress: Egress = field(default_factory=Egress)


@dataclass(frozen=True)
class Image:
    name: str = "ubuntu-noble"
    source: ImageSource = ImageSource.FETCH
    # fetch
    url: str = NOBLE_URL
    sha256: str = NOBLE_SHA256
    # debootstrap
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    packages: tuple[str, ...] = DEBOOTSTRAP_PACKAGES
    image_size_gib: int = 3
    layout: ImageLayout = ImageLayout.KERNEL
    # any source: the firmware the VM boots the image with
    firmware: Firmware = Firmware.BIOS


@dataclass(frozen=True)
class ProvisionFile:
    src: str                        # host file; its content is keyed, not its path
    dest: str                       # absolute path in the guest
    mode: str = "0644"


@dataclass(frozen=True)
class Provision:
    """`[[provisions]]`: a disk layer baked on an image or another provision
    (aivm/recipes/provision.py). A VM uses it with `image = "<name>"`."""

    name: str
    base: str                       # an [[images]] or [[provisions]] name
    files: tuple[ProvisionFile, ...] = ()   # installed first,
    packages: tuple[str, ...] = ()  # then apt packages,
    run: tuple[str, ...] = ()       # then shell steps (root, bash -e), in order
    apt_sources: tuple[str, ...] = ()   # sources.list lines for the build (default: the image's)
    allow: tuple[str, ...] = ()     # "host:port" the builder may reach although not public


@dataclass(frozen=True)
class Vm:
    name: str = "aivm-2404"
    user: str = "agent"
    cpus: int = 2
    memory_mib: int = 4096
    disk_gib: int = 32
    image: str = "ubuntu-noble"
    ssh_pubkey: str = "~/.ssh/id_ed25519.pub"
    ssh_privkey: str = "~/.ssh/id_ed25519"
    timezone: str = "UTC"
    host_uid_match: bool = True     # guest user gets the host user's uid/gid
    uid: int | None = None          # resolved host uid when host_uid_match (filled by resolve)
    gid: int | None = None
    password_login: bool = False
    accel: Accel = Accel.AUTO
    network: str = "aivm"
    packages: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()    # published ports (aivm/guest/ports.py)
    host: str = ""                  # "user@server": runs on that libvirt host (aivm/remote)


@dataclass(frozen=True)
class Port:
    """`[[vms.ports]] guest = 8000, host = 8000`: the guest's TCP port `guest` on the host's
    `address:host` (host 0: the same number; address: loopback unless asked otherwise)."""

    guest: int
    host: int = 0
    address: str = "127.0.0.1"


@dataclass(frozen=True)
class Attachment:
    host_path: str
    vm: str
    mode: AttachMode = AttachMode.SHARED_ROOT
    access: Access = Access.RW
    guest_dst: str = ""             # empty: the mode's default destination
    host_id: str = ""               # "DEVICE:INODE" of host_path when attached (checked at restore)
    allow_sensitive: bool = False   # attached with --allow-sensitive (aivm/guest/sensitive.py)


@dataclass(frozen=True)
class Sync:
    enabled: bool = False
    overwrite: bool = True
    paths: tuple[str, ...] = (
        "~/.gitconfig", "~/.gitignore", "~/.config/Code/User/settings.json",
        "~/.config/Code/User/keybindings.json", "~/.tmux.conf", "~/.bashrc",
    )


@dataclass(frozen=True)
class StoreSettings:
    root: str = ""                  # empty: AIVM_STORE, else the default (aivm/paths.py)
    # binary caches (aivm/cache): asked before building, in order; file:///PATH or oci://REG/REPO
    substituters: tuple[str, ...] = ()
    trusted_keys: tuple[str, ...] = ()   # "NAME:BASE64" ed25519 public keys (aivm store keygen)
    secret_key_file: str = ""            # signs what `aivm store push` uploads
    push_to: str = ""                    # the cache `aivm store push` uploads to
    auto_push: bool = False              # push what `aivm build` / `up` built to push_to


@dataclass(frozen=True)
class Config:
    schema_version: int = SCHEMA_VERSION
    behavior: Behavior = field(default_factory=Behavior)
    defaults: Vm = field(default_factory=Vm)
    vms: tuple[Vm, ...] = ()
    networks: tuple[Network, ...] = ()
    images: tuple[Image, ...] = ()
    provisions: tuple[Provision, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    sync: Sync = field(default_factory=Sync)
    store: StoreSettings = field(default_factory=StoreSettings)
    active_vm: str = ""
    path: Path | None = None        # where it was loaded from; not a TOML key

    def vm(self, name: str) -> Vm | None:
        return next((v for v in self.vms if v.name == name), None)

    def network(self, name: str) -> Network | None:
        found = next((n for n in self.networks if n.name == name), None)
        return found or (Network() if name == Network().name else None)

    def image(self, name: str) -> Image | None:
        found = next((i for i in self.images if i.name == name), None)
        return found or (Image() if name == Image().name else None)

    def provision(self, name: str) -> Provision | None:
        return next((p for p in self.provisions if p.name == name), None)

    # lookup-or-error: a ConfigError with a hint when the table has no such entry.
    # `user` names what refers to it ("VM dev"); without it the message lists the declared.
    def require_vm(self, name: str, user: str = "") -> Vm:
        return _required("VM", "vms", name, self.vm(name), self.vms, user)

    def require_network(self, name: str, user: str = "") -> Network:
        return _required("network", "networks", name, self.network(name), self.networks, user)

    def require_image(self, name: str, user: str = "") -> Image:
        return _required("image", "images", name, self.image(name), self.images, user)

    def require_provision(self, name: str, user: str = "") -> Provision:
        return _required("provision", "provisions", name, self.provision(name),
                         self.provisions, user)


_Entry = TypeVar("_Entry", "Vm", "Network", "Image", "Provision")


def _required(kind: str, table: str, name: str, found: _Entry | None,
              declared: tuple[_Entry, ...], user: str) -> _Entry:
    if found is not None:
        return found
    from aivm.errors import ConfigError

    entry = f"{'an' if table[0] in 'aeiou' else 'a'} [[{table}]] entry"
    if user:
        raise ConfigError(f"{user} uses {kind} {name!r}, which is not defined",
                          hint=f"add {entry} with that name", reason=f"unknown-{kind.lower()}")
    known = ", ".join(d.name for d in declared) or "none"
    raise ConfigError(f"no {kind} named {name!r} (declared: {known})",
                      hint=f"add {entry}, or name a declared one",
                      reason=f"unknown-{kind.lower()}")
