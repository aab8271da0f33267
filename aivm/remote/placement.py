"""Which host a VM runs on: its `host = "user@server"`, else the host of a
`--connect qemu+ssh://user@server/system` URI, else this machine (None)."""

from __future__ import annotations

from urllib.parse import urlsplit

from aivm.config.schema import Vm
from aivm.remote.address import Remote, parse

LOCAL = "local"


def host_of(vm: Vm, connect_uri: str = "") -> Remote | None:
    if vm.host:
        return parse(vm.host)
    if urlsplit(connect_uri).scheme == "qemu+ssh":
        return parse(connect_uri)
    return None


def label(vm: Vm, connect_uri: str = "") -> str:
    """The host as status, list and plan previews name it."""
    remote = host_of(vm, connect_uri)
    return remote.label if remote else LOCAL


def libvirt_uri(vm: Vm, connect_uri: str = "") -> str:
    """The libvirt URI of the VM's host: qemu+ssh:// through the same host for a remote VM
    (unless --connect already names one), else `connect_uri` unchanged."""
    remote = host_of(vm, connect_uri)
    if remote is None or urlsplit(connect_uri).scheme == "qemu+ssh":
        return connect_uri
    return remote.libvirt_uri


def jump(vm: Vm) -> str:
    """How ssh reaches a VM on another host: a ProxyCommand through the host (the ssh -W
    that ProxyJump runs, here over aivm's master connection to it); "" for a local VM."""
    if not vm.host:
        return ""
    from aivm.remote.connection import Connection

    return Connection.to(parse(vm.host)).proxy_command()
