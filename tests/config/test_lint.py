"""config lint: every problem at once, with file:line, a hint, and warnings load() lets pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivm.config import lint
from aivm.errors import ConfigError
from tests.config.conftest import write

TWO_NETS = """\
active_vm = "gone"

[[vms]]
name = "a"

[[networks]]
name = "n1"
bridge = "br1"

[[networks]]
name = "n1"
bridge = "br2"
subnet = "10.77.0.0/25"
gateway = "10.77.0.1"
dhcp_start = "10.77.0.10"
dhcp_end = "10.77.0.20"

[[attachments]]
host_path = "/src"
vm = "ghost"
"""


def test_cross_table_findings(cfg_path: Path) -> None:
    problems = lint.lint(write(cfg_path, TWO_NETS))
    assert [(p.line, p.severity, p.reason) for p in problems] == [
        (1, "warning", "unknown-vm"),
        (11, "error", "duplicate-name"),
        (13, "error", "subnet-overlap"),
        (20, "warning", "unknown-vm"),
    ]
    assert problems[3].render() == (
        f"{cfg_path}:20: warning: attachment of /src points at unknown VM 'ghost' [unknown-vm]\n"
        "  hint: remove the attachment or fix the VM name")
    assert lint.summary(problems) == "4 problems (2 errors, 2 warnings)"


def test_all_type_problems_are_listed(cfg_path: Path) -> None:
    text = ('[[vms]]\nname = "a"\ncpus = "2"\ncolour = 1\n\n[behavior]\nyes_sudo = "no"\n'
            '[[networks]]\nname = "n"\nbridge = "a-very-long-bridge"\n')
    problems = lint.lint(write(cfg_path, text))
    assert [(p.line, p.reason) for p in problems] == [
        (3, "wrong-type"), (4, "unknown-key"), (7, "wrong-type"), (10, "bad-value")]
    assert all(p.hint for p in problems)


def test_syntax_error_is_one_problem(cfg_path: Path) -> None:
    problems = lint.lint(write(cfg_path, '[[vms]]\nname = "a\n'))
    assert [(p.line, p.reason) for p in problems] == [(2, "toml-syntax")]


def test_clean_and_missing(cfg_path: Path) -> None:
    assert lint.lint(write(cfg_path, '[[vms]]\nname = "a"\n')) == []
    cfg_path.unlink()
    with pytest.raises(ConfigError) as err:
        lint.lint(cfg_path)
    assert err.value.reason == "no-config"


def test_duplicate_attachment_warning(cfg_path: Path) -> None:
    text = ('[[vms]]\nname = "a"\n' + '[[attachments]]\nhost_path = "/s"\nvm = "a"\n' * 2)
    assert [(p.line, p.reason) for p in lint.lint(write(cfg_path, text))] == [
        (6, "duplicate-attachment")]
