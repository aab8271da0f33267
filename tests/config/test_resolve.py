"""resolve_vm: --vm, then the folder's attachment, then active_vm, then the only VM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aivm.config import load
from aivm.config.resolve import resolve_vm
from aivm.errors import ConfigError


def cfg_of(text: str):  # type: ignore[no-untyped-def]
    return load.loads(text, Path("c.toml"))


THREE = """
active_vm = "b"
[[vms]]
name = "a"
[[vms]]
name = "b"
[[vms]]
name = "c"
host_uid_match = false
[[attachments]]
host_path = "{root}/proj"
vm = "a"
[[attachments]]
host_path = "{root}/proj/sub"
vm = "c"
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "proj" / "sub" / "deep").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def test_order(tree: Path) -> None:
    cfg = cfg_of(THREE.format(root=tree))
    assert resolve_vm(cfg, "c", cwd=tree / "proj").name == "c"             # --vm wins
    assert resolve_vm(cfg, cwd=tree / "proj").name == "a"                  # attached folder
    assert resolve_vm(cfg, cwd=tree / "proj" / "x").name == "a"            # ... or a parent
    assert resolve_vm(cfg, cwd=tree / "proj" / "sub" / "deep").name == "c"  # deepest wins
    assert resolve_vm(cfg, cwd=tree / "elsewhere").name == "b"             # active_vm
    only = cfg_of('[[vms]]\nname = "solo"\n')
    assert resolve_vm(only, cwd=tree).name == "solo"                       # the only VM


def test_symlinked_folder_matches(tree: Path) -> None:
    (tree / "link").symlink_to(tree / "proj")
    cfg = cfg_of(THREE.format(root=tree))
    assert resolve_vm(cfg, cwd=tree / "link").name == "a"


def test_host_ids_filled_only_with_host_uid_match(tree: Path) -> None:
    cfg = cfg_of(THREE.format(root=tree))
    a = resolve_vm(cfg, "a")
    assert (a.uid, a.gid) == (os.getuid(), os.getgid())
    c = resolve_vm(cfg, "c")
    assert (c.uid, c.gid) == (None, None)


def test_sudo_user_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("SUDO_UID is honoured only when running as root")
    monkeypatch.setenv("SUDO_UID", "1234")
    monkeypatch.setenv("SUDO_GID", "987")
    vm = resolve_vm(cfg_of('[[vms]]\nname = "a"\n'))
    assert (vm.uid, vm.gid) == (1234, 987)


def test_explicit_uid_is_kept() -> None:
    vm = resolve_vm(cfg_of('[[vms]]\nname = "a"\nuid = 4242\n'))
    assert vm.uid == 4242 and vm.gid == os.getgid()


def test_unknown_name_lists_choices(tree: Path) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_vm(cfg_of(THREE.format(root=tree)), "zz")
    assert (err.value.reason, err.value.message, err.value.hint) == (
        "unknown-vm", "no VM named 'zz' in c.toml", "choose one of: a, b, c")


def test_several_and_no_choice(tree: Path) -> None:
    cfg = cfg_of('[[vms]]\nname = "a"\n[[vms]]\nname = "b"\n')
    with pytest.raises(ConfigError) as err:
        resolve_vm(cfg, cwd=tree)
    assert err.value.reason == "ambiguous-vm"
    assert err.value.message == "several VMs are defined and none is chosen: a, b"
    with pytest.raises(ConfigError) as err:
        resolve_vm(cfg_of(""), cwd=tree)
    assert err.value.reason == "no-vm"


def test_folder_attached_to_two_vms(tree: Path) -> None:
    text = (f'[[vms]]\nname = "a"\n[[vms]]\nname = "b"\n'
            f'[[attachments]]\nhost_path = "{tree}"\nvm = "a"\n'
            f'[[attachments]]\nhost_path = "{tree}"\nvm = "b"\n')
    with pytest.raises(ConfigError) as err:
        resolve_vm(cfg_of(text), cwd=tree)
    assert (err.value.reason, err.value.message) == (
        "ambiguous-vm", f"{tree} is attached to several VMs: a, b")
    assert resolve_vm(cfg_of('active_vm = "b"\n' + text), cwd=tree).name == "b"


def test_stale_active_vm_is_an_error(tree: Path) -> None:
    cfg = cfg_of('active_vm = "gone"\n[[vms]]\nname = "a"\n[[vms]]\nname = "b"\n')
    with pytest.raises(ConfigError) as err:
        resolve_vm(cfg, cwd=tree)
    assert err.value.reason == "unknown-vm"
