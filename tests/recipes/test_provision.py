"""provision nodes without a guest: params, the build seed, the fenced builder command,
the verdict, failure handling (nothing committed, the log kept), config wiring and lint."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from aivm.config import load
from aivm.config.schema import Provision, ProvisionFile
from aivm.config.to_graph import vm_graph
from aivm.errors import AivmError, BuildError, ConfigError
from aivm.graph.node import Node
from aivm.graph.store import Store
from aivm.host.facts import read as read_facts
from aivm.recipes import REGISTRY, builder, provision
from aivm.run import Cmd, run
from tests.recipes.conftest import sample_config
from tests.recipes.helpers import build_nodes, keys_of

KEY = "ab" * 32


def node(**params: object) -> Node:
    files = {f"file{i}": Path("/dev/null") for i in range(len(params.get("files", ())))}
    return Node("provision.t", "provision", params=params, inputs={"base": "image.debian"},
                files=files)


def test_params_are_checked_and_normalised() -> None:
    v = REGISTRY.recipe("provision").check(node(
        packages=["hello"], run=["echo hi"], files=[["/etc/x", "600"]],
        apt_sources=["deb [trusted=yes] http://127.0.0.1:8765/ ./"], allow=["Mirror.lan:3142"]))
    assert v["files"] == (("/etc/x", "600"),) and v["allow"] == ("mirror.lan:3142",)
    assert provision.declared(v) == ("127.0.0.1:8765", "mirror.lan:3142")


@pytest.mark.parametrize("params, what", [
    ({"run": ["echo"], "files": [["etc/x", "0644"]]}, "file dest"),
    ({"run": ["echo"], "files": [["/etc/x", "rw"]]}, "file mode"),
    ({"run": ["echo"], "apt_sources": ["deb http://x/ bookworm\ndeb http://y/ z"]}, "apt source"),
    ({"run": ["echo"], "allow": ["10.0.0.1"]}, "allow target"),
    ({"run": [""]}, "run step"),
    ({"packages": ["Bad Name"]}, "packages"),
    ({}, "provision"),
])
def test_bad_params_are_refused(params: dict, what: str) -> None:
    with pytest.raises(AivmError, match=f"invalid {what}") as exc:
        REGISTRY.recipe("provision").check(node(**params))
    assert exc.value.reason == "invalid-param"


def test_file_inputs_must_match_the_files_param() -> None:
    bad = replace(node(run=["echo"], files=[["/etc/x", "0644"]]), files={})
    with pytest.raises(AivmError, match="files"):
        REGISTRY.recipe("provision").check(bad)


def test_steps_run_files_then_packages_then_shell_in_order() -> None:
    v = REGISTRY.recipe("provision").check(node(
        packages=["hello", "tree"], run=["echo one", "set -x\necho two"],
        files=[["/etc/a b", "0644"]]))
    titled = provision.steps(v)
    assert [t for t, _ in titled] == [
        "install 1 file(s): /etc/a b", "apt-get update", "apt-get install hello tree",
        "run[0]: echo one", "run[1]: set -x"]
    assert titled[0][1] == "install -D -m 0644 /var/lib/aivm-build/files/000 '/etc/a b'"
    assert "--error-on=any" in titled[1][1]   # a mirror that fails fails the step
    assert titled[4][1] == "set -x\necho two"


def test_build_seed_is_json_cloud_config_with_the_node_key() -> None:
    titled = [("run[0]: echo", "echo '\"; rm -rf /'")]
    text = provision.user_data(KEY, titled, [b"\x00bin"], ["deb http://m/ x main"])
    assert text.startswith("#cloud-config\n")
    doc = json.loads(text.split("\n", 1)[1])
    assert doc["users"] == [] and doc["package_update"] is False
    files = {f["path"]: base64.b64decode(f["content"]) for f in doc["write_files"]}
    assert files["/var/lib/aivm-build/nonce"] == KEY.encode()
    assert files["/var/lib/aivm-build/steps/000.sh"] == b"echo '\"; rm -rf /'\n"
    assert files["/var/lib/aivm-build/files/000"] == b"\x00bin"
    assert files["/var/lib/aivm-build/sources.list"] == b"deb http://m/ x main\n"
    assert b"cloud-init clean" in files["/var/lib/aivm-build/build.sh"]
    assert ["systemctl", "start", "--no-block", "aivm-build.service"] in doc["runcmd"]


def run_spec(tmp_path: Path, boot: dict[str, str],
             allow: tuple[str, ...] = ()) -> builder.BuilderRun:
    return builder.BuilderRun(
        disk=tmp_path / "d,isk.qcow2", seed=tmp_path / "seed.iso", boot=boot,
        console_log=tmp_path / "console.log", provision_log=tmp_path / "provision.log",
        fence_log=tmp_path / "fence.log", allow=allow)


def test_builder_is_fenced_user_networking_with_one_proxy(tmp_path: Path) -> None:
    direct = {"firmware": "bios", "kernel": "/s/vmlinuz", "initrd": "/s/initrd.img",
              "cmdline": "root=/dev/vda rw console=ttyS0"}
    argv = builder.argv(run_spec(tmp_path, direct, ("127.0.0.1:8765",)))
    net = argv[argv.index("-netdev") + 1]
    assert net.startswith("user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:3128-cmd:")
    assert "hostfwd" not in net and "fence_proxy.py" in net and "--allow 127.0.0.1:8765" in net
    assert argv[argv.index("-kernel") + 1] == "/s/vmlinuz"
    assert argv[argv.index("-initrd") + 1] == "/s/initrd.img"
    assert any(a.startswith("file=") and "d,,isk.qcow2" in a for a in argv)  # commas escaped
    assert argv.count("-serial") == 2 and "-no-reboot" in argv and "-accel" in argv
    firmware = builder.argv(run_spec(tmp_path, {"firmware": "bios", "kernel": ""}))
    assert "-kernel" not in firmware


def test_verdict_needs_the_nonce() -> None:
    log = (f"AIVM-PROVISION-RESULT {'00' * 32} ok\n"
           f"noise\nAIVM-PROVISION-RESULT {KEY} failed 002 100\n")
    assert builder.outcome(log, KEY) == builder.Outcome(False, "002", 100)
    assert builder.outcome(f"AIVM-PROVISION-RESULT {KEY} ok\n", KEY) == builder.Outcome(True)
    assert builder.outcome("AIVM-PROVISION-RESULT other ok\n", KEY) is None


@pytest.fixture
def base_entry(store: Store) -> Node:
    """A tiny stand-in image node (local-image) with a real qcow2."""
    src = store.root.parent / "tiny.qcow2"
    run(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", str(src), "64M"))
    return Node("image.tiny", "local-image", files={"image": src})


def prov_node(step: str = "false") -> Node:
    return Node("provision.t", "provision", params={"run": (step,)},
                inputs={"base": "image.tiny"})


def test_failed_step_fails_the_node_commits_nothing_and_keeps_the_log(
        store: Store, base_entry: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builder, "host_accel", lambda: "qemu")
    monkeypatch.setattr(builder, "boot", _guest(
        "aivm-provision: step 000: run[0]: false\naivm-provision: step 000 exit 7 after 0 s\n"
        "AIVM-PROVISION-RESULT NONCE failed 000 7\n"))
    with pytest.raises(BuildError) as exc:
        build_nodes(store, [base_entry, prov_node()])
    message = exc.value.message
    assert "step 000 (run[0]: false) failed with exit code 7" in message
    assert "aivm-provision: step 000 exit 7" in message          # the tail of the guest log
    assert not any(p.name.endswith("provision.t") for p in store.entries())
    assert not store.temporaries()
    logs = sorted((store.root / "log" / "failed").glob("*.log"))  # a failed build's logs
    assert [p.name.endswith(".console.log") for p in logs] == [True, False]
    assert f"(log: {logs[1]})" in message
    assert "refused: 10.0.2.2:80" in logs[1].read_text()


def test_a_guest_without_a_verdict_fails_too(store: Store, base_entry: Node,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builder, "host_accel", lambda: "qemu")
    monkeypatch.setattr(builder, "boot", _guest("kernel panic\n", rc=1))
    with pytest.raises(BuildError, match="stopped without a result"):
        build_nodes(store, [base_entry, prov_node("true")])
    assert not any(p.name.endswith("provision.t") for p in store.entries())


def test_success_commits_a_relative_layer_with_the_boot_files(
        store: Store, base_entry: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builder, "host_accel", lambda: "qemu")
    monkeypatch.setattr(builder, "boot", _guest("AIVM-PROVISION-RESULT NONCE ok\n"))
    report = build_nodes(store, [base_entry, prov_node("true")])
    entry = report.states["provision.t"].path
    info = json.loads(run(Cmd.of("qemu-img", "info", "--output=json", "-U",
                                 str(entry / "disk.qcow2"))).stdout)
    assert info["backing-filename"] == f"../{report.states['image.tiny'].path.name}/disk.qcow2"
    assert (store.root / "log" / f"{report.states['provision.t'].key}.log").is_file()
    assert not (entry / ".work").exists()


def _guest(log: str, rc: int = 0):  # type: ignore[no-untyped-def]
    from aivm.run import Result

    def boot(r: builder.BuilderRun, timeout: float = 0) -> Result:
        seed = r.seed.read_bytes()
        nonce = re.search(rb"[0-9a-f]{64}", _nonce_file(seed)).group(0).decode()
        r.provision_log.write_text(log.replace("NONCE", nonce))
        r.console_log.write_text("[    0.0] Linux version 6.1\n")
        r.fence_log.write_text("09:00:00 refused: 10.0.2.2:80 resolves to a non-public address\n")
        return Result(Cmd.of("qemu"), rc, "", "")
    return boot


def _nonce_file(iso: bytes) -> bytes:
    doc = iso[iso.index(b"#cloud-config"):]
    start = doc.index(b"{")
    data, _ = json.JSONDecoder().raw_decode(doc[start:].decode(errors="replace"))
    return next(base64.b64decode(f["content"]) for f in data["write_files"]
                if f["path"].endswith("/nonce"))


# config --------------------------------------------------------------------------------

def chain_config(ssh_key: Path, tmp_path: Path, step: str = "echo marker > /etc/m"):
    src = tmp_path / "motd"
    src.write_text("hi\n")
    tools = Provision(name="tools", base="debian", packages=("hello",),
                      files=(ProvisionFile(src=str(src), dest="/etc/motd"),))
    extra = Provision(name="extra", base="tools", run=(step,))
    cfg = sample_config(ssh_key)
    return replace(cfg, provisions=(tools, extra), vms=(replace(cfg.vms[0], image="extra"),))


@pytest.mark.usefixtures("state_root")
def test_vm_stacks_on_the_provision_chain_and_packages_layer(ssh_key: Path,
                                                            tmp_path: Path) -> None:
    cfg = chain_config(ssh_key, tmp_path)
    nodes = vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
    assert nodes["provision.tools"].inputs == {"base": "image.debian"}
    assert nodes["provision.extra"].inputs == {"base": "provision.tools"}
    assert nodes["devbox.packages"].inputs == {"base": "provision.extra"}
    assert nodes["devbox.packages"].params["packages"] == ("ripgrep", "tmux")
    assert nodes["devbox.packages"].params["allow"] == ("deb.debian.org:80",)
    assert nodes["devbox.overlay"].inputs == {"base": "devbox.packages"}
    assert nodes["devbox.domain"].inputs["base"] == "devbox.packages"
    assert nodes["provision.tools"].files == {"file0": tmp_path / "motd"}
    assert nodes["provision.tools"].params["files"] == (("/etc/motd", "0644"),)
    seed = nodes["devbox.seed"].params
    assert "packages" not in seed and "package_update" not in seed   # the seed installs nothing


@pytest.mark.usefixtures("state_root")
def test_changing_a_step_rekeys_that_layer_and_its_dependants_only(
        ssh_key: Path, tmp_path: Path, store: Store) -> None:
    cfg = chain_config(ssh_key, tmp_path)
    before = keys_of(vm_graph(cfg, cfg.vms[0], read_facts("qemu")), store)
    changed_cfg = chain_config(ssh_key, tmp_path, step="echo other > /etc/m")
    after = keys_of(vm_graph(changed_cfg, changed_cfg.vms[0], read_facts("qemu")), store)
    assert {n for n in before if before[n] != after[n]} == {
        "provision.extra", "devbox.packages", "devbox.overlay", "devbox.domain"}


PROVISIONS = """\
[[images]]
name = "debian"
source = "debootstrap"

[[provisions]]
name = "tools"
base = "debian"
packages = ["hello"]
run = ["echo marker > /etc/aivm-marker"]

[[provisions.files]]
src = "motd"
dest = "/etc/motd"
mode = "0640"

[[vms]]
name = "dev"
image = "tools"
"""


def test_provisions_load_and_a_vm_names_one(tmp_path: Path) -> None:
    cfg = load.loads(PROVISIONS, tmp_path / "config.toml")
    assert cfg.provision("tools") == Provision(
        name="tools", base="debian", packages=("hello",), run=("echo marker > /etc/aivm-marker",),
        files=(ProvisionFile(src="motd", dest="/etc/motd", mode="0640"),))
    assert cfg.vms[0].image == "tools"


@pytest.mark.parametrize("edit, line, message", [
    (('base = "debian"', 'base = "nope"'), 7, "neither an image nor a provision"),
    (('mode = "0640"', 'mode = "rw-r"'), 14, "invalid file mode"),
    (('dest = "/etc/motd"', 'dest = "etc/motd"'), 13, "invalid file dest"),
    (('name = "tools"', 'name = "debian"'), 6, "has the name of an image"),
    (('packages = ["hello"]', 'packages = ["Hello World"]'), 8, "invalid packages"),
    (('run = ["echo marker > /etc/aivm-marker"]', 'run = [""]'), 9, "invalid run step"),
    (('base = "debian"', 'base = "tools"'), 7, "based on itself"),
])
def test_provision_mistakes_are_file_line_errors(tmp_path: Path, edit: tuple[str, str],
                                                 line: int, message: str) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError) as exc:
        load.loads(PROVISIONS.replace(*edit), path)
    assert exc.value.message.startswith(f"{path}:{line}: ")
    assert message in exc.value.message


def test_qemu_must_read_every_layer_under_the_vm(tmp_path: Path) -> None:
    from aivm.activate.up import Artifacts
    from aivm.config.schema import Network, Vm
    from aivm.graph.scheduler import NodeState

    kinds = {"image.debian": "debootstrap", "provision.tools": "provision",
             "dev.packages": "provision", "dev.overlay": "overlay", "dev.seed": "seed-iso",
             "dev.domain": "domain-xml", "net.aivm": "network-xml"}
    states = {}
    for name, kind in kinds.items():
        entry = tmp_path / name
        entry.mkdir()
        (entry / "manifest.json").write_text("{}")
        (entry / "disk.qcow2").write_text("")
        states[name] = NodeState(name, kind, "k", entry, True)
    art = Artifacts(Vm(name="dev", image="tools"), Network(), states)
    assert {p.parent.name for p in art.hypervisor_files()} == {
        "image.debian", "provision.tools", "dev.packages", "dev.overlay", "dev.seed"}


def test_an_efi_image_without_a_kernel_boots_the_builder_under_ovmf(tmp_path: Path) -> None:
    if not any(Path(code).is_file() for code, _ in builder.OVMF):
        pytest.skip("no OVMF here")
    argv = builder.argv(run_spec(tmp_path, {"firmware": "efi", "kernel": ""}))
    pflash = [a for a in argv if a.startswith("if=pflash")]
    assert len(pflash) == 2 and "readonly=on" in pflash[0] and "efivars.fd" in pflash[1]
    assert "-kernel" not in argv and (tmp_path / "efivars.fd").is_file()


@pytest.mark.usefixtures("state_root")
def test_the_layers_carry_the_bottom_images_firmware(ssh_key: Path, tmp_path: Path,
                                                   store: Store) -> None:
    from aivm.config.schema import Firmware

    cfg = chain_config(ssh_key, tmp_path)
    bios = vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
    assert "firmware" in bios["provision.tools"].params
    efi_cfg = replace(cfg, images=(replace(cfg.images[0], firmware=Firmware.EFI),))
    efi = vm_graph(efi_cfg, efi_cfg.vms[0], read_facts("qemu"))
    assert efi["provision.tools"].params["firmware"] == "efi"
    assert efi["devbox.packages"].params["firmware"] == "efi"
    before, after = keys_of(bios, store), keys_of(efi, store)
    assert before["provision.tools"] != after["provision.tools"]
