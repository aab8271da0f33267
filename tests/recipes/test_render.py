"""The sample VM's graph built for real into a store; every rendered file
snapshotted (one file per snapshot), validated by libvirt's schema, nft, pycdlib
and a YAML parser."""

from __future__ import annotations

import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from aivm.config.schema import Image
from aivm.config.to_graph import vm_graph
from aivm.errors import AivmError, BuildError
from aivm.graph.node import Node
from aivm.graph.store import Store
from aivm.host.facts import read as read_facts
from aivm.recipes.base import XMLNS
from aivm.recipes.domain_xml import resolve
from aivm.run import Cmd, run
from tests.recipes.conftest import SSH_KEY, sample_config
from tests.recipes.helpers import FAKE_KEY, build_nodes, render_node

pytestmark = pytest.mark.usefixtures("state_root")


@dataclass(frozen=True)
class Built:
    store: Store
    paths: dict[str, Path]
    keys: dict[str, str]
    base_image: Path

    def text(self, node: str, filename: str) -> str:
        """A rendered file with store paths and keys spelled stably, for snapshots."""
        out = (self.paths[node] / filename).read_text()
        out = out.replace(str(self.store.root), "<store>")
        for cut in (64, 32, 16):
            for name, key in self.keys.items():
                out = out.replace(key[:cut], f"<key:{name}>")
        return out


@pytest.fixture
def built(tmp_path: Path, ssh_key: Path, store: Store) -> Built:
    base = tmp_path / "base.qcow2"
    run(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", str(base), "1G"))
    sha = hashlib.sha256(base.read_bytes()).hexdigest()
    # no packages: they would be a provision layer, whose build boots a builder guest
    cfg = sample_config(ssh_key, image=Image(name="cloud", url=str(base), sha256=sha),
                        packages=())
    nodes = vm_graph(cfg, cfg.vms[0], read_facts("qemu"))
    report = build_nodes(store, nodes.values())
    assert sorted(report.built) == sorted(nodes)
    return Built(store, {n: s.path for n, s in report.states.items()},
                 {n: s.key for n, s in report.states.items()}, base)


def text_snapshot(snapshot, ext: str):  # type: ignore[no-untyped-def]
    ext_class = type(f"Text{ext.title()}", (SingleFileSnapshotExtension,),
                     {"_write_mode": WriteMode.TEXT, "file_extension": ext})
    return snapshot.use_extension(ext_class)


RENDERED = [
    ("devbox.domain", "domain.xml", "xml"),
    ("net.aivm", "network.xml", "xml"),
    ("net.aivm.nft", "ruleset.nft", "nft"),
    ("devbox.seed", "user-data", "yaml"),
    ("devbox.seed", "meta-data", "yaml"),
    ("devbox.seed", "network-config", "yaml"),
]


@pytest.mark.parametrize(("node", "filename", "ext"), RENDERED,
                         ids=[f for _, f, _ in RENDERED])
def test_rendered_file_snapshot(built: Built, snapshot, node: str, filename: str,  # type: ignore[no-untyped-def]
                                ext: str) -> None:
    assert built.text(node, filename) == text_snapshot(snapshot, ext)


def test_direct_kernel_boot_domain_snapshot(tmp_path: Path, snapshot) -> None:  # type: ignore[no-untyped-def]
    out = render_domain(tmp_path, boot={"kernel": "vmlinuz", "initrd": "initrd.img",
                                        "cmdline": "root=/dev/vda rw console=ttyS0"})
    text = (out / "domain.xml").read_text().replace(str(tmp_path), "<tmp>")
    assert text == text_snapshot(snapshot, "xml")


def render_domain(tmp_path: Path, boot: dict[str, str] | None = None, accel: str = "qemu",
                  disk: str = "/var/lib/aivm/devbox/disk.qcow2", firmware: str = "bios") -> Path:
    inputs = {}
    for role in ("base", "overlay", "seed", "network"):
        entry = tmp_path / "store" / f"{role[0] * 32}-{role}"
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "manifest.json").write_text(json.dumps({"key": role[0] * 64}))
        inputs[role] = entry
    if boot is not None:
        (inputs["base"] / "boot.json").write_text(json.dumps(boot))
    node = Node("devbox.domain", "domain-xml", params={
        "name": "devbox", "accel": accel, "cpus": 1, "memory_mib": 1024, "disk": disk,
        "console_log": "/var/lib/aivm/devbox/console.log", "network": "aivm",
        "mac": "52:54:00:aa:bb:cc", "firmware": firmware},
        inputs={r: f"n.{r}" for r in inputs})
    return render_node(node, tmp_path / f"out-{accel}-{len(boot or {})}-{firmware}",
                       inputs=inputs)


def validate_xml(path: Path, what: str) -> None:
    result = run(Cmd.of("virt-xml-validate", str(path), what, meaning="validate libvirt XML"),
                 check=False)
    assert result.ok, result.stderr + result.stdout


def validate_domain(path: Path, store_root: Path, scratch: Path) -> None:
    """A stored domain XML names store files by reference (`@store@/...`); libvirt's schema
    applies to it as activation resolves it against the store."""
    resolved = scratch / "resolved-domain.xml"
    resolved.write_text(resolve(path.read_text(), store_root))
    validate_xml(resolved, "domain")


def test_xml_passes_libvirt_schema(built: Built, tmp_path: Path) -> None:
    validate_domain(built.paths["devbox.domain"] / "domain.xml", built.store.root, tmp_path)
    validate_xml(built.paths["net.aivm"] / "network.xml", "network")


KERNEL_BOOT = {"kernel": "vmlinuz", "initrd": "initrd.img"}


@pytest.mark.parametrize(("boot", "firmware"), [(None, "bios"), (KERNEL_BOOT, "bios"),
                                                (None, "efi"), (KERNEL_BOOT, "efi")],
                         ids=["bios", "kernel", "efi", "efi-kernel"])
@pytest.mark.parametrize("accel", ["qemu", "kvm"])
def test_every_domain_variant_validates(tmp_path: Path, boot: dict[str, str] | None,
                                        firmware: str, accel: str) -> None:
    out = render_domain(tmp_path, boot, accel, firmware=firmware)
    validate_domain(out / "domain.xml", tmp_path / "store", tmp_path)
    root = ET.parse(out / "domain.xml").getroot()
    assert root.get("type") == accel
    os_el = root.find("os")
    assert os_el is not None
    if boot and "kernel" in boot:
        assert os_el.findtext("kernel") == f"@store@/{'b' * 32}-base/vmlinuz"
        assert os_el.findtext("cmdline") == "root=/dev/vda rw console=ttyS0"
        assert os_el.find("boot") is None
    else:
        assert os_el.find("kernel") is None and os_el.find("boot") is not None
    assert (os_el.get("firmware") == "efi") == (firmware == "efi")
    features = {f.get("name"): f.get("enabled") for f in os_el.findall("firmware/feature")}
    assert features == ({"secure-boot": "no", "enrolled-keys": "no"} if firmware == "efi" else {})
    assert (root.find("cpu") is not None) == (accel == "kvm")


def test_domain_carries_devices_and_metadata(built: Built) -> None:
    root = ET.parse(built.paths["devbox.domain"] / "domain.xml").getroot()
    ns = {"aivm": XMLNS}
    assert root.findtext("metadata/aivm:node/aivm:key", namespaces=ns) == \
        built.keys["devbox.domain"]
    inputs = {e.get("role"): e.get("key")
              for e in root.findall("metadata/aivm:node/aivm:input", ns)}
    assert inputs == {"base": built.keys["image.cloud"], "overlay": built.keys["devbox.overlay"],
                      "seed": built.keys["devbox.seed"], "network": built.keys["net.aivm"]}
    disks = root.findall("devices/disk")
    assert disks[0].find("source").get("file") == "/var/lib/aivm-test-state/devbox/disk.qcow2"
    assert disks[0].find("target").get("bus") == "virtio"
    cdrom = disks[1]
    assert cdrom.get("device") == "cdrom" and cdrom.find("readonly") is not None
    assert cdrom.find("source").get("file") == f"@store@/{built.paths['devbox.seed'].name}/seed.iso"
    assert cdrom.find("target").get("bus") == "scsi"
    assert root.find("devices/controller").get("model") == "virtio-scsi"
    assert root.find("devices/interface/source").get("network") == "aivm"
    assert root.find("devices/interface/model").get("type") == "virtio"
    assert root.find("devices/rng").get("model") == "virtio"
    assert root.find("devices/serial/log").get("file") == \
        "/var/lib/aivm-test-state/devbox/console.log"
    assert root.find("memoryBacking/source").get("type") == "memfd"
    assert root.find("memoryBacking/access").get("mode") == "shared"
    assert root.findtext("memory") == "2048"


def test_network_xml_carries_its_key(built: Built) -> None:
    root = ET.parse(built.paths["net.aivm"] / "network.xml").getroot()
    assert root.findtext("metadata/aivm:node/aivm:key", namespaces={"aivm": XMLNS}) == \
        built.keys["net.aivm"]
    assert root.find("ip").get("netmask") == "255.255.255.0"
    assert root.find("bridge").get("name") == "virbr-aivm"


def test_ruleset_passes_nft_check_and_replaces_atomically(built: Built, netns: str) -> None:
    ruleset = built.paths["net.aivm.nft"] / "ruleset.nft"
    in_ns = ("ip", "netns", "exec", netns)
    check = run(Cmd.of(*in_ns, "nft", "-c", "-f", str(ruleset)), check=False)
    assert check.ok, check.stderr
    for _ in range(2):  # applying twice leaves one table: the file replaces, never adds
        run(Cmd.of(*in_ns, "nft", "-f", str(ruleset), meaning="apply in the test namespace"))
    listed = run(Cmd.of(*in_ns, "nft", "list", "ruleset")).stdout
    assert listed.count("table inet aivm_aivm") == 1
    assert listed.count("hook input") == 1 and listed.count("hook forward") == 1
    assert "93.184.216.0/24" in listed and "2606:2800:220::/48" in listed
    assert re.search(r"tcp dport \{ 22, 5432 \} accept", listed)


def test_ruleset_closing_braces_stand_alone(built: Built) -> None:
    # nft 1.0.6 rejects a rule and its closing brace on one line (REALSTACK P8)
    for line in (built.paths["net.aivm.nft"] / "ruleset.nft").read_text().splitlines():
        assert line.strip() == "}" or not line.rstrip().endswith("}") or "{" in line, line


def test_seed_iso_reads_back(built: Built) -> None:
    import pycdlib

    entry = built.paths["devbox.seed"]
    iso = pycdlib.PyCdlib()
    iso.open(str(entry / "seed.iso"))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        for name in ("user-data", "meta-data", "network-config"):
            for kind in ("rr_path", "joliet_path"):
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, **{kind: f"/{name}"})
                assert buf.getvalue() == (entry / name).read_bytes(), (name, kind)
    finally:
        iso.close()


def test_cloud_init_files_parse(built: Built) -> None:
    yaml = pytest.importorskip("yaml")
    entry = built.paths["devbox.seed"]
    user_data = (entry / "user-data").read_text()
    assert user_data.startswith("#cloud-config\n")
    doc = yaml.safe_load(user_data)
    (user,) = doc["users"]
    assert user["name"] == "agent" and user["uid"] == 1000
    assert user["ssh_authorized_keys"] == [SSH_KEY]
    assert user["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert doc["bootcmd"][0][-2:] == ["1000", "agent"]
    assert "packages" not in doc and doc["package_update"] is False  # baked, not installed
    assert doc["ssh_pwauth"] is False and doc["timezone"] == "UTC"
    assert "PasswordAuthentication no" in doc["write_files"][0]["content"]
    meta = yaml.safe_load((entry / "meta-data").read_text())
    assert meta["local-hostname"] == "devbox"
    assert meta["instance-id"].startswith("iid-devbox-")
    net = yaml.safe_load((entry / "network-config").read_text())
    assert net["version"] == 2
    assert net["ethernets"]["eth0"]["dhcp4"] is True


def test_overlay_is_thin_over_the_store_base(built: Built) -> None:
    info = json.loads(run(Cmd.of("qemu-img", "info", "--output=json", "-U",
                                 str(built.paths["devbox.overlay"] / "disk.qcow2"))).stdout)
    assert info["format"] == "qcow2"
    base = built.paths["image.cloud"] / "disk.qcow2"
    assert info["backing-filename"] == f"../{base.parent.name}/disk.qcow2"   # relocatable
    assert Path(info["full-backing-filename"]).resolve() == base.resolve()
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 8 << 30
    assert (built.paths["image.cloud"] / "disk.qcow2").read_bytes() == \
        built.base_image.read_bytes()


def test_overlay_smaller_than_its_base_is_refused(built: Built, tmp_path: Path) -> None:
    node = Node("x.overlay", "overlay", params={"size_gib": 1}, inputs={"base": "b"})
    base = tmp_path / "bigbase"
    base.mkdir()
    run(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", str(base / "disk.qcow2"), "2G"))
    with pytest.raises(BuildError) as err:
        render_node(node, tmp_path / "o", inputs={"base": base})
    assert err.value.reason == "invalid-param"


def test_fake_key_is_used_verbatim(tmp_path: Path) -> None:
    out = render_domain(tmp_path)
    assert FAKE_KEY in (out / "domain.xml").read_text()


# ---- what the firewall settings open (issue 12 item 4) ---------------------------------------

def ruleset_of(tmp_path: Path, **params: object) -> str:
    node = Node("net.lab.nft", "nft-ruleset", params={
        "network": "lab", "bridge": "virbr-lab", "gateway": "10.77.0.1", **params})
    return (render_node(node, tmp_path / "out") / "ruleset.nft").read_text()


def chain(text: str, name: str) -> list[str]:
    body = text.split(f"\tchain {name} {{\n", 1)[1].split("\n\t}\n", 1)[0]
    return [line.strip() for line in body.splitlines()]


def test_allowed_ports_open_the_gateway_only_never_the_lan(tmp_path: Path) -> None:
    text = ruleset_of(tmp_path, allow_tcp_ports=(80, 5432), allow_udp_ports=(5353,))
    opened = [r for r in chain(text, "input") if "dport { 80" in r or "dport { 5353" in r]
    assert opened == [
        'ip daddr 10.77.0.1 tcp dport { 80, 5432 } accept comment "allow_tcp_ports: the '
        'gateway only"',
        'ip daddr 10.77.0.1 udp dport { 5353 } accept comment "allow_udp_ports: the gateway '
        'only"']
    forward = chain(text, "forward")
    assert not any("accept" in r and "dport" in r for r in forward), forward


def test_allow_lan_opens_exactly_the_named_endpoints(tmp_path: Path) -> None:
    text = ruleset_of(tmp_path, allow_lan_tcp=("192.168.1.10:5432", "192.168.1.10:22",
                                               "10.1.0.0/24:443", "[fd00::5]:22"),
                      allow_lan_udp=("192.168.1.10:53",))
    expected = ['ip daddr 10.1.0.0/24 tcp dport { 443 } accept comment "allow_lan_tcp"',
                'ip daddr 192.168.1.10 tcp dport { 22, 5432 } accept comment "allow_lan_tcp"',
                'ip6 daddr fd00::5 tcp dport { 22 } accept comment "allow_lan_tcp"',
                'ip daddr 192.168.1.10 udp dport { 53 } accept comment "allow_lan_udp"']
    for name in ("input", "forward"):  # the host's own LAN address is reached through input
        rules = chain(text, name)
        assert [r for r in rules if "allow_lan" in r] == expected
        metadata = rules.index('ip daddr 169.254.169.254 counter drop comment "cloud metadata: '
                               'always dropped"')
        assert metadata < rules.index(expected[0]), "metadata must drop before any allow"
    check = run(Cmd.of("nft", "-c", "-f", str(tmp_path / "out" / "ruleset.nft")), check=False)
    assert check.ok, check.stderr


HOSTILE_LAN = [
    ("169.254.169.254:80", "metadata"), ("169.254.0.0/16:80", "metadata"),
    ("8.8.8.8:53", "already reaches it"), ("127.0.0.1:22", "loopback"),
    ("224.0.0.251:5353", "loopback, multicast"), ("192.168.1.10", "e.g."),
    ("192.168.1.10:0", "e.g."), ("192.168.1.10:70000", "e.g."), ("fd00::5:22", "e.g."),
    ("192.168.1.10/24:22", "e.g."), ("192.168.1.10:22\n", "e.g."),
    ("192.168.1.10:22 accept", "e.g."), ("[fd00:ec2::254]:80", "metadata"), ("", "e.g."),
]


@pytest.mark.parametrize(("value", "why"), HOSTILE_LAN, ids=[v for v, _ in HOSTILE_LAN])
def test_allow_lan_refuses_what_is_not_one_lan_endpoint(tmp_path: Path, value: str,
                                                        why: str) -> None:
    from aivm.config.lint import lint_text

    with pytest.raises(AivmError) as err:
        ruleset_of(tmp_path, allow_lan_tcp=(value,))
    assert why in str(err.value)
    toml = ('[[networks]]\nname = "lab"\n\n[networks.firewall]\n'
            f'allow_lan_tcp = [{json.dumps(value)}]\n')
    problems = lint_text(toml, tmp_path / "config.toml")
    assert [p.line for p in problems] == [5] and why in problems[0].message, problems
