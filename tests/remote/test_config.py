"""`[[vms]] host = "user@server"`: checked with file:line; shared folders refused for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivm.config import lint
from aivm.config.load import load

REMOTE = """\
[[vms]]
name = "big"
host = "alice@server"

[[attachments]]
host_path = "/src"
vm = "big"
mode = "shared-root"

[[attachments]]
host_path = "/src2"
vm = "big"
mode = "git"
"""


def test_lint_names_the_bad_host_and_the_shared_folder(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(REMOTE)
    problems = lint.lint(path)
    found = sorted((p.line, p.reason) for p in problems)
    assert found == [(8, "remote-shared-folder")], problems
    shared = next(p for p in problems if p.reason == "remote-shared-folder")
    assert "git" in shared.hint and "aivm cp" in shared.hint
    assert "alice@server" in shared.message


def test_lint_refuses_a_host_that_is_not_user_at_server(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[vms]]\nname = "a"\n\n[[vms]]\nname = "bad"\n'
                    'host = "alice@server;rm -rf /"\n')
    problems = lint.lint(path)
    assert [(p.line, p.reason) for p in problems] == [(6, "bad-value")]
    assert "user@server" in problems[0].hint


def test_a_remote_vm_loads_with_its_host(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[vms]]\nname = "big"\nhost = "ssh://alice@server:2222"\n')
    cfg = load(path)
    assert cfg.vms[0].host == "ssh://alice@server:2222"
    assert load_default_host(tmp_path) == ""


def load_default_host(tmp_path: Path) -> str:
    path = tmp_path / "plain.toml"
    path.write_text('[[vms]]\nname = "here"\n')
    return load(path).vms[0].host


def test_placement_from_host_or_connect_uri() -> None:
    from aivm.config.schema import Vm
    from aivm.remote.placement import host_of, label, libvirt_uri

    assert host_of(Vm(name="a")) is None and label(Vm(name="a")) == "local"
    remote = Vm(name="b", host="alice@server")
    assert label(remote) == "alice@server"
    assert libvirt_uri(remote, "qemu:///system") == "qemu+ssh://alice@server/system"
    via = "qemu+ssh://bob@box:2222/system"
    assert label(Vm(name="c"), via) == "bob@box:2222"
    assert libvirt_uri(Vm(name="c"), via) == via


def test_a_remote_vm_graph_is_built_with_its_hosts_facts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aivm.cli.app import App
    from aivm.remote import facts

    monkeypatch.setenv("AIVM_STATE", str(tmp_path / "here"))
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 "
                   "AAAAC3NzaC1lZDI1NTE5AAAAIGZ0ZXN0a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5 t\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[vms]]\nname = "big"\nhost = "alice@server"\naccel = "auto"\n'
                   f'ssh_pubkey = "{key}"\n\n[[vms]]\nname = "here"\naccel = "qemu"\n'
                   f'ssh_pubkey = "{key}"\n')
    monkeypatch.setitem(facts._PROBED, "alice@server", facts.parse(
        "alice@server", "uid=1000\nstore_root=/srv/s\nstate_dir=/srv/state\naccel=kvm\n"
                        "virtiofs=no\nqemu_version=QEMU 8\nnameservers=10.1.1.1 bad\n"))
    graph = App(config_override=str(cfg), store_override=str(tmp_path / "store")).graph(())
    big, here = graph.nodes["big.domain"].params, graph.nodes["here.domain"].params
    assert big["accel"] == "kvm" and big["disk"] == "/srv/state/big/disk.qcow2"
    assert big["shared_root"] == ""   # no virtiofsd on that host
    assert here["disk"] == f"{tmp_path}/here/here/disk.qcow2" and here["accel"] == "qemu"
    assert facts._PROBED["alice@server"].nameservers == ("10.1.1.1",)


def test_published_ports_on_a_remote_vm_are_refused_with_file_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[vms]]\nname = "big"\nhost = "alice@server"\n\n'
                    '[[vms.ports]]\nguest = 8000\n')
    problems = lint.lint(path)
    assert [(p.line, p.reason) for p in problems] == [(5, "remote-ports")], problems
    assert "ssh -N -L" in problems[0].hint
