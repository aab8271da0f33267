"""`aivm host doctor`: is this host ready to run aivm guests? One line and a fix per check.

Each check is `pass`, `warn` or `fail`. Only required checks fail; the
optional ones (KVM, with emulation as the fallback; mmdebstrap when no image
needs it) warn. Everything that touches the system goes through `Probes`, so
tests give a fake host and compare whole reports.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from aivm.activate import accel, disk, firewall, live
from aivm.config import init
from aivm.config.schema import Accel, Config, ImageSource, Network
from aivm.errors import AivmError, ConfigError
from aivm.host import deps
from aivm.host.facts import VIRTIOFSD

GIB = 2**30
FAIL_BELOW_GIB = 2
WARN_BELOW_GIB = 10
SBIN = ("/usr/sbin", "/sbin")


class Level(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str = ""
    required: bool = True

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "level": str(self.level)}


@dataclass(frozen=True)
class Report:
    uri: str
    sudo: bool
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not any(c.level is Level.FAIL for c in self.checks)

    def count(self, level: Level) -> int:
        return sum(c.level is level for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "uri": self.uri, "sudo": self.sudo,
                "checks": [c.to_json() for c in self.checks]}


def _which(name: str) -> str | None:
    """On PATH, or in the sbin directories a plain user's PATH often lacks."""
    import shutil

    found = shutil.which(name)
    return found or shutil.which(name, path=os.pathsep.join(SBIN))


def _groups() -> tuple[frozenset[str], frozenset[str]]:
    """(groups of this login session, groups the user is configured into)."""
    import grp
    import pwd

    def name(gid: int) -> str:
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)

    session = frozenset(name(g) for g in os.getgroups())
    user = pwd.getpwuid(os.getuid()).pw_name
    configured = frozenset(g.gr_name for g in grp.getgrall() if user in g.gr_mem)
    return session, configured


def _free_bytes(path: Path) -> int:
    import shutil

    return shutil.disk_usage(path).free


def _table_exists(table: str) -> bool:
    """The read-only root probe of one table, shown before it runs; `--sudo` approved it."""
    from aivm.activate import approve

    probe = firewall.Probe(table.removeprefix("aivm_"), table)
    return probe.read(approve.probe(probe.step(), approve.Policy(yes_sudo=True))).exists


@dataclass(frozen=True)
class Probes:
    """The host as the checks see it; tests replace any of these."""

    which: Callable[[str], str | None] = _which
    is_file: Callable[[Path], bool] = field(default=lambda p: p.is_file())
    connect: Callable[[str], live.Conn] = live.connect
    euid: Callable[[], int] = os.geteuid
    groups: Callable[[], tuple[frozenset[str], frozenset[str]]] = _groups
    accel: Callable[[], accel.AccelChoice] = field(default=lambda: accel.choose("auto"))
    routes: Callable[[], list[str]] = init.host_routes
    free_bytes: Callable[[Path], int] = _free_bytes
    hypervisor_user: Callable[[], str] = disk.hypervisor_user
    home: Callable[[], Path] = Path.home
    table_exists: Callable[[str], bool] = field(default=lambda table: _table_exists(table))


@dataclass(frozen=True)
class Inputs:
    uri: str
    store: Path
    config_path: Path
    sudo: bool = False


def run(inputs: Inputs, probes: Probes | None = None) -> Report:
    """Every check, in the order a user would fix them."""
    p = probes or Probes()
    cfg_check, cfg = config_check(inputs.config_path)
    lib_check, conn = libvirt_check(inputs.uri, p)
    checks = [cfg_check, lib_check, privilege_check(inputs.uri, p), kvm_check(p),
              *tool_checks(cfg, p), store_access_check(inputs.store, p),
              free_space_check(inputs.store, p), *ssh_key_checks(cfg, p)]
    nets = networks(cfg)
    routes = p.routes()
    checks += [subnet_check(n, routes, conn, cfg is None) for n in nets]
    checks += [network_check(n, conn) for n in nets]
    if inputs.sudo:
        checks += [firewall_check(n, p) for n in nets]
    return Report(inputs.uri, inputs.sudo, tuple(checks))


def config_check(path: Path) -> tuple[Check, Config | None]:
    from aivm.config import load

    try:
        cfg = load.load(path)
    except ConfigError as exc:
        if exc.reason == "no-config":
            return Check("config", Level.WARN, f"no config yet at {path}",
                         "`aivm config init` (or `aivm up`, which writes the defaults)",
                         required=False), None
        return Check("config", Level.FAIL, exc.message, exc.hint or "`aivm config lint`"), None
    return Check("config", Level.PASS, f"{path}: {len(cfg.vms)} VM(s)"), cfg


def libvirt_check(uri: str, p: Probes) -> tuple[Check, live.Conn | None]:
    try:
        conn = p.connect(uri)
    except AivmError as exc:
        return Check("libvirt", Level.FAIL, exc.message, exc.hint), None
    return Check("libvirt", Level.PASS,
                 f"reachable at {uri} (libvirt {_version(conn.getLibVersion())})"), conn


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def privilege_check(uri: str, p: Probes) -> Check:
    name = "permissions"
    if not uri.startswith("qemu:///system") and not uri.startswith("qemu+unix:///system"):
        return Check(name, Level.PASS, f"no group needed for {uri}")
    if p.euid() == 0:
        return Check(name, Level.PASS, "running as root")
    session, configured = p.groups()
    if "libvirt" in session:
        return Check(name, Level.PASS, "in the libvirt group")
    if "libvirt" in configured:
        return Check(name, Level.FAIL, "in the libvirt group, but not in this login session",
                     "log out and in again (or run `newgrp libvirt`)")
    return Check(name, Level.FAIL, "neither root nor in the libvirt group: qemu:///system "
                 "refuses you", "sudo adduser $USER libvirt, then log out and in again")


def kvm_check(p: Probes) -> Check:
    choice = p.accel()
    if choice.accel is Accel.KVM:
        return Check("kvm", Level.PASS, f"KVM usable ({choice.reason})", required=False)
    return Check("kvm", Level.WARN,
                 f"KVM unusable ({choice.reason}): guests run under QEMU emulation, "
                 "about 10x slower", "enable hardware virtualization (or nested virtualization) "
                 "and make /dev/kvm read-writable for you (the kvm group)", required=False)


def tool_checks(cfg: Config | None, p: Probes) -> list[Check]:
    return [_tool("qemu-img", "creates the VMs' disks", "qemu-utils", p),
            _tool("nft", "applies the guests' firewall", "nftables", p),
            virtiofsd_check(p),
            _tool("mmdebstrap", "builds images with source = \"debootstrap\"", "mmdebstrap",
                  p, required=_needs_debootstrap(cfg))]


def _tool(name: str, what: str, package: str, p: Probes, *, required: bool = True) -> Check:
    found = p.which(name)
    if found:
        return Check(name, Level.PASS, f"{found} ({what})", required=required)
    return Check(name, Level.FAIL if required else Level.WARN,
                 f"not found ({what}{'' if required else '; optional'})",
                 f"{deps.install_line(package)}, or `aivm host install_deps`", required=required)


def _needs_debootstrap(cfg: Config | None) -> bool:
    if cfg is None:
        return False
    images = [cfg.image(v.image) for v in cfg.vms]
    return any(i is not None and i.source is ImageSource.DEBOOTSTRAP for i in images)


def virtiofsd_check(p: Probes) -> Check:
    found = next((f for f in VIRTIOFSD if p.is_file(Path(f))), None) or p.which("virtiofsd")
    if found:
        return Check("virtiofsd", Level.PASS, f"{found} (shares folders with guests)")
    return Check("virtiofsd", Level.FAIL, "not found (shares folders with guests)",
                 f"{deps.install_line('qemu-system-common')} on Debian 12, "
                 f"{deps.install_line('virtiofsd')} on newer releases")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def store_access_check(store: Path, p: Probes) -> Check:
    from aivm.graph.store import Store

    user = p.hypervisor_user()
    from aivm.activate.snapshot import STATE_FILE

    files = [store / "entry"]  # a child: the store and every directory above need search (x)
    if store.is_dir():  # a memory state is owner-only on purpose: libvirtd (root) opens it
        files += [f for e in Store(store).entries() for f in sorted(e.iterdir())
                  if f.name not in ("manifest.json", STATE_FILE)]
    problems = disk.unreadable(files, user)
    step = disk.access_step(problems, user)
    if step is None:
        later = "" if store.exists() else " (not created yet: its parents are open)"
        return Check("store access", Level.PASS, f"{user} can read {store}{later}")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return Check("store access", Level.FAIL,
                 f"the hypervisor user {user} {problems[0].line}{more}",
                 "run: " + "; ".join(a.shown for a in step.actions))


def free_space_check(store: Path, p: Probes) -> Check:
    where = _existing(store)
    free = p.free_bytes(where)
    detail = f"{free / GIB:.1f} GiB free at {where}"
    fix = "free space there, or move the store ([store] root in the config, or AIVM_STORE)"
    if free < FAIL_BELOW_GIB * GIB:
        return Check("store space", Level.FAIL, f"{detail}: an image needs about "
                     f"{FAIL_BELOW_GIB} GiB", fix)
    if free < WARN_BELOW_GIB * GIB:
        return Check("store space", Level.WARN, f"{detail}: VM disks grow; "
                     f"{WARN_BELOW_GIB} GiB or more is comfortable", fix, required=False)
    return Check("store space", Level.PASS, detail)


def ssh_key_checks(cfg: Config | None, p: Probes) -> list[Check]:
    if cfg is None:
        pub, _, exists = init.find_ssh_key(p.home())
        if exists:
            return [Check("ssh key", Level.PASS, f"{pub} (`aivm config init` will use it)")]
        return [Check("ssh key", Level.WARN, "no ssh key yet",
                      f"`aivm config init` creates {pub}", required=False)]
    pairs = dict.fromkeys((v.ssh_pubkey, v.ssh_privkey) for v in cfg.vms or (cfg.defaults,))
    return [_key_check(pub, priv, p) for pub, priv in pairs]


def _key_check(pub: str, priv: str, p: Probes) -> Check:
    home = str(p.home())
    missing = [k for k in (pub, priv) if not p.is_file(Path(k.replace("~", home, 1)))]
    if not missing:
        return Check("ssh key", Level.PASS, f"{pub} and its private key")
    return Check("ssh key", Level.FAIL, f"missing: {', '.join(missing)}",
                 f"ssh-keygen -t ed25519 -N '' -f {priv}, or point ssh_pubkey/ssh_privkey "
                 "in the config at an existing key")


def networks(cfg: Config | None) -> list[Network]:
    """The declared networks and those the VMs name, once each (the default without config)."""
    if cfg is None:
        return [Network()]
    names = dict.fromkeys([n.name for n in cfg.networks] + [v.network for v in cfg.vms])
    return [n for n in (cfg.network(name) for name in names) if n is not None]


def subnet_check(net: Network, routes: Iterable[str], conn: live.Conn | None,
                 guess: bool) -> Check:
    import ipaddress

    if guess:
        return Check("subnet", Level.PASS,
                     f"`aivm config init` will pick {init.free_subnet(tuple(routes))}, "
                     "which overlaps no host route")
    subnet = ipaddress.ip_network(net.subnet, strict=False)
    own = conn is not None and live.read_network(conn, net.name).active
    clash = [r for r in routes if ipaddress.ip_network(r).overlaps(subnet)
             and not (own and r == str(subnet))]
    if not clash:
        return Check("subnet", Level.PASS, f"network {net.name}: {subnet} overlaps no host route")
    return Check("subnet", Level.FAIL,
                 f"network {net.name}: {subnet} overlaps host route(s) {', '.join(clash)}",
                 f"set subnet of [[networks]] {net.name!r} to a free range, e.g. "
                 f"{init.free_subnet(tuple(routes))}")


def network_check(net: Network, conn: live.Conn | None) -> Check:
    name = f"network {net.name}"
    if conn is None:
        return Check(name, Level.WARN, "not checked: libvirt is unreachable",
                     "fix the libvirt check first", required=False)
    state = live.read_network(conn, net.name)
    if state.exists and state.key is None:
        return Check(name, Level.FAIL, "exists in libvirt but was not defined by aivm",
                     "choose another network name in the config, or remove that network")
    if state.active:
        return Check(name, Level.PASS, "active")
    if state.exists:
        return Check(name, Level.WARN, "defined but stopped", f"aivm host net create {net.name}",
                     required=False)
    return Check(name, Level.PASS, "not created yet (`aivm up` or `aivm host net create` "
                 "creates it)")


def firewall_check(net: Network, p: Probes) -> Check:
    from aivm.recipes.nft_ruleset import table_name

    name = f"firewall {net.name}"
    if not net.firewall.enabled:
        return Check(name, Level.PASS, "disabled in the config", required=False)
    table = table_name(net.name)
    if p.table_exists(table):
        return Check(name, Level.PASS, f"nft table inet {table} applied", required=False)
    return Check(name, Level.WARN, f"nft table inet {table} not applied",
                 f"aivm host fw apply {net.name}", required=False)


def render(report: Report) -> str:
    lines: list[str] = []
    for c in report.checks:
        lines.append(f"{c.level:<5} {c.name:<17} {c.detail}")
        if c.fix and c.level is not Level.PASS:
            lines.append(f"{'':23} fix: {c.fix}")
    failed, warned = report.count(Level.FAIL), report.count(Level.WARN)
    verdict = "ready" if report.ok else "not ready"
    lines.append(f"{verdict}: {failed} failed, {warned} warning(s), "
                 f"{report.count(Level.PASS)} passed")
    if not report.sudo:
        lines.append("(privileged probes skipped: --sudo also checks the firewall tables)")
    return "\n".join(lines)
