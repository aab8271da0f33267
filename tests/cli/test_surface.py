"""The rest of the command surface in-process: host, help, vm update; whole outputs, exit codes.

libvirt is its in-memory `test:///default` driver (through the real --connect
option); the store, the per-VM state and HOME are tmp dirs; the base image
is a tiny local qcow2 pinned by its sha256. Nothing here touches the host's
network or firewall: the firewall commands only read (`nft list`) or dry-run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from aivm.activate.update import GIB, disk_size
from aivm.cli.app import App
from aivm.cli.main import cli
from aivm.graph.store import Store
from aivm.host import deps
from aivm.run import Cmd, run

URI = "test:///default"
CONFIG = """\
active_vm = "box"

[defaults]
cpus = 1
memory_mib = 1024
disk_gib = 2
image = "tiny"
accel = "qemu"
network = "lab"
ssh_pubkey = "{home}/.ssh/k.pub"
ssh_privkey = "{home}/.ssh/k"

[[vms]]
name = "box"

[[networks]]
name = "lab"
bridge = "virbr-lab"
subnet = "10.77.9.0/24"
gateway = "10.77.9.1"
dhcp_start = "10.77.9.100"
dhcp_end = "10.77.9.254"

[networks.firewall]
enabled = {firewall}

[[images]]
name = "tiny"
url = "file://{image}"
sha256 = "{sha256}"
"""


@dataclass
class World:
    home: Path
    image: Path
    sha256: str
    conn: Any

    @property
    def config(self) -> Path:
        return self.home / ".config" / "aivm" / "config.toml"

    @property
    def store(self) -> Path:
        return self.home / "store"

    @property
    def state(self) -> Path:
        return self.home / "state"

    def write(self, *, firewall: bool = False, **defaults: object) -> None:
        text = CONFIG.format(home=self.home, image=self.image, sha256=self.sha256,
                             firewall=str(firewall).lower())
        for key, value in defaults.items():
            text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(text)

    def aivm(self, *args: str, input: str | None = None, env: dict[str, str] | None = None
             ) -> Result:
        app = App(config_override=str(self.config), store_override=str(self.store))
        return CliRunner().invoke(cli, ["--connect", URI, *args], obj=app, input=input,
                                  env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    where = tmp_path_factory.mktemp("image")
    image = where / "base.qcow2"
    run(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", str(image), "1G"))
    key = where / "k"
    run(Cmd.of("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", str(key)))
    return image, hashlib.sha256(image.read_bytes()).hexdigest(), key


@pytest.fixture
def world(tmp_path: Path, tiny_image: tuple[Path, str, Path],
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    import libvirt

    image, sha, key = tiny_image
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    for suffix in ("", ".pub"):
        (home / ".ssh" / f"k{suffix}").write_bytes(Path(f"{key}{suffix}").read_bytes())
    for name in ("AIVM_NETNS", "AIVM_LIBVIRT_URI", "AIVM_STORE", "AIVM_CONFIG", "XDG_CONFIG_HOME",
                 "XDG_STATE_HOME", "XDG_DATA_HOME", "LIBVIRT_DEFAULT_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AIVM_STATE", str(home / "state"))
    monkeypatch.chdir(home)
    conn = libvirt.open(URI)  # holds the test driver's state for the whole test
    w = World(home, image, sha, conn)
    w.write()
    yield w
    _reset(conn)


def _reset(conn: Any) -> None:
    """Leave the shared test driver as libvirt starts it: only domain `test`, network `default`."""
    for dom in conn.listAllDomains(0):
        if dom.name() != "test":
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    for net in conn.listAllNetworks(0):
        if net.name() != "default":
            if net.isActive():
                net.destroy()
            net.undefine()


# ---- aivm help -------------------------------------------------------------------------------

def test_help_plan_with_this_config(world: World) -> None:
    result = world.aivm("help", "plan")
    assert result.exit_code == 0
    assert result.stdout == f"""\
A new user's commands, in order (config: {world.config}):
  1. aivm host doctor            check libvirt, KVM, the tools and the store; a fix for each problem
  2. aivm host install_deps      install the missing Debian/Ubuntu packages (one root step)
  3. aivm config init            done: {world.config} exists
  4. aivm host image_fetch tiny  fetch and verify the base image (sha256 {world.sha256[:12]}…)
  5. aivm up box                 build and boot it: 1 vCPU, 1024 MiB, 2 GiB disk, network lab \
(10.77.9.0/24, firewall off)
  6. aivm ssh box                a shell in the guest as agent
  7. aivm code .                 attach this folder and open VS Code in the guest
  8. aivm status box             declared against live state (add --sudo for the firewall)
  9. aivm vm update box          after editing cpus, memory or disk_gib: apply them
 10. aivm down box               shut it down; `aivm destroy` removes it (the store stays)
 11. aivm gc                     free the store entries no VM uses
"""


def test_help_plan_without_config(world: World) -> None:
    world.config.unlink()
    lines = world.aivm("help", "plan").stdout.splitlines()
    assert lines[3] == (f"  3. aivm config init                    write {world.config} with this "
                        "host's defaults (also implied by `aivm up`)")
    assert lines[5].startswith("  5. aivm up aivm-2404                   build and boot it: "
                               "2 vCPU,")
    assert not world.config.exists()  # help never writes a config


def test_help_tree_lists_every_command_once(world: World) -> None:
    from aivm.cli.help_cmd import walk

    result = world.aivm("help", "tree")
    assert result.exit_code == 0
    names = [re.split(r"\s{2,}", line)[0] for line in result.stdout.splitlines()]
    assert names == [" ".join(path) for path, _ in walk(cli, ("aivm",))]
    assert len(names) == len(set(names))
    for line in ("aivm host net destroy   Stop and undefine the network; refused while VMs use "
                 "it unless --force.",
                 "aivm help tree          The whole command tree, one line each.",
                 "aivm vm update          Reconcile a defined VM with its config: cpus, memory, "
                 "disk growth,..."):
        assert line in result.stdout.splitlines()


def test_help_completion_lines_and_scripts(world: World) -> None:
    assert world.aivm("help", "completion", "--shell", "zsh").stdout == (
        "# zsh: add this line to ~/.zshrc, then start a new shell\n"
        'eval "$(_AIVM_COMPLETE=zsh_source aivm)"\n')
    fish = world.aivm("help", "completion", env={"SHELL": "/usr/bin/fish"}).stdout
    assert fish == ("# fish: add this line to ~/.config/fish/completions/aivm.fish, then start "
                    "a new shell\n_AIVM_COMPLETE=fish_source aivm | source\n")
    assert world.aivm("help", "completion", env={"SHELL": "/bin/tcsh"}).stdout.startswith("# bash")
    script = world.aivm("help", "completion", "--shell", "bash", "--script").stdout
    assert "_AIVM_COMPLETE=bash_complete" in script and "complete " in script
    bad = world.aivm("help", "completion", "--shell", "csh")
    assert bad.exit_code == 2 and "Invalid value for '--shell'" in bad.stderr


def test_click_completion_really_completes() -> None:
    result = CliRunner().invoke(cli, [], prog_name="aivm", env={
        "_AIVM_COMPLETE": "bash_complete", "COMP_WORDS": "aivm host n", "COMP_CWORD": "2"})
    assert result.stdout == "plain,net\n"


# ---- aivm host doctor ------------------------------------------------------------------------

def test_doctor_json_against_the_test_driver(world: World) -> None:
    result = world.aivm("host", "doctor", "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == (0 if data["ok"] else 1)
    names = [c["name"] for c in data["checks"]]
    assert names == ["config", "libvirt", "permissions", "kvm", "qemu-img", "nft", "virtiofsd",
                     "mmdebstrap", "store access", "store space", "ssh key", "subnet",
                     "network lab"]
    by = {c["name"]: c for c in data["checks"]}
    assert by["libvirt"] == {"name": "libvirt", "level": "pass", "required": True, "fix": "",
                             "detail": f"reachable at {URI} (libvirt 9.0.0)"}
    assert by["config"]["detail"] == f"{world.config}: 1 VM(s)"
    assert by["ssh key"]["detail"] == f"{world.home}/.ssh/k.pub and its private key"
    assert by["network lab"]["detail"] == ("not created yet (`aivm up` or `aivm host net create` "
                                           "creates it)")
    assert data["uri"] == URI and data["sudo"] is False


def test_doctor_fails_on_unreachable_libvirt(world: World, tmp_path: Path) -> None:
    app = App(config_override=str(world.config), store_override=str(world.store))
    result = CliRunner().invoke(cli, ["--connect", f"test://{tmp_path}/none.xml", "host",
                                      "doctor"], obj=app, catch_exceptions=False)
    assert result.exit_code == 1
    line = next(x for x in result.stdout.splitlines() if " libvirt " in x)
    assert line.startswith(f"fail  libvirt           cannot reach libvirt at test://{tmp_path}/")
    assert result.stdout.splitlines()[-2].startswith("not ready: ")


# ---- aivm host install_deps ------------------------------------------------------------------

def test_install_deps_dry_run(world: World) -> None:
    result = world.aivm("host", "install_deps", "--dry-run")
    assert result.exit_code == 0
    absent = deps.missing()
    if absent:
        assert "[1/1] Install the packages aivm needs  (root, system-write)" in result.stderr
    else:
        assert result.stdout == f"all {len(deps.PACKAGES)} packages aivm needs are installed\n"


# ---- aivm host image_fetch -------------------------------------------------------------------

def test_image_fetch_then_cached(world: World) -> None:
    first = world.aivm("host", "image_fetch")
    assert first.exit_code == 0
    head, path = first.stdout.splitlines()
    assert re.fullmatch(rf"image tiny: built in \d+\.\d s \(sha256 {world.sha256} verified\)", head)
    entry = Path(path.strip())
    assert entry.parent == world.store and entry.name.endswith("-image.tiny")
    assert (entry / "disk.qcow2").read_bytes() == world.image.read_bytes()
    assert "building image.tiny: never built" in first.stderr
    again = world.aivm("host", "image_fetch", "tiny")
    assert again.stdout == (f"image tiny: already in the store (sha256 {world.sha256} verified)\n"
                            f"  {entry}\n")


def test_image_fetch_errors(world: World) -> None:
    unknown = world.aivm("host", "image_fetch", "nope")
    assert (unknown.exit_code, unknown.stderr) == (2, (
        "error: no image named 'nope' (declared: tiny)\n"
        "hint: add an [[images]] entry, or name a declared one\n"))
    world.write()
    world.config.write_text(world.config.read_text().replace(world.sha256, "0" * 64))
    wrong = world.aivm("host", "image_fetch")
    assert wrong.exit_code == 1
    assert wrong.stderr.splitlines()[-2].startswith("error: 1 node(s) failed to build: image.tiny:")
    assert not any(world.store.glob("*-image.tiny"))


# ---- aivm host net / fw ----------------------------------------------------------------------

NET_LINES = "  subnet 10.77.9.0/24 on bridge virbr-lab\n"


def test_net_create_status_destroy(world: World) -> None:
    assert world.aivm("host", "net", "status").stdout == (
        "network lab: missing (`aivm host net create` creates it)\n" + NET_LINES)
    unbuilt = world.aivm("host", "net", "create", "--dry-run")  # a dry run builds nothing
    assert (unbuilt.exit_code, unbuilt.stdout.splitlines()[:2]) == (
        0, ["would build 1 node(s):", "  net.lab: never built"])
    assert not list(world.store.glob("*-net.lab"))
    assert world.aivm("build", "net.lab").exit_code == 0
    dry = world.aivm("host", "net", "create", "--dry-run")
    assert dry.exit_code == 0 and dry.stdout == ""
    assert "[1/1] Define and start network lab  (user, system-write)" in dry.stderr
    assert world.conn.listAllNetworks(0) and not _network_exists(world, "lab")
    made = world.aivm("host", "net", "create", "--yes")
    assert made.exit_code == 0
    assert made.stdout == "network lab: active, up to date\n" + NET_LINES
    assert world.conn.networkLookupByName("lab").isActive()
    again = world.aivm("host", "net", "create", "--yes")
    assert "note: network lab: up to date\nnothing to do: live state matches the store" in \
        again.stderr
    gone = world.aivm("host", "net", "destroy", "--yes")
    assert gone.exit_code == 0 and "[1/1] Remove network lab" in gone.stderr
    assert not _network_exists(world, "lab")
    assert world.aivm("host", "net", "destroy").stderr == (
        "note: network lab: not defined\nnothing to do: live state matches the store\n")


def test_net_destroy_refuses_while_a_vm_uses_it(world: World) -> None:
    assert world.aivm("up", "--yes", "--no-wait").exit_code == 0
    refused = world.aivm("host", "net", "destroy", "lab", "--yes")
    assert (refused.exit_code, refused.stderr) == (1, (
        "error: network lab is used by box (running)\n"
        "hint: destroy those VMs first (`aivm destroy VM`), or pass --force (running VMs lose "
        "their link; stopped ones cannot start until the network exists again)\n"))
    assert world.aivm("host", "net", "status").stdout == (
        "network lab: active, up to date\n" + NET_LINES + "  used by box (running)\n")
    forced = world.aivm("host", "net", "destroy", "lab", "--yes", "--force")
    assert forced.exit_code == 0 and not _network_exists(world, "lab")


def test_net_errors(world: World) -> None:
    unknown = world.aivm("host", "net", "status", "nope")
    assert (unknown.exit_code, unknown.stderr) == (2, (
        "error: no network named 'nope' (declared: lab)\n"
        "hint: add a [[networks]] entry, or name a declared one\n"))
    world.write(network='"default"')
    world.config.write_text(world.config.read_text().replace('name = "lab"', 'name = "default"'))
    foreign = world.aivm("host", "net", "create", "--yes")
    assert (foreign.exit_code, foreign.stderr.splitlines()[-2:]) == (1, [
        "error: network default exists in libvirt but was not defined by aivm",
        "hint: choose another name in the config, or remove that network yourself"])


def _network_exists(world: World, name: str) -> bool:
    return name in [n.name() for n in world.conn.listAllNetworks(0)]


def test_fw_disabled_and_dry_run(world: World) -> None:
    disabled = world.aivm("host", "fw", "apply", "--yes")
    assert (disabled.exit_code, disabled.stderr) == (1, (
        "error: the firewall of network lab is disabled in the config\n"
        "hint: set enabled = true under [networks.firewall] of 'lab'\n"))
    world.write(firewall=True)
    assert world.aivm("host", "fw", "status").stdout == (
        "firewall of network lab: not applied (`aivm host fw apply lab`)\n")
    unbuilt = world.aivm("host", "fw", "apply", "--dry-run")  # a dry run builds nothing
    assert unbuilt.exit_code == 0 and "  net.lab.nft: never built" in unbuilt.stdout
    assert not list(world.store.glob("*-net.lab.nft"))
    assert world.aivm("build", "net.lab", "net.lab.nft").exit_code == 0
    dry = world.aivm("host", "fw", "apply", "--dry-run")
    assert dry.exit_code == 0 and dry.stdout == ""
    ruleset = next(world.store.glob("*-net.lab.nft")) / "ruleset.nft"
    assert "[1/1] Apply the firewall of network lab  (root, system-write)" in dry.stderr
    assert f"$ nft -f {ruleset}" in dry.stderr
    assert "table inet aivm_lab" in ruleset.read_text()
    assert "[probe] Read the firewall of network lab (nft table inet aivm_lab)  (root, read)\n" \
           "      why: is the live table the store's ruleset? (flushed or edited tables differ)\n" \
           "      - list the live nft table inet aivm_lab (no counters)\n" \
           "          $ nft -s list table inet aivm_lab\n" in dry.stderr
    assert "      not run: --dry-run runs no root command\n" in dry.stderr
    assert "note: firewall of network lab: not checked: reading the live nft table needs " \
           "root, and --dry-run runs no root command\n" in dry.stderr
    assert world.aivm("host", "fw", "remove", "--yes").stderr == (
        "[probe] Read the firewall of network lab (nft table inet aivm_lab)  (root, read)\n"
        "      why: is the table there?\n"
        "      - list the live nft table inet aivm_lab (no counters)\n"
        "note: firewall of network lab: not applied\n"
        "nothing to do: live state matches the store\n")


# ---- aivm vm update --------------------------------------------------------------------------

def test_update_needs_a_defined_vm(world: World) -> None:
    result = world.aivm("vm", "update", "--yes")
    assert (result.exit_code, result.stderr.splitlines()[-2:]) == (1, [
        "error: VM box is not defined", "hint: `aivm up box` creates it"])


def test_update_cpus_memory_and_disk(world: World) -> None:
    assert world.aivm("up", "--yes", "--no-wait").exit_code == 0
    disk = world.state / "box" / "disk.qcow2"
    old_overlay = next(world.store.glob("*-box.overlay"))
    assert disk_size(disk) == 2 * GIB
    same = world.aivm("vm", "update", "--yes")
    assert same.stdout == "VM box: cpus, memory, disk and network match the config\n"
    world.write(cpus=2, memory_mib=2048, disk_gib=3)

    unbuilt = world.aivm("vm", "update", "--dry-run")  # a dry run builds nothing
    assert unbuilt.stdout.splitlines()[:2] == ["would build 2 node(s):",
                                               "  box.overlay: param size_gib 2 → 3"]
    assert world.aivm("build", "box").exit_code == 0
    dry = world.aivm("vm", "update", "--dry-run")
    assert dry.stdout == ("memory: 1024 MiB -> 2048 MiB (needs a restart)\n"
                          "cpus: 1 -> 2 (needs a restart)\n"
                          "disk: 2 GiB -> 3 GiB (applies without a restart)\n")
    titles = re.findall(r"(?m)^\[\d/\d\] (.*?)  \(", dry.stderr)
    assert titles == ["Redefine VM box", "Shut down VM box", "Grow the disk of VM box",
                      "Start VM box", "Record the store entries of VM box as gc roots",
                      "Keep the image under the disk of VM box"]
    assert f"$ qemu-img resize -q -f qcow2 {disk} {3 * GIB}" in dry.stderr

    never = json.loads(world.aivm("vm", "update", "--yes", "--restart", "never", "--json",
                                  "--dry-run").stdout)
    assert never["restarts"] is False and never["running"] is True
    assert "Restart" not in " ".join(never["steps"])
    assert never["notes"][-1] == ("VM box: memory, cpus change(s) apply after a restart "
                                  "(`aivm restart box`, or `aivm vm update box --restart auto`)")

    done = json.loads(world.aivm("vm", "update", "--yes", "--json").stdout)
    assert done["restarts"] is True and "Grow the disk of VM box" in done["ran"]
    assert [c["what"] for c in done["changes"]] == ["memory", "cpus", "disk"]
    assert disk_size(disk) == 3 * GIB
    roots = Store(world.store).vm_roots("box")  # the disk still sits on the 2 GiB overlay
    assert roots["disk-backing"] == old_overlay != roots["box.overlay"]
    dom = world.conn.lookupByName("box")
    assert dom.isActive() and dom.info()[3] == 2
    assert world.aivm("vm", "update").stdout == (
        "VM box: cpus, memory, disk and network match the config\n")


def test_update_never_shrinks_and_stopped_vm_stays_stopped(world: World) -> None:
    assert world.aivm("up", "--yes", "--no-wait").exit_code == 0
    assert world.aivm("down", "--yes").exit_code == 0
    world.write(disk_gib=1, cpus=2)
    result = world.aivm("vm", "update", "--yes")
    assert result.exit_code == 0
    assert result.stdout == "cpus: 1 -> 2 (needs a restart)\n"
    assert "note: disk of VM box: disk_gib 1 GiB is below its 2 GiB; disks never shrink " \
           "(`aivm up --recreate box` starts over)" in result.stderr
    assert "note: VM box is stopped: the changes apply at its next start" in result.stderr
    assert disk_size(world.state / "box" / "disk.qcow2") == 2 * GIB
    assert not world.conn.lookupByName("box").isActive()



def test_update_grows_a_running_disk_live(world: World) -> None:
    # the test driver has no blockResize: the plan is checked, the real call is not made
    assert world.aivm("up", "--yes", "--no-wait").exit_code == 0
    disk = world.state / "box" / "disk.qcow2"
    world.write(disk_gib=4)
    assert world.aivm("build", "box").exit_code == 0  # a dry run builds nothing
    result = world.aivm("vm", "update", "--dry-run")
    assert result.stdout == "disk: 2 GiB -> 4 GiB (applies without a restart)\n"
    titles = re.findall(r"(?m)^\[\d/\d\] (.*?)  \(", result.stderr)
    assert titles == ["Redefine VM box", "Grow the disk of VM box",
                      "Record the store entries of VM box as gc roots",
                      "Keep the image under the disk of VM box"]
    assert f"$ libvirt[{URI}] lookupByName('box').blockResize('{disk}', {4 * GIB}, BYTES)" \
        in result.stderr
    assert "why: the store has a newer definition (the same resources)" in result.stderr


# ---- docs ------------------------------------------------------------------------------------

def test_committed_command_reference_is_up_to_date() -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "docs" / "gen_commands.py"
    spec = importlib.util.spec_from_file_location("gen_commands", script)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.TARGET.read_text() == gen.render(), \
        "docs/commands.md is out of date: run .venv/bin/python docs/gen_commands.py"
    assert "## aivm host net destroy\n" in gen.render()
