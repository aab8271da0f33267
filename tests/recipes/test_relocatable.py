"""Store entries that stay valid when the store moves (a prerequisite of sharing a cache)."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from aivm.activate import approve, live
from aivm.activate.approve import Policy, Ui
from aivm.activate.up import Artifacts
from aivm.config import init, load
from aivm.config.schema import Config
from aivm.config.to_graph import vm_graph
from aivm.errors import AivmError, StoreError
from aivm.graph import scheduler
from aivm.graph.graph import Graph
from aivm.graph.node import Node
from aivm.graph.statcache import StatCache
from aivm.graph.store import Manifest, Store
from aivm.host.facts import read as read_facts
from aivm.recipes import REGISTRY, render
from aivm.recipes.base import XMLNS
from aivm.recipes.domain_xml import STORE_REF, boot_info, resolve, store_ref
from aivm.run import Cmd, run
from tests.recipes.conftest import SSH_KEY
from tests.recipes.helpers import build_nodes, keys_of, render_node, store_at


def test_an_overlay_follows_its_base_when_the_store_moves(tmp_path: Path) -> None:
    old = tmp_path / "old-store"
    base = old / "0123-image.cloud"
    base.mkdir(parents=True)
    run(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", str(base / "disk.qcow2"), "1G"))
    node = Node("v.overlay", "overlay", params={"size_gib": 2}, inputs={"base": "b"})
    render_node(node, old / "4567-v.overlay", inputs={"base": base})
    new = tmp_path / "elsewhere" / "new-store"
    new.parent.mkdir()
    shutil.move(old, new)
    chain = json.loads(run(Cmd.of("qemu-img", "info", "--output=json", "--backing-chain", "-U",
                                  str(new / "4567-v.overlay" / "disk.qcow2"))).stdout)
    assert [Path(layer["filename"]).resolve() for layer in chain] == [
        new / "4567-v.overlay" / "disk.qcow2", new / "0123-image.cloud" / "disk.qcow2"]
    assert "old-store" not in (new / "4567-v.overlay" / "disk.qcow2").read_bytes().decode("latin-1")


# ---- the domain XML: store files by reference, resolved where the store is ------------------
# The default VM graph (what `aivm config init` writes) built into one store, which then
# moves: its domain XML, seed, overlay and the rest name nothing of the first root, keep their
# keys, and the XML activation resolves names files that exist in the moved store.

KERNEL = {"kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "root=/dev/vda1 console=ttyS0"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with an ssh key, as `aivm config init` finds one (the config names ~/.ssh)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def default_config(home: Path) -> Config:
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text(SSH_KEY + "\n")
    (home / ".ssh" / "id_ed25519").write_text("not a key\n")
    host = init.HostFacts(cpus=2, memory_mib=8192, routes=(), home=home)
    return load.loads(init.render(init.detect(host)))


def _stand_in_image(store: Store, node: Node, key: str, boot: bool) -> None:
    """The base image's entry, committed under its real key without downloading it: a small
    qcow2 and, with `boot`, the kernel, initrd and boot.json of a direct-kernel-boot image."""
    def write(into: Path) -> None:
        run(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", str(into / "disk.qcow2"), "1G"))
        if boot:
            (into / "vmlinuz").write_bytes(b"kernel")
            (into / "initrd.img").write_bytes(b"initrd")
            (into / "boot.json").write_text(json.dumps(KERNEL))

    store.commit(key, node.name, write, lambda size, secs: Manifest(
        key, node.name, node.kind, 1, {}, {}, {}, {}, {}, "", size, secs))


@dataclass(frozen=True)
class Moved:
    old: Path
    new: Store
    cfg: Config
    nodes: dict[str, Node]
    keys: dict[str, str]


def build_and_move(tmp_path: Path, home: Path, *, boot: bool) -> Moved:
    cfg = default_config(home)
    nodes = vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
    old = tmp_path / "first" / "store"
    store = store_at(old)
    images = [n for n in nodes.values() if n.kind in IMAGE_KINDS]
    keys = keys_of(nodes, store)
    for image in images:
        _stand_in_image(store, image, keys[image.name], boot)
    report = build_nodes(store, nodes.values())
    assert sorted(report.built) == sorted(set(nodes) - {i.name for i in images})
    new = tmp_path / "elsewhere" / "second-store"
    new.parent.mkdir()
    shutil.move(old, new)
    return Moved(old, Store(new), cfg, nodes, keys)


IMAGE_KINDS = ("fetch", "debootstrap", "local-image", "provision")


def artifacts(moved: Moved) -> Artifacts:
    """The moved store's entries as `aivm up` finds them (keyed again, nothing built)."""
    states = scheduler.resolve(Graph(moved.nodes.values()), REGISTRY, moved.new,
                               StatCache(None))
    assert {n: s.key for n, s in states.items()} == moved.keys  # the move changed no key
    assert not [n for n, s in states.items() if not s.cached]  # and nothing is stale
    vm = moved.cfg.vms[0]
    network = moved.cfg.network(vm.network)
    assert network is not None
    return Artifacts(vm, network, states)


def _names(store: Path, needle: str) -> list[Path]:
    """Every file or link of `store` whose bytes (or link target) name `needle`; build logs
    aside (`<store>/log`: the history of a local build, never an output, never shared)."""
    found = []
    for path in sorted(p for p in store.rglob("*") if p.relative_to(store).parts[0] != "log"):
        if path.is_symlink():
            found += [path] if needle in os.readlink(path) else []
        elif path.is_file() and needle.encode() in path.read_bytes():
            found.append(path)
    return found


def store_files(xml: str) -> dict[str, str]:
    """The files a domain XML has QEMU open outside the VM's state: seed, kernel, initrd."""
    root = ET.fromstring(xml)
    cdrom = root.find("devices/disk[@device='cdrom']/source")
    assert cdrom is not None
    out = {"seed": cdrom.get("file", "")}
    out.update({t: root.findtext(f"os/{t}", "") for t in ("kernel", "initrd")
                if root.find(f"os/{t}") is not None})
    return out


@pytest.mark.usefixtures("state_root")
@pytest.mark.parametrize("boot", [False, True], ids=["disk-boot", "kernel-boot"])
def test_a_moved_store_names_nothing_of_its_first_root(tmp_path: Path, home: Path,
                                                        boot: bool) -> None:
    moved = build_and_move(tmp_path, home, boot=boot)
    assert _names(moved.new.root, str(moved.old)) == []
    assert len(moved.new.entries()) == len(moved.nodes)
    domain = artifacts(moved).domain_xml
    stored = store_files(domain.read_text())
    assert set(stored) == ({"seed", "kernel", "initrd"} if boot else {"seed"})
    assert all(ref.startswith(f"{STORE_REF}/") for ref in stored.values()), stored


@pytest.mark.usefixtures("state_root")
@pytest.mark.parametrize("boot", [False, True], ids=["disk-boot", "kernel-boot"])
def test_resolved_xml_points_at_files_of_the_moved_store(tmp_path: Path, home: Path,
                                                        boot: bool) -> None:
    moved = build_and_move(tmp_path, home, boot=boot)
    art = artifacts(moved)
    resolved = art.domain_text()
    files = store_files(resolved)
    assert set(files) == ({"seed", "kernel", "initrd"} if boot else {"seed"})
    for path in map(Path, files.values()):
        assert path.is_file() and path.parent.parent == moved.new.root, path
    assert files["seed"] == str(art.entry(f"{art.vm.name}.seed") / "seed.iso")
    assert STORE_REF not in resolved and str(moved.old) not in resolved
    # the identity check: the resolved XML carries the node's key, as stored
    assert live.parse_domain(resolved).key == art.states[f"{art.vm.name}.domain"].key


def test_libvirt_gets_the_resolved_xml_and_finds_it_identical(tmp_path: Path) -> None:
    """Activation defines the resolved XML (in libvirt's in-memory test driver) and then
    finds the domain "up to date": the live key is the node key, store paths aside."""
    libvirt = pytest.importorskip("libvirt")
    entry = tmp_path / "store" / f"{'s' * 32}-vm.seed"
    xml = render.render(
        "domain.xml.j2", name=f"t{os.getpid()}", key="a" * 64, xmlns=XMLNS, accel="qemu",
        cpus=1, memory_mib=512, input_keys=[], disk="/state/vm/disk.qcow2",
        seed=store_ref(entry, "seed.iso", "seed"), console_log="/state/vm/console.log",
        network="default", mac="52:54:00:aa:bb:02", shared_root="", shared_root_tag="",
        boot={"firmware": "bios", "kernel": "", "initrd": "", "cmdline": ""})
    conn = live.connect("test:///default")
    try:
        resolved = resolve(xml, tmp_path / "store")
        approve.execute(live.domain_plan(conn, resolved, str(entry)), Policy(yes=True),
                        Ui(ask=input, is_tty=lambda: False, say=lambda line: None))
        name = f"t{os.getpid()}"
        state = live.read_domain(conn, name)
        assert state.disks == ("/state/vm/disk.qcow2", str(entry / "seed.iso"))
        assert live.domain_plan(conn, resolved, str(entry)).notes == (f"VM {name}: up to date",)
        dom = conn.lookupByName(name)
        dom.destroy()
        dom.undefine()
    finally:
        conn.close()
    assert libvirt is not None


def test_resolve_escapes_the_root_and_leaves_plain_paths() -> None:
    xml = ('<domain><os><kernel>@store@/k-base/vmlinuz</kernel></os>'
           '<x file="/abs/seed.iso"/></domain>')
    out = resolve(xml, Path("/srv/a & b <store>"))
    root = ET.fromstring(out)
    assert root.findtext("os/kernel") == "/srv/a & b <store>/k-base/vmlinuz"
    assert root.find("x").get("file") == "/abs/seed.iso"  # a version-1 entry's path stays
    assert resolve(xml.replace("@store@/k-base/vmlinuz", "/old/vmlinuz"), Path("/s")) == \
        xml.replace("@store@/k-base/vmlinuz", "/old/vmlinuz")


@pytest.mark.parametrize("ref", ["@store@/../etc/passwd", "@store@/entry", "@store@//x",
                                 "@store@/e/./x", "@store@/e/../../x"])
def test_a_reference_outside_a_store_entry_is_refused(ref: str) -> None:
    with pytest.raises(StoreError) as err:
        resolve(f'<domain><disk><source file="{ref}"/></disk></domain>', Path("/srv/store"))
    assert err.value.reason == "bad-store-ref" and err.value.hint


@pytest.mark.parametrize("file", ["../x", "/abs", "a/../../b", "a'b"])
def test_store_ref_keeps_to_the_entry(file: str) -> None:
    with pytest.raises(AivmError):
        store_ref(Path("/srv/store/e-base"), file, "kernel path")


def test_a_cmdline_naming_the_token_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "store" / "b-base"
    base.mkdir(parents=True)
    (base / "boot.json").write_text(json.dumps({**KERNEL, "cmdline": "x @store@/b-base/y"}))
    with pytest.raises(AivmError) as err:
        boot_info(base)
    assert "cmdline" in err.value.message
