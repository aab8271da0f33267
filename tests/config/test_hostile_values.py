"""Hostile config values (issue 12: items 3, 5, 6, 12, 14): lint and load refuse them with
file:line, and what they accept the build accepts too."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from aivm.config import load
from aivm.config.lint import lint_text
from aivm.errors import AivmError, ConfigError
from aivm.recipes import REGISTRY, values
from aivm.recipes.network_xml import NetworkXml
from tests.recipes.helpers import render_node

NET = ('[[networks]]\nname = "n"\nbridge = "br-n"\nsubnet = "{subnet}"\ngateway = "{gw}"\n'
       'dhcp_start = "{start}"\ndhcp_end = "{end}"\n')


def net(subnet: str, gw: str, start: str, end: str) -> str:
    return NET.format(subnet=subnet, gw=gw, start=start, end=end)


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load.loads(text, Path("c.toml"))
    lint = [p for p in lint_text(text, Path("c.toml")) if p.severity == "error"]
    assert lint, "lint accepted what load refused"
    return err.value


# ---- item 6: subnets that break the host ------------------------------------------------------

@pytest.mark.parametrize("subnet, gw, start, end", [
    ("0.0.0.0/0", "0.0.0.1", "0.0.0.10", "0.0.0.20"),
    ("127.0.0.0/24", "127.0.0.1", "127.0.0.10", "127.0.0.20"),
    ("224.0.0.0/24", "224.0.0.1", "224.0.0.10", "224.0.0.20"),
    ("169.254.169.0/24", "169.254.169.1", "169.254.169.10", "169.254.169.20"),
    ("8.8.8.0/24", "8.8.8.1", "8.8.8.10", "8.8.8.20"),
    ("93.184.216.0/24", "93.184.216.1", "93.184.216.10", "93.184.216.20"),
    ("192.0.2.0/24", "192.0.2.1", "192.0.2.10", "192.0.2.20"),
    ("10.0.0.0/7", "10.0.0.1", "10.0.0.10", "10.0.0.20"),   # reaches into 11/8
])
def test_subnets_outside_the_private_ranges_are_refused(subnet: str, gw: str, start: str,
                                                        end: str) -> None:
    err = refused(net(subnet, gw, start, end))
    assert err.message.startswith("c.toml:4: invalid subnet"), err.message
    assert "private range" in err.message and "10.77.0.0/24" in err.hint
    with pytest.raises(AivmError) as build:   # the recipe check says the same
        NetworkXml().check(_network_node(subnet, gw, start, end))
    assert build.value.reason == "invalid-param"


@pytest.mark.parametrize("subnet, gw, start, end", [
    ("10.77.0.0/24", "10.77.0.1", "10.77.0.10", "10.77.0.20"),
    ("172.31.250.0/24", "172.31.250.1", "172.31.250.10", "172.31.250.20"),
    ("192.168.200.0/24", "192.168.200.1", "192.168.200.10", "192.168.200.20"),
    ("100.100.7.0/24", "100.100.7.1", "100.100.7.10", "100.100.7.20"),   # RFC 6598
])
def test_private_subnets_are_accepted(subnet: str, gw: str, start: str, end: str) -> None:
    assert load.loads(net(subnet, gw, start, end)).networks[0].subnet == subnet
    NetworkXml().check(_network_node(subnet, gw, start, end))


def _network_node(subnet: str, gw: str, start: str, end: str):  # type: ignore[no-untyped-def]
    from aivm.graph.node import Node

    return Node("net.n", "network-xml", params={
        "name": "n", "bridge": "br-n", "subnet": subnet, "gateway": gw, "dhcp_start": start,
        "dhcp_end": end})


# ---- item 5: the loopback device as bridge ----------------------------------------------------

@pytest.mark.parametrize("bridge", ["lo", ".", ".."])
def test_loopback_is_never_a_bridge(bridge: str) -> None:
    err = refused(f'[[networks]]\nname = "n"\nbridge = "{bridge}"\n')
    assert err.message.startswith(f"c.toml:3: invalid bridge: {bridge!r}"), err.message


def test_other_interface_names_pass_lint_and_are_checked_at_plan_time() -> None:
    """eth0 is a fine name on a host that has none: tests/activate/test_hostnet.py refuses it
    when it exists and is not the network's own bridge."""
    assert load.loads('[[networks]]\nname = "n"\nbridge = "eth0"\n').networks[0].bridge == "eth0"


# ---- item 3: network names that share an nft table -------------------------------------------

@pytest.mark.parametrize("first, second, table", [
    ("a.b", "a_b", "aivm_a_b"), ("a-b", "a.b", "aivm_a_b"), ("a_b", "a-b", "aivm_a_b"),
    ("x", "egress_x", "aivm_egress_x"),   # the egress table of x is the nft table of egress_x
])
def test_networks_whose_tables_collide_are_refused(first: str, second: str, table: str) -> None:
    text = (f'[[networks]]\nname = "{first}"\nbridge = "br1"\n\n'
            f'[[networks]]\nname = "{second}"\nbridge = "br2"\nsubnet = "10.78.0.0/24"\n'
            'gateway = "10.78.0.1"\ndhcp_start = "10.78.0.10"\ndhcp_end = "10.78.0.20"\n')
    err = refused(text)
    assert err.message == (f"c.toml:6: networks {first!r} and {second!r} would share the nft "
                           f"table {table}")
    assert err.reason == "duplicate-name"


def test_distinct_tables_pass() -> None:
    text = ('[[networks]]\nname = "a.b"\nbridge = "br1"\n\n[[networks]]\nname = "ab"\n'
            'bridge = "br2"\nsubnet = "10.78.0.0/24"\ngateway = "10.78.0.1"\n'
            'dhcp_start = "10.78.0.10"\ndhcp_end = "10.78.0.20"\n')
    assert [n.name for n in load.loads(text).networks] == ["a.b", "ab"]


# ---- item 12: path values -----------------------------------------------------------------------

SSH_HOSTILE = ["~/.ssh/id\nHost *\n  ProxyCommand touch /tmp/pwned", "/k\rx", '/k"x', "/k\\x",
               "/k%d", "/home/%u/.ssh/id", " /k", "/k ", "relative/key", "", "/k\x00x", "/k'x",
               "/k`x`"]


@pytest.mark.parametrize("key", ["ssh_privkey", "ssh_pubkey"])
@pytest.mark.parametrize("value", SSH_HOSTILE)
def test_hostile_ssh_key_paths_are_refused(key: str, value: str) -> None:
    import tomlkit

    text = tomlkit.dumps({"vms": [{"name": "a", key: value}]})
    err = refused(text)
    assert f"invalid {key}" in err.message, err.message


@pytest.mark.parametrize("value", ["~0", "~nobody-here/.ssh/id", "~root/.ssh/id"])
def test_another_accounts_home_is_refused(value: str) -> None:
    """Found by test_lint_build_parity: `~0` passed lint, and expanding it raised
    RuntimeError (no such user) in `aivm up`."""
    err = refused(f'[[vms]]\nname = "a"\nssh_privkey = "{value}"\n')
    assert "invalid ssh_privkey" in err.message and "absolute path" in err.hint, err


def test_home_relative_key_paths_are_fine() -> None:
    vm = load.loads('[[vms]]\nname = "a"\nssh_privkey = "~/.ssh/id"\n').vms[0]
    assert vm.ssh_privkey == "~/.ssh/id"


def test_a_key_path_with_spaces_is_fine() -> None:
    vm = load.loads('[[vms]]\nname = "a"\nssh_privkey = "/home/me/my keys/id"\n').vms[0]
    assert vm.ssh_privkey == "/home/me/my keys/id"


@pytest.mark.parametrize("table, key", [
    ("attachments", "host_path"), ("sync", "paths"), ("store", "root"), ("images", "url")])
def test_newlines_in_other_paths_are_refused(table: str, key: str) -> None:
    import tomlkit

    bad = "/srv/x\nHost *"
    doc: dict[str, object] = {
        "attachments": {"attachments": [{"host_path": bad, "vm": "a"}]},
        "sync": {"sync": {"paths": [bad]}},
        "store": {"store": {"root": bad}},
        "images": {"images": [{"name": "i", "url": bad}]},
    }[table]
    err = refused(tomlkit.dumps(doc))
    assert "control characters" in err.message or "quotes" in err.message, err.message


def test_provision_file_sources_are_checked(tmp_path: Path) -> None:
    import tomlkit

    doc = {"provisions": [{"name": "p", "base": "ubuntu-noble",
                           "files": [{"src": "files/a\nb", "dest": "/etc/a"}]}]}
    assert "control characters" in refused(tomlkit.dumps(doc)).message
    doc["provisions"][0]["files"][0]["src"] = "/dev/zero"   # type: ignore[index]
    doc["vms"] = [{"name": "a", "image": "p"}]
    started = time.monotonic()
    err = refused(tomlkit.dumps(doc))
    assert time.monotonic() - started < 5 and "not a regular file" in err.message


# ---- item 14: input handling --------------------------------------------------------------------

@pytest.mark.parametrize("text", ["x = " + "[" * 5000 + "]" * 5000,
                                  "x = " + "{a = " * 5000 + "1" + "}" * 5000])
def test_deep_nesting_is_a_config_error_not_a_recursion_error(text: str) -> None:
    err = refused(text)
    assert err.message == "c.toml:1: TOML nested too deeply (arrays or inline tables inside " \
                          "each other hundreds of levels deep)"


@pytest.mark.parametrize("key", ["name", "user", "timezone", "network", "image"])
def test_a_trailing_newline_never_passes_a_pattern(key: str) -> None:
    """`^...$` lets "vm\\n" through; every check is a fullmatch."""
    import tomlkit

    value = {"name": "vm", "user": "agent", "timezone": "UTC", "network": "aivm",
             "image": "ubuntu-noble"}[key] + "\n"
    refused(tomlkit.dumps({"vms": [{"name": "vm", key: value} if key != "name"
                                   else {"name": value}]}))


@pytest.mark.parametrize("key, value", [
    ("ssh_pubkey", "/dev/zero"), ("ssh_pubkey", "/dev/urandom"), ("ssh_pubkey", "/tmp"),
])
def test_devices_are_refused_at_once(key: str, value: str) -> None:
    started = time.monotonic()
    err = refused(f'[[vms]]\nname = "a"\n{key} = "{value}"\n')
    assert time.monotonic() - started < 5
    assert "not a regular file" in err.message and err.reason == "not-a-file"


@pytest.mark.parametrize("url", ["/dev/zero", "file:///dev/zero"])
def test_a_device_as_image_is_refused_at_once(url: str, tmp_path: Path) -> None:
    text = (f'[defaults]\nimage = "i"\n[[vms]]\nname = "a"\n[[images]]\nname = "i"\n'
            f'url = "{url}"\nsha256 = "{"ab" * 32}"\n')
    started = time.monotonic()
    err = refused(text)
    assert time.monotonic() - started < 5
    assert "not a regular file" in err.message


def test_a_fifo_as_pubkey_is_never_opened_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "key.pub"
    os.mkfifo(fifo)
    with pytest.raises(AivmError) as err:
        values.read_small_file(fifo, "ssh_pubkey")
    assert "not a regular file" in str(err.value)
    big = tmp_path / "big.pub"
    big.write_bytes(b"a" * ((1 << 20) + 1))
    with pytest.raises(AivmError) as err:
        values.read_small_file(big, "ssh_pubkey")
    assert "larger than" in str(err.value)


def test_the_seed_refuses_dev_zero_without_reading_it(tmp_path: Path) -> None:
    from aivm.graph.node import Node

    node = Node("vm.seed", "seed-iso", params={"hostname": "vm", "user": "agent"},
                files={"ssh_pubkey": Path("/dev/zero")})
    started = time.monotonic()
    with pytest.raises(AivmError) as err:
        render_node(node, tmp_path / "out", files={"ssh_pubkey": Path("/dev/zero")})
    assert time.monotonic() - started < 5
    assert "not a regular file" in str(err.value)


# ---- item 14: values lint let through but the build refused ----------------------------------

@pytest.mark.parametrize("vm_lines", [
    'cpus = 100',                          # the domain takes 1-64
    'name = "a-"',                         # the guest host name would end in '-'
    'name = "a_"',
    'packages = ["Foo"]',                  # not a Debian package name
    'disk_gib = 20000',                    # the overlay takes 16384 at most
])
def test_what_the_build_refuses_lint_refuses(vm_lines: str) -> None:
    text = '[[vms]]\nname = "a"\n' + vm_lines + "\n" if not vm_lines.startswith("name") \
        else "[[vms]]\n" + vm_lines + "\n"
    refused(text)


@pytest.mark.parametrize("image_lines", [
    'mirror = "ftp://deb.debian.org/debian"', 'packages = ["a b"]', 'suite = "jammy"',
    'image_size_gib = 5000'])
def test_debootstrap_values_the_build_refuses_lint_refuses(image_lines: str) -> None:
    refused('[defaults]\nimage = "d"\n[[vms]]\nname = "a"\n[[images]]\nname = "d"\n'
            f'source = "debootstrap"\n{image_lines}\n')


def test_extra_blocked_with_host_bits_is_refused_by_both() -> None:
    text = '[[networks]]\nname = "n"\n[networks.firewall]\nextra_blocked = ["10.0.0.1/8"]\n'
    err = refused(text)
    assert err.message.startswith("c.toml:4: invalid extra_blocked"), err.message
    with pytest.raises(AivmError) as build:
        REGISTRY.recipe("nft-ruleset").check(_nft_node(("10.0.0.1/8",)))
    assert build.value.reason == "invalid-param"


def _nft_node(extra: tuple[str, ...]):  # type: ignore[no-untyped-def]
    from aivm.graph.node import Node

    return Node("net.n.nft", "nft-ruleset", params={
        "network": "n", "bridge": "br-n", "gateway": "10.77.0.1", "extra_blocked": extra})


@pytest.mark.parametrize("lines, line, phrase", [
    ('[[vms]]\nname = "a"\ncpus = 100\n', 3, "cpus = 100 is more than aivm takes (64)"),
    ('[[vms]]\nname = "a"\ndisk_gib = 16385\n', 3, "disk_gib = 16385 is more than aivm takes"),
    ('[[images]]\nname = "d"\nimage_size_gib = 1025\n', 3, "image_size_gib = 1025 is more"),
])
def test_recipe_ranges_are_reported_at_the_keys_line(lines: str, line: int, phrase: str) -> None:
    """The ranges come from values.py (CPUS, DISK_GIB, ...), the ones the recipes take."""
    err = refused(lines)
    assert err.message.startswith(f"c.toml:{line}: {phrase}"), err.message
