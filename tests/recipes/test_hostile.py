"""Hostile values: rejected with reason "invalid-param", or escaped so they stay data."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from aivm.errors import AivmError
from aivm.graph.node import Node
from aivm.recipes import REGISTRY
from aivm.recipes.domain_xml import resolve
from tests.recipes.conftest import SSH_KEY
from tests.recipes.helpers import render_node

HOSTILE_NAMES = ["a<b", "a'b", "a;b", "a\nb", "a b", "", "-x", "a\"b", "a&b", "a/b"]

DOMAIN = {"name": "devbox", "accel": "qemu", "cpus": 1, "memory_mib": 1024,
          "disk": "/var/lib/aivm/devbox/disk.qcow2",
          "console_log": "/var/lib/aivm/devbox/console.log", "network": "aivm",
          "mac": "52:54:00:aa:bb:cc"}
NETWORK = {"name": "aivm", "bridge": "virbr-aivm", "subnet": "10.77.0.0/24",
           "gateway": "10.77.0.1", "dhcp_start": "10.77.0.100", "dhcp_end": "10.77.0.254"}
NFT = {"network": "aivm", "bridge": "virbr-aivm", "gateway": "10.77.0.1",
       "allow_tcp_ports": [22], "allow_udp_ports": [], "extra_blocked": []}
SEED = {"hostname": "devbox", "user": "agent", "timezone": "UTC", "packages": ["git"]}
DOMAIN_INPUTS = {r: f"n.{r}" for r in ("base", "overlay", "seed", "network")}


def node(kind: str, params: dict[str, Any], **change: Any) -> Node:
    inputs = DOMAIN_INPUTS if kind == "domain-xml" else {}
    files = {"ssh_pubkey": Path("/nonexistent.pub")} if kind == "seed-iso" else {}
    return Node("n", kind, params={**params, **change}, inputs=inputs, files=files)


def rejected(n: Node) -> AivmError:
    with pytest.raises(AivmError) as err:
        REGISTRY.recipe(n.kind).preflight(n)
    assert err.value.reason == "invalid-param", err.value.message
    return err.value


@pytest.mark.parametrize("bad", HOSTILE_NAMES)
def test_hostile_vm_and_network_names(bad: str) -> None:
    rejected(node("domain-xml", DOMAIN, name=bad))
    rejected(node("domain-xml", DOMAIN, network=bad))
    rejected(node("network-xml", NETWORK, name=bad))
    rejected(node("nft-ruleset", NFT, network=bad))
    rejected(node("nft-ruleset", NFT, bridge=bad))
    rejected(node("seed-iso", SEED, hostname=bad))
    rejected(node("seed-iso", SEED, user=bad))


def test_error_names_the_param_and_value() -> None:
    err = rejected(node("domain-xml", DOMAIN, name="x<y"))
    assert "VM name" in err.message and "'x<y'" in err.message


@pytest.mark.parametrize(("kind", "params", "change"), [
    ("network-xml", NETWORK, {"bridge": "virbr-this-is-16c"}),
    ("network-xml", NETWORK, {"gateway": "10.78.0.1"}),
    ("network-xml", NETWORK, {"subnet": "10.77.0.1/24"}),
    ("network-xml", NETWORK, {"dhcp_start": "10.77.0.1"}),
    ("network-xml", NETWORK, {"dhcp_end": "10.77.0.50"}),
    ("network-xml", NETWORK, {"subnet": "fd00::/64"}),
    ("nft-ruleset", NFT, {"allow_tcp_ports": [0]}),
    ("nft-ruleset", NFT, {"allow_tcp_ports": [65536]}),
    ("nft-ruleset", NFT, {"allow_tcp_ports": ["22"]}),
    ("nft-ruleset", NFT, {"allow_udp_ports": [True]}),
    ("nft-ruleset", NFT, {"allow_udp_ports": "53"}),
    ("nft-ruleset", NFT, {"extra_blocked": ["10.0.0.0/8; flush ruleset"]}),
    ("nft-ruleset", NFT, {"gateway": "10.77.0.1 accept"}),
    ("domain-xml", DOMAIN, {"disk": "relative/disk.qcow2"}),
    ("domain-xml", DOMAIN, {"disk": "/var/lib/a'b/disk.qcow2"}),
    ("domain-xml", DOMAIN, {"disk": "/var/lib/a\"b/disk.qcow2"}),
    ("domain-xml", DOMAIN, {"console_log": "/var/log/x\n<devices/>"}),
    ("domain-xml", DOMAIN, {"accel": "kvm'"}),
    ("domain-xml", DOMAIN, {"mac": "52:54:00:AA:BB:CC'"}),
    ("domain-xml", DOMAIN, {"memory_mib": "4096"}),
    ("domain-xml", DOMAIN, {"cpus": 0}),
    ("domain-xml", DOMAIN, {"colour": "red"}),
    ("seed-iso", SEED, {"timezone": "UTC\nruncmd: [reboot]"}),
    ("seed-iso", SEED, {"packages": ["vim; rm -rf /"]}),
    ("seed-iso", SEED, {"packages": ["git\n- evil"]}),
    ("seed-iso", SEED, {"uid": 0}),
    ("seed-iso", SEED, {"password_login": "yes"}),
    ("overlay", {"size_gib": 8}, {"size_gib": -1}),
    ("debootstrap", {"mirror": "http://deb.debian.org/debian"}, {"mirror": "http://x y"}),
    ("debootstrap", {"mirror": "http://deb.debian.org/debian"}, {"suite": "bookworm;x"}),
], ids=lambda v: repr(v)[:40] if isinstance(v, dict) else None)
def test_bad_values_are_rejected(kind: str, params: dict[str, Any],
                                 change: dict[str, Any]) -> None:
    n = node(kind, params, **change)
    if kind == "overlay":
        n = Node("n", kind, params={**params, **change}, inputs={"base": "b"})
    rejected(n)


def test_missing_required_param() -> None:
    params = dict(DOMAIN)
    del params["disk"]
    assert "disk" in rejected(node("domain-xml", params)).message


def test_path_with_spaces_is_escaped_not_rejected(tmp_path: Path) -> None:
    inputs = {}
    for role in DOMAIN_INPUTS:
        inputs[role] = tmp_path / "my store" / f"{role}-entry"
        inputs[role].mkdir(parents=True)
    (inputs["base"] / "boot.json").write_text(json.dumps(
        {"kernel": "vmlinuz", "cmdline": "root=/dev/vda console=ttyS0 x=<&>"}))
    disk = "/var/lib/my vms/dev box/disk & more.qcow2"
    out = render_node(node("domain-xml", DOMAIN, disk=disk), tmp_path / "out", inputs=inputs)
    root = ET.parse(out / "domain.xml").getroot()
    assert root.find("devices/disk/source").get("file") == disk
    assert root.findtext("os/kernel") == "@store@/base-entry/vmlinuz"  # resolved at activation
    resolved = ET.fromstring(resolve((out / "domain.xml").read_text(), tmp_path / "my store"))
    assert resolved.findtext("os/kernel") == str(inputs["base"] / "vmlinuz")
    assert root.findtext("os/cmdline") == "root=/dev/vda console=ttyS0 x=<&>"
    assert "disk &amp; more" in (out / "domain.xml").read_text()


def test_ssh_key_file_cannot_inject_yaml(tmp_path: Path) -> None:
    key = tmp_path / "k.pub"
    key.write_text(SSH_KEY + "\nruncmd: [reboot]\n")
    n = node("seed-iso", SEED)
    with pytest.raises(AivmError) as err:
        render_node(n, tmp_path / "out", files={"ssh_pubkey": key})
    assert err.value.reason == "invalid-param"


def test_ssh_key_comment_stays_data(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    comment = "me@host \"quoted\" # not a comment: {x: 1} 'single' \u00e9"
    key = tmp_path / "k.pub"
    key.write_text(f"# a comment line\n\n{SSH_KEY.rsplit(' ', 1)[0]} {comment}\n")
    out = render_node(node("seed-iso", SEED), tmp_path / "out", files={"ssh_pubkey": key})
    doc = yaml.safe_load((out / "user-data").read_text())
    assert doc["users"][0]["ssh_authorized_keys"] == [f"{SSH_KEY.rsplit(' ', 1)[0]} {comment}"]
    assert set(doc) == {"hostname", "manage_etc_hosts", "timezone", "disable_root",
                        "ssh_pwauth", "users", "package_update", "package_upgrade",
                        "packages", "write_files"}


def test_missing_ssh_key_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(AivmError) as err:
        render_node(node("seed-iso", SEED), tmp_path / "out",
                    files={"ssh_pubkey": tmp_path / "absent.pub"})
    assert err.value.reason == "invalid-param"
    assert "ssh-keygen" in err.value.hint
