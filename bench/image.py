"""The guest every benchmark boots: aivm's own debootstrap image, and seeds for the peers.

The image is built by aivm's `debootstrap` recipe through aivm's scheduler
into a store of its own (`/var/tmp/aivm-bench/store` by default), so it is
byte-for-byte the image an aivm VM boots when its config names the same
image (`bench_image_config()`: same params, same key). A second call finds
the entry and returns at once.

The peers get a cloud-init seed made by aivm's `seed-iso` recipe (same
user-data template as aivm's guests: a user with a throwaway ssh key, keys
only), also cached in the store. The seed names the NIC's MAC, as aivm's
does (with only the name-glob match `en*`/`eth*` the guest booted, cloud-init ran,
but no DHCP lease came in 400 s), so each peer must give its NIC `BENCH_MAC`.

Paths must be traversable by libvirt-qemu: /var/tmp/aivm-bench is 0755 and
outside the five directories the real-stack harness bind-mounts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aivm.config.schema import Config, Image, ImageSource
from aivm.graph.node import Node

DEFAULT_WORK = Path("/var/tmp/aivm-bench")
IMAGE_NAME = "debian"    # as tests/e2e/aivm_user.debian_user: same key, same entry name
USER = "agent"          # the same user name aivm gives its guests by default
BENCH_MAC = "52:54:00:a1:7e:01"   # = tests/e2e/manual_boot_check.MAC, whose wait_lease we use


@dataclass(frozen=True)
class BenchImage:
    qcow2: Path         # read-only store file; boot a thin overlay on it, never it
    kernel: Path
    initrd: Path
    cmdline: str        # aivm's: root=/dev/vda ...; peers with a SCSI root swap the device
    entry: Path         # the store entry that holds all four


@dataclass(frozen=True)
class BenchSeed:
    iso: Path           # NoCloud seed, volume label cidata
    user: str
    mac: str            # the NIC the seed's network config brings up
    private_key: Path   # ssh -i this, as `user`


def bench_image_config(mirror: str | None = None) -> Image:
    """The [[images]] entry aivm's side of the benchmark must use to boot this very image."""
    from tests.e2e.manual_boot_check import apt_mirror

    return Image(name=IMAGE_NAME, source=ImageSource.DEBOOTSTRAP,
                 mirror=mirror or apt_mirror())


def bench_image(workdir: Path = DEFAULT_WORK, image: Image | None = None) -> BenchImage:
    """Build (once) and return the Debian guest image through aivm's debootstrap recipe."""
    from aivm.config.to_graph import image_node

    img = image or bench_image_config()
    node = image_node(Config(images=(img,)), img)
    entry = _build(workdir, node)
    boot = json.loads((entry / "boot.json").read_text())
    return BenchImage(qcow2=entry / "disk.qcow2", kernel=entry / boot["kernel"],
                      initrd=entry / boot["initrd"], cmdline=boot["cmdline"], entry=entry)


def bench_seed(workdir: Path = DEFAULT_WORK, hostname: str = "bench",
               user: str = USER, mac: str = BENCH_MAC) -> BenchSeed:
    """A cloud-init seed (aivm's recipe) creating `user` with the bench ssh key."""
    key = ssh_key(workdir)
    node = Node(f"{hostname}.seed", "seed-iso",
                params={"hostname": hostname, "user": user, "mac": mac},
                files={"ssh_pubkey": key.with_name(key.name + ".pub")})
    return BenchSeed(iso=_build(workdir, node) / "seed.iso", user=user, mac=mac,
                     private_key=key)


def ssh_key(workdir: Path = DEFAULT_WORK) -> Path:
    """A throwaway ed25519 key kept in the bench work dir (private key path)."""
    from aivm.run import Cmd, run

    key = work_dir(workdir) / "ssh" / "id_ed25519"
    if not key.is_file():
        key.parent.mkdir(mode=0o700, exist_ok=True)
        run(Cmd.of("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aivm-bench",
                   "-f", str(key), meaning="make the benchmark's ssh key"))
    return key


def work_dir(workdir: Path = DEFAULT_WORK) -> Path:
    workdir.mkdir(mode=0o755, parents=True, exist_ok=True)
    workdir.chmod(0o755)
    return workdir


def _build(workdir: Path, node: Node) -> Path:
    """Build one node into the bench store (cached by its key); return its entry."""
    from aivm.graph import scheduler
    from aivm.graph.graph import Graph
    from aivm.graph.statcache import StatCache
    from aivm.graph.store import Store
    from aivm.recipes import REGISTRY

    store = Store(work_dir(workdir) / "store").ensure()
    report = scheduler.build(Graph([node]), REGISTRY, store,
                             StatCache(store.root / "cache" / "stat.json"))
    return report.states[node.name].path
