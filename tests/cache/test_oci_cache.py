"""oci:// binary caches against a real registry (Debian's docker-registry) on loopback in a
network namespace the test creates; every aivm command that talks to it runs inside.
No guest boots here: the fake chain graph stands in for the VM graph."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from aivm.cache import sign
from aivm.graph.store import Store
from tests.cache import registry as reg
from tests.e2e import netns as ns

pytestmark = [pytest.mark.realstack, pytest.mark.slow,
              pytest.mark.skipif(not reg.available(), reason="needs docker-registry and root")]
REPO = Path(__file__).resolve().parents[2]
NODES = ["base", "mid", "side", "top"]


class Aivm:
    def __init__(self, tmp: Path, registry: reg.TestRegistry) -> None:
        self.tmp, self.registry = tmp, registry
        self.secret = sign.keygen(tmp / "secret", "team-1")

    def config(self, name: str, **store: object) -> Path:
        path = self.tmp / f"{name}.toml"
        path.write_text("schema_version = 1\n[store]\n" + "".join(
            f"{k} = {json.dumps(v)}\n" for k, v in store.items()))
        return path

    def __call__(self, store: str, cfg: Path, *args: str, env: dict[str, str] | None = None):
        extra = {**self.registry.env(), **(env or {}), "PYTHONPATH": str(REPO)}
        return ns.ns_exec(self.registry.netns, "env", *[f"{k}={v}" for k, v in extra.items()],
                          sys.executable, "-m", "tests.cache.fake_cli", str(self.tmp / store),
                          str(cfg), str(self.tmp / "templates"), *args, check=False,
                          meaning="aivm (fake graph) in the test namespace", timeout=300)


def _json(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _flow(tmp: Path, registry: reg.TestRegistry) -> None:
    aivm = Aivm(tmp, registry)
    pusher = aivm.config("a", secret_key_file=str(tmp / "secret"), push_to=registry.url)
    user = aivm.config("b", substituters=[registry.url], trusted_keys=[aivm.secret.public])
    assert sorted(_json(aivm("a", pusher, "build", "--json"))["built"]) == NODES
    pushed = aivm("a", pusher, "store", "push")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith(f"pushed 4 entries to {registry.url}")
    assert reg.blob_files(registry)
    again = aivm("a", pusher, "store", "push")
    assert "(0 bytes)" in again.stdout  # the registry has every blob: nothing re-sent
    report = _json(aivm("b", user, "build", "--json"))
    assert sorted(report["substituted"]) == NODES and report["built"] == []
    a, b = Store(tmp / "a"), Store(tmp / "b")
    for entry in a.entries():
        assert b.manifest(b.root / entry.name).digest == a.manifest(entry).digest
    # refused: an untrusted signer, and a tampered blob (the registry's own storage edited)
    stranger = aivm.config("s", substituters=[registry.url],
                           trusted_keys=[sign.keygen(tmp / "other", "team-1").public])
    refused = aivm("c", stranger, "build")
    assert refused.returncode == 1 and "no valid signature by a trusted key" in refused.stderr
    big = next(p for p in reg.blob_files(registry) if p.stat().st_size == 5 << 20)  # base's
    with open(big, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"X")
    tampered = aivm("d", user, "build")
    assert tampered.returncode == 1 and "nothing was committed" in tampered.stderr
    assert not [e for e in Store(tmp / "d").entries() if e.name.endswith("-base")]


def test_oci_push_substitute_and_refuse(tmp_path: Path) -> None:
    with reg.running(tmp_path, f"aivm-oci-{os.getpid()}") as registry:
        _flow(tmp_path, registry)


def test_oci_with_htpasswd_auth(tmp_path: Path) -> None:
    with reg.running(tmp_path, f"aivm-ocia-{os.getpid()}", auth=True) as registry:
        aivm = Aivm(tmp_path, registry)
        cfg = aivm.config("a", secret_key_file=str(tmp_path / "secret"), push_to=registry.url,
                          substituters=[registry.url], trusted_keys=[aivm.secret.public])
        assert aivm("a", cfg, "build").returncode == 0
        denied = aivm("a", cfg, "store", "push", env={"AIVM_OCI_PASSWORD": "wrong"})
        assert denied.returncode == 1 and "refused the credentials" in denied.stderr
        assert aivm("a", cfg, "store", "push").returncode == 0
        report = _json(aivm("b", cfg, "build", "--json"))
        assert sorted(report["substituted"]) == NODES


def test_unreachable_registry_falls_back_at_once(tmp_path: Path) -> None:
    name = f"aivm-ocx-{os.getpid()}"
    ns.netns_add(name)
    try:
        registry = reg.TestRegistry(name, "oci://127.0.0.1:5000/team/aivm", tmp_path)
        aivm = Aivm(tmp_path, registry)
        cfg = aivm.config("b", substituters=[registry.url], trusted_keys=[aivm.secret.public])
        result = aivm("b", cfg, "build", "--json")
        assert sorted(_json(result)["built"]) == NODES
        assert result.stderr.count("building instead") == 1
    finally:
        ns.netns_delete(name)
