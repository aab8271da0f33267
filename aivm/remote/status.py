"""What `aivm status` and `aivm list` read about a VM on another host."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from aivm.config.schema import Vm
from aivm.errors import AivmError
from aivm.remote.placement import host_of

if TYPE_CHECKING:
    from aivm.activate.live import Conn

_CONNS: dict[str, Conn | None] = {}


def remote_disk(vm: Vm) -> tuple[str, bool]:
    """`host:path` of the VM's writable disk on its host, and whether it exists there."""
    from aivm.activate.disk import DISK_NAME
    from aivm.remote.up import Host

    remote = host_of(vm)
    assert remote is not None
    host = Host.of(remote)
    path = f"{host.state_dir(vm.name)}/{DISK_NAME}"
    found = host.conn.run(("sh", "-c", f"test -f {shlex.quote(path)} && echo yes || true"),
                          "look for the VM's disk").stdout.strip() == "yes"
    return f"{remote.label}:{path}", found


def on_host(vm: Vm, local: Conn | None, connect_uri: str = "") -> Conn | None:
    """The libvirt connection that knows `vm`: `local` for a VM here, else its host's
    (qemu+ssh, opened once per host; None when it cannot be reached)."""
    remote = host_of(vm)
    if remote is None:
        return local
    if remote.label not in _CONNS:
        from aivm.activate import live
        from aivm.remote.placement import libvirt_uri

        try:
            _CONNS[remote.label] = live.connect(libvirt_uri(vm, connect_uri))
        except AivmError:
            _CONNS[remote.label] = None
    return _CONNS[remote.label]
