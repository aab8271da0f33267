from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from aivm.config.schema import Config, Firewall, Image
from aivm.config.to_graph import mac_address, vm_graph
from aivm.errors import ConfigError
from aivm.graph.store import Store
from aivm.host.facts import read as read_facts
from tests.recipes.conftest import sample_config
from tests.recipes.helpers import keys_of

pytestmark = pytest.mark.usefixtures("state_root")


def graph_keys(cfg: Config, store: Store, accel: str = "qemu") -> dict[str, str]:
    return keys_of(vm_graph(cfg, cfg.vms[0], read_facts(accel)), store)


def changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    assert a.keys() == b.keys()
    return {n for n in a if a[n] != b[n]}


def test_node_names_kinds_and_wiring(ssh_key: Path) -> None:
    cfg = sample_config(ssh_key)
    nodes = vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
    assert {n: nodes[n].kind for n in nodes} == {
        "image.debian": "debootstrap", "devbox.overlay": "overlay", "devbox.seed": "seed-iso",
        "net.aivm": "network-xml", "net.aivm.nft": "nft-ruleset", "devbox.domain": "domain-xml",
        "devbox.packages": "provision"}   # the VM's packages, baked as a layer over the image
    assert dict(nodes["devbox.domain"].inputs) == {
        "base": "devbox.packages", "overlay": "devbox.overlay", "seed": "devbox.seed",
        "network": "net.aivm"}
    assert nodes["devbox.seed"].files == {"ssh_pubkey": ssh_key}
    assert "ssh" not in str(dict(nodes["devbox.seed"].params))
    domain = nodes["devbox.domain"].params
    assert domain["disk"] == "/var/lib/aivm-test-state/devbox/disk.qcow2"
    assert domain["console_log"] == "/var/lib/aivm-test-state/devbox/console.log"
    assert domain["mac"] == nodes["devbox.seed"].params["mac"] == mac_address("devbox")


def test_memory_changes_only_the_domain(ssh_key: Path, store: Store) -> None:
    cfg = sample_config(ssh_key)
    bigger = sample_config(ssh_key, memory_mib=4096)
    assert changed(graph_keys(cfg, store), graph_keys(bigger, store)) == {"devbox.domain"}


def test_ssh_key_file_changes_seed_and_domain(ssh_key: Path, store: Store) -> None:
    cfg = sample_config(ssh_key)
    before = graph_keys(cfg, store)
    ssh_key.write_text(ssh_key.read_text().replace("dev@example", "other@example"))
    after = graph_keys(cfg, store)
    assert changed(before, after) == {"devbox.seed", "devbox.domain"}


def test_equal_configs_give_equal_keys(ssh_key: Path, store: Store) -> None:
    assert graph_keys(sample_config(ssh_key), store) == graph_keys(sample_config(ssh_key), store)


def test_port_order_does_not_matter(ssh_key: Path, store: Store) -> None:
    cfg = sample_config(ssh_key)
    net = cfg.networks[0]
    blocked = ("2606:2800:220::/48", "93.184.216.0/24")
    shuffled = replace(net, firewall=Firewall(allow_tcp_ports=(5432, 22, 22),
                                              allow_udp_ports=(5353,), extra_blocked=blocked))
    other = replace(cfg, networks=(shuffled,))
    assert graph_keys(cfg, store) == graph_keys(other, store)
    opened = replace(cfg, networks=(replace(net, firewall=Firewall(allow_tcp_ports=(22,))),))
    assert changed(graph_keys(cfg, store), graph_keys(opened, store)) == {"net.aivm.nft"}


def test_disk_size_changes_overlay_and_domain(ssh_key: Path, store: Store) -> None:
    a = graph_keys(sample_config(ssh_key), store)
    b = graph_keys(sample_config(ssh_key, disk_gib=16), store)
    assert changed(a, b) == {"devbox.overlay", "devbox.domain"}


def test_accel_changes_only_the_domain(ssh_key: Path, store: Store) -> None:
    cfg = sample_config(ssh_key)
    assert changed(graph_keys(cfg, store), graph_keys(cfg, store, "kvm")) == {"devbox.domain"}


def test_fetched_image_is_keyed_by_its_pin_alone(ssh_key: Path, store: Store) -> None:
    pin = "ab" * 32
    one = sample_config(ssh_key, image=Image(name="cloud", url="https://a.example/x.img",
                                             sha256=pin))
    two = sample_config(ssh_key, image=Image(name="cloud", url="https://b.example/y.img",
                                             sha256=pin))
    nodes = vm_graph(one, one.vms[0], read_facts("qemu"))
    assert nodes["image.cloud"].fixed_output == pin
    assert graph_keys(one, store) == graph_keys(two, store)


def test_unpinned_image_names_the_setting(ssh_key: Path) -> None:
    cfg = sample_config(ssh_key, image=Image(name="cloud", url="https://a.example/x.img",
                                             sha256=""))
    with pytest.raises(ConfigError) as err:
        vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
    assert err.value.reason == "unpinned"
    assert "sha256" in err.value.hint


def test_firewall_off_means_no_nft_node(ssh_key: Path) -> None:
    cfg = sample_config(ssh_key)
    net = replace(cfg.networks[0], firewall=Firewall(enabled=False))
    cfg = replace(cfg, networks=(net,))
    assert "net.aivm.nft" not in vm_graph(cfg, cfg.vms[0], read_facts("qemu"))


def test_unknown_image_and_accel(ssh_key: Path) -> None:
    cfg = sample_config(ssh_key)
    vm = replace(cfg.vms[0], image="nope")
    with pytest.raises(ConfigError) as err:
        vm_graph(cfg, vm, read_facts("qemu"))
    assert err.value.reason == "unknown-image"
    with pytest.raises(ConfigError) as err:
        vm_graph(cfg, cfg.vms[0], read_facts("auto"))
    assert err.value.reason == "invalid-accel"


def test_relative_paths_come_from_the_config_folder(tmp_path: Path, ssh_key: Path) -> None:
    cfg = replace(sample_config(ssh_key, ssh_pubkey="keys/me.pub",
                                image=Image(name="local", url="images/base.qcow2",
                                            sha256="cd" * 32)),
                  path=tmp_path / "aivm.toml")
    nodes = vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
    assert nodes["devbox.seed"].files["ssh_pubkey"] == tmp_path / "keys" / "me.pub"
    assert nodes["image.local"].params["url"] == str(tmp_path / "images" / "base.qcow2")
