"""`aivm help plan`: the commands a new user runs, in order, with this config's values."""

from __future__ import annotations

from pathlib import Path

from aivm.config.schema import Config, Image, ImageSource, Network, Vm


def chosen_vm(cfg: Config | None) -> Vm:
    """The VM a bare command means (active, else the first), else the defaults."""
    if cfg is None:
        return Vm()
    if cfg.active_vm and cfg.vm(cfg.active_vm) is not None:
        return cfg.vm(cfg.active_vm)  # type: ignore[return-value]
    return cfg.vms[0] if cfg.vms else cfg.defaults


def steps(cfg: Config | None, path: Path) -> list[tuple[str, str]]:
    """(command, what it does) in the order a new user runs them."""
    vm = chosen_vm(cfg)
    image = (cfg.image(vm.image) if cfg else None) or Image()
    net = (cfg.network(vm.network) if cfg else None) or Network()
    init = f"done: {path} exists" if cfg is not None else \
        f"write {path} with this host's defaults (also implied by `aivm up`)"
    n = vm.name
    return [
        ("aivm host doctor", "check libvirt, KVM, the tools and the store; a fix for each problem"),
        ("aivm host install_deps", "install the missing Debian/Ubuntu packages (one root step)"),
        ("aivm config init", init),
        (f"aivm host image_fetch {image.name}", _image(image)),
        (f"aivm up {n}", f"build and boot it: {vm.cpus} vCPU, {vm.memory_mib} MiB, "
                         f"{vm.disk_gib} GiB disk, network {net.name} ({net.subnet}, firewall "
                         f"{'on' if net.firewall.enabled else 'off'})"),
        (f"aivm ssh {n}", f"a shell in the guest as {vm.user}"),
        ("aivm code .", "attach this folder and open VS Code in the guest"),
        (f"aivm status {n}", "declared against live state (add --sudo for the firewall)"),
        (f"aivm vm update {n}", "after editing cpus, memory or disk_gib: apply them"),
        (f"aivm down {n}", "shut it down; `aivm destroy` removes it (the store stays)"),
        ("aivm gc", "free the store entries no VM uses"),
    ]


def _image(image: Image) -> str:
    if image.source is ImageSource.DEBOOTSTRAP:
        return f"build the base image with mmdebstrap ({image.suite}, {image.mirror})"
    pin = image.sha256[:12] + "…" if image.sha256 else "no pin yet"
    return f"fetch and verify the base image (sha256 {pin})"


def render(cfg: Config | None, path: Path) -> str:
    rows = steps(cfg, path)
    width = max(len(cmd) for cmd, _ in rows) + 2
    head = f"A new user's commands, in order (config: {path}):"
    return "\n".join([head] + [f"{i:>3}. {cmd:<{width}}{what}"
                               for i, (cmd, what) in enumerate(rows, 1)])
