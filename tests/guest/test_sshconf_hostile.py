"""aivm's ssh_config (included at the top of ~/.ssh/config) with hostile values (issue 12,
item 12): each value is one argument, quoted or refused, never a new line or option."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from aivm.errors import AivmError
from aivm.guest import ssh, sshconf

INJECTIONS = [
    "/k\nHost *\n  ProxyCommand touch /tmp/aivm-pwned",
    "/k\r\nProxyCommand x", '/k" ProxyCommand "x', "/k\\\nx", "/k\x00x", "/k\tx\x7f",
]


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIVM_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def target(identity: str, **kw: str) -> ssh.Target:
    return ssh.Target(kw.get("vm", "box"), kw.get("user", "agent"), kw.get("host", "10.0.0.9"),
                      Path(identity))


@pytest.mark.parametrize("identity", INJECTIONS)
def test_unquotable_identity_paths_are_refused(identity: str) -> None:
    with pytest.raises(AivmError) as err:
        sshconf.with_block("", target(identity))
    assert err.value.reason == "invalid-param" and "ssh_config cannot hold" in err.value.message


@pytest.mark.parametrize("field, value", [
    ("vm", "box\nHost *"), ("vm", "a b"), ("user", "agent\nProxyCommand x"), ("user", "Root"),
    ("host", "10.0.0.9\nProxyCommand x"), ("host", "10.0.0.9 -oProxyCommand=x"),
    ("host", "-oProxyCommand=x")])
def test_hostile_names_and_addresses_are_refused(field: str, value: str) -> None:
    with pytest.raises(AivmError) as err:
        sshconf.with_block("", target("/k", **{field: value}))
    assert err.value.reason == "invalid-param"


@pytest.mark.parametrize("identity, written", [
    ("/home/me/.ssh/id_ed25519", "/home/me/.ssh/id_ed25519"),
    ("/home/me/my keys/id", '"/home/me/my keys/id"'),
    ("/home/me/%d/id", "/home/me/%%d/id"),            # a literal '%', not the home token
    ("/home/me/#x/id", '"/home/me/#x/id"'),
    ("/home/me/a'b/id", '"/home/me/a\'b/id"'),
])
def test_paths_are_one_quoted_argument(identity: str, written: str) -> None:
    block = ssh.ssh_config_block(target(identity))
    assert f"    IdentityFile {written}\n" in block
    assert len(block.splitlines()) == 7


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs OpenSSH")
@pytest.mark.parametrize("identity", ["/home/me/my keys/id", "/home/me/%d/id",
                                      "/home/me/#x/id", "/home/me/a'b/id"])
def test_openssh_reads_the_block_as_written(identity: str, tmp_path: Path) -> None:
    """`ssh -G` (no connection) parses the file: the identity is the whole path, and no
    ProxyCommand or other option appeared."""
    config = tmp_path / "ssh_config"
    config.write_text(sshconf.with_block("", target(identity)))
    out = subprocess.run(["ssh", "-G", "-F", str(config), "aivm-box"], text=True,
                         capture_output=True, check=True).stdout
    seen = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert seen["hostname"] == "10.0.0.9" and seen["user"] == "agent"
    assert seen["identityfile"] == identity.replace("%", "%%")  # ssh -G prints tokens unexpanded
    assert "proxycommand" not in seen


def test_the_include_line_and_git_command_quote_a_spaced_state_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sshconf, "managed_file", lambda: tmp_path / "my state" / "ssh_config")
    assert sshconf.include_line() == f'Include "{tmp_path}/my state/ssh_config"'
    assert sshconf.git_ssh_command() == f"ssh -F '{tmp_path}/my state/ssh_config' -o BatchMode=yes"
    monkeypatch.setattr(sshconf, "managed_file", lambda: tmp_path / "st*" / "ssh_config")
    with pytest.raises(AivmError):   # Include globs: a '*' would pull in other files
        sshconf.include_line()
