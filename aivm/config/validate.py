"""Turn a parsed TOML mapping into a schema.Config, collecting every problem.

Each problem is a Finding with the key path it concerns; load() raises the
first error as a ConfigError, lint prints them all. Errors make the config
unusable; warnings (stale references) only lint reports.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aivm.config import checks, schema

KeyPath = tuple[str | int, ...]     # ("vms", 1, "cpus"); aivm/config/lines.py maps it to a line
_NOT_TOML = {"path"}                 # Config fields that are not TOML keys
_MISSING: Any = object()
_TYPE_NAMES = {bool: "a boolean (true or false)", int: "an integer", str: "a string"}


@dataclass(frozen=True)
class Finding:
    keypath: KeyPath
    message: str
    hint: str = ""
    reason: str = "bad-value"
    severity: str = "error"          # "error" or "warning"
    line: int = 0                    # known line (syntax errors); else found from keypath


def check(data: dict[str, Any]) -> tuple[schema.Config | None, list[Finding]]:
    """The config (None when there are errors) and every finding."""
    v = _Validator()
    cfg = v.config(data)
    if cfg is not None:
        cross_check(cfg, data, v.findings)
    if cfg is not None and not any(f.severity == "error" for f in v.findings):
        v.findings.extend(recipe_findings(cfg))
    errors = any(f.severity == "error" for f in v.findings)
    return (None if errors else cfg), v.findings


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in _NOT_TOML}


def _required(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def _type_name(tp: Any) -> str:
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if typing.get_origin(tp) is tuple:
        inner = _type_name(typing.get_args(tp)[0]).removeprefix("a ").removeprefix("an ")
        return f"a list of {inner}s"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return str(tp)


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


class _Validator:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(self, kp: KeyPath, message: str, hint: str = "", reason: str = "bad-value") -> None:
        self.findings.append(Finding(kp, message, hint, reason))

    def config(self, data: dict[str, Any]) -> schema.Config | None:
        values = self.values(schema.Config, data, (), skip=("defaults", "vms"))
        version = values.get("schema_version", schema.SCHEMA_VERSION)
        if version > schema.SCHEMA_VERSION:
            self.add(("schema_version",), f"schema_version {version} is newer than this aivm "
                     f"understands ({schema.SCHEMA_VERSION})", "upgrade aivm", "newer-schema")
        defaults = self.table(schema.Vm, data.get("defaults", {}), ("defaults",), schema.Vm())
        if defaults is _MISSING:
            defaults = schema.Vm()
        vms = self.entries(schema.Vm, data.get("vms", []), ("vms",), base=defaults)
        if any(f.severity == "error" for f in self.findings):
            return None
        return schema.Config(**values, defaults=defaults, vms=vms)

    def values(self, cls: type, data: dict[str, Any], kp: KeyPath,
               skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """Convert the keys of one table; report unknown keys and bad values."""
        fields = _fields(cls)
        out: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in fields:
                self.unknown_key(cls, key, kp)
            elif key not in skip:
                got = self.convert(fields[key], raw, kp + (key,))
                if got is not _MISSING and self.value_ok(cls, key, got, kp + (key,)):
                    out[key] = got
        return out

    def unknown_key(self, cls: type, key: str, kp: KeyPath) -> None:
        import difflib

        known = sorted(_fields(cls))
        close = difflib.get_close_matches(key, known, n=1)
        where = ".".join(str(p) for p in kp if isinstance(p, str)) or "the top level"
        hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
        self.add(kp + (key,), f"unknown key {key!r} in {where}", hint, "unknown-key")

    def value_ok(self, cls: type, key: str, value: Any, kp: KeyPath) -> bool:
        rule = checks.FIELD_CHECKS.get((cls, key))
        problem = rule(value) if rule else None
        if problem:
            self.add(kp, *problem)
        return problem is None

    def convert(self, tp: Any, raw: Any, kp: KeyPath) -> Any:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
            origin = typing.get_origin(tp)
        if origin is tuple:
            return self.sequence(tp, raw, kp)
        if dataclasses.is_dataclass(tp):
            return self.table(tp, raw, kp, tp())  # type: ignore[operator, arg-type]
        if isinstance(tp, type) and issubclass(tp, StrEnum):
            return self.enum(tp, raw, kp)
        if type(raw) is tp:
            return raw
        self.wrong_type(tp, raw, kp)
        return _MISSING

    def wrong_type(self, tp: Any, raw: Any, kp: KeyPath) -> None:
        last = max((i for i, p in enumerate(kp) if isinstance(p, str)), default=-1)
        key = str(kp[last]) if last >= 0 else "value"
        label = key + "".join(f"[{p}]" for p in kp[last + 1:])
        self.add(kp, f"{label} must be {_type_name(tp)}, not {_toml_type(raw)}",
                 f"write {key} as {_type_name(tp)}" if label == key
                 else f"make every element of {key} {_type_name(tp)}",
                 "wrong-type")

    def enum(self, tp: type[StrEnum], raw: Any, kp: KeyPath) -> Any:
        if isinstance(raw, str) and raw in tp._value2member_map_:
            return tp(raw)
        self.wrong_type(tp, raw, kp)
        return _MISSING

    def sequence(self, tp: Any, raw: Any, kp: KeyPath) -> Any:
        if not isinstance(raw, list):
            self.wrong_type(tp, raw, kp)
            return _MISSING
        item_tp = typing.get_args(tp)[0]
        if dataclasses.is_dataclass(item_tp):
            return self.entries(item_tp, raw, kp)  # type: ignore[arg-type]
        items = [self.convert(item_tp, item, kp + (i,)) for i, item in enumerate(raw)]
        return _MISSING if any(i is _MISSING for i in items) else tuple(items)

    def entries(self, cls: type, raw: Any, kp: KeyPath, base: Any = None) -> Any:
        """An array of tables; each entry must name itself."""
        if not isinstance(raw, list):
            self.add(kp, f"{kp[-1]} must be an array of tables ([[{kp[-1]}]])",
                     f"write each entry under a [[{kp[-1]}]] header", "wrong-type")
            return ()
        got = [self.table(cls, item, kp + (i,), base) for i, item in enumerate(raw)]
        return tuple(g for g in got if g is not _MISSING)

    def table(self, cls: type, raw: Any, kp: KeyPath, base: Any = None) -> Any:
        if not isinstance(raw, dict):
            self.add(kp, f"{'.'.join(str(p) for p in kp)} must be a table, not {_toml_type(raw)}",
                     f"write it as a [{kp[0]}] table", "wrong-type")
            return _MISSING
        required = _required(cls)
        if kp and isinstance(kp[-1], int) and "name" in _fields(cls):
            required += ("name",)      # array entries must name themselves
        missing = [r for r in dict.fromkeys(required) if r not in raw]
        for key in missing:
            self.add(kp, f"{kp[0]} entry {kp[-1]} has no {key!r}", f"add {key} = ...",
                     "missing-key")
        values = self.values(cls, raw, kp)
        if missing or len(values) < len(raw):
            return _MISSING
        return dataclasses.replace(base, **values) if base is not None else cls(**values)


def cross_check(cfg: schema.Config, data: dict[str, Any], out: list[Finding]) -> None:
    """Checks across tables: duplicates, overlaps, references."""
    for section, items in (("vms", cfg.vms), ("networks", cfg.networks), ("images", cfg.images),
                           ("provisions", cfg.provisions)):
        _duplicates(section, [i.name for i in items], "name", out)
    _duplicates("networks", [n.bridge for n in cfg.networks], "bridge", out)
    _table_collisions(cfg, out)
    for i, net in enumerate(cfg.networks):
        _network_ranges(net, ("networks", i), data, out)
    _overlaps(cfg, out)
    _references(cfg, data, out)
    _provisions(cfg, out)


def recipe_findings(cfg: schema.Config) -> list[Finding]:
    """Every node of every VM's graph through its recipe's own check, so a config that
    lint and load accept is one the build accepts (the field checks above ask the same
    validators, aivm/recipes/values.py; this catches what no single field shows)."""
    from aivm.config.to_graph import vm_graph
    from aivm.errors import AivmError
    from aivm.host.facts import NOMINAL
    from aivm.recipes import REGISTRY

    out = []
    for i, vm in enumerate(cfg.vms):
        try:
            for node in vm_graph(cfg, vm, NOMINAL).values():
                REGISTRY.recipe(node.kind).check(node)
        except AivmError as exc:
            out.append(Finding(("vms", i), f"VM {vm.name!r}: {exc.message}", exc.hint,
                               exc.reason))
    return out


def _duplicates(section: str, names: list[str], key: str, out: list[Finding]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            out.append(Finding((section, i, key), f"{section} entries {seen[name]} and {i} both "
                               f"have {key} {name!r}", f"give each a different {key}",
                               "duplicate-name"))
        seen.setdefault(name, i)


def _table_collisions(cfg: schema.Config, out: list[Finding]) -> None:
    """Two networks whose nft tables would have one name (`a.b`, `a-b` and `a_b` all make
    `aivm_a_b`): applying one would delete the other's firewall."""
    from aivm.recipes import egress, nft_ruleset

    seen: dict[str, int] = {}
    for i, net in enumerate(cfg.networks):
        for table in dict.fromkeys((nft_ruleset.table_name(net.name),
                                    egress.table_name(net.name))):
            j = seen.setdefault(table, i)
            if j != i and cfg.networks[j].name != net.name:  # same name: reported above
                out.append(Finding(("networks", i, "name"), f"networks {cfg.networks[j].name!r} "
                                   f"and {net.name!r} would share the nft table {table}",
                                   "rename one: names that differ only in '.', '-' and '_' "
                                   "(or by an 'egress_' prefix) map to one table",
                                   "duplicate-name"))
                break


def _network_ranges(net: schema.Network, kp: KeyPath, data: dict[str, Any],
                    out: list[Finding]) -> None:
    import ipaddress

    subnet = ipaddress.IPv4Network(net.subnet)
    raw = data["networks"][kp[1]]

    def where(key: str) -> KeyPath:
        return kp + (key,) if key in raw else kp + ("subnet",)

    gw = ipaddress.IPv4Address(net.gateway)
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        out.append(Finding(where("gateway"), f"gateway {net.gateway} is not a host address of "
                           f"subnet {net.subnet}", f"use an address inside it, e.g. "
                           f"{subnet.network_address + 1}", "bad-value"))
    start, end = ipaddress.IPv4Address(net.dhcp_start), ipaddress.IPv4Address(net.dhcp_end)
    for key, addr in (("dhcp_start", start), ("dhcp_end", end)):
        if addr not in subnet:
            out.append(Finding(where(key), f"{key} {addr} is outside subnet {net.subnet}",
                               "set a DHCP range inside the subnet", "bad-value"))
    if start > end:
        out.append(Finding(where("dhcp_end"), f"dhcp_end {end} comes before dhcp_start {start}",
                           "swap them", "bad-value"))
    elif start <= gw <= end:
        out.append(Finding(where("gateway"), f"gateway {gw} lies inside the DHCP range",
                           "start the DHCP range after the gateway", "bad-value"))


def _overlaps(cfg: schema.Config, out: list[Finding]) -> None:
    import ipaddress

    nets = [ipaddress.IPv4Network(n.subnet) for n in cfg.networks]
    for i, net in enumerate(nets):
        for j in range(i):
            if net.overlaps(nets[j]):
                out.append(Finding(("networks", i, "subnet"), f"subnet {net} of network "
                                   f"{cfg.networks[i].name!r} overlaps {nets[j]} of network "
                                   f"{cfg.networks[j].name!r}", "pick a subnet no other network "
                                   "uses, e.g. the next 10.77.N.0/24", "subnet-overlap"))
                break


def _references(cfg: schema.Config, data: dict[str, Any], out: list[Finding]) -> None:
    defaults = data.get("defaults", {})
    for i, vm in enumerate(cfg.vms):
        raw = data["vms"][i]
        image = cfg.image(vm.image) or cfg.provision(vm.image)
        for key, found in (("network", cfg.network(vm.network)), ("image", image)):
            if found is None:
                kp: KeyPath = ("vms", i, key) if key in raw else (
                    ("defaults", key) if key in defaults else ("vms", i))
                out.append(Finding(kp, f"VM {vm.name!r} uses {key} {getattr(vm, key)!r}, which "
                                   f"is not defined", f"add a [[{key}s]] entry named "
                                   f"{getattr(vm, key)!r} or fix the name", f"unknown-{key}"))
    names = {vm.name for vm in cfg.vms}
    _dangling_attachments(cfg, names, out)
    _remote_attachments(cfg, out)
    if cfg.active_vm and cfg.active_vm not in names:
        out.append(Finding(("active_vm",), f"active_vm {cfg.active_vm!r} is not a defined VM",
                           "set active_vm to one of: " + (", ".join(sorted(names)) or "(none)"),
                           "unknown-vm", "warning"))


def _remote_attachments(cfg: schema.Config, out: list[Finding]) -> None:
    """shared-root and shared need a virtiofsd beside the VM: not for a VM on another host."""
    remote = {vm.name: vm.host for vm in cfg.vms if vm.host}
    for i, vm in enumerate(cfg.vms):
        if vm.host and vm.ports:  # ports publish on this machine's addresses
            out.append(Finding(("vms", i, "ports"), f"VM {vm.name!r} runs on {vm.host}: "
                               "published ports are not supported for a remote VM yet",
                               f"forward with ssh instead: `ssh -N -L 8000:localhost:8000 "
                               f"{vm.name}` (its ssh alias goes through the host)",
                               "remote-ports"))
    for i, att in enumerate(cfg.attachments):
        if att.vm in remote and att.mode != schema.AttachMode.GIT:
            out.append(Finding(("attachments", i, "mode"), f"attachment {att.host_path!r} uses "
                               f"mode {att.mode.value}, which needs the folder on the VM's "
                               f"host, but VM {att.vm!r} runs on {remote[att.vm]}",
                               "use mode = \"git\", or copy files with `aivm cp`",
                               "remote-shared-folder"))


def _provisions(cfg: schema.Config, out: list[Finding]) -> None:
    """A provision's name is not an image's; its base exists; bases form no cycle."""
    for i, prov in enumerate(cfg.provisions):
        if cfg.image(prov.name) is not None:
            out.append(Finding(("provisions", i, "name"), f"provision {prov.name!r} has the name "
                               "of an image", "give it a name no [[images]] entry uses (a VM's "
                               "image = ... names either)", "duplicate-name"))
        if cfg.image(prov.base) is None and cfg.provision(prov.base) is None:
            out.append(Finding(("provisions", i, "base"), f"provision {prov.name!r} is based on "
                               f"{prov.base!r}, which is neither an image nor a provision",
                               "set base to an [[images]] or [[provisions]] name", "unknown-image"))
        elif _provision_cycle(cfg, prov):
            out.append(Finding(("provisions", i, "base"), f"provision {prov.name!r} is based on "
                               "itself (through its bases)", "base the chain on an image",
                               "provision-cycle"))
        if not (prov.packages or prov.run or prov.files):
            out.append(Finding(("provisions", i), f"provision {prov.name!r} declares no "
                               "packages, files or run steps", "declare what to bake in, or "
                               "let VMs use the base directly", "empty-provision"))


def _provision_cycle(cfg: schema.Config, prov: schema.Provision) -> bool:
    seen = {prov.name}
    base = cfg.provision(prov.base)
    while base is not None:
        if base.name in seen:
            return True
        seen.add(base.name)
        base = cfg.provision(base.base)
    return False


def _dangling_attachments(cfg: schema.Config, names: set[str], out: list[Finding]) -> None:
    seen: set[tuple[str, str]] = set()
    for i, att in enumerate(cfg.attachments):
        if att.vm not in names:
            out.append(Finding(("attachments", i, "vm"), f"attachment of {att.host_path} points "
                               f"at unknown VM {att.vm!r}", "remove the attachment or fix the "
                               "VM name", "unknown-vm", "warning"))
        if (att.host_path, att.vm) in seen:
            out.append(Finding(("attachments", i), f"{att.host_path} is attached to "
                               f"{att.vm!r} twice", "remove one of the entries",
                               "duplicate-attachment", "warning"))
        seen.add((att.host_path, att.vm))
