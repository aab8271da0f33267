"""The VM's name is its ssh alias (the seed's `ssh aivm-2404`); `aivm-<vm>` stays as a second
name for one release, and is the only name when the VM's own could capture a real host."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from aivm.guest import ssh, sshconf


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AIVM_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    sshconf._WARNED.clear()
    return tmp_path


def user_config(home: Path, text: str) -> None:
    (home / ".ssh").mkdir(exist_ok=True)
    (home / ".ssh" / "config").write_text(text)


def target(vm: str = "box") -> ssh.Target:
    return ssh.Target(vm, "agent", "10.0.0.9", Path("/k"))


def test_the_alias_is_the_vm_name_and_the_old_one_still_resolves() -> None:
    assert sshconf.alias("box") == "box"
    assert ssh.ssh_config_block(target()).startswith("Host box aivm-box\n    HostName 10.0.0.9\n")


def test_a_name_with_a_dot_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aivm"):
        assert sshconf.alias("github.com") == "aivm-github.com"
    assert "contains a dot" in caplog.text
    assert ssh.ssh_config_block(target("github.com")).startswith("Host aivm-github.com\n")


@pytest.mark.parametrize("line", ["Host prod", "host other prod", "  Host=prod", 'Host "prod"',
                                  "HOST  a prod b"])
def test_a_name_on_a_user_host_line_falls_back(home: Path, line: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    user_config(home, f"# mine\n{line}\n    HostName 203.0.113.7\n")
    with caplog.at_level(logging.WARNING, logger="aivm"):
        assert sshconf.alias("prod") == "aivm-prod"
    assert "already names a Host in ~/.ssh/config" in caplog.text
    assert target("prod").alias == "aivm-prod"


@pytest.mark.parametrize("line", ["Host production", "Host !prod", "# Host prod",
                                  "HostName prod", "Host *"])
def test_other_host_lines_do_not_take_the_name(home: Path, line: str) -> None:
    user_config(home, f"{line}\n")
    assert sshconf.alias("prod") == "prod"


def test_an_old_aivm_block_is_replaced_by_the_new_one() -> None:
    old = "Host aivm-box\n    HostName 10.0.0.1\nHost aivm-boxer\n    HostName 10.0.0.2\n"
    new = sshconf.with_block(old, target())
    assert new.count("Host ") == 2 and "10.0.0.1" not in new and "Host aivm-boxer\n" in new
    assert "Host box aivm-box\n" in new
    assert sshconf.with_block(new, target()) == new


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs OpenSSH")
def test_openssh_resolves_both_names(home: Path) -> None:
    config = home / "aivm_ssh_config"
    config.write_text(sshconf.with_block("", target()))
    for name in ("box", "aivm-box"):
        out = subprocess.run(["ssh", "-G", "-F", str(config), name], text=True,
                             capture_output=True, check=True).stdout
        assert "hostname 10.0.0.9\n" in out and "user agent\n" in out


def test_git_mode_attach_makes_the_alias_resolvable() -> None:
    """The attach plan of git mode carries the same Include step as `aivm code`."""
    import inspect

    from aivm.guest import attach

    assert "sshconf.include_step()" in inspect.getsource(attach._git)
