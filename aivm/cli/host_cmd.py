"""`aivm host ...`: doctor, install_deps, image_fetch, net, fw."""

from __future__ import annotations

import click

# Registered by aivm/cli/main.py: top-level commands, and `aivm vm NAME` aliases.
TOP: list[click.Command] = []
VM_ALIASES: dict[str, click.Command] = {}
