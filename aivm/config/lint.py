"""Every problem of a config file at once, each with file:line and a hint.

The same checks as load() (validate.py), but all of them are reported, and
warnings that do not stop a load are included: attachments and active_vm
naming VMs that do not exist, the same folder attached twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aivm.config import load as load_mod
from aivm.config import stamp
from aivm.config.validate import Finding


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str
    hint: str
    reason: str
    severity: str

    def render(self) -> str:
        return (f"{self.path}:{self.line}: {self.severity}: {self.message} [{self.reason}]\n"
                f"  hint: {self.hint}")


def lint(path: Path) -> list[Problem]:
    """All problems of the file, in file order; raises ConfigError only if it is absent."""
    found = stamp.read(path)
    if found is None:
        raise load_mod.missing(path)
    text, problem = load_mod.decode_checked(found[0])
    if problem is not None:
        return [_problem(path, "", problem)]
    return lint_text(text, path)


def lint_text(text: str, path: Path) -> list[Problem]:
    _, findings = load_mod.check_text(text)
    problems = [_problem(path, text, f) for f in findings]
    return sorted(problems, key=lambda p: p.line)


def summary(problems: list[Problem]) -> str:
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    return f"{len(problems)} problem{'s' * (len(problems) != 1)} " \
           f"({errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)})"


def _problem(path: Path, text: str, f: Finding) -> Problem:
    return Problem(path, load_mod.line_for(f, text), f.message, f.hint, f.reason, f.severity)

