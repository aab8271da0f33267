from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aivm import run
from aivm.activate import approve, disk
from aivm.activate.approve import Policy, Ui
from aivm.activate.plan import Effect, Plan, Privilege
from aivm.errors import AivmError
from aivm.run import Cmd

needs_qemu_img = pytest.mark.skipif(run.which("qemu-img") is None, reason="no qemu-img")


def apply(plan: Plan) -> None:
    approve.execute(plan, Policy(yes=True), Ui(is_tty=lambda: False, say=lambda _: None))


def make_image(path: Path) -> Path:
    run.run(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"))
    return path


@needs_qemu_img
def test_new_disk_is_a_thin_qcow2_on_the_store_image(tmp_path) -> None:
    base = make_image(tmp_path / "store-overlay.qcow2")
    dest = tmp_path / "state" / "vm1" / "disk.qcow2"
    plan = disk.disk_plan("vm1", base, dest=dest)
    (step,) = plan.steps
    assert step.title == "Give VM vm1 its writable disk"
    assert (step.privilege, step.effect) == (Privilege.USER, Effect.USER_WRITE)
    assert step.actions[-1].shown == (f"qemu-img create -q -f qcow2 -F qcow2 -b {base} {dest}")
    apply(plan)
    assert disk.backing_of(dest) == base
    assert dest.stat().st_size < 1 << 20  # thin: no copy of the base
    again = disk.disk_plan("vm1", base, dest=dest)
    assert again.is_empty and again.notes == (f"disk of VM vm1: kept ({dest})",)


@needs_qemu_img
def test_recreate_replaces_the_disk(tmp_path) -> None:
    base = make_image(tmp_path / "base.qcow2")
    dest = tmp_path / "vm1" / "disk.qcow2"
    apply(disk.disk_plan("vm1", base, dest=dest))
    with dest.open("ab") as f:
        f.write(b"guest changes")
    plan = disk.disk_plan("vm1", base, dest=dest, recreate=True)
    assert [s.title for s in plan.steps] == ["Recreate the writable disk of VM vm1"]
    assert plan.steps[0].actions[0].shown == f"rm -f -- {dest}"
    apply(plan)
    assert not dest.read_bytes().endswith(b"guest changes")
    assert disk.backing_of(dest) == base


@needs_qemu_img
def test_disk_on_an_old_image_is_kept_with_a_note(tmp_path) -> None:
    old, new = make_image(tmp_path / "old.qcow2"), make_image(tmp_path / "new.qcow2")
    dest = tmp_path / "vm1" / "disk.qcow2"
    apply(disk.disk_plan("vm1", old, dest=dest))
    plan = disk.disk_plan("vm1", new, dest=dest)
    assert plan.is_empty
    assert "--recreate" in plan.notes[0] and str(old) in plan.notes[0]


def test_backing_of_non_qcow2_is_none(tmp_path) -> None:
    (tmp_path / "raw.img").write_bytes(b"\0" * 512)
    assert disk.backing_of(tmp_path / "raw.img") is None
    assert disk.backing_of(tmp_path / "missing") is None


def test_disk_path_is_under_the_vm_state_dir(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AIVM_STATE", str(tmp_path))
    assert disk.disk_path("vm1") == tmp_path / "vm1" / "disk.qcow2"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_state_dir_makes_a_root_step(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    plan = disk.disk_plan("vm1", tmp_path / "base.qcow2", dest=locked / "vm1" / "disk.qcow2")
    assert (plan.steps[0].privilege, plan.steps[0].effect) == (Privilege.ROOT, Effect.SYSTEM_WRITE)
    assert plan.steps[0].actions[-1].shown.startswith("sudo -- qemu-img create")


# ---- hypervisor access -----------------------------------------------------------------------

@pytest.fixture
def tree() -> Iterator[Path]:
    """A directory under /tmp that anyone may enter, so only what the test builds matters."""
    top = Path(tempfile.mkdtemp(prefix="aivm-access-"))
    top.chmod(0o711)
    yield top
    for path in [top, *top.rglob("*")]:
        path.chmod(0o700)
    shutil.rmtree(top)


def store_file(top: Path, dir_mode: int, file_mode: int) -> Path:
    entry = top / "store" / "ab12-overlay"
    entry.mkdir(parents=True)
    image = entry / "disk.qcow2"
    image.write_bytes(b"x")
    image.chmod(file_mode)
    entry.chmod(0o755)
    (top / "store").chmod(dir_mode)
    return image


def test_closed_directories_and_files_are_found_and_fixed(tree) -> None:
    image = store_file(tree, 0o700, 0o600)
    problems = disk.unreadable([image], "nobody")
    assert [(p.path, p.need) for p in problems] == [(tree / "store", "x"), (image, "r")]
    step = disk.access_step(problems, "nobody")
    assert step is not None
    assert [a.shown for a in step.actions] == [f"chmod o+x -- {tree / 'store'}",
                                               f"chmod o+r -- {image}"]
    assert step.why == f"cannot enter directory {tree / 'store'}; cannot read {image}"
    apply(Plan((step,)))
    assert disk.unreadable([image], "nobody") == ()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change a file's group")
def test_group_permission_is_enough(tree) -> None:
    image = store_file(tree, 0o750, 0o640)
    for path in (tree / "store", image):
        os.chown(path, -1, 65534)  # nogroup: nobody's primary group
    assert disk.unreadable([image], "nobody") == ()
    assert [p.need for p in disk.unreadable([image], "no-such-user-aivm")] == ["x", "r"]


def _user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_readable_store_passes_and_unreadable_fails_early(tree) -> None:
    image = store_file(tree, 0o755, 0o644)
    disk.require_readable([image], "nobody")
    image.chmod(0o600)
    with pytest.raises(AivmError) as err:
        disk.require_readable([image], "nobody")
    assert err.value.reason == "store-unreadable"
    assert err.value.hint == f"run: chmod o+r -- {image}"


def test_unknown_user_gets_only_other_bits(tree) -> None:
    image = store_file(tree, 0o755, 0o640)
    assert [p.need for p in disk.unreadable([image], "no-such-user-aivm")] == ["r"]


def test_hypervisor_user_from_qemu_conf(tmp_path) -> None:
    conf = tmp_path / "qemu.conf"
    conf.write_text('# user = "root"\nuser = "nobody"\ngroup = "kvm"\n')
    assert disk.hypervisor_user(conf) == "nobody"
    conf.write_text('#user = "libvirt-qemu"\n')
    expected = next((u for u in disk.DEFAULT_HYPERVISOR_USERS if _user(u)), "nobody")
    assert disk.hypervisor_user(conf) == expected
