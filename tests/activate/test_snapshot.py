"""Booted-state choices and keys without a hypervisor (the real stack: test_booted_state)."""

from __future__ import annotations

import json
from pathlib import Path

import libvirt
import pytest

from aivm.activate import snapshot
from aivm.config.schema import Vm
from aivm.graph.store import Manifest, Store

XML = """<domain type="qemu">
  <name>box</name>
  <metadata><aivm:node xmlns:aivm="https://aivm.dev/xmlns/aivm/1"><aivm:key>k1</aivm:key>
  </aivm:node></metadata>
  <devices>
    <disk type="file" device="disk"><source file="/d"/><target dev="vda"/></disk>
    <filesystem type="mount" accessmode="passthrough">
      <driver type="virtiofs"/>
      <source dir="/x"/>
      <target dir="aivm-shared-root"/>
    </filesystem>
  </devices>
</domain>"""


def test_key_covers_domain_qemu_and_machine() -> None:
    base = snapshot.HostFacts("7002000", "pc-q35-7.2")
    key = snapshot.state_key("k1", base)
    assert key == snapshot.state_key("k1", base)
    assert key != snapshot.state_key("k2", base)
    assert key != snapshot.state_key("k1", snapshot.HostFacts("8000000", "pc-q35-7.2"))
    assert key != snapshot.state_key("k1", snapshot.HostFacts("7002000", "pc-q35-8.0"))


def test_without_virtiofs_keeps_everything_else() -> None:
    lean = snapshot.without_virtiofs(XML)
    assert "<filesystem" not in lean and "virtiofs" not in lean
    assert lean == XML.replace(XML[XML.index("\n    <filesystem"):XML.index("</filesystem>")
                                  + len("</filesystem>")], "")


def test_disabled_or_remote_boots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    store = Store(tmp_path).ensure()
    conn = libvirt.open("test:///default")
    off = snapshot.choose(conn, store, Vm(name="box"), XML, enabled=False)
    assert off.path == "boot" and "restore_snapshots = false" in off.why
    no_qemu = snapshot.choose(conn, store, Vm(name="box"), XML, enabled=True)
    assert no_qemu.path == "boot" and "no local QEMU" in no_qemu.why


class FakeConn:
    def getType(self) -> str:
        return "QEMU"

    def getURI(self) -> str:
        return "qemu:///system"

    def getVersion(self) -> int:
        return 7002000

    def getDomainCapabilities(self, *_args: object) -> str:
        return "<domainCapabilities><machine>pc-q35-7.2</machine></domainCapabilities>"


def test_choose_restores_a_committed_state(tmp_path: Path) -> None:
    store = Store(tmp_path).ensure()
    conn, vm = FakeConn(), Vm(name="box")
    first = snapshot.choose(conn, store, vm, XML, enabled=True)
    assert first.path == "boot-and-save" and first.entry is None
    assert first.key == snapshot.state_key("k1", snapshot.HostFacts("7002000", "pc-q35-7.2"))

    def build(tmp: Path) -> None:
        (tmp / snapshot.INFO_FILE).write_text(json.dumps({"saved": "2026-12-04T10:00:00"}))

    entry, _ = store.commit(first.key, snapshot.entry_name("box"), build, lambda size, s: Manifest(
        first.key, "box.booted-state", snapshot.KIND, 1, {}, {}, {}, {}, {}, "now", size, s))
    again = snapshot.choose(conn, store, vm, XML, enabled=True)
    assert again.path == "restore" and again.entry == entry
    assert "2026-12-04T10:00:00" in again.line
