"""`aivm config edit`: open the file in $VISUAL/$EDITOR, keep the edit only if it is valid.

An invalid edit is reported with file:line, the previous file is put back,
and the rejected text is kept beside it (`config.toml.rejected`) so no typing
is lost.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aivm.config import init, schema, stamp, write
from aivm.config import load as load_mod
from aivm.errors import Aborted, ConfigError


@dataclass(frozen=True)
class EditResult:
    config: schema.Config
    changed: bool
    created: bool                  # there was no file; one with defaults was written first


def editor_argv(env: Mapping[str, str] = os.environ) -> list[str]:
    return shlex.split(env.get("VISUAL") or env.get("EDITOR") or "vi")


def edit_file(path: Path, editor: list[str]) -> EditResult:
    from aivm import run

    created = stamp.read(path) is None
    if created:
        init.implicit_init(path)
    before = _read(path)
    code = run.run_foreground(run.Cmd.of(*editor, str(path), meaning="edit the aivm config"))
    after = stamp.read(path)
    if code != 0:
        _restore(path, before, after)
        raise Aborted(f"the editor exited with status {code}; {path} was left as it was",
                      hint="save and quit normally to keep an edit", reason="editor-failed")
    if after is None:
        _restore(path, before, after)
        raise ConfigError(f"{path} was removed while editing; it was restored",
                          hint="delete the file by hand if you meant to", reason="edit-removed")
    try:
        cfg = load_mod.loads(load_mod.decode(after[0], path), path)
    except ConfigError as exc:
        raise _rejected(path, before, after, exc) from None
    stamp.remember(path, after[1])
    return EditResult(cfg, after[0] != before, created)


def _rejected(path: Path, before: bytes, after: tuple[bytes, stamp.Stamp],
              exc: ConfigError) -> ConfigError:
    kept = path.with_name(path.name + ".rejected")
    kept.write_bytes(after[0])
    _restore(path, before, after)
    return ConfigError(exc.message, reason=exc.reason,
                       hint=f"{exc.hint}; the previous file was restored and your edit is "
                            f"kept in {kept}")


def _read(path: Path) -> bytes:
    found = stamp.read(path)
    return found[0] if found else b""


def _restore(path: Path, before: bytes, after: tuple[bytes, stamp.Stamp] | None) -> None:
    if after is not None and after[0] == before:
        return
    write.write_bytes(path, before, since=after[1] if after else None)
