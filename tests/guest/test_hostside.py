# ruff: noqa: E501  (whole outputs and mountinfo lines are compared verbatim)
"""Host-side pieces: VS Code decision and steps, mountinfo, virtiofs XML, git remotes, ssh alias."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aivm.errors import AivmError
from aivm.guest import code, gitmode, hostmount, ssh, sshconf, virtiofs


def test_code_launches_only_locally_with_code_on_path() -> None:
    assert code.why_not_launch("/usr/bin/code", {}) is None
    assert code.why_not_launch(None, {}) == "`code` (VS Code's command line) is not on PATH"
    assert code.why_not_launch("/usr/bin/code", {"SSH_CONNECTION": "1 2 3 4"}) == (
        "this is a remote (ssh) session: a VS Code window cannot open here")
    assert code.launch("aivm-box", "/home/agent/p").argv == (
        "code", "--remote", "ssh-remote+aivm-box", "/home/agent/p")


def test_code_manual_steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    text = code.manual_steps("`code` (VS Code's command line) is not on PATH", "aivm-box", "box",
                             "/srv/p")
    assert text == f"""\
Not starting VS Code: `code` (VS Code's command line) is not on PATH.
To connect from VS Code with the Remote - SSH extension:
  1. make the alias known to ssh: add `Include {tmp_path}/aivm/ssh_config` at the top of ~/.ssh/config (or paste the output of `aivm vm ssh_config box`)
  2. in VS Code run "Remote-SSH: Connect to Host..." and choose aivm-box
  3. open the folder /srv/p
or, where `code` exists: code --remote ssh-remote+aivm-box /srv/p"""


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
90 27 8:1 /home/me/my\\040proj /var/lib/libvirt/aivm/box/shared-root/p-1 ro,relatime shared:5 - ext4 /dev/sda1 rw
91 27 8:1 /var/lib/libvirt/aivm/box/shared-root /var/lib/libvirt/aivm/box/shared-root rw shared:6 - ext4 /dev/sda1 rw
"""


def test_mountinfo_parsing_unescapes_and_finds_leftovers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIVM_STATE", "/var/lib/libvirt/aivm")
    got = hostmount.mounts(MOUNTINFO)
    assert "ro" in got["/var/lib/libvirt/aivm/box/shared-root/p-1"]
    assert hostmount.is_mounted(Path("/var/lib/libvirt/aivm/box/shared-root"), MOUNTINFO)
    assert hostmount.leftovers("box", MOUNTINFO) == (
        "/var/lib/libvirt/aivm/box/shared-root", "/var/lib/libvirt/aivm/box/shared-root/p-1")
    assert hostmount.leftovers("other", MOUNTINFO) == ()


def test_mount_commands_enter_the_hypervisor_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIVM_HYPERVISOR_PID", "4242")
    cmd = hostmount.root_cmd("umount", "--", "/x", meaning="m")
    assert cmd.argv == ("nsenter", "-t", "4242", "-m", "--", "umount", "--", "/x") and cmd.root
    assert hostmount.mountinfo() == Path("/proc/4242/mountinfo")
    monkeypatch.delenv("AIVM_HYPERVISOR_PID")
    assert hostmount.root_cmd("true", meaning="m").argv == ("true",)


def test_virtiofs_device_xml_round_trips_and_quotes() -> None:
    dev = virtiofs.Device("/var/tmp/a'b&c", "aivm-1")
    domain = f"<domain><devices>{dev.xml}<filesystem type='mount'><source dir='/x'/>" \
             "<target dir='9p'/></filesystem></devices></domain>"
    assert virtiofs.devices(domain) == {"aivm-1": dev}


def test_pci_slot_exhaustion_names_the_limit_and_the_ways_out() -> None:
    err = virtiofs.attach_error("box", virtiofs.Device("/p", "t"),
                                "internal error: No more available PCI slots")
    assert err.reason == "pci-slots-exhausted"
    assert "use --mode shared-root" in err.hint and "--mode git" in err.hint
    other = virtiofs.attach_error("box", virtiofs.Device("/p", "t"), "boom")
    assert other.reason == "virtiofs-attach-failed"


def test_presence_on_the_test_driver() -> None:
    import libvirt

    conn = libvirt.open("test:///default")
    assert virtiofs.presence(conn, "test", "aivm-x") == virtiofs.Presence(True, False, False)
    with pytest.raises(AivmError) as err:
        virtiofs.presence(conn, "no-such-vm", "t")
    assert err.value.reason == "vm-missing"


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c",
                           "user.email=t@example.invalid", *args], check=True, text=True,
                          capture_output=True).stdout


def test_git_mode_needs_a_commit_on_a_branch(tmp_path: Path) -> None:
    with pytest.raises(AivmError) as plain:
        gitmode.inspect(tmp_path, "box")
    assert plain.value.reason == "not-a-git-repo"
    git(tmp_path, "init", "-q", "-b", "dev")
    with pytest.raises(AivmError):
        gitmode.inspect(tmp_path, "box")
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "one")
    assert gitmode.inspect(tmp_path, "box") == gitmode.HostRepo(tmp_path, "dev", None)


def test_git_remote_is_added_once_then_updated(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))      # no ~/.ssh/config: the alias is the name
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "one")
    step = gitmode.remote_step(gitmode.inspect(tmp_path, "box"), "box", "/home/agent/p")
    assert step is not None
    step.actions[0].perform()
    repo = gitmode.inspect(tmp_path, "box")
    assert repo.remote_url == "box:/home/agent/p"    # the remote is aivm-box, its host box
    assert gitmode.remote_step(repo, "box", "/home/agent/p") is None
    moved = gitmode.remote_step(repo, "box", "/srv/p")
    assert moved is not None and moved.actions[0].cmd.argv[-3:] == (
        "set-url", "aivm-box", "box:/srv/p")
    remove = gitmode.remove_remote_step(tmp_path, "box")
    assert remove is not None
    remove.actions[0].perform()
    assert gitmode.remove_remote_step(tmp_path, "box") is None


def test_push_waits_while_the_guest_has_unmerged_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "one")
    git(tmp_path, "remote", "add", "aivm-box", "aivm-box:/nowhere")
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "guest")
    git(tmp_path, "update-ref", "refs/remotes/aivm-box/main", "HEAD")
    git(tmp_path, "reset", "-q", "--hard", "HEAD~1")
    # the guest branch is ahead: no push is attempted (it would need ssh to aivm-box)
    assert gitmode.push_unless_behind(gitmode.inspect(tmp_path, "box"), "box") is False


def test_ssh_alias_block_is_added_then_replaced(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path))
    one = ssh.Target("box", "agent", "10.0.0.5", Path("/k"))
    text = sshconf.with_block("Host aivm-other\n    HostName 1.2.3.4\n", one)
    assert text.startswith("Host aivm-other\n    HostName 1.2.3.4\nHost box aivm-box\n")
    moved = sshconf.with_block(text, ssh.Target("box", "agent", "10.0.0.9", Path("/k")))
    assert "10.0.0.9" in moved and "10.0.0.5" not in moved and "1.2.3.4" in moved
    step = sshconf.write_step(one)
    assert step is not None
    step.actions[0].perform()
    assert sshconf.write_step(one) is None
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n    ServerAliveInterval 30\n")
    inc = sshconf.include_step(home)
    assert inc is not None
    inc.actions[0].perform()
    assert (home / ".ssh" / "config").read_text() == (
        f"Include {tmp_path}/state/aivm/ssh_config\nHost *\n    ServerAliveInterval 30\n")
    assert sshconf.include_step(home) is None


def test_folder_shell_starts_in_the_guest_path(tmp_path: Path, monkeypatch) -> None:
    from aivm.guest import workflow

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    place = workflow.Workplace(ssh.Target("box", "agent", "10.0.0.5", Path("/k")), "/srv/my p")
    shell = workflow.shell_command(place, tty=True)
    assert shell.argv[-3:] == ("-t", "agent@10.0.0.5", "cd '/srv/my p' && exec \"$SHELL\" -l")
    run = workflow.shell_command(place, ("make", "test"), tty=False)
    assert run.argv[-2:] == ("agent@10.0.0.5", "cd '/srv/my p' && make test")
    assert run.in_netns and "-t" not in run.argv
