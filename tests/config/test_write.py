"""tomlkit edits keep comments and layout; writes are atomic, locked, refuse concurrent edits."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aivm.config import load, stamp, write
from aivm.config.schema import Attachment, AttachMode, Firewall, Network, Vm
from aivm.errors import ConfigError
from tests.config.conftest import write as put

COMMENTED = """\
# My aivm setup -- keep this comment
schema_version = 1   # trailing comment

[defaults]
cpus = 2        # aligned comment
memory_mib = 2048

# the dev box
[[vms]]
name = "dev"    # named after the team
"""


def test_upsert_vm_keeps_comments_and_writes_only_differences(cfg_path: Path) -> None:
    load.load(put(cfg_path, COMMENTED))
    write.upsert_vm(cfg_path, Vm(name="dev", cpus=2, memory_mib=4096))
    write.upsert_vm(cfg_path, Vm(name="ci", cpus=4, memory_mib=2048))
    assert cfg_path.read_text() == COMMENTED.replace(
        'name = "dev"    # named after the team\n',
        'name = "dev"    # named after the team\nmemory_mib = 4096\n\n'
        '[[vms]]\nname = "ci"\ncpus = 4\n')
    cfg = load.load(cfg_path)
    assert [(v.name, v.cpus, v.memory_mib) for v in cfg.vms] == [("dev", 2, 4096), ("ci", 4, 2048)]


def test_resolved_uid_is_not_written(cfg_path: Path) -> None:
    load.load(put(cfg_path, COMMENTED))
    cfg = write.upsert_vm(cfg_path, Vm(name="dev", cpus=2, memory_mib=2048, uid=1000, gid=1000))
    assert cfg_path.read_text() == COMMENTED
    assert cfg.vms[0].uid is None


def test_every_edit_round_trips(cfg_path: Path) -> None:
    load.load(put(cfg_path, COMMENTED))
    net = Network(name="lab", bridge="virbr-lab", subnet="10.77.9.0/24", gateway="10.77.9.1",
                  dhcp_start="10.77.9.10", dhcp_end="10.77.9.99",
                  firewall=Firewall(allow_tcp_ports=(22,)))
    write.upsert_network(cfg_path, net)
    write.upsert_attachment(cfg_path, Attachment("/src/a", "dev", mode=AttachMode.GIT))
    write.set_active_vm(cfg_path, "dev")
    write.pin_image(cfg_path, "ubuntu-noble", url="https://example.org/x.img", sha256="ab" * 32)
    text = cfg_path.read_text()
    assert text.startswith("# My aivm setup -- keep this comment\n"
                           "schema_version = 1   # trailing comment\nactive_vm = \"dev\"\n")
    assert "cpus = 2        # aligned comment\n" in text and "# the dev box\n" in text
    assert text.endswith('[[networks]]\nname = "lab"\nbridge = "virbr-lab"\n'
                         'subnet = "10.77.9.0/24"\ngateway = "10.77.9.1"\n'
                         'dhcp_start = "10.77.9.10"\ndhcp_end = "10.77.9.99"\n\n'
                         '[networks.firewall]\nallow_tcp_ports = [22]\n\n'
                         '[[attachments]]\nhost_path = "/src/a"\nvm = "dev"\nmode = "git"\n\n'
                         '[[images]]\nname = "ubuntu-noble"\nsource = "fetch"\n'
                         f'url = "https://example.org/x.img"\nsha256 = "{"ab" * 32}"\n')
    cfg = load.load(cfg_path)
    assert cfg.networks == (net,)
    assert cfg.attachments == (Attachment("/src/a", "dev", mode=AttachMode.GIT),)
    assert cfg.active_vm == "dev"
    assert cfg.image("ubuntu-noble").url == "https://example.org/x.img"  # type: ignore[union-attr]


def test_updates_change_keys_in_place(cfg_path: Path) -> None:
    load.load(put(cfg_path, COMMENTED))
    write.upsert_attachment(cfg_path, Attachment("/src/a", "dev"))
    write.upsert_attachment(cfg_path, Attachment("/src/a", "dev", guest_dst="/work"))
    write.pin_image(cfg_path, "img", url="https://a/1", sha256="")
    write.pin_image(cfg_path, "img", url="https://a/2", sha256="cd" * 32)
    cfg = load.load(cfg_path)
    assert [a.guest_dst for a in cfg.attachments] == ["/work"]
    assert [(i.url, i.sha256) for i in cfg.images] == [("https://a/2", "cd" * 32)]


def test_remove_vm_takes_its_attachments_and_active_vm(cfg_path: Path) -> None:
    load.load(put(cfg_path, COMMENTED + '\n[[vms]]\nname = "other"\n'))
    write.upsert_attachment(cfg_path, Attachment("/src/a", "dev"))
    write.upsert_attachment(cfg_path, Attachment("/src/b", "other"))
    write.set_active_vm(cfg_path, "dev")
    cfg = write.remove_vm(cfg_path, "dev")
    assert [v.name for v in cfg.vms] == ["other"]
    assert [a.host_path for a in cfg.attachments] == ["/src/b"]
    assert cfg.active_vm == ""
    cfg = write.remove_attachment(cfg_path, "/src/b", "other")
    assert cfg.attachments == ()
    assert "attachments" not in cfg_path.read_text()
    assert cfg_path.read_text().startswith("# My aivm setup -- keep this comment\n")


def test_set_active_vm_must_name_a_vm(cfg_path: Path) -> None:
    load.load(put(cfg_path, COMMENTED))
    with pytest.raises(ConfigError) as err:
        write.set_active_vm(cfg_path, "nope")
    assert (err.value.reason, err.value.hint) == ("unknown-vm", "choose one of: dev")
    assert cfg_path.read_text() == COMMENTED


def test_edit_that_would_make_the_file_invalid_is_refused(cfg_path: Path) -> None:
    load.load(put(cfg_path, COMMENTED))
    with pytest.raises(ConfigError) as err:
        write.upsert_vm(cfg_path, Vm(name="dev", cpus=0))
    assert err.value.reason == "bad-value"
    assert err.value.message.startswith(f"{cfg_path}:11: cpus must be at least 1")
    assert cfg_path.read_text() == COMMENTED


def test_concurrent_edit_is_refused_not_overwritten(cfg_path: Path) -> None:
    load.load(put(cfg_path, COMMENTED))
    theirs = COMMENTED + '\n[[vms]]\nname = "theirs"\n'
    cfg_path.write_text(theirs)                      # someone else writes after our load
    with pytest.raises(ConfigError) as err:
        write.upsert_vm(cfg_path, Vm(name="mine"))
    assert err.value.reason == "concurrent-edit"
    assert cfg_path.read_text() == theirs
    load.load(cfg_path)                              # re-read: now the edit applies
    assert [v.name for v in write.upsert_vm(cfg_path, Vm(name="mine")).vms] == \
        ["dev", "theirs", "mine"]


def test_file_created_after_we_saw_none_is_refused(cfg_path: Path) -> None:
    with pytest.raises(ConfigError):
        load.load(cfg_path)                          # absent: remembered as absent
    cfg_path.write_text('[[vms]]\nname = "x"\n')
    with pytest.raises(ConfigError) as err:
        write.upsert_vm(cfg_path, Vm(name="mine"))
    assert err.value.reason == "concurrent-edit"


def test_touch_alone_is_not_an_edit(cfg_path: Path) -> None:
    load.load(put(cfg_path, COMMENTED))
    later = time.time() + 5
    import os

    os.utime(cfg_path, (later, later))
    write.set_active_vm(cfg_path, "dev")
    assert load.load(cfg_path).active_vm == "dev"


def test_explicit_since_stamp(cfg_path: Path) -> None:
    put(cfg_path, COMMENTED)
    _, seen = stamp.read(cfg_path)  # type: ignore[misc]
    write.set_active_vm(cfg_path, "dev", since=seen)
    with pytest.raises(ConfigError) as err:
        write.set_active_vm(cfg_path, "", since=seen)  # stale: the file moved on
    assert err.value.reason == "concurrent-edit"


def test_write_is_atomic_and_keeps_mode(cfg_path: Path) -> None:
    load.load(put(cfg_path, COMMENTED))
    cfg_path.chmod(0o600)
    inode = cfg_path.stat().st_ino
    write.set_active_vm(cfg_path, "dev")
    assert cfg_path.stat().st_mode & 0o777 == 0o600
    assert cfg_path.stat().st_ino != inode            # a new file was renamed into place
    leftovers = sorted(p.name for p in cfg_path.parent.iterdir())
    assert leftovers == [".config.toml.lock", "config.toml"]


def test_lock_held_elsewhere_times_out(cfg_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load.load(put(cfg_path, COMMENTED))
    monkeypatch.setattr(write, "LOCK_TIMEOUT_S", 0.2)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with write.locked(cfg_path):
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(5)
    try:
        with pytest.raises(ConfigError) as err:
            write.set_active_vm(cfg_path, "dev")
        assert err.value.reason == "config-locked"
    finally:
        release.set()
        thread.join()
    assert cfg_path.read_text() == COMMENTED
    write.set_active_vm(cfg_path, "dev")


def test_edits_to_an_absent_file_create_it(cfg_path: Path) -> None:
    cfg = write.upsert_vm(cfg_path, Vm(name="solo"))
    assert cfg_path.read_text() == '[[vms]]\nname = "solo"\n'
    assert [v.name for v in cfg.vms] == ["solo"]
