"""Libvirt domains the config does not declare, and how to declare them.

Pure: the CLI reads the domains (libvirt-python) and passes them in, so the
config layer never talks to libvirt itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aivm.config import checks, schema

STATES = {0: "no state", 1: "running", 2: "blocked", 3: "paused", 4: "shutting down",
          5: "shut off", 6: "crashed", 7: "suspended"}


@dataclass(frozen=True)
class Domain:
    name: str
    state: str
    cpus: int
    memory_mib: int

    def line(self) -> str:
        return f"{self.name}  {self.state}, {self.cpus} cpus, {self.memory_mib} MiB"


def unmanaged(domains: list[Domain], cfg: schema.Config) -> list[Domain]:
    """Domains whose names no [[vms]] entry declares, sorted by name."""
    declared = {v.name for v in cfg.vms}
    return sorted((d for d in domains if d.name not in declared), key=lambda d: d.name)


def as_vm(domain: Domain, defaults: schema.Vm) -> schema.Vm:
    """A [[vms]] entry for the domain: its name, cpus and memory over the defaults."""
    problem = checks.name(domain.name)
    if problem:
        from aivm.errors import ConfigError

        raise ConfigError(f"cannot import domain {domain.name!r}: {problem[0]}",
                          hint="rename the domain (virsh domrename) first", reason="bad-value")
    return dataclasses.replace(defaults, name=domain.name, cpus=max(1, domain.cpus),
                               memory_mib=domain.memory_mib)
