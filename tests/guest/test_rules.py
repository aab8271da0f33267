"""Attachment rules: saved mode reuse, mode mismatch, destinations, sensitive folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivm.config.schema import Access, Attachment, AttachMode, Config, Vm
from aivm.errors import AivmError
from aivm.guest import attachments

VM = Vm(name="box", user="agent")


def cfg_with(*atts: Attachment) -> Config:
    return Config(vms=(VM,), attachments=atts)


def test_new_folder_defaults_to_shared_root_rw(tmp_path: Path) -> None:
    att = attachments.decide(cfg_with(), VM, tmp_path)
    assert att == Attachment(str(tmp_path), "box", AttachMode.SHARED_ROOT, Access.RW, "")


def test_omitted_mode_reuses_the_saved_mode_access_and_destination(tmp_path: Path) -> None:
    old = Attachment(str(tmp_path), "box", AttachMode.GIT, Access.RW, "/srv/x")
    assert attachments.decide(cfg_with(old), VM, tmp_path) == old
    assert not attachments.changed(cfg_with(old), old)
    assert attachments.changed(cfg_with(), old)


def test_saved_mode_of_another_vm_does_not_count(tmp_path: Path) -> None:
    other = Attachment(str(tmp_path), "other", AttachMode.GIT)
    assert attachments.decide(cfg_with(other), VM, tmp_path).mode is AttachMode.SHARED_ROOT


def test_explicit_different_mode_is_an_error_showing_detach_then_attach(tmp_path: Path) -> None:
    folder = tmp_path / "my project"
    folder.mkdir()
    old = Attachment(str(folder), "box", AttachMode.SHARED)
    with pytest.raises(AivmError) as err:
        attachments.decide(cfg_with(old), VM, folder, mode=AttachMode.GIT)
    assert err.value.reason == "mode-mismatch"
    assert err.value.message == (f"{folder} is attached to box in mode shared; it cannot "
                                 "switch to git in place")
    assert err.value.hint == ("detach, then attach again in the new mode:\n"
                              f"  aivm detach '{folder}' --vm box\n"
                              f"  aivm attach '{folder}' --vm box --mode git")


def test_same_explicit_mode_is_fine_and_access_can_change(tmp_path: Path) -> None:
    old = Attachment(str(tmp_path), "box", AttachMode.SHARED)
    att = attachments.decide(cfg_with(old), VM, tmp_path, mode=AttachMode.SHARED,
                             access=Access.RO)
    assert (att.mode, att.access) == (AttachMode.SHARED, Access.RO)


def test_git_read_only_and_relative_destination_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AivmError) as ro:
        attachments.decide(cfg_with(), VM, tmp_path, mode=AttachMode.GIT, access=Access.RO)
    assert ro.value.reason == "git-read-only"
    with pytest.raises(AivmError) as rel:
        attachments.decide(cfg_with(), VM, tmp_path, guest_dst="work/x")
    assert rel.value.reason == "relative-guest-dst"


def test_folder_must_be_a_directory_and_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert attachments.folder_of(tmp_path / "link") == tmp_path / "real"
    (tmp_path / "f").write_text("")
    with pytest.raises(AivmError) as err:
        attachments.folder_of(tmp_path / "f")
    assert err.value.reason == "not-a-directory"


@pytest.mark.parametrize(("mode", "folder", "expected"), [
    (AttachMode.SHARED_ROOT, "/home/me/src/proj", "/home/me/src/proj"),
    (AttachMode.SHARED, "/var/tmp/p", "/var/tmp/p"),
    (AttachMode.GIT, "/home/me/src/proj", "/home/agent/src/proj"),
    (AttachMode.GIT, "/var/tmp/p", "/home/agent/p"),
])
def test_guest_destination_defaults(mode: AttachMode, folder: str, expected: str) -> None:
    assert attachments.default_destination(mode, Path(folder), "agent", Path("/home/me")) \
        == expected


def test_guest_dst_overrides_the_default() -> None:
    att = Attachment("/home/me/p", "box", AttachMode.GIT, guest_dst="/opt/p")
    assert attachments.destination(att, VM, Path("/home/me")) == "/opt/p"


def test_slug_and_tag_are_stable_short_and_distinct() -> None:
    a, b = Path("/x/proj"), Path("/y/proj")
    assert attachments.slug(a) == attachments.slug(Path("/x/proj"))
    assert attachments.slug(a) != attachments.slug(b) and attachments.slug(a).startswith("proj-")
    assert len(attachments.tag(a)) <= 36 and attachments.tag(a) != attachments.tag(b)
    assert attachments.slug(Path("/we ird/na me")).startswith("na_me-")
