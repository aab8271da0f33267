"""A VM on another host is reached through it: ssh options and the ssh_config block."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivm.activate.up import target
from aivm.config.schema import Vm
from aivm.errors import AivmError
from aivm.guest import ssh, sshconf


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("AIVM_SSH_CONFIG", raising=False)
    (tmp_path / "run").mkdir(mode=0o700)


def test_remote_vm_target_jumps_through_its_host(tmp_path: Path) -> None:
    tgt = target(Vm(name="big", host="alice@server:2222"), "10.77.0.5")
    assert tgt.jump.startswith("ssh ") and tgt.jump.endswith("-p 2222 alice@server -W %h:%p")
    assert f"ControlPath={tmp_path}/run/aivm-ssh-" in tgt.jump and "/%%C " in tgt.jump
    opts = ssh.options(tgt)
    assert opts[-2:] == ["-o", f"ProxyCommand={tgt.jump}"]
    block = sshconf.with_block("", tgt)
    assert f"    ProxyCommand {tgt.jump}\n" in block and "HostName 10.77.0.5" in block


def test_local_vm_has_no_jump() -> None:
    tgt = target(Vm(name="here"), "10.77.0.5")
    assert tgt.jump == "" and "Proxy" not in ssh.ssh_config_block(tgt)
    assert not any("Proxy" in o for o in ssh.options(tgt))


def test_a_jump_cannot_add_lines_to_the_config() -> None:
    tgt = ssh.Target("big", "agent", "10.77.0.5", Path("/k"), "ssh x\nProxyCommand evil")
    with pytest.raises(AivmError):
        ssh.ssh_config_block(tgt)
