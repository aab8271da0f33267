"""Settings sync: copy the listed dotfiles into the guest user's home.

Rules: only paths inside the host home are synced (they land at the same
place under the guest home); a symlink is followed only when it resolves to
a file inside the synced set (a listed file, or a file under a listed
folder), so `~/.bashrc -> ~/secrets/x` is skipped; missing paths are skipped
quietly. Files go over ssh as one tar stream; `overwrite = false` keeps
files that already exist in the guest.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aivm.activate.plan import Action, Step
from aivm.guest import ssh


@dataclass(frozen=True)
class Item:
    source: Path      # the real file read on the host
    rel: str          # its path relative to the home, on both sides


@dataclass(frozen=True)
class Selection:
    items: tuple[Item, ...]
    skipped: tuple[str, ...]    # "path: why" for what was left out


def parse_paths(text: str) -> tuple[str, ...]:
    """`--paths "a,b"` as a tuple of paths."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def expand(path: str, home: Path) -> Path:
    if path == "~" or path.startswith("~/"):
        return home / path[2:]
    return Path(path)


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def select(paths: Sequence[str], home: Path) -> Selection:
    home = Path(os.path.realpath(home))
    listed = [expand(p, home) for p in paths]
    # Resolve the parents only: a listed path that is itself a link must point into the set.
    allowed = [Path(os.path.realpath(p.parent)) / p.name for p in listed]
    items: list[Item] = []
    skipped: list[str] = []
    for raw, path in zip(paths, listed, strict=True):
        real = Path(os.path.realpath(path))
        if not path.is_absolute() or home not in path.parents:
            skipped.append(f"{raw}: outside the home directory")
        elif not os.path.lexists(path):
            continue
        elif not _inside(real, allowed):
            skipped.append(f"{raw}: a link to {real}, outside the synced set")
        elif path.is_dir():
            _walk(path, home, allowed, items, skipped)
        elif path.is_file():
            items.append(Item(real, str(path.relative_to(home))))
    return Selection(tuple(dict.fromkeys(items)), tuple(skipped))


def _walk(folder: Path, home: Path, allowed: list[Path], items: list[Item],
          skipped: list[str]) -> None:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(Path(dirpath, d))]:
            path = Path(dirpath, name)
            real = Path(os.path.realpath(path))
            if not _inside(real, allowed) or not real.is_file():
                skipped.append(f"{path}: a link to {real}, outside the synced set")
                continue
            items.append(Item(real, str(path.relative_to(home))))


def tarball(items: Sequence[Item]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for item in items:
            info = tarfile.TarInfo(item.rel)
            data = item.source.read_bytes()
            info.size, info.mode = len(data), item.source.stat().st_mode & 0o777
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def remote_command(overwrite: bool) -> list[str]:
    keep = " --skip-old-files" if not overwrite else ""
    return [f'tar -x -f - -C "$HOME" --no-same-owner --no-overwrite-dir{keep}']


def sync_step(target: ssh.Target, selection: Selection, *, overwrite: bool) -> Step | None:
    if not selection.items:
        return None
    from aivm.run import Cmd

    names = ", ".join(f"~/{i.rel}" for i in selection.items)
    base = ssh.command(target, remote_command(overwrite),
                       meaning=f"copy {len(selection.items)} file(s) into ~{target.user}: {names}")
    cmd = Cmd(base.argv, base.meaning, base.root, base.in_netns, tarball(selection.items))
    how = "replacing existing files" if overwrite else "keeping files that already exist"
    return Step(f"Sync settings into VM {target.vm}", f"your dotfiles in the guest ({how})",
                (Action.command(cmd, timeout=120),))
