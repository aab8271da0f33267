"""`aivm list`: declared VMs, networks and folders, with live state where libvirt answers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aivm.activate import live
from aivm.config.schema import Config, Network
from aivm.remote.placement import label
from aivm.remote.status import on_host


def collect(cfg: Config, conn: live.Conn | None, sections: Iterable[str],
            connect_uri: str = "") -> dict[str, Any]:
    """`connect_uri`: the process's (--connect); a remote VM's host is asked through it when
    it is a qemu+ssh URI, else through qemu+ssh to the VM's host."""
    out: dict[str, Any] = {}
    if "vms" in sections:
        out["vms"] = [{"name": v.name, "network": v.network, "image": v.image, "cpus": v.cpus,
                       "memory_mib": v.memory_mib, "active": v.name == cfg.active_vm,
                       "host": label(v), "state": _domain(on_host(v, conn, connect_uri), v.name)}
                      for v in cfg.vms]
    if "networks" in sections:
        out["networks"] = [{"name": n.name, "subnet": n.subnet, "bridge": n.bridge,
                            "firewall": n.firewall.enabled, "state": _network(conn, n.name)}
                           for n in _networks(cfg)]
    if "folders" in sections:
        out["folders"] = [{"host_path": a.host_path, "vm": a.vm, "mode": str(a.mode),
                           "access": str(a.access), "guest_dst": a.guest_dst or "(default)"}
                          for a in cfg.attachments]
    return out


def _networks(cfg: Config) -> list[Network]:
    names = dict.fromkeys([n.name for n in cfg.networks] + [v.network for v in cfg.vms])
    return [n for n in (cfg.network(name) for name in names) if n is not None]


def _domain(conn: live.Conn | None, name: str) -> str:
    if conn is None:
        return "unknown"
    d = live.read_domain(conn, name)
    return "running" if d.active else "stopped" if d.exists else "not defined"


def _network(conn: live.Conn | None, name: str) -> str:
    if conn is None:
        return "unknown"
    n = live.read_network(conn, name)
    return "active" if n.active else "stopped" if n.exists else "not defined"


def render(data: dict[str, Any]) -> str:
    lines: list[str] = []
    if "vms" in data:
        lines.append("VMs:")
        lines += [f"  {'*' if v['active'] else ' '} {v['name']:<20} {v['state']:<12} "
                  f"{v['cpus']} cpu, {v['memory_mib']} MiB, image {v['image']}, "
                  f"network {v['network']}, host {v['host']}" for v in data["vms"]]
        lines = lines if data["vms"] else [*lines, "  (none)"]
    if "networks" in data:
        lines.append("networks:")
        lines += [f"    {n['name']:<20} {n['state']:<12} {n['subnet']} on {n['bridge']}, "
                  f"firewall {'on' if n['firewall'] else 'off'}"
                  for n in data["networks"]] or ["  (none)"]
    if "folders" in data:
        lines.append("folders:")
        lines += [f"    {f['host_path']} -> {f['vm']}:{f['guest_dst']} ({f['mode']}, {f['access']})"
                  for f in data["folders"]] or ["  (none)"]
    return "\n".join(lines)
