"""Saved attachments are vetted again before any host bind (issue 12 item 1).

`host_restore_plan` runs on every `aivm up`: a saved folder that now passes through a
link, is another directory than the one recorded, lies inside another attached folder,
or is sensitive, refuses the plan instead of binding by path as root.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aivm.config.schema import Access, Attachment, AttachMode
from aivm.errors import AivmError
from aivm.guest import attach, hostmount, sensitive, vetting


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home" / "me"
    for sub in (".ssh", "proj/sub", "other"):
        (home / sub).mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AIVM_STATE", str(tmp_path / "state"))
    for var in ("AIVM_HYPERVISOR_PID", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "SUDO_USER"):
        monkeypatch.delenv(var, raising=False)
    return home


def saved(folder: Path, **kw) -> Attachment:
    st = folder.stat()
    return Attachment(str(folder), "box", host_id=f"{st.st_dev}:{st.st_ino}", **kw)


def restore(*atts: Attachment):  # type: ignore[no-untyped-def]
    return attach.host_restore_plan(atts, "box", store=Path("/nonexistent-store"))


def bind_argv(plan) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    return [a.cmd.argv for s in plan.steps for a in s.actions
            if a.cmd is not None and str(hostmount.HELPER) in a.cmd.argv]


def test_a_saved_folder_binds_through_the_helper_with_its_identity(home: Path) -> None:
    att = saved(home / "proj")
    argv = bind_argv(restore(att))
    assert len(argv) == 1 and argv[0][-5:-1] == ("bind", str(home / "proj"), att.host_id,
                                                str(Path(hostmount.export_dir("box"))))


def test_a_folder_swapped_for_a_link_is_refused_at_restore(home: Path) -> None:
    att = saved(home / "proj" / "sub")
    (home / "proj" / "sub").rmdir()
    (home / "proj" / "sub").symlink_to(home / ".ssh")
    with pytest.raises(AivmError) as err:
        restore(att)
    assert err.value.reason == "symlink-in-path"
    assert f"passes through the symbolic link {home}/proj/sub" in err.value.message


def test_a_replaced_folder_is_refused_at_restore(home: Path) -> None:
    att = saved(home / "proj" / "sub")
    (home / "proj" / "sub").rename(home / "proj" / "old")
    (home / "proj" / "sub").mkdir()
    with pytest.raises(AivmError) as err:
        restore(att)
    assert err.value.reason == "attached-folder-changed"
    assert f"aivm attach {home}/proj/sub --vm box" in err.value.hint


def test_nested_saved_attachments_are_refused_at_restore(home: Path) -> None:
    outer, inner = saved(home / "proj"), saved(home / "proj" / "sub")
    with pytest.raises(AivmError) as err:
        restore(outer, inner)
    assert err.value.reason == "nested-attachment"
    # nesting across VMs counts too: another VM's guest could write the outer folder
    with pytest.raises(AivmError):
        restore(dataclasses.replace(outer, vm="other-vm"), inner)


def test_a_sensitive_saved_folder_is_refused_unless_allowed_when_attached(home: Path) -> None:
    with pytest.raises(AivmError) as err:
        restore(saved(home / ".ssh"))
    assert err.value.reason == "sensitive-path"
    assert bind_argv(restore(saved(home / ".ssh", allow_sensitive=True)))


def test_rw_shared_folders_are_vetted_too_and_git_ones_are_not_bound(home: Path) -> None:
    (home / "proj" / "sub").rmdir()
    (home / "proj" / "sub").symlink_to(home / ".ssh")
    with pytest.raises(AivmError):
        restore(Attachment(str(home / "proj" / "sub"), "box", AttachMode.SHARED, Access.RW))
    plan = restore(Attachment(str(home / "proj" / "sub"), "box", AttachMode.GIT))
    assert bind_argv(plan) == []


def test_an_old_record_without_identity_is_checked_and_bound(home: Path) -> None:
    att = Attachment(str(home / "other"), "box", access=Access.RO)
    st = (home / "other").stat()
    assert bind_argv(restore(att))[0][-3:] == (str(hostmount.bind_target(
        "box", home / "other").parent), hostmount.bind_target("box", home / "other").name,
        "ro") and f"{st.st_dev}:{st.st_ino}" in bind_argv(restore(att))[0]


def test_new_attachments_nested_either_way_are_refused(home: Path) -> None:
    ctx = sensitive.context(home=home, store=Path("/nonexistent-store"))
    outer = saved(home / "proj")
    for new, old in ((home / "proj" / "sub", outer),
                     (home / "proj", saved(home / "proj" / "sub"))):
        with pytest.raises(AivmError) as err:
            vetting.vet_new(Attachment(str(new), "box"), (old,), ctx)
        assert err.value.reason == "nested-attachment"
    git_in_git = Attachment(str(home / "proj" / "sub"), "box", AttachMode.GIT)
    found, warning = vetting.vet_new(git_in_git, (dataclasses.replace(outer, mode=AttachMode.GIT),),
                                     ctx)
    assert warning is None and found.host_id == saved(home / "proj" / "sub").host_id


def test_attach_plan_refuses_an_unvetted_shared_attachment(home: Path) -> None:
    import libvirt

    from aivm.config.schema import Vm

    conn = libvirt.open("test:///default")
    place = attach.Place(conn, Vm(name="test"), None)
    with pytest.raises(AivmError) as err:
        attach.attach_plan(place, Attachment(str(home / "proj"), "test"), None)
    assert err.value.reason == "unvetted"
