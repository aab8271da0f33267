"""aivm/cli/main.py names each command by `module:attribute` and imports a command's module
only when that command runs or a listing asks for it: `aivm build` loads no other command."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from aivm.cli import main as cli_main

MODULES = ("workplace_cmd", "host_cmd", "net_cmd", "help_cmd", "port_cmd", "cp_cmd",
           "store_cmd", "inspect_cmd")

LOADED = """
import json, sys
sys.argv = ["aivm", *json.loads(sys.argv[1])]
from aivm.cli.main import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.endswith("_cmd"))))
"""


def _command_modules_after(args: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", LOADED, json.dumps(args)], text=True,
                          capture_output=True, check=True, timeout=60)
    return [m.rsplit(".", 1)[-1] for m in json.loads(done.stdout.splitlines()[-1])]


def test_the_tables_name_every_command_the_modules_export() -> None:
    import importlib
    for name in MODULES:
        module = importlib.import_module(f"aivm.cli.{name}")
        for command in module.TOP:
            assert cli_main.load_command(cli_main.TOP_COMMANDS[command.name]) is command
        for alias, command in module.VM_ALIASES.items():
            assert cli_main.load_command(cli_main.VM_COMMANDS[alias]) is command
    for where in (*cli_main.TOP_COMMANDS.values(), *cli_main.VM_COMMANDS.values()):
        assert isinstance(cli_main.load_command(where), click.Command)
    for name, where in cli_main.TOP_COMMANDS.items():
        assert cli_main.load_command(where).name == name


def _imported_by(module: str) -> list[str]:
    code = (f"import json, sys; import aivm.cli.{module}; "
            "print(json.dumps(sorted(m for m in sys.modules if m.endswith('_cmd'))))")
    done = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True,
                          check=True, timeout=60)
    return [m.rsplit(".", 1)[-1] for m in json.loads(done.stdout)]


def test_build_loads_only_the_build_module_and_what_it_imports() -> None:
    loaded = _command_modules_after(["build", "--help"])
    assert loaded == _imported_by("build_cmd")
    assert "lifecycle_cmd" not in loaded and "status_cmd" not in loaded


def test_vm_alias_loads_only_its_module_and_what_it_imports() -> None:
    loaded = _command_modules_after(["vm", "wait_ip", "--help"])
    assert loaded == _imported_by("ssh_cmd")
    assert "lifecycle_cmd" not in loaded and "build_cmd" not in loaded


def test_the_listing_loads_every_command() -> None:
    loaded = set(_command_modules_after(["--help"]))
    assert {w.split(":")[0] for w in cli_main.TOP_COMMANDS.values()} <= loaded
