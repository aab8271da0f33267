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
from aivm.config.resolve import resolve_vm
from aivm.config.schema import Config
from aivm.config.validate import Finding
from aivm.errors import ConfigError

__all__ = ["load", "loads", "check_text", "resolve_vm", "error_from", "where"]


def load(path: Path) -> Config:
    """The validated config at `path`; raises ConfigError (reason "no-config" if absent)."""
    try:
        found = stamp.read(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror or exc}",
                          hint="check the file's permissions", reason="unreadable") from exc
    if found is None:
        stamp.remember(path, None)
        raise missing(path)
    data, st = found
    stamp.remember(path, st)
    return loads(decode(data, path), path)


def missing(path: Path) -> ConfigError:
    return ConfigError(f"{path}: no config file", reason="no-config",
                       hint="run `aivm config init` to create one")


def decode(data: bytes, path: Path | None) -> str:
    text, problem = decode_checked(data)
    if problem is not None:
        raise error_from([problem], "", path)
    return text


def decode_checked(data: bytes) -> tuple[str, Finding | None]:
    """The text, or "" and a finding naming the line of the first non-UTF-8 byte."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return "", Finding((), "the file is not UTF-8 text", "save the file as UTF-8",
                           "toml-syntax", line=line)


def loads(text: str, path: Path | None = None) -> Config:
    """Parse and validate TOML text; `path` only names the file in messages."""
    cfg, findings = check_text(text)
    if cfg is None:
        raise error_from([f for f in findings if f.severity == "error"], text, path)
    return dataclasses.replace(cfg, path=path)


def check_text(text: str) -> tuple[Config | None, list[Finding]]:
    """The config (None on errors) and every finding, syntax errors included."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [syntax_finding(exc, text)]
    except RecursionError:  # tomllib recurses once per nested array or inline table
        return None, [Finding((), "TOML nested too deeply (arrays or inline tables inside "
                              "each other hundreds of levels deep)", "flatten the nesting: "
                              "aivm's settings are at most three tables deep", "toml-syntax",
                              line=1)]
    return validate.check(data)


def syntax_finding(exc: tomllib.TOMLDecodeError, text: str) -> Finding:
    msg = str(exc)
    match = re.search(r"at line (\d+)", msg)
    line = int(match.group(1)) if match else max(1, text.count("\n") + 1)
    detail = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
    return Finding((), f"TOML syntax error: {detail}", "fix the syntax (https://toml.io); "
                   "strings need quotes, tables [brackets]", "toml-syntax", line=line)


def error_from(errors: list[Finding], text: str, path: Path | None) -> ConfigError:
    """One ConfigError for the first problem in file order, counting the rest."""
    placed = sorted((line_for(f, text), i, f) for i, f in enumerate(errors))
    line, _, first = placed[0]
    more = len(placed) - 1
    tail = f" (and {more} more problem{'s' * (more > 1)}; see `aivm config lint`)" if more else ""
    return ConfigError(f"{where(path, line)}: {first.message}{tail}", hint=first.hint,
                       reason=first.reason)


def line_for(finding: Finding, text: str) -> int:
    from aivm.config.lines import line_of  # only on the error path

    return finding.line or line_of(text, finding.keypath)


def where(path: Path | None, line: int) -> str:
    return f"{path if path is not None else '<config>'}:{line}"
