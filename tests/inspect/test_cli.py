"""`aivm path-info`, `why-depends`, `log`, `lock`, `gc --print-roots/--max-freed/--older-than`
and `build --check`: whole outputs on a real graph built into a real store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from aivm.graph.store import MANIFEST, Store
from tests.inspect.conftest import World
from tests.inspect.stable import stable


def out(world: World, *args: str, code: int = 0) -> str:
    result = world.aivm(*args)
    assert result.exit_code == code, result.output
    return stable(result.output, world.home)


def test_path_info_whole_output(built: World) -> None:
    assert out(built, "path-info", "box.overlay", "--closure") == """\
box.overlay (overlay)
  key      <key>
  path     ~/store/<k>-box.overlay
  size     200.0 KiB, closure 400.0 KiB (2 entries)
  created  <date>, built in <s> s
  digest   blake3:<digest>
  disk.qcow2  virtual 2.0 GiB, allocated 196.0 KiB, backing ../<k>-image.tiny/disk.qcow2
     200.0 KiB  <k>-box.overlay
     200.0 KiB  <k>-image.tiny
"""


def test_path_info_vm_shows_its_files(built: World) -> None:
    state = built.home / "state" / "box"
    state.mkdir(parents=True)
    qcow = built.store / next(p.name for p in built.store.iterdir()
                              if p.name.endswith("-box.overlay")) / "disk.qcow2"
    (state / "disk.qcow2").write_bytes(qcow.read_bytes())
    (state / "console.log").write_text("boot\n")
    text = out(built, "path-info", "box")
    assert text.endswith("""\
VM box: ~/state/box
  console.log  4.0 KiB
  disk.qcow2  virtual 2.0 GiB, allocated 196.0 KiB, backing ../<k>-image.tiny/disk.qcow2
""")
    assert [line for line in text.splitlines() if not line.startswith(" ")] == [
        "box.seed (seed-iso)", "image.tiny (fetch)", "net.lab (network-xml)",
        "net.lab.nft (nft-ruleset)", "box.overlay (overlay)", "box.domain (domain-xml)",
        "VM box: ~/state/box"]
    data = json.loads(built.aivm("path-info", "box", "--json").output)
    domain = next(e for e in data["entries"] if e["name"] == "box.domain")
    assert len(domain["closure"]) == 5 and domain["closure_size"] == sum(
        e["size"] for e in data["entries"] if e["name"] != "net.lab.nft")
    overlay = next(e for e in data["entries"] if e["name"] == "box.overlay")
    assert overlay["qcow2"][0]["virtual"] == 2 << 30
    assert [f["path"].rsplit("/", 1)[1] for f in data["vms"][0]["files"]] == [
        "console.log", "disk.qcow2"]


def test_path_info_not_built(world: World) -> None:
    assert out(world, "path-info", "net.lab") == """\
net.lab (network-xml)
  key      <key>
  path     ~/store/<k>-net.lab
  not built (aivm build builds it)
"""


def test_why_depends_whole_output(built: World) -> None:
    assert out(built, "why-depends", "box", "tiny") == """\
VM box
  → box.domain (<k12>) [box.domain]
    → image.tiny (<k12>) [base]
"""
    every = out(built, "why-depends", "box", "image.tiny", "--all")
    assert every.count("VM box\n") == 2  # the domain boots it; the overlay sits on it
    assert every.endswith("\n\nVM box\n  → box.domain (<k12>) [box.domain]\n"
                          "    → box.overlay (<k12>) [overlay]\n"
                          "      → image.tiny (<k12>) [base]\n")
    data = json.loads(built.aivm("why-depends", "box.overlay", "tiny", "--json").output)
    assert [[h["label"] for h in p] for p in data["paths"]] == [["box.overlay", "image.tiny"]]


def test_why_depends_none_is_an_error(built: World) -> None:
    result = built.aivm("why-depends", "net.lab", "tiny")
    assert result.exit_code == 1
    assert result.stderr == ("error: net.lab does not depend on tiny\n"
                             "hint: `aivm graph` shows the declared graph\n")


def test_why_depends_finds_an_old_image_a_root_holds(built: World) -> None:
    """The VM's roots still hold an entry of an older key: why-depends follows them."""
    store = Store(built.store)
    old = next(p for p in store.entries() if p.name.endswith("-box.overlay"))
    from aivm.graph.store import Root

    store.add_root(Root("box", "disk-backing"), old)
    text = out(built, "why-depends", "box", "box.overlay", "--all")
    assert "VM box\n  → box.overlay (<k12>) [root disk-backing]\n" in text


def test_log_whole_output(built: World) -> None:
    text = out(built, "log", "box.overlay")
    lines = text.splitlines()
    assert lines[0] == "==> box.overlay: build log ~/store/log/<key>.log"
    assert lines[1] == "aivm build of box.overlay (overlay), key <key>, started <date>"
    assert lines[2].startswith("$ qemu-img info --output=json -U ~/store/<k>-image.tiny/")
    assert "  (exit 0)" in lines
    assert any(line.startswith("$ qemu-img create -q -f qcow2 -F qcow2 -b ../<k>-image.tiny/")
               for line in lines)
    seed = out(built, "log", "box.seed")
    assert seed.splitlines()[2] == ("pycdlib: wrote seed.iso (69632 bytes: meta-data, "
                                    "network-config, user-data), every date 1970-01-01T00:00:01Z")


def test_log_vm_has_console_and_json(built: World) -> None:
    console = built.home / "state" / "box" / "console.log"
    console.parent.mkdir(parents=True)
    console.write_text("Debian login:\n")
    text = out(built, "log", "box")
    assert text.endswith("==> console log of VM box: ~/state/box/console.log\nDebian login:\n")
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("==>")] == [
        "==> box.seed", "==> image.tiny", "==> net.lab", "==> net.lab.nft", "==> box.overlay",
        "==> box.domain", "==> console log of VM box"]
    data = json.loads(built.aivm("log", "box", "--json").output)
    assert data["console"]["text"] == "Debian login:\n"
    assert {item["node"] for item in data["logs"]} == {
        "box.seed", "image.tiny", "net.lab", "net.lab.nft", "box.overlay", "box.domain"}


def test_logs_are_outside_entries_and_digests(built: World) -> None:
    store = Store(built.store)
    for entry in store.entries():
        assert not any(p.suffix == ".log" for p in entry.rglob("*")), entry
    from aivm.graph.digest import entry_digest

    entry = next(p for p in store.entries() if p.name.endswith("-box.seed"))
    before = entry_digest(entry)
    (built.store / "log" / (store.manifest(entry).key + ".log")).write_text("changed")
    assert entry_digest(entry) == before == store.manifest(entry).digest


def test_failed_build_log_is_kept_and_named(built: World) -> None:
    """A build that fails: its log (with the failing tool's output) moves to log/failed/
    and the error names it."""
    import hashlib
    import re

    image = built.home / "broken.qcow2"
    image.write_bytes(b"not a qcow2")
    sha = hashlib.sha256(image.read_bytes()).hexdigest()
    text = re.sub(r'url = ".*"', f'url = "file://{image}"', built.config.read_text())
    built.config.write_text(re.sub(r'sha256 = ".*"', f'sha256 = "{sha}"', text))
    result = built.aivm("build")
    assert result.exit_code == 1
    found = re.search(r"box.overlay: .*\(log: (\S+/log/failed/[0-9a-f]{64}\.log)\)",
                      result.stderr, re.S)
    assert found, result.stderr
    body = Path(found.group(1)).read_text()
    assert body.startswith("aivm build of box.overlay (overlay)")
    assert "  (exit 1)\n" in body and "\nbuild failed: create the VM's thin overlay" in body
    assert not (built.store / "log" / os.path.basename(found.group(1))).exists()
    shown = out(built, "log", "box.overlay")
    assert shown.startswith("==> box.overlay: failed build log ~/store/log/failed/<key>.log\n")


def test_gc_print_roots(built: World) -> None:
    store = Store(built.store)
    seed = next(p for p in store.entries() if p.name.endswith("-box.seed"))
    from aivm.graph.store import Root

    store.add_root(Root("box", "box.seed"), seed)
    store.add_root("keep me", seed)
    holder = Store(built.store)
    holder.hold([seed])
    assert out(built, "gc", "--print-roots") == """\
explicit/keep%20me -> <k>-box.seed  [explicit keep me]
vms/box/box.seed -> <k>-box.seed  [VM box]
pending/{pid}-<n>.json -> <k>-box.seed  [running aivm (pid {pid})]
3 roots
""".replace("{pid}", str(os.getpid())).replace("<n>", _pending_n(built))
    data = json.loads(built.aivm("gc", "--print-roots", "--json").output)
    assert [r["kind"] for r in data["roots"]] == ["explicit", "vm", "pending"]
    holder.release()


def _pending_n(world: World) -> str:
    (name,) = [p.name for p in (world.store / "roots" / "pending").glob("*.json")]
    return name.split("-", 1)[1].removesuffix(".json")


def _age(store: Store, suffix: str, days: int) -> None:
    entry = next(p for p in store.entries() if p.name.endswith(suffix))
    data = json.loads((entry / MANIFEST).read_text())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - days * 86400))
    data["created"] = stamp
    os.chmod(entry, 0o755)
    os.chmod(entry / MANIFEST, 0o644)
    (entry / MANIFEST).write_text(json.dumps(data))
    os.chmod(entry, 0o555)


def test_gc_older_than_and_max_freed(built: World) -> None:
    store = Store(built.store)
    _age(store, "-image.tiny", 40)
    _age(store, "-box.overlay", 20)
    older = json.loads(built.aivm("gc", "--dry-run", "--older-than", "30d", "--json").output)
    assert [p.rsplit("-", 1)[1] for p in older["dead"]] == ["image.tiny"]
    assert older["dead_bytes"] == 200 << 10
    freed = json.loads(built.aivm("gc", "--dry-run", "--max-freed", "300K", "--json").output)
    assert sorted(p.rsplit("-", 1)[1] for p in freed["dead"]) == ["box.overlay", "image.tiny"]
    assert out(built, "gc", "--dry-run", "--older-than", "2w", "--max-freed", "1K") == (
        f"dead ~/store/{_name(store, '-image.tiny')}\n0 live, 1 dead (200.0 KiB to free)\n")
    done = out(built, "gc", "-y", "--older-than", "30d")
    assert done.endswith("removed 1 entries, freed 200.0 KiB\n")
    assert not any(p.name.endswith("-image.tiny") for p in store.entries())
    assert any(p.name.endswith("-box.overlay") for p in store.entries())


def _name(store: Store, suffix: str) -> str:
    entry = next(p.name for p in store.entries() if p.name.endswith(suffix))
    return "<k>-" + entry.split("-", 1)[1]


def test_gc_bad_size_is_an_error(built: World) -> None:
    result = built.aivm("gc", "--max-freed", "lots")
    assert result.exit_code == 1
    assert result.stderr == "error: not a size: 'lots'\nhint: write e.g. 500M, 2G or 4096 (bytes)\n"


def test_lock_update_and_compare(built: World) -> None:
    assert out(built, "lock") == \
        "no lock at ~/.config/aivm/aivm.lock: `aivm lock --update` writes one\n"
    text = out(built, "lock", "--update")
    assert text.splitlines()[0] == "~/.config/aivm/aivm.lock updated"
    assert "  recipes.seed-iso: (none) -> 1\n" in text
    assert out(built, "lock") == "~/.config/aivm/aivm.lock: matches this machine\n"
    lock = built.home / ".config" / "aivm" / "aivm.lock"
    body = lock.read_text()
    assert body.startswith("# aivm.lock: written by `aivm lock --update`")
    lock.write_text(body.replace('seed-iso = 1', 'seed-iso = 0').replace(
        'qemu-img = "qemu-img version', 'qemu-img = "qemu-img version 0.1 was'))
    assert out(built, "lock") == f"""\
~/.config/aivm/aivm.lock differs from this machine:
  recipes.seed-iso: 0 -> 1
  tools.qemu-img: qemu-img version 0.1 was{_qemu_img_rest()} -> qemu-img version{_qemu_img_rest()}
"""
    assert out(built, "lock", "--update", "seed-iso").splitlines()[1:] == [
        "  recipes.seed-iso: 0 -> 1"]
    data = json.loads(built.aivm("lock", "--json").output)
    assert data["differences"] == [line.strip() for line in out(built, "lock").splitlines()[1:]]
    assert data["lock"]["images"]["image.tiny"]["kind"] == "fetch"


def _qemu_img_rest() -> str:
    from aivm.lock import probe_tools

    return probe_tools(["qemu-img"])["qemu-img"].removeprefix("qemu-img version")


def test_build_says_when_tools_differ_from_the_lock(built: World) -> None:
    out(built, "lock", "--update")
    lock = built.home / ".config" / "aivm" / "aivm.lock"
    lock.write_text(lock.read_text().replace('qemu-img = "qemu-img version',
                                             'qemu-img = "qemu-img version 0.1 was'))
    store = Store(built.store)
    from aivm.graph.store import remove_tree

    remove_tree(next(p for p in store.entries() if p.name.endswith("-box.overlay")))
    remove_tree(next(p for p in store.entries() if p.name.endswith("-box.domain")))
    result = built.aivm("build")
    assert result.exit_code == 0
    assert [line for line in result.stderr.splitlines() if line.startswith("note:")] == [
        f"note: built with other tools than the lock: qemu-img: qemu-img version"
        f"{_qemu_img_rest()} here, qemu-img version 0.1 was{_qemu_img_rest()} in aivm.lock"]
    assert "note:" not in built.aivm("build").stderr  # no-op: nothing probed, nothing said


def test_build_check_whole_output(built: World) -> None:
    assert out(built, "build", "--check") == """\
box.seed (seed-iso): reproducible
image.tiny (fetch): reproducible
net.lab (network-xml): reproducible
net.lab.nft (nft-ruleset): reproducible
box.overlay (overlay): reproducible
box.domain (domain-xml): reproducible
reproducible kinds: domain-xml, fetch, network-xml, nft-ruleset, overlay, seed-iso
"""
    assert not list(built.store.glob(".tmp-*"))


def test_build_check_reports_a_differing_entry(built: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Without the seed's fixed clock, a rebuild a minute later differs: --check says so
    (and this is what the fixed clock in seed_iso.py prevents)."""
    import contextlib

    from aivm.recipes import seed_iso

    real = time.time
    monkeypatch.setattr(seed_iso, "_fixed_clock", contextlib.nullcontext)
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    result = built.aivm("build", "--check", "box.seed", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["kinds"] == {"seed-iso": "differs"}
    assert data["checked"][0]["recorded"] != data["checked"][0]["rebuilt"]
    assert out(built, "build", "--check", "box.seed", code=1) == (
        "box.seed (seed-iso): differs\nreproducible kinds: none\nnot reproducible: seed-iso\n")


def test_noop_build_imports_no_inspection_and_probes_no_tool(built: World) -> None:
    """The no-op path stays lean: no networkx, no aivm.lock, no tool probe (a lock exists)."""
    import subprocess
    import sys

    out(built, "lock", "--update")
    code = (
        "import sys\nfrom aivm.cli.main import cli\n"
        f"cli(['--config', {str(built.config)!r}, '--store', {str(built.store)!r}, 'build'],"
        " standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('networkx', 'aivm.lock', "
        "'aivm.inspect.why', 'aivm.inspect.check', 'plumbum'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "nothing to build: 6 nodes cached\n[]\n"


def test_log_names_a_builder_console(built: World) -> None:
    """A provision build keeps its builder guest's console beside its log: log names it."""
    store = Store(built.store)
    key = store.manifest(next(p for p in store.entries() if p.name.endswith("-box.seed"))).key
    console = built.store / "log" / f"{key}.console.log"
    console.write_text("[    0.0] Linux version\n")
    text = out(built, "log", "box.seed")
    assert text.endswith("every date 1970-01-01T00:00:01Z\n"
                         "(the builder guest's console: ~/store/log/<key>.console.log)\n")
