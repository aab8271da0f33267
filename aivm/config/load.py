"""Read the TOML config into schema.Config; every failure is a ConfigError with file:line.

Parsing uses the stdlib tomllib (fast; tomlkit is for writes only). Line
numbers are looked up only when something is wrong (aivm/config/lines.py).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from aivm.config import stamp, validate
from aivm.config.lines import line_of
from aivm.config.resolve import resolve_vm
from aivm.config.schema import Config
from aivm.config.validate import Finding
from aivm.errors import ConfigError

__all__ = ["load", "loads", "resolve_vm", "error_from", "where"]


def load(path: Path) -> Config:
    """The validated config at `path`; raises ConfigError (reason "no-config" if absent)."""
    try:
        found = stamp.read(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror or exc}",
                          hint="check the file's permissions", reason="unreadable") from exc
    if found is None:
        stamp.remember(path, None)
        raise ConfigError(f"{path}: no config file", reason="no-config",
                          hint="run `aivm config init` to create one")
    data, st = found
    stamp.remember(path, st)
    return loads(decode(data, path), path)


def decode(data: bytes, path: Path | None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{where(path, line)}: the file is not UTF-8 text",
                          hint="save the file as UTF-8", reason="toml-syntax") from None


def loads(text: str, path: Path | None = None) -> Config:
    """Parse and validate TOML text; `path` only names the file in messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise syntax_error(exc, text, path) from None
    cfg, findings = validate.check(data)
    if cfg is None:
        raise error_from([f for f in findings if f.severity == "error"], text, path)
    return dataclasses.replace(cfg, path=path)


def syntax_error(exc: tomllib.TOMLDecodeError, text: str, path: Path | None) -> ConfigError:
    msg = str(exc)
    match = re.search(r"at line (\d+)", msg)
    line = int(match.group(1)) if match else max(1, text.count("\n") + 1)
    detail = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
    return ConfigError(f"{where(path, line)}: TOML syntax error: {detail}",
                       hint="fix the syntax (https://toml.io); strings need quotes, "
                            "tables [brackets]", reason="toml-syntax")


def error_from(errors: list[Finding], text: str, path: Path | None) -> ConfigError:
    """One ConfigError for the first problem in file order, counting the rest."""
    placed = sorted(((line_of(text, f.keypath), i, f) for i, f in enumerate(errors)))
    line, _, first = placed[0]
    more = len(placed) - 1
    tail = f" (and {more} more problem{'s' * (more > 1)}; see `aivm config lint`)" if more else ""
    return ConfigError(f"{where(path, line)}: {first.message}{tail}", hint=first.hint,
                       reason=first.reason)


def where(path: Path | None, line: int) -> str:
    return f"{path if path is not None else '<config>'}:{line}"
