"""Remote host addresses, facts parsing and the commands sent through the master (no ssh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivm.config.checks import cache_url, copy_url
from aivm.errors import CommandError, ConfigError
from aivm.remote.address import Remote, parse
from aivm.remote.connection import Connection
from aivm.remote.facts import parse as parse_facts


@pytest.mark.parametrize(("text", "want"), [
    ("alice@server", Remote("server", "alice", 22)),
    ("server.example", Remote("server.example", "", 22)),
    ("ssh://alice@10.0.0.2:2222", Remote("10.0.0.2", "alice", 2222)),
    ("qemu+ssh://root@box/system", Remote("box", "root", 22)),
])
def test_parse(text: str, want: Remote) -> None:
    assert parse(text) == want


@pytest.mark.parametrize("text", ["", "bad user@x", "a@b;rm", "ssh://a:pw@x", "http://x",
                                  "qemu+ssh://x/session?socket=/s", "ssh://a@x:99999",
                                  "-oProxyCommand=x"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text)
    assert err.value.reason == "remote-host" and err.value.hint


def test_libvirt_uri_and_label() -> None:
    r = Remote("box", "alice", 2222)
    assert r.libvirt_uri == "qemu+ssh://alice@box:2222/system"
    assert r.label == "alice@box:2222"


def test_copy_url_accepts_ssh_but_substituters_do_not() -> None:
    assert copy_url("ssh://alice@server") is None
    assert copy_url("file:///srv/c") is None
    assert copy_url("ssh://bad user@x") is not None
    assert cache_url("ssh://alice@server") is not None


def test_commands_go_through_one_master(tmp_path: Path) -> None:
    conn = Connection(Remote("box", "alice"), tmp_path)
    cmd = conn.cmd(("qemu-img", "create", "a b"), "make a disk", root=True)
    argv = cmd.argv
    assert argv[0] == "ssh" and "ControlMaster=auto" in argv
    assert f"ControlPath={tmp_path}/%C" in argv and "BatchMode=yes" in argv
    assert argv[-2:] == ("--", "sudo -n -- qemu-img create 'a b'")
    assert cmd.in_netns and "on alice@box" in cmd.meaning
    root = Connection(Remote("box", "root"), tmp_path).cmd(("true",))
    assert root.argv[-1] == "true"


def test_facts_parse() -> None:
    facts = parse_facts("h", "uid=0\nstore_root=/s\nstate_dir=/st\naccel=kvm\nvirtiofs=no\n"
                             "qemu_version=QEMU emulator version 7.2.0\n")
    assert (facts.accel, facts.virtiofs, facts.store_root, facts.uid) == ("kvm", False, "/s", 0)
    with pytest.raises(CommandError) as err:
        parse_facts("h", "garbage")
    assert err.value.reason == "remote-facts"
