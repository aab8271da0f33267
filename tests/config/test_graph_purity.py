"""Config -> graph is a pure function of the config, its file inputs and the HostFacts passed
in: two hosts' facts change only the nodes (and params) the facts feed, and building the
graph probes nothing on this host."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aivm.config.schema import Accel, Config, Egress, EgressPolicy
from aivm.config.to_graph import vm_graph
from aivm.graph.node import Node
from aivm.graph.store import Store
from aivm.host import facts as host_facts
from aivm.host.facts import HostFacts
from tests.recipes.conftest import SSH_KEY, sample_config
from tests.recipes.helpers import keys_of

HERE = HostFacts(accel="kvm", virtiofs=True, state_dir=Path("/var/lib/libvirt/aivm"),
                 nameservers=("192.0.2.53",))
THERE = HostFacts(accel="qemu", virtiofs=False, state_dir=Path("/srv/aivm-state"),
                  nameservers=("198.51.100.53",))


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """The recipes' sample config, its network with an egress allowlist."""
    key = tmp_path / "id.pub"
    key.write_text(SSH_KEY + "\n")
    sample = sample_config(key)
    net = replace(sample.networks[0], egress=Egress(EgressPolicy.ALLOWLIST, allow=("pypi.org",)))
    return replace(sample, networks=(net,))


def _param_diff(a: dict[str, Node], b: dict[str, Node]) -> dict[str, set[str]]:
    assert a.keys() == b.keys()
    out = {}
    for name in a:
        pa, pb = dict(a[name].params), dict(b[name].params)
        diff = {k for k in pa.keys() | pb.keys() if pa.get(k) != pb.get(k)}
        if diff:
            out[name] = diff
    return out


def test_two_hosts_differ_only_where_facts_are_params(cfg: Config, tmp_path: Path) -> None:
    here, there = vm_graph(cfg, cfg.vms[0], HERE), vm_graph(cfg, cfg.vms[0], THERE)
    assert _param_diff(here, there) == {
        "devbox.domain": {"accel", "disk", "console_log", "shared_root"},
        "net.aivm": {"servers_file", "dns_log"},
        "net.aivm.egress": {"upstreams"}}
    store = Store(tmp_path / "store").ensure()
    k1, k2 = keys_of(here, store), keys_of(there, store)
    assert {n for n in k1 if k1[n] != k2[n]} == {"devbox.domain", "net.aivm", "net.aivm.egress"}


@pytest.mark.parametrize(("fact", "value", "changed"), [
    ("accel", "qemu", {"devbox.domain"}),
    ("virtiofs", False, {"devbox.domain"}),
    ("nameservers", ("198.51.100.53",), {"net.aivm.egress"}),
    ("state_dir", Path("/srv/aivm-state"), {"devbox.domain", "net.aivm"}),
])
def test_each_fact_changes_only_the_nodes_it_feeds(cfg: Config, tmp_path: Path, fact: str,
                                                   value: object, changed: set[str]) -> None:
    store = Store(tmp_path / "store").ensure()
    before = keys_of(vm_graph(cfg, cfg.vms[0], HERE), store)
    after = keys_of(vm_graph(cfg, cfg.vms[0], replace(HERE, **{fact: value})), store)
    assert {n for n in before if before[n] != after[n]} == changed


def test_a_vm_that_sets_its_accel_ignores_the_hosts(cfg: Config) -> None:
    vm = replace(cfg.vms[0], accel=Accel.KVM)
    assert vm_graph(cfg, vm, THERE)["devbox.domain"].params["accel"] == "kvm"
    assert vm_graph(cfg, vm, replace(THERE, accel=""))["devbox.domain"].params["accel"] == "kvm"


def test_an_undecided_auto_accel_is_refused(cfg: Config) -> None:
    from aivm.errors import ConfigError

    with pytest.raises(ConfigError, match="accel must be kvm or qemu"):
        vm_graph(cfg, cfg.vms[0], replace(HERE, accel=""))


class _Forbidden(dict):  # type: ignore[type-arg]
    def __getitem__(self, key: Any) -> Any:
        raise AssertionError(f"vm_graph read the environment ({key})")

    def get(self, key: Any, default: Any = None) -> Any:
        raise AssertionError(f"vm_graph read the environment ({key})")


def _forbid(what: str):  # type: ignore[no-untyped-def]
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"vm_graph touched the host: {what}{args}")
    return fail


def test_vm_graph_never_touches_the_host(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = vm_graph(cfg, cfg.vms[0], HERE)
    from aivm import run

    for target, name in ((os.path, "exists"), (os.path, "isfile"), (os, "access"),
                         (os, "getenv"), (shutil, "which"), (subprocess, "Popen"),
                         (subprocess, "run"), (run, "run")):
        monkeypatch.setattr(target, name, _forbid(f"{name}"))
    monkeypatch.setattr(os, "environ", _Forbidden())
    monkeypatch.setattr(Path, "read_text", _forbid("read_text"))
    monkeypatch.setattr(Path, "read_bytes", _forbid("read_bytes"))
    assert vm_graph(cfg, cfg.vms[0], HERE) == expected


def test_detect_reads_the_host_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIVM_STATE", str(tmp_path / "state"))
    calls = []
    real = host_facts.read
    monkeypatch.setattr(host_facts, "read", lambda: calls.append(1) or real())
    first = host_facts.detect()
    assert host_facts.detect() is first and calls == [1]
    assert first.state_dir == tmp_path / "state" and first.accel == ""


def test_vm_graph_names_every_node_by_its_role(cfg: Config) -> None:
    graph = vm_graph(cfg, cfg.vms[0], HERE)
    roles = {"image": "debootstrap", "overlay": "overlay", "seed": "seed-iso",
             "network": "network-xml", "nft": "nft-ruleset", "egress": "egress-ruleset",
             "domain": "domain-xml"}
    assert {role: graph[getattr(graph, role)].kind for role in roles} == roles
    assert [graph[n].kind for n in graph.layers] == ["provision"]
    assert set(graph) == {getattr(graph, r) for r in roles} | set(graph.layers)
    assert dict(graph[graph.domain].inputs) == {
        "base": graph.layers[-1], "overlay": graph.overlay, "seed": graph.seed,
        "network": graph.network}


def test_a_network_without_firewall_or_egress_names_no_such_node(cfg: Config) -> None:
    from aivm.config.schema import Firewall

    net = replace(cfg.networks[0], firewall=Firewall(enabled=False), egress=Egress())
    graph = vm_graph(replace(cfg, networks=(net,)), cfg.vms[0], HERE)
    assert (graph.nft, graph.egress) == ("", "")
    assert not any(n.kind in ("nft-ruleset", "egress-ruleset") for n in graph.values())


def test_recipes_write_the_output_file_they_export(cfg: Config, tmp_path: Path) -> None:
    """Activation finds a node's file by the recipe's OUTPUT constant, never by a spelling."""
    from aivm.recipes import REGISTRY
    from tests.recipes.helpers import render_node

    graph = vm_graph(cfg, cfg.vms[0], HERE)
    for role in ("network", "nft", "egress"):
        node = graph[getattr(graph, role)]
        out = render_node(node, tmp_path / role)
        assert (out / REGISTRY.recipe(node.kind).OUTPUT).is_file(), role
    assert (tmp_path / "egress" / REGISTRY.recipe("egress-ruleset").SERVERS).is_file()
