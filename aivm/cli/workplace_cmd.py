"""`aivm attach`, `detach`, `code`, `vm sync_settings`: the agent's workplace."""

from __future__ import annotations

import click

# Registered by aivm/cli/main.py: top-level commands, and `aivm vm NAME` aliases.
TOP: list[click.Command] = []
VM_ALIASES: dict[str, click.Command] = {}
