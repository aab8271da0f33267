"""Config -> graph: the nodes that make one VM, from its resolved config.

    image.<image>        fetch (fixed-output, keyed by its sha256), debootstrap, or
                         debootstrap-disk (layout = "disk")
    provision.<name>     a [[provisions]] layer over its base (image or provision)
    <vm>.packages        the VM's `packages`, as an implicit provision layer over its image
                         (so re-creating the VM installs nothing; the seed installs none)
    <vm>.overlay         thin qcow2 over the top layer (the image when nothing is baked)
    <vm>.seed            cloud-init NoCloud seed; the ssh public key is a file input
    net.<network>        libvirt NAT network XML
    net.<network>.nft    the network's nft table (when its firewall is enabled)
    net.<network>.egress its egress allowlist: nft table + dnsmasq servers-file
                         (when [networks.egress] policy is allowlist or offline)
    <vm>.domain          libvirt domain XML

Only what changes an artifact goes into params: the VM's memory reaches the
domain alone, its ssh key the seed (and through it the domain).

`vm_graph` is pure: the same config, file inputs and `HostFacts` give the same nodes.
It reads no environment and probes nothing; what it needs of the host comes in the
facts (aivm/host/facts.py), and the facts that change an artifact are params of that
node (accel, state dir, virtiofs: the domain; nameservers: the egress ruleset).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from aivm.config.schema import Config, Image, ImageLayout, ImageSource, Network, Provision, Vm
from aivm.errors import ConfigError
from aivm.graph.node import Node
from aivm.host.facts import ACCELS, HostFacts


def _named(prefix: str, suffix: str, owner: str) -> str:
    return f"{prefix}{owner}{suffix}"


# The one spelling of each node name (callers pass the image, VM or network name).
image_name = partial(_named, "image.", "")
overlay_name = partial(_named, "", ".overlay")
seed_name = partial(_named, "", ".seed")
domain_name = partial(_named, "", ".domain")
network_name = partial(_named, "net.", "")
nft_name = partial(_named, "net.", ".nft")
egress_name = partial(_named, "net.", ".egress")


@dataclass(frozen=True)
class VmGraph(Mapping[str, Node]):
    """One VM's nodes (a mapping by node name) and the name of each role: activation asks
    `graph.domain`, not a spelling of the name. `nft` / `egress` are "" when the network
    has none; `layers` are the provision layers, bottom first."""

    image: str
    layers: tuple[str, ...]
    overlay: str
    seed: str
    network: str
    nft: str
    egress: str
    domain: str
    nodes: Mapping[str, Node]

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)


def vm_graph(cfg: Config, vm: Vm, facts: HostFacts) -> VmGraph:
    """Every node one VM needs, by node name: a pure function of its arguments."""
    accel = facts.accel_of(str(vm.accel))
    if accel not in ACCELS:
        raise ConfigError(f"accel must be kvm or qemu here, not {accel!r}",
                          hint="resolve `auto` into the host facts before building the graph",
                          reason="invalid-accel")
    image, network = _image(cfg, vm), _network(cfg, vm)
    layers = provision_nodes(cfg, vm, image)
    base = layers[-1].name if layers else image_name(image.name)
    nodes = [image_node(cfg, image), *layers, overlay_node(vm, image, base), seed_node(cfg, vm),
             network_node(network, facts), domain_node(vm, image, network, facts, base)]
    nft = nft_node(network) if network.firewall.enabled else None
    egress = egress_node(network, facts) if network.egress.policy != "open" else None
    nodes += [n for n in (nft, egress) if n is not None]
    return VmGraph(image=image_name(image.name), layers=tuple(n.name for n in layers),
                   overlay=overlay_name(vm.name), seed=seed_name(vm.name),
                   network=network_name(network.name), nft=nft.name if nft else "",
                   egress=egress.name if egress else "", domain=domain_name(vm.name),
                   nodes={n.name: n for n in nodes})


def image_node(cfg: Config, image: Image) -> Node:
    name = image_name(image.name)
    if image.source == ImageSource.DEBOOTSTRAP:
        kind = "debootstrap-disk" if image.layout == ImageLayout.DISK else "debootstrap"
        return Node(name, kind, params={
            "suite": image.suite, "mirror": image.mirror, "packages": tuple(image.packages),
            "image_size_gib": image.image_size_gib})
    if not image.sha256 and "://" not in image.url:
        return Node(name, "local-image", files={"image": local_file(cfg, image.url, "url")})
    if not image.sha256:
        raise ConfigError(f"image {image.name} has no sha256 pin",
                          hint=f"add sha256 = \"...\" to the [[images]] entry {image.name!r} "
                               "(`aivm host image_pin` reads it from SHA256SUMS), or use a "
                               "local file path as url", reason="unpinned")
    return Node(name, "fetch", params={"url": _source(cfg, image.url)},
                fixed_output=image.sha256.lower())


def overlay_node(vm: Vm, image: Image, base: str = "") -> Node:
    return Node(overlay_name(vm.name), "overlay", params={"size_gib": vm.disk_gib},
                inputs={"base": base or image_name(image.name)})


def provision_nodes(cfg: Config, vm: Vm, image: Image) -> list[Node]:
    """The layers under the VM, bottom first: the [[provisions]] chain `vm.image` names,
    then `<vm>.packages` when the VM declares packages."""
    chain: list[Provision] = []
    prov = cfg.provision(vm.image)
    while prov is not None and prov not in chain:
        chain.insert(0, prov)
        prov = cfg.provision(prov.base)
    nodes = [provision_node(cfg, p, image) for p in chain]
    if vm.packages:
        allow = (_origin(image.mirror),) if image.source == ImageSource.DEBOOTSTRAP else ()
        base = nodes[-1].name if nodes else image_name(image.name)
        nodes.append(Node(f"{vm.name}.packages", "provision", params={
            "packages": tuple(vm.packages), "allow": tuple(a for a in allow if a),
            "firmware": str(image.firmware)},
            inputs={"base": base}))
    return nodes


def provision_node(cfg: Config, prov: Provision, image: Image) -> Node:
    """One [[provisions]] layer; `image` is the one at the bottom (the builder boots its
    firmware when it has no kernel outside)."""
    base = f"provision.{prov.base}" if cfg.provision(prov.base) else image_name(prov.base)
    return Node(f"provision.{prov.name}", "provision", params={
        "packages": tuple(prov.packages), "run": tuple(prov.run),
        "files": tuple((f.dest, f.mode) for f in prov.files),
        "apt_sources": tuple(prov.apt_sources), "allow": tuple(prov.allow),
        "firmware": str(image.firmware)},
        inputs={"base": base},
        files={f"file{i}": local_file(cfg, f.src, "files.src") for i, f in enumerate(prov.files)})


def _origin(url: str) -> str:
    from aivm.recipes.provision import source_origin

    return source_origin(f"deb {url} suite")


def seed_node(cfg: Config, vm: Vm) -> Node:
    uid, gid = (vm.uid, vm.gid) if vm.host_uid_match else (None, None)
    return Node(seed_name(vm.name), "seed-iso", params={
        "hostname": guest_hostname(vm.name), "user": vm.user,
        "uid": uid if _regular_id(uid) else None, "gid": gid if _regular_id(gid) else None,
        "timezone": vm.timezone, "password_login": vm.password_login,
        # vm.packages are baked into the <vm>.packages layer, not installed at first boot
        "mac": mac_address(vm.name),
    }, files={"ssh_pubkey": local_file(cfg, vm.ssh_pubkey, "ssh_pubkey")})


def network_node(net: Network, facts: HostFacts) -> Node:
    return Node(network_name(net.name), "network-xml", params={
        "name": net.name, "bridge": net.bridge, "subnet": net.subnet, "gateway": net.gateway,
        "dhcp_start": net.dhcp_start, "dhcp_end": net.dhcp_end,
        **_dnsmasq_egress(net, facts)})


def _dnsmasq_egress(net: Network, facts: HostFacts) -> dict[str, str]:
    """The network XML's egress mode: the same for allowlist and offline (and any allowlist),
    so a policy change between them never redefines (restarts) the network."""
    if net.egress.policy == "open":
        return {}
    from aivm.recipes import egress

    return {"egress": "filtered",
            "servers_file": str(egress.servers_file(net.name, facts.state_dir)),
            "dns_log": str(egress.dns_log(net.name, facts.state_dir)),
            "egress_table": egress.table_name(net.name)}


def egress_node(net: Network, facts: HostFacts) -> Node:
    from aivm.recipes import egress

    eg = net.egress
    allowlist = eg.policy == "allowlist"
    names = egress.domains(egress.preset_domains(eg.presets) + eg.allow) if allowlist else ()
    upstreams = (eg.upstream_dns or egress.addresses(facts.nameservers)) if names else ()
    return Node(egress_name(net.name), "egress-ruleset", params={
        "network": net.name, "bridge": net.bridge, "policy": str(eg.policy),
        "domains": names, "cidrs": tuple(sorted(set(eg.allow_cidrs))) if allowlist else (),
        "upstreams": tuple(upstreams)})


def nft_node(net: Network) -> Node:
    fw = net.firewall
    return Node(nft_name(net.name), "nft-ruleset", params={
        "network": net.name, "bridge": net.bridge, "gateway": net.gateway,
        "allow_tcp_ports": tuple(sorted(set(fw.allow_tcp_ports))),
        "allow_udp_ports": tuple(sorted(set(fw.allow_udp_ports))),
        "extra_blocked": tuple(sorted(set(fw.extra_blocked))),
        "allow_lan_tcp": tuple(sorted(set(fw.allow_lan_tcp))),
        "allow_lan_udp": tuple(sorted(set(fw.allow_lan_udp)))})


def domain_node(vm: Vm, image: Image, net: Network, facts: HostFacts, base: str = "") -> Node:
    state = facts.vm_state_dir(vm.name)
    return Node(domain_name(vm.name), "domain-xml", params={
        "name": vm.name, "accel": facts.accel_of(str(vm.accel)), "cpus": vm.cpus,
        "memory_mib": vm.memory_mib,
        "disk": str(state / "disk.qcow2"), "console_log": str(state / "console.log"),
        "network": net.name, "mac": mac_address(vm.name),
        "shared_root": str(state / "shared-root") if facts.virtiofs else "",
        "firmware": str(image.firmware),
    }, inputs={"base": base or image_name(image.name), "overlay": overlay_name(vm.name),
               "seed": seed_name(vm.name), "network": network_name(net.name)})


def mac_address(vm_name: str) -> str:
    """A stable MAC for a VM, in QEMU's locally administered 52:54:00 range."""
    import hashlib

    tail = hashlib.sha256(f"aivm-mac:{vm_name}".encode()).digest()[:3]
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


def guest_hostname(vm_name: str) -> str:
    """The guest's host name: the VM name with '.' and '_' as '-' (a DNS label)."""
    return vm_name.replace(".", "-").replace("_", "-")[:63]


def _image(cfg: Config, vm: Vm) -> Image:
    """The image at the bottom of the VM's layers (`vm.image` may name a provision)."""
    name, seen = vm.image, set()
    while (prov := cfg.provision(name)) is not None and name not in seen:
        seen.add(name)
        name = prov.base
    return cfg.require_image(name, f"VM {vm.name}")


def _network(cfg: Config, vm: Vm) -> Network:
    return cfg.require_network(vm.network, f"VM {vm.name}")


def _regular_id(value: int | None) -> bool:
    return value is not None and 1000 <= value <= 60000


def _local(cfg: Config, value: str) -> Path:
    """A path from the config: `~` expanded, relative paths taken from the config's folder."""
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        base = cfg.path.parent if cfg.path is not None else Path.cwd()
        path = base / path
    return path.absolute()


def local_file(cfg: Config, value: str, what: str) -> Path:
    """A file input from the config: refused when it exists but is not a regular file, so a
    device (/dev/zero) or FIFO is never read, hashed or copied (that would never end)."""
    import stat

    path = _local(cfg, value)
    try:
        mode = path.stat().st_mode
    except OSError:
        return path        # missing: the build says so, with the key it looked for
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{what} {value!r} is not a regular file (a device, FIFO, socket or "
                          "folder)", hint=f"point {what} at a regular file",
                          reason="not-a-file")
    return path


def _source(cfg: Config, url: str) -> str:
    if url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        local_file(cfg, unquote(urlsplit(url).path) or "/", "url")
        return url
    return url if "://" in url else str(local_file(cfg, url, "url"))
