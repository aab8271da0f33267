"""`aivm store copy --to ssh://root@ADDR`: a closure copied into another host's store over
one multiplexed ssh connection (issue #17). The "other host" is sshd in a namespace of
its own, joined to a client namespace the test creates (tests/e2e/remotehost.py); aivm's
ssh runs in the client namespace (AIVM_NETNS). No libvirt, no guest."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from aivm.cache.verify import verify
from aivm.cli.app import App
from aivm.cli.main import cli
from aivm.graph.graph import Graph
from aivm.graph.store import Store
from tests.e2e.netns import netns_add, netns_delete
from tests.e2e.remotehost import SSHD, remote_host
from tests.graph.fakes import FakeRegistry, chain_graph

pytestmark = [pytest.mark.realstack, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0 or not Path(SSHD).exists(),
                                 reason="needs root and openssh-server")]


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory):
    client = f"aivm-t-{os.getpid()}-rc"
    work = Path(f"/tmp/{client}")
    netns_add(client)
    try:
        with remote_host(client, work) as host:
            yield client, host
    finally:
        netns_delete(client)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def world(remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    client, host = remote
    monkeypatch.setenv("AIVM_NETNS", client)
    monkeypatch.setenv("AIVM_SSH_CONFIG", str(host.ssh_config))
    run_dir = tempfile.mkdtemp(prefix="r", dir=host.ssh_config.parent)  # 0700, short
    monkeypatch.setenv("XDG_RUNTIME_DIR", run_dir)  # a master of this test's own
    shutil.rmtree(host.store_root, ignore_errors=True)
    registry = FakeRegistry(tmp_path / "templates")
    cfg = tmp_path / "a.toml"
    cfg.write_text("schema_version = 1\n")

    def run(*args: str):
        app = App(config_override=str(cfg), store_override=str(tmp_path / "a"),
                  registry_factory=lambda: registry,
                  graph_factory=lambda app, vms: Graph(chain_graph()))
        return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)

    assert run("build").exit_code == 0
    from aivm.remote import facts

    facts._PROBED.clear()
    yield host, run, Store(tmp_path / "a")
    from aivm.remote.address import parse
    from aivm.remote.connection import Connection

    Connection.to(parse(host.destination)).close()


def _logins(host) -> int:
    return host.accepted_logins()


def test_copy_puts_the_closure_in_the_remote_store_once(world) -> None:
    host, run, local = world
    before = _logins(host)
    url = f"ssh://{host.destination}"
    first = run("store", "copy", "--to", url)
    assert first.exit_code == 0, first.output
    assert f"pushed 4 entries to {url}" in first.output
    sent = int(first.output.split("(")[1].split()[0])
    assert sent > 0
    remote = Store(host.store_root)
    assert sorted(e.name for e in remote.entries()) == sorted(e.name for e in local.entries())
    for entry in local.entries():
        there = host.store_root / entry.name
        assert remote.manifest(there).digest == local.manifest(entry).digest
        assert (there / "out.txt").read_bytes() == (entry / "out.txt").read_bytes()
        assert oct(there.stat().st_mode & 0o777) == oct(entry.stat().st_mode & 0o777)
    assert all(v.status == "ok" for v in verify(remote))  # re-hashed on the remote side
    assert not list(host.store_root.glob(".tmp-*"))
    second = run("store", "copy", "--to", url)
    assert second.exit_code == 0, second.output
    assert "0 B uploaded (0 bytes)" in second.output or "(0 bytes)" in second.output
    assert _logins(host) - before == 1  # both copies went through one ssh connection


def test_an_entry_that_differs_on_the_remote_is_refused(world) -> None:
    host, run, local = world
    url = f"ssh://{host.destination}"
    assert run("store", "copy", "--to", url).exit_code == 0
    top = max(local.entries(), key=lambda e: e.name.endswith("-top"))
    manifest = host.store_root / top.name / "manifest.json"
    os.chmod(manifest.parent, 0o755)
    os.chmod(manifest, 0o644)
    data = json.loads(manifest.read_text())
    data["digest"] = "0" * len(data["digest"])
    manifest.write_text(json.dumps(data))
    out = run("store", "copy", "--to", url)
    assert out.exit_code != 0
    assert "differs" in out.output and top.name in out.output


def test_a_bad_ssh_target_is_a_user_error(world) -> None:
    _host, run, _local = world
    out = run("store", "copy", "--to", "ssh://bad user@x")
    assert out.exit_code != 0 and "not user@server" in out.output


def test_gc_on_the_host_keeps_rooted_closures_and_sweeps_the_rest(world) -> None:
    host, run, local = world
    assert run("store", "copy", "--to", f"ssh://{host.destination}").exit_code == 0
    remote = Store(host.store_root)
    first = min(remote.entries(), key=lambda e: e.name)
    remote.add_root("keep", first)  # an explicit root on the host
    kept = {first.name} | set(remote.manifest(first).input_entries.values())
    dry = run("gc", "--host", host.destination, "--dry-run", "--json")
    shown = json.loads(dry.output)
    assert set(shown["live"]) == kept and len(shown["dead"]) == 4 - len(kept)
    assert len(remote.entries()) == 4  # a dry run removes nothing
    out = run("gc", "--host", host.destination, "--yes")
    assert out.exit_code == 0, out.output
    assert {e.name for e in remote.entries()} == kept
