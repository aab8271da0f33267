"""`aivm ssh [VM] [-- CMD...]`: words after `--` are the command, never the VM; the remote
command's exit code is aivm's. libvirt is `test:///default`; ssh itself is replaced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from aivm.cli import ssh_cmd
from aivm.cli.app import App
from aivm.cli.main import cli
from aivm.config import stamp
from aivm.guest import ssh


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AIVM_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("AIVM_NETNS", raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "config.toml"
    path.write_text('[[vms]]\nname = "box"\nuser = "agent"\n')
    monkeypatch.setattr(ssh_cmd, "guest_target", lambda session: ssh.Target(
        session.vm.name, "agent", "10.0.0.9", Path("/k")))
    yield path
    stamp.forget(path)


def invoke(config: Path, monkeypatch: pytest.MonkeyPatch, *args: str,
           remote_rc: int = 0) -> tuple[int, list[tuple[str, ...]]]:
    ran: list[tuple[str, ...]] = []

    def fake(cmd):  # type: ignore[no-untyped-def]
        ran.append(cmd.argv)
        return remote_rc

    monkeypatch.setattr("aivm.run.run_foreground", fake)
    app = App(config_override=str(config), connect="test:///default")
    result = CliRunner().invoke(cli, ["ssh", *args], obj=app, catch_exceptions=False)
    return result.exit_code, ran


def test_words_after_dashes_are_the_command_on_the_active_vm(
        config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, ran = invoke(config, monkeypatch, "--", "echo", "ok")
    assert code == 0 and ran[0][-3:] == ("agent@10.0.0.9", "echo", "ok")


def test_options_after_dashes_belong_to_the_command(
        config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, ran = invoke(config, monkeypatch, "box", "--", "ls", "-la", "--vm", "x")
    assert code == 0 and ran[0][-5:] == ("agent@10.0.0.9", "ls", "-la", "--vm", "x")


@pytest.mark.parametrize("rc", [1, 42, 255])
def test_the_remote_exit_code_is_aivms(config: Path, monkeypatch: pytest.MonkeyPatch,
                                       rc: int) -> None:
    code, ran = invoke(config, monkeypatch, "--", "false", remote_rc=rc)
    assert code == rc and ran[0][-1] == "false"


def test_a_vm_named_before_the_dashes_is_the_vm(
        config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, ran = invoke(config, monkeypatch, "echo", "--", "true")
    assert code == 2 and ran == []          # no VM named echo: a config error, no ssh
