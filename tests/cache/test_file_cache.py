"""Binary caches with a file:// cache, in-process on the fake chain graph (no guest):
push signs, substitution checks key, signature and output digest, verify re-hashes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from aivm.cache import sign
from aivm.cache.backends import FileCache, Record
from aivm.cache.substitute import push
from aivm.cli.app import App
from aivm.cli.main import cli
from aivm.graph.graph import Graph
from aivm.graph.node import Node
from aivm.graph.store import Store
from tests.graph.fakes import FakeRegistry, chain_graph

NODES = ["base", "mid", "side", "top"]


@pytest.fixture
def world(tmp_path: Path):
    registry = FakeRegistry(tmp_path / "templates")
    secret = sign.keygen(tmp_path / "keys" / "secret", "team-1")
    cache = tmp_path / "cache"

    def config(name: str, **store: object) -> Path:
        path = tmp_path / f"{name}.toml"
        lines = ["schema_version = 1", "[store]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in store.items()]
        path.write_text("\n".join(lines) + "\n")
        return path

    extra: list[Node] = []

    def run(store: str, cfg: Path, *args: str):
        app = App(config_override=str(cfg), store_override=str(tmp_path / store),
                  registry_factory=lambda: registry,
                  graph_factory=lambda app, vms: Graph(chain_graph() + extra))
        return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)

    class World:
        pass

    w = World()
    w.tmp, w.registry, w.secret, w.cache, w.config, w.run = (tmp_path, registry, secret,
                                                             cache, config, run)
    w.url = f"file://{cache}"
    w.extra = extra
    w.pusher = config("a", secret_key_file=str(tmp_path / "keys" / "secret"), push_to=w.url)
    w.user = config("b", substituters=[w.url], trusted_keys=[secret.public])
    return w


def _built(result) -> dict:
    return json.loads(result.stdout)


def _push_all(w) -> None:
    assert w.run("a", w.pusher, "build").exit_code == 0
    out = w.run("a", w.pusher, "store", "push")
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"pushed 4 entries to {w.url}")


def test_store_b_substitutes_every_node_and_names_no_path_of_a(world) -> None:
    w = world
    _push_all(w)
    w.registry.log.clear()
    report = _built(w.run("b", w.user, "build", "--json"))
    assert sorted(report["substituted"]) == NODES and report["built"] == []
    assert w.registry.log == []  # no recipe ran
    a, b = Store(w.tmp / "a"), Store(w.tmp / "b")
    for entry in a.entries():
        assert (b.root / entry.name / "out.txt").read_text() == (entry / "out.txt").read_text()
        assert b.manifest(b.root / entry.name).digest == a.manifest(entry).digest
    for dirpath, _dirs, files in os.walk(b.root):
        for f in files:
            assert str(a.root).encode() not in Path(dirpath, f).read_bytes(), f
    assert w.run("b", w.user, "build").output == "nothing to build: 4 nodes cached\n"


def test_text_report_says_substituted_and_built(world) -> None:
    w = world
    _push_all(w)
    out = w.run("b", w.user, "build").output
    assert "substituted 4, built 0 of 4 nodes" in out


def test_second_push_uploads_nothing_new(world) -> None:
    w = world
    _push_all(w)
    again = w.run("a", w.pusher, "store", "push")
    assert "0 bytes)" in again.output


def _one_blob(w) -> Path:
    blobs = sorted((w.cache / "blobs").iterdir())
    assert blobs
    return blobs[0]


def test_a_tampered_blob_is_refused_and_nothing_committed(world) -> None:
    w = world
    _push_all(w)
    for blob in (w.cache / "blobs").iterdir():
        blob.write_bytes(blob.read_bytes() + b"!")
    result = w.run("b", w.user, "build")
    assert result.exit_code == 1
    assert "digest" in result.stderr and "nothing was committed" in result.stderr
    assert Store(w.tmp / "b").entries() == [] and not Store(w.tmp / "b").temporaries()


def test_a_missing_signature_is_refused(world) -> None:
    w = world
    assert w.run("a", w.pusher, "build").exit_code == 0
    unsigned = w.config("u", push_to=w.url)
    out = w.run("a", unsigned, "store", "push")
    assert "unsigned" in out.output + out.stderr
    result = w.run("b", w.user, "build")
    assert result.exit_code == 1 and "is unsigned; refused" in result.stderr
    assert Store(w.tmp / "b").entries() == []


def test_a_signature_by_an_untrusted_key_or_over_another_manifest_is_refused(world) -> None:
    w = world
    _push_all(w)
    other = sign.keygen(w.tmp / "keys" / "other", "team-1")  # same name, other key
    stranger = w.config("s", substituters=[w.url], trusted_keys=[other.public])
    result = w.run("b", stranger, "build")
    assert result.exit_code == 1 and "no valid signature by a trusted key" in result.stderr
    # a record whose manifest was edited (another digest) no longer matches its signature
    for path in (w.cache / "entries").iterdir():
        data = json.loads(path.read_text())
        data["manifest"]["digest"] = "blake3:" + "0" * 64
        path.write_text(json.dumps(data))
    result = w.run("c", w.user, "build")
    assert result.exit_code == 1 and "no valid signature" in result.stderr
    assert Store(w.tmp / "c").entries() == []


def test_an_unreachable_cache_falls_back_to_building_with_one_line(world) -> None:
    w = world
    cfg = w.config("m", substituters=[f"file://{w.tmp}/nowhere"], trusted_keys=[w.secret.public])
    result = w.run("b", cfg, "build", "--json")
    assert sorted(_built(result)["built"]) == NODES
    assert result.stderr.count("building instead") == 1
    assert "building instead" in result.stderr


def test_substituter_option_is_asked_first(world) -> None:
    w = world
    _push_all(w)
    cfg = w.config("o", trusted_keys=[w.secret.public])
    report = _built(w.run("b", cfg, "build", "--json", "--substituter", w.url))
    assert sorted(report["substituted"]) == NODES


def test_memory_state_is_never_pushed(world, tmp_path: Path) -> None:
    w = world
    store = Store(tmp_path / "m").ensure()
    import dataclasses

    from tests.graph.test_digest import _manifest

    path, _ = store.commit("c" * 64, "vm.booted-state", lambda into: (into / "mem").write_text("m"),
                           lambda size, secs: dataclasses.replace(
                               _manifest(), kind="booted-state", name="vm.booted-state"))
    cache = FileCache(w.url, w.cache)
    pushed = push(store, [path], cache, w.secret)
    assert pushed.entries == ()
    assert pushed.skipped == (f"{path.name}: memory state is never shared",)
    assert not (w.cache / "entries").exists() or not list((w.cache / "entries").iterdir())


def test_a_domain_xml_is_pushed_and_substituted(world, tmp_path: Path) -> None:
    """A domain XML names store files by reference (aivm/recipes/domain_xml.py), so it is
    shared like any entry: pushed, and found by a substituter."""
    import dataclasses

    from aivm.cache.substitute import Settings, Substituter
    from tests.graph.test_digest import _manifest

    w = world
    store = Store(tmp_path / "d").ensure()
    path, _ = store.commit("d" * 64, "vm.domain", lambda into: (into / "domain.xml").write_text(
        "<domain/>"), lambda size, secs: dataclasses.replace(
            _manifest(), key="d" * 64, kind="domain-xml", name="vm.domain"))
    pushed = push(store, [path], FileCache(w.url, w.cache), w.secret)
    assert pushed.entries == (path.name,) and pushed.skipped == ()
    sub = Substituter(Settings(substituters=(w.url,), trusted_keys=(w.secret.public,)),
                      notify=lambda line: None)
    other = Store(tmp_path / "e").ensure()
    got = sub.fetch(other, "d" * 64, "vm.domain", "domain-xml", None)
    assert got is not None and (got / "domain.xml").read_text() == "<domain/>"


def test_verify_reports_a_changed_entry_and_repair_rebuilds_it(world) -> None:
    w = world
    assert w.run("a", w.pusher, "build").exit_code == 0
    ok = json.loads(w.run("a", w.pusher, "store", "verify", "--json").output)
    assert ok["changed"] == [] and len(ok["entries"]) == 4
    entry = next(e for e in Store(w.tmp / "a").entries() if e.name.endswith("-mid"))
    target = entry / "out.txt"
    target.chmod(0o644)
    target.write_text("tampered")
    bad = w.run("a", w.pusher, "store", "verify")
    assert bad.exit_code == 1 and f"changed {entry.name}" in bad.output
    fixed = w.run("a", w.pusher, "store", "verify", "--repair", "--json")
    assert fixed.exit_code == 0
    assert json.loads(fixed.stdout[fixed.stdout.index("{"):])["repaired"] \
        == [entry.name]
    assert target.read_text() == "BM"


def test_record_round_trips(world) -> None:
    w = world
    _push_all(w)
    for path in (w.cache / "entries").iterdir():
        record = Record.from_json(path.read_text())
        assert Record.from_json(record.to_json()) == record


def test_one_key_under_two_names_is_two_records(world) -> None:
    """Keys leave names out: `side2` has `side`'s key. Store B, whose graph has `side2`
    too, substitutes it from its own record (a name mismatch was refused before)."""
    w = world
    _push_all(w)
    w.extra.append(Node("side2", "text", {"text": "S"}))
    report = _built(w.run("b", w.user, "build", "--json"))
    assert report["nodes"]["side2"]["key"] == report["nodes"]["side"]["key"]
    assert sorted(report["substituted"]) == NODES and report["built"] == ["side2"]
    assert w.run("a", w.pusher, "build").exit_code == 0
    assert w.run("a", w.pusher, "store", "push").exit_code == 0
    report = _built(w.run("c", w.user, "build", "--json"))
    assert sorted(report["substituted"]) == sorted(NODES + ["side2"])


def test_auto_push_after_build(world) -> None:
    w = world
    cfg = w.config("auto", secret_key_file=str(w.tmp / "keys" / "secret"), push_to=w.url,
                   auto_push=True)
    result = w.run("a", cfg, "build")
    assert result.exit_code == 0 and f"pushed 4 entries to {w.url}" in result.stderr
    assert len(list((w.cache / "entries").iterdir())) == 4
    report = _built(w.run("b", w.user, "build", "--json"))
    assert sorted(report["substituted"]) == NODES


def test_substitution_reports_bytes_as_progress(world) -> None:
    from aivm.cache.substitute import Settings, Substituter

    w = world
    _push_all(w)
    a = Store(w.tmp / "a")
    entry = next(e for e in a.entries() if e.name.endswith("-top"))
    manifest = a.manifest(entry)
    seen: list[tuple[int, int | None]] = []

    class Bytes:
        def advanced(self, nbytes: int, total: int | None) -> None:
            seen.append((nbytes, total))

        def reached(self, position: int, total: int | None) -> None:
            raise AssertionError("a substitution reports increments")

    sub = Substituter(Settings(substituters=(w.url,), trusted_keys=(w.secret.public,)),
                      notify=lambda line: None)
    b = Store(w.tmp / "b2").ensure()
    path = sub.fetch(b, manifest.key, "top", "text", Bytes())
    assert path is not None and (path / "out.txt").read_text() == \
        (entry / "out.txt").read_text()
    size = (entry / "out.txt").stat().st_size
    assert sum(n for n, _ in seen) == size and {t for _, t in seen} == {size}
    assert sub.fetch(b, "f" * 64, "top", "text", Bytes()) is None  # a miss
