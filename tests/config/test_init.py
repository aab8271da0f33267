"""config init: tiers, ssh key, free subnet from host routes, and the file it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aivm.config import init, load
from aivm.errors import ConfigError


@pytest.mark.parametrize(("cores", "cpus"), [(1, 1), (2, 1), (4, 2), (12, 6), (64, 8)])
def test_cpu_tiers(cores: int, cpus: int) -> None:
    assert init.pick_cpus(cores) == cpus


@pytest.mark.parametrize(("mib", "tier"), [(700, 512), (2048, 1024), (8000, 2048),
                                           (24105, 8192), (64000, 16384), (512000, 16384)])
def test_memory_tiers(mib: int, tier: int) -> None:
    assert init.pick_memory(mib) == tier


def test_free_subnet_skips_routes() -> None:
    assert init.free_subnet(()) == "10.77.0.0/24"
    assert init.free_subnet(("10.77.0.0/24", "10.77.1.128/25", "192.168.0.0/16")) == \
        "10.77.2.0/24"
    with pytest.raises(ConfigError) as err:
        init.free_subnet(("10.0.0.0/8",))
    assert err.value.reason == "no-free-subnet"


def test_routes_from_ip_json() -> None:
    text = json.dumps([{"dst": "default", "gateway": "192.0.2.1"},
                       {"dst": "10.77.0.0/24", "dev": "eth0"},
                       {"type": "local", "dst": "127.0.0.1", "table": "local"},
                       {"dst": "fe80::/64"}])
    assert init.routes_from_json(text) == ["10.77.0.0/24", "127.0.0.1/32"]


def test_routes_from_proc() -> None:
    text = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
            "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
            "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
            "virbr0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    assert init.routes_from_proc(text) == ["192.0.2.0/24", "10.77.0.0/24"]


def test_host_routes_of_this_machine_are_ipv4_networks() -> None:
    routes = init.host_routes()
    assert routes, "a host with a network has at least one route"
    assert all("/" in r and ":" not in r for r in routes)


def test_find_ssh_key_prefers_ed25519(home: Path) -> None:
    assert init.find_ssh_key(home) == ("~/.ssh/aivm_ed25519.pub", "~/.ssh/aivm_ed25519", False)
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa.pub").write_text("ssh-rsa AAAA x\n")
    assert init.find_ssh_key(home) == ("~/.ssh/id_rsa.pub", "~/.ssh/id_rsa", True)
    (home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA x\n")
    assert init.find_ssh_key(home)[0] == "~/.ssh/id_ed25519.pub"


def test_detect_and_render_is_a_valid_config(facts: init.HostFacts) -> None:
    plan = init.detect(facts)
    assert (plan.vm.cpus, plan.vm.memory_mib, plan.vm.timezone) == (2, 4096, "Europe/Berlin")
    assert plan.network.subnet == "10.77.1.0/24"           # 10.77.0.0/24 is a host route
    assert (plan.network.gateway, plan.network.dhcp_start, plan.network.dhcp_end) == (
        "10.77.1.1", "10.77.1.100", "10.77.1.254")
    assert plan.create_key
    cfg = load.loads(init.render(plan))
    assert cfg.vms[0] == plan.vm
    assert cfg.networks[0] == plan.network
    assert cfg.active_vm == plan.vm.name


def test_apply_creates_key_and_file(facts: init.HostFacts, cfg_path: Path) -> None:
    cfg = init.apply(init.detect(facts), cfg_path)
    key = facts.home / ".ssh" / "aivm_ed25519"
    assert key.is_file() and key.with_suffix(".pub").read_text().startswith("ssh-ed25519 ")
    assert key.stat().st_mode & 0o777 == 0o600
    assert cfg.vms[0].ssh_pubkey == "~/.ssh/aivm_ed25519.pub"
    with pytest.raises(ConfigError) as err:
        init.apply(init.detect(facts), cfg_path)
    assert err.value.reason == "config-exists"


def test_force_keeps_a_backup(facts: init.HostFacts, cfg_path: Path) -> None:
    cfg_path.write_text("# mine\n")
    init.apply(init.detect(facts), cfg_path, force=True)
    assert cfg_path.with_name("config.toml.bak").read_text() == "# mine\n"
    assert load.load(cfg_path).vms


def test_existing_key_is_used_not_created(facts: init.HostFacts, cfg_path: Path) -> None:
    (facts.home / ".ssh").mkdir()
    (facts.home / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAA me\n")
    cfg = init.implicit_init(cfg_path)
    assert cfg.vms[0].ssh_privkey == "~/.ssh/id_ed25519"
    assert sorted(p.name for p in (facts.home / ".ssh").iterdir()) == ["id_ed25519.pub"]


def test_implicit_init_when_file_appeared(facts: init.HostFacts, cfg_path: Path) -> None:
    cfg_path.write_text('[[vms]]\nname = "theirs"\n')
    assert [v.name for v in init.implicit_init(cfg_path).vms] == ["theirs"]
