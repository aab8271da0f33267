"""`aivm help ...`: plan, tree, completion."""

from __future__ import annotations

import os
from collections.abc import Iterator

import click

from aivm.cli.app import App

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_AIVM_COMPLETE"
ENABLE = {
    "bash": ("~/.bashrc", f'eval "$({COMPLETE_VAR}=bash_source aivm)"'),
    "zsh": ("~/.zshrc", f'eval "$({COMPLETE_VAR}=zsh_source aivm)"'),
    "fish": ("~/.config/fish/completions/aivm.fish", f"{COMPLETE_VAR}=fish_source aivm | source"),
}


@click.group("help", context_settings=CONTEXT)
def help_() -> None:
    """Where to start: the suggested plan, the command tree, shell completion."""


@help_.command()
@click.pass_obj
def plan(app: App) -> None:
    """The commands a new user runs, in order, with this config's values."""
    from aivm.config import load
    from aivm.errors import ConfigError
    from aivm.host import guide

    try:
        cfg = load.load(app.config_path)
    except ConfigError as exc:
        if exc.reason != "no-config":
            raise
        cfg = None
    click.echo(guide.render(cfg, app.config_path))


def walk(cmd: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...],
                                                                      click.Command]]:
    """Every command under `cmd` (itself first), depth first, subcommands by name."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd, info_name=path[-1])
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, path + (name,))


def tree_lines(root: click.Command, prog: str = "aivm") -> list[str]:
    rows = [(" ".join(path), cmd.get_short_help_str(limit=72)) for path, cmd in walk(root, (prog,))]
    width = max(len(name) for name, _ in rows) + 2
    return [f"{name:<{width}}{text}".rstrip() for name, text in rows]


@help_.command()
@click.pass_context
def tree(ctx: click.Context) -> None:
    """The whole command tree, one line each."""
    click.echo("\n".join(tree_lines(ctx.find_root().command)))


@help_.command()
@click.option("--shell", type=click.Choice(SHELLS), default=None,
              help="The shell (default: from $SHELL, else bash).")
@click.option("--script", is_flag=True, help="Print click's completion script itself.")
@click.pass_context
def completion(ctx: click.Context, shell: str | None, script: bool) -> None:
    """Shell completion (click's own): the line that enables it, or the script."""
    shell = shell or default_shell(os.environ.get("SHELL", ""))
    if script:
        from click.shell_completion import get_completion_class

        cls = get_completion_class(shell)
        assert cls is not None  # SHELLS are click's built-in shells
        click.echo(cls(ctx.find_root().command, {}, "aivm", COMPLETE_VAR).source())
        return
    where, line = ENABLE[shell]
    click.echo(f"# {shell}: add this line to {where}, then start a new shell\n{line}")


def default_shell(login_shell: str) -> str:
    name = os.path.basename(login_shell)
    return name if name in SHELLS else "bash"


# Registered by aivm/cli/main.py: top-level commands, and `aivm vm NAME` aliases.
TOP: list[click.Command] = [help_]
VM_ALIASES: dict[str, click.Command] = {}
