"""Write docs/commands.md: every aivm command's --help, generated from the click tree.

    .venv/bin/python docs/gen_commands.py          # rewrite docs/commands.md
    .venv/bin/python docs/gen_commands.py --check  # exit 1 when it is out of date

tests/cli/test_surface.py runs the check, so a changed command fails the fast tests
until this script is run again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

HERE = Path(__file__).resolve().parent
TARGET = HERE / "commands.md"
WIDTH = 100


def contexts(cmd: click.Command, name: str,
             parent: click.Context | None = None) -> Iterator[click.Context]:
    """A context per command (itself first), depth first, subcommands by name."""
    settings = {**cmd.context_settings, "terminal_width": WIDTH, "max_content_width": WIDTH}
    ctx = click.Context(cmd, info_name=name, parent=parent, **settings)
    yield ctx
    if isinstance(cmd, click.Group):
        for sub_name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from contexts(sub, sub_name, ctx)


def render() -> str:
    sys.path.insert(0, str(HERE.parent))
    from aivm.cli.main import cli

    parts = ["# Command reference", "",
             "Generated from the click command tree by `docs/gen_commands.py`; do not edit.",
             "`aivm help tree` prints the same tree, one line per command.", ""]
    for ctx in contexts(cli, "aivm"):
        parts += [f"## {ctx.command_path}", "", "```text", ctx.get_help(), "```", ""]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if TARGET.is_file() and TARGET.read_text() == text:
            return 0
        print(f"{TARGET} is out of date: run .venv/bin/python docs/gen_commands.py",
              file=sys.stderr)
        return 1
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
