"""`[[vms]] host = "user@server"`: checked with file:line; shared folders refused for it."""

from __future__ import annotations

from pathlib import Path

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
