"""Property (issue 12 item 14): any config lint accepts, the build accepts too.

Documents mix valid and hostile values for the keys that reach a recipe; when
lint reports no error, every node of every VM's graph (both accels) passes its
recipe's check, and the VM's ssh_config block holds exactly its own lines.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aivm.config import load
from aivm.config.lint import lint_text
from aivm.config.to_graph import vm_graph
from aivm.guest import ssh
from aivm.host.facts import NOMINAL
from aivm.recipes import REGISTRY

HOSTILE = ["", " ", "a\n", "\nb", "a b", "a'b", 'a"b', "a\\b", "a%d", "-a", "a-", "a_", "a.",
           "A", "x" * 64, "x" * 63, "é", "a;b", "a\x00b", "../a", "/", "~", "~/a b", "/a\nb"]
text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12))


def pool(*good: object) -> st.SearchStrategy[object]:
    """Mostly the listed values (the first, valid, as often as the others together; the rest
    valid or borderline), sometimes anything."""
    return st.one_of(*[st.sampled_from((good[0],) * len(good) + good)] * 6, text)


def ints(*good: int) -> st.SearchStrategy[int]:
    return st.one_of(*[st.sampled_from((good[0],) * len(good) + good)] * 6,
                     st.integers(-5, 1 << 21))


VM = {
    "name": pool("dev", "a.b", "a_b", "vm-1", "x" * 63),
    "user": pool("agent", "root", "_x", "a" * 33),
    "cpus": ints(1, 2, 64, 65, 512),
    "memory_mib": ints(256, 1024, 2048),
    "disk_gib": ints(1, 8, 16384, 16385),
    "timezone": pool("UTC", "Europe/Berlin", "a//b"),
    "packages": st.lists(pool("git", "g++", "Foo", "a=1.0", "a=", "a b"), max_size=3),
    "ssh_pubkey": pool("~/.ssh/id_ed25519.pub", "/k/id.pub", "/k/my key.pub", "/k/%d.pub"),
    "ssh_privkey": pool("~/.ssh/id_ed25519", "/k/id", "/k/my key", "/k/%u", "/k/\"q\""),
    "uid": ints(1000, 0, 60001),
    "host_uid_match": st.booleans(),
}
NETWORK = {
    "name": pool("aivm", "lab", "a.b", "egress_x"),
    "bridge": pool("virbr-aivm", "lo", "eth0", "br.1", "x" * 15, "x" * 16),
    "subnet": pool("10.77.0.0/24", "10.77.0.0/30", "10.77.0.0/31", "127.0.0.0/24",
                   "0.0.0.0/0", "100.64.0.0/24", "8.8.8.0/24", "10.77.0.5/24"),
    "gateway": pool("10.77.0.1", "10.77.0.0", "10.77.0.255", "127.0.0.1"),
    "dhcp_start": pool("10.77.0.2", "10.77.0.100"),
    "dhcp_end": pool("10.77.0.2", "10.77.0.254"),
}
FIREWALL = {
    "allow_tcp_ports": st.lists(ints(22, 0, 65535, 65536), max_size=2),
    "extra_blocked": st.lists(pool("203.0.113.0/24", "10.0.0.1/8", "fd00::/8"), max_size=2),
}
IMAGE = {
    "source": st.sampled_from(["fetch", "debootstrap"]),
    "url": pool("https://example.org/i.img", "/srv/i.img", "file:///srv/i.img", "~/i.img",
                "https://a b/", "ftp://x/i"),
    "sha256": pool("", "ab" * 32, "AB" * 32),
    "suite": pool("bookworm", "sid", "jammy"),
    "mirror": pool("http://deb.debian.org/debian", "ftp://x", "http://a b/"),
    "image_size_gib": ints(1, 3, 1024, 1025),
}


BASE = {"vms": [{"name": "dev"}],
        "networks": [{"name": "aivm", "firewall": {}}],
        "images": [{"name": "ubuntu-noble"}]}
SECTIONS = {"vms": VM, "networks": NETWORK, "firewall": FIREWALL, "images": IMAGE}


def override(section: str, key: str) -> st.SearchStrategy[tuple[str, str, object]]:
    return SECTIONS[section][key].map(lambda value: (section, key, value))


changes = st.lists(st.sampled_from([(s, k) for s, keys in SECTIONS.items() for k in keys])
                   .flatmap(lambda sk: override(*sk)), min_size=1, max_size=4)


def document(edits: list[tuple[str, str, object]]) -> dict[str, object]:
    """The valid base with a few keys set to valid, borderline or hostile values."""
    import copy

    doc = copy.deepcopy(BASE)
    for section, key, value in edits:
        if section == "firewall":
            doc["networks"][0]["firewall"][key] = value
        else:
            doc[section][0][key] = value
    return doc


documents = changes.map(document)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_lint_accepts_only_what_the_build_accepts(doc: dict[str, object]) -> None:
    source = tomlkit.dumps(doc)
    if any(p.severity == "error" for p in lint_text(source, Path("p.toml"))):
        return
    cfg = load.loads(source, Path("/cfg/p.toml"))
    for vm in cfg.vms:
        for accel in ("kvm", "qemu"):
            for node in vm_graph(cfg, vm, replace(NOMINAL, accel=accel)).values():
                REGISTRY.recipe(node.kind).check(node)
        block = ssh.ssh_config_block(ssh.Target(vm.name, vm.user, "10.77.0.5",
                                                Path(vm.ssh_privkey).expanduser()))
        assert len(block.splitlines()) == 7 and block.count("\n") == 7
