"""`aivm config ...` through the real command tree, comparing whole outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from aivm.cli.app import App
from aivm.cli.main import cli
from aivm.config import init
from tests.config.conftest import write

SMALL = """\
# two boxes
active_vm = "dev"

[defaults]
cpus = 2

[[vms]]
name = "dev"   # the main one

[[vms]]
name = "ci"
memory_mib = 2048
"""


@pytest.fixture
def aivm(cfg_path: Path):  # type: ignore[no-untyped-def]
    def run(*args: str, input: str | None = None, **obj: object) -> Result:
        app = App(config_override=str(cfg_path), **obj)  # type: ignore[arg-type]
        return CliRunner().invoke(cli, list(args), obj=app, input=input, catch_exceptions=False)
    return run


EXPECTED_INIT = """\
host: 4 cores, 16000 MiB memory
vm: aivm-2404, 2 cpus, 4096 MiB
ssh key: ~/.ssh/aivm_ed25519.pub (to be created)
network: 10.77.1.0/24 (overlaps no host route)

# aivm configuration: the declared state aivm builds and activates.
# Edit with `aivm config edit`; check with `aivm config lint`.
schema_version = 1
active_vm = "aivm-2404"

[behavior]
yes_sudo = false
auto_approve_readonly_sudo = true   # read-only sudo probes run without asking

# Every [[vms]] entry inherits these unless it sets them itself.
[defaults]
user = "agent"
cpus = 2   # half of this host's 4 cores
memory_mib = 4096   # at most half of this host's 16000 MiB
disk_gib = 32
image = "ubuntu-noble"
ssh_pubkey = "~/.ssh/aivm_ed25519.pub"
ssh_privkey = "~/.ssh/aivm_ed25519"
timezone = "Europe/Berlin"
accel = "auto"   # kvm when it works, else qemu (slower)
network = "aivm"

[[vms]]
name = "aivm-2404"

# 10.77.1.0/24 overlapped no route of this host when this file was written.
[[networks]]
name = "aivm"
bridge = "virbr-aivm"
subnet = "10.77.1.0/24"
gateway = "10.77.1.1"
dhcp_start = "10.77.1.100"
dhcp_end = "10.77.1.254"

[networks.firewall]
enabled = true   # guests reach the internet but not the host's private networks
# allow_tcp_ports = [8080]               # host services, on the gateway address only
# allow_lan_tcp = ["192.168.1.10:5432"]  # a LAN host:port guests may reach (docs/security.md)

[sync]
enabled = false

"""


def test_init_yes(aivm, facts: init.HostFacts, cfg_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = aivm("config", "init", "--yes")
    assert result.exit_code == 0
    assert result.output == EXPECTED_INIT + f"wrote {cfg_path}\n"
    assert cfg_path.read_text() == EXPECTED_INIT.split("\n\n", 1)[1].removesuffix("\n")
    assert (facts.home / ".ssh" / "aivm_ed25519").is_file()
    again = aivm("config", "init", "--defaults")
    assert again.exit_code == 2
    assert again.stderr == (f"error: {cfg_path} already exists\nhint: edit it with `aivm config "
                            "edit`, or replace it with `aivm config init --force`\n")


def test_init_interactive_declines_key(aivm, facts: init.HostFacts, cfg_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = aivm("config", "init", input="n\ny\n")
    assert result.exit_code == 0
    assert result.stdout == EXPECTED_INIT + (
        "No ssh key found; create ~/.ssh/aivm_ed25519 with ssh-keygen? [Y/n]: n\n"
        f"Write {cfg_path}? [Y/n]: y\nwrote {cfg_path}\n")
    assert result.stderr == ("warning: ~/.ssh/aivm_ed25519.pub does not exist; set ssh_pubkey "
                             "before `aivm up`\n")
    assert not (facts.home / ".ssh").exists()


def test_init_declined_writes_nothing(aivm, facts: init.HostFacts, cfg_path: Path) -> None:  # type: ignore[no-untyped-def]
    (facts.home / ".ssh").mkdir()
    (facts.home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA me\n")
    result = aivm("config", "init", input="n\n")
    assert result.exit_code == 3
    assert result.stderr == "error: nothing was written\n"
    assert not cfg_path.exists()


def test_show_raw_vm_and_resolved(aivm, cfg_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(cfg_path, SMALL)
    assert aivm("config", "show").output == SMALL
    assert aivm("config", "show", "ci").output == (
        '[[vms]]\nname = "ci"\nuser = "agent"\ncpus = 2\nmemory_mib = 2048\ndisk_gib = 32\n'
        'image = "ubuntu-noble"\nssh_pubkey = "~/.ssh/id_ed25519.pub"\n'
        'ssh_privkey = "~/.ssh/id_ed25519"\ntimezone = "UTC"\nhost_uid_match = true\n'
        'password_login = false\naccel = "auto"\nnetwork = "aivm"\npackages = []\nports = []\n'
        'host = ""\n')
    import os

    resolved = aivm("config", "show", "ci", "--resolved").output
    assert f"host_uid_match = true\nuid = {os.getuid()}\ngid = {os.getgid()}\n" in resolved
    assert '\n[[networks]]\nname = "aivm"\nbridge = "virbr-aivm"\nsubnet = "10.77.0.0/24"\n' \
        in resolved
    assert '\n[[images]]\nname = "ubuntu-noble"\nsource = "fetch"\n' in resolved
    everything = aivm("config", "show", "--resolved").output
    assert everything.startswith('schema_version = 1\nactive_vm = "dev"\n\n[behavior]\n')
    assert everything.count("[[vms]]") == 2 and everything.count("[[networks]]") == 1


def test_show_errors(aivm, cfg_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = aivm("config", "show")
    assert (missing.exit_code, missing.stderr) == (
        2, f"error: {cfg_path}: no config file\nhint: run `aivm config init` to create one\n")
    write(cfg_path, SMALL)
    unknown = aivm("config", "show", "nope")
    assert (unknown.exit_code, unknown.stderr) == (
        2, f"error: no VM named 'nope' in {cfg_path}\nhint: choose one of: dev, ci\n")


def test_lint(aivm, cfg_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(cfg_path, SMALL)
    ok = aivm("config", "lint")
    assert (ok.exit_code, ok.output) == (0, f"{cfg_path}: no problems\n")
    write(cfg_path, SMALL.replace("cpus = 2", "cpus = 0\nmemroy = 1"))
    bad = aivm("config", "lint")
    assert bad.exit_code == 1
    assert bad.output == (
        f"{cfg_path}:5: error: cpus must be at least 1, not 0 [bad-value]\n"
        "  hint: set cpus = 1 or more\n"
        f"{cfg_path}:6: error: unknown key 'memroy' in defaults [unknown-key]\n"
        "  hint: did you mean 'memory_mib'?\n"
        "2 problems (2 errors, 0 warnings)\n")


def editor(tmp_path: Path, body: str, code: int = 0) -> str:
    script = tmp_path / "editor.py"
    script.write_text("import sys\npath = sys.argv[1]\ntext = open(path).read()\n"
                      f"{body}\nopen(path, 'w').write(text)\nsys.exit({code})\n")
    return f"{sys.executable} {script}"


def test_edit_valid(aivm, cfg_path: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                    monkeypatch: pytest.MonkeyPatch) -> None:
    write(cfg_path, SMALL)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", editor(tmp_path, "text = text.replace('cpus = 2', 'cpus = 3')"))
    result = aivm("config", "edit")
    assert (result.exit_code, result.output) == (0, f"{cfg_path}: saved\n")
    assert cfg_path.read_text() == SMALL.replace("cpus = 2", "cpus = 3")
    monkeypatch.setenv("VISUAL", editor(tmp_path, "pass"))
    assert aivm("config", "edit").output == f"{cfg_path}: no changes\n"


def test_edit_invalid_restores(aivm, cfg_path: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                               monkeypatch: pytest.MonkeyPatch) -> None:
    write(cfg_path, SMALL)
    monkeypatch.setenv("VISUAL", editor(tmp_path, "text += 'colour = 1\\n'"))
    result = aivm("config", "edit")
    assert result.exit_code == 2
    rejected = cfg_path.with_name("config.toml.rejected")
    assert result.stderr == (
        f"error: {cfg_path}:13: unknown key 'colour' in vms\n"
        "hint: known keys: accel, cpus, disk_gib, gid, host, host_uid_match, image, memory_mib, "
        "name, network, packages, password_login, ports, ssh_privkey, ssh_pubkey, timezone, uid, "
        "user; "
        f"the previous file was restored and your edit is kept in {rejected}\n")
    assert cfg_path.read_text() == SMALL
    assert rejected.read_text() == SMALL + "colour = 1\n"


def test_edit_editor_fails(aivm, cfg_path: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                           monkeypatch: pytest.MonkeyPatch) -> None:
    write(cfg_path, SMALL)
    monkeypatch.setenv("VISUAL", editor(tmp_path, "text = 'half-written'", code=1))
    result = aivm("config", "edit")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: the editor exited with status 1;")
    assert cfg_path.read_text() == SMALL


def test_edit_creates_missing_config(aivm, facts: init.HostFacts, cfg_path: Path,  # type: ignore[no-untyped-def]
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISUAL", editor(tmp_path, "pass"))
    result = aivm("config", "edit")
    assert result.output == f"created {cfg_path} with defaults\n{cfg_path}: no changes\n"
    assert "[[vms]]" in cfg_path.read_text()


def test_discover_test_driver(aivm, cfg_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(cfg_path, SMALL)
    listed = aivm("config", "discover", "--connect", "test:///default", input="n\n")
    assert (listed.exit_code, listed.output) == (0, (
        f"1 domain(s) at test:///default not declared in {cfg_path}:\n"
        "  test  running, 2 cpus, 8192 MiB\n"
        "import test? [y/N]: n\n"))
    assert cfg_path.read_text() == SMALL
    imported = aivm("config", "discover", "--yes", connect="test:///default")
    assert imported.output == (f"1 domain(s) at test:///default not declared in {cfg_path}:\n"
                               "  test  running, 2 cpus, 8192 MiB\nimported test\n")
    assert cfg_path.read_text().startswith(SMALL)
    assert '[[vms]]\nname = "test"\nmemory_mib = 8192\n' in cfg_path.read_text()
    assert aivm("config", "discover", connect="test:///default").output == (
        f"no domains at test:///default that {cfg_path} does not declare\n")


def test_discover_unreachable(aivm) -> None:  # type: ignore[no-untyped-def]
    result = aivm("config", "discover", "--connect", "test:///nonexistent/file.xml")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot connect to libvirt at "
                                    "test:///nonexistent/file.xml:")
    assert result.stderr.endswith("hint: is libvirtd running? choose another URI with --connect\n")


def test_group_without_app_uses_default_path(cfg_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from aivm.cli.config_cmd import config

    write(cfg_path, SMALL)
    monkeypatch.setenv("AIVM_CONFIG", str(cfg_path))
    result = CliRunner().invoke(config, ["lint"], obj=None, catch_exceptions=False)
    assert result.output == f"{cfg_path}: no problems\n"


def test_edit_without_terminal_or_editor_is_refused(aivm, cfg_path: Path,  # type: ignore[no-untyped-def]
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """vi with no terminal would wait forever; CliRunner's stdin is not a terminal."""
    write(cfg_path, SMALL)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)
    result = aivm("config", "edit")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: `aivm config edit` needs a terminal: standard input is not one, so an editor "
        "would wait forever\n"
        "hint: run it in a terminal, set $EDITOR to a command that needs no terminal, or edit "
        f"{cfg_path} directly and check it with `aivm config lint`\n")
    assert cfg_path.read_text() == SMALL
