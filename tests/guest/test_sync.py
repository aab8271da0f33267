"""Settings sync: what is selected, what is refused, what goes over the wire."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from aivm.guest import ssh, sync

PATHS = ("~/.gitconfig", "~/.config/Code/User/settings.json", "~/.tmux.conf", "~/.bashrc",
         "~/.config/nvim")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".config" / "Code" / "User").mkdir(parents=True)
    (home / ".gitconfig").write_text("[user]\n")
    (home / ".config" / "Code" / "User" / "settings.json").write_text("{}")
    return home


def rels(selection: sync.Selection) -> list[str]:
    return [i.rel for i in selection.items]


def test_existing_files_are_selected_missing_ones_skipped_quietly(home: Path) -> None:
    got = sync.select(PATHS, home)
    assert rels(got) == [".gitconfig", ".config/Code/User/settings.json"]
    assert got.skipped == ()


def test_a_link_out_of_the_set_is_not_followed(home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("TOKEN=1")
    (home / ".bashrc").symlink_to(secret)
    got = sync.select(PATHS, home)
    assert ".bashrc" not in rels(got)
    assert got.skipped == (f"~/.bashrc: a link to {secret}, outside the synced set",)


def test_a_link_to_another_listed_file_is_followed(home: Path) -> None:
    (home / ".tmux.conf").symlink_to(home / ".gitconfig")
    got = sync.select(PATHS, home)
    assert ".tmux.conf" in rels(got)
    assert next(i for i in got.items if i.rel == ".tmux.conf").source == home / ".gitconfig"


def test_links_inside_a_listed_folder_stay_inside(home: Path, tmp_path: Path) -> None:
    nvim = home / ".config" / "nvim"
    (nvim / "lua").mkdir(parents=True)
    (nvim / "init.lua").write_text("-- init")
    (nvim / "lua" / "a.lua").write_text("-- a")
    (nvim / "same.lua").symlink_to(nvim / "init.lua")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "key").write_text("secret")
    (nvim / "escape").symlink_to(tmp_path / "outside" / "key")
    (nvim / "escape-dir").symlink_to(tmp_path / "outside")
    got = sync.select(["~/.config/nvim"], home)
    assert sorted(rels(got)) == [".config/nvim/init.lua", ".config/nvim/lua/a.lua",
                                 ".config/nvim/same.lua"]
    assert sorted(s.split(":")[0] for s in got.skipped) == [str(nvim / "escape"),
                                                             str(nvim / "escape-dir")]


def test_a_listed_folder_that_is_a_link_out_is_refused(home: Path, tmp_path: Path) -> None:
    (tmp_path / "dots").mkdir()
    (tmp_path / "dots" / "init.lua").write_text("x")
    (home / ".config" / "nvim").symlink_to(tmp_path / "dots")
    got = sync.select(["~/.config/nvim"], home)
    assert got.items == () and got.skipped[0].startswith("~/.config/nvim: a link to")


def test_paths_outside_home_are_refused(home: Path) -> None:
    got = sync.select(["/etc/passwd", "~/../x"], home)
    assert got.items == ()
    assert got.skipped == ("/etc/passwd: outside the home directory",)


def test_parse_paths() -> None:
    assert sync.parse_paths("~/.gitconfig, ~/.tmux.conf,,") == ("~/.gitconfig", "~/.tmux.conf")


def test_tarball_holds_contents_under_home_relative_names(home: Path) -> None:
    got = sync.select(PATHS, home)
    with tarfile.open(fileobj=io.BytesIO(sync.tarball(got.items))) as tar:
        assert tar.getnames() == [".gitconfig", ".config/Code/User/settings.json"]
        assert tar.extractfile(".gitconfig").read() == b"[user]\n"  # type: ignore[union-attr]


def test_step_sends_the_tar_over_ssh_and_respects_overwrite(home: Path) -> None:
    target = ssh.Target("box", "agent", "10.0.0.5", home / "key")
    got = sync.select(PATHS, home)
    step = sync.sync_step(target, got, overwrite=False)
    assert step is not None
    cmd = step.actions[0].cmd
    assert cmd is not None and cmd.stdin == sync.tarball(got.items)
    assert cmd.argv[-1].endswith("--skip-old-files") and cmd.argv[-2] == "agent@10.0.0.5"
    assert step.actions[0].meaning == ("copy 2 file(s) into ~agent: ~/.gitconfig, "
                                       "~/.config/Code/User/settings.json")
    over = sync.sync_step(target, got, overwrite=True)
    assert over is not None and "--skip-old-files" not in over.actions[0].cmd.argv[-1]
    assert sync.sync_step(target, sync.Selection((), ()), overwrite=True) is None
