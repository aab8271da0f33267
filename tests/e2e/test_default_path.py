"""The default path, proven: a pinned cloud image fetched over HTTP, verified and booted
from its own disk, under SeaBIOS and under UEFI (OVMF), on the real stack.

Every real user's first `aivm up` fetches Ubuntu's pinned cloud image and boots it
from its disk (a bootloader inside, `<boot dev="hd"/>`). This machine cannot download
Ubuntu's image, so the test builds one of the same shape offline, once per run, with
aivm's own option (`source = "debootstrap"`, `layout = "disk"`: GPT, GRUB for BIOS
and UEFI, the kernel inside), serves it from a loopback HTTP server in this process
(127.0.0.1; aivm's fetch runs in the aivm process, so nothing leaves loopback), and pins
it in the config exactly as a user pins Ubuntu's: `url` and `sha256`.

Two boots: BIOS (up, ssh, cloud-init), then UEFI by switching the image's `firmware`
and `up --recreate` (a fresh disk, cloud-init again). Before them, the fetch is
checked: a wrong pin is refused and its download deleted; a download the server
breaks off on every attempt fails, and the next build resumes it with a Range request.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aivm.graph.node import Node
from aivm.graph.store import Store, remove_tree
from aivm.recipes import domain_xml
from aivm.run import Cmd, run
from tests.e2e.aivm_user import AivmUser
from tests.e2e.harness import RealStack
from tests.recipes.helpers import build_nodes, host_mirror, store_at

pytestmark = [pytest.mark.realstack, pytest.mark.slow]

VM = "diskboot"
IMAGE = "cloud-disk"
FILE = "/images/aivm-disk-amd64.qcow2"
TIMINGS: dict[str, float] = {}


@dataclass
class Served:
    """One request as the server saw it."""
    range: str
    sent: int
    cut: bool


@dataclass
class ImageServer:
    path: Path
    cut_after: int = 0                 # >0: break off every response after this many bytes
    log: list[Served] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{FILE}"

    def serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        size = self.path.stat().st_size
        ask = handler.headers.get("Range", "")
        start = int(ask.removeprefix("bytes=").split("-")[0]) if ask else 0
        handler.send_response(206 if ask else 200)
        if ask:
            handler.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        handler.send_header("Content-Length", str(size - start))
        handler.end_headers()
        limit = min(self.cut_after, size - start) if self.cut_after else size - start
        sent = 0
        with open(self.path, "rb") as fh:
            fh.seek(start)
            try:
                while sent < limit:
                    chunk = fh.read(min(1 << 20, limit - sent))
                    handler.wfile.write(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
        self.log.append(Served(ask, sent, sent < size - start))
        handler.close_connection = True


def handler_for(server: ImageServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
            if self.path != FILE:
                self.send_error(404)
                return
            server.serve(self)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def disk_image(shared_store: Path) -> Path:
    """The offline-built disk image (GPT, GRUB for BIOS and UEFI, kernel inside), once."""
    node = Node("image.debian-disk", "debootstrap-disk", params={"mirror": host_mirror()})
    started = time.monotonic()
    report = build_nodes(store_at(shared_store), [node])
    if node.name in report.built:
        TIMINGS["image build"] = time.monotonic() - started
    return report.states[node.name].path / "disk.qcow2"


@pytest.fixture(scope="module")
def server(disk_image: Path) -> Iterator[ImageServer]:
    image = ImageServer(disk_image)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(image))
    image.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield image
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def pin(disk_image: Path) -> str:
    digest = hashlib.sha256()
    with open(disk_image, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def user(realstack: RealStack, server: ImageServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[AivmUser]:
    """A user whose only VM boots the served image; a store of its own, so the image is
    really fetched (under /var/tmp: QEMU, as libvirt-qemu, must enter it)."""
    store = Path(f"/var/tmp/aivm-default-path-{os.getpid()}")
    person = AivmUser(realstack, tmp_path_factory.mktemp("home"), store)
    person.home.mkdir(parents=True, exist_ok=True)
    person.run("config", "init", "--defaults")
    person.edit(lambda t: t.replace('"aivm-2404"', f'"{VM}"'))
    person.set_vm_key("image", f'"{IMAGE}"')
    person.set_vm_key("memory_mib", "1024")
    person.set_vm_key("cpus", "1")
    person.edit(lambda t: t + f'\n[[images]]\nname = "{IMAGE}"\nurl = "{server.url}"\n'
                              f'sha256 = "{"0" * 64}"\nfirmware = "bios"\n')
    realstack.watch(realstack.work / "state" / VM / "console.log")
    yield person
    person.run("destroy", VM, "--yes", check=False)
    print("\n".join(person.log))
    remove_tree(store)


def set_image_key(user: AivmUser, key: str, value: str) -> None:
    """Set sha256 or firmware: keys only the one [[images]] entry has."""
    user.edit(lambda t: re.sub(rf'(?m)^{key} = "[^"]*"$', f'{key} = "{value}"', t, count=1))


def partials(user: AivmUser) -> list[Path]:
    return sorted((user.store / "cache" / "partial").glob("*.part"))


def live_os(stack: RealStack) -> ET.Element:
    root = ET.fromstring(stack.connect().lookupByName(VM).XMLDesc(0))
    os_el = root.find("os")
    assert os_el is not None
    return os_el


def test_1_a_wrong_pin_is_refused_and_its_download_deleted(user: AivmUser,
                                                           server: ImageServer, pin: str) -> None:
    bad = user.run("build", VM, check=False)
    assert bad.returncode != 0
    # names the image entry and the pin to check, and what was received instead
    assert (f"image.{IMAGE}: sha256 mismatch for {server.url}: expected {'0' * 64}, got {pin}"
            in bad.stderr)
    assert server.log and not server.log[-1].cut              # the whole file came, then
    assert partials(user) == []                               # ... it was deleted
    assert not any(e.name.endswith(f"-image.{IMAGE}") for e in Store(user.store).entries())


def test_2_a_broken_download_resumes_with_range(user: AivmUser, server: ImageServer,
                                                pin: str) -> None:
    size = server.path.stat().st_size
    set_image_key(user, "sha256", pin)
    server.log.clear()
    server.cut_after = size // 7     # without resume, a retry would cost > 1.5x the file
    broken = user.run("build", VM, check=False)
    assert broken.returncode != 0 and "kept breaking off" in broken.stderr
    first = list(server.log)
    assert len(first) >= 2 and all(r.cut for r in first)
    have = sum(r.sent for r in first)
    assert [p.stat().st_size for p in partials(user)] == [have]   # every byte kept

    server.cut_after = 0
    built = user.json("build", VM)
    assert f"image.{IMAGE}" in built["built"]
    second = server.log[len(first):]
    assert second[0].range == f"bytes={have}-" and have > 0
    served = sum(r.sent for r in server.log)
    assert served < 1.5 * size, f"{served} bytes served for a {size}-byte file"
    assert partials(user) == []
    print(f"\nimage {size / (1 << 20):.0f} MiB; {len(first)} broken attempts, then "
          f"Range: bytes={have}-; {served / size:.2f}x the file served")


def test_3_bios_boot_from_disk(user: AivmUser, realstack: RealStack) -> None:
    started = time.monotonic()
    report = user.json("up", VM, "--yes")
    TIMINGS["BIOS up to ssh + cloud-init"] = time.monotonic() - started
    assert f"image.{IMAGE}" not in report["built"]             # fetched once, by test 2
    os_el = live_os(realstack)
    assert os_el.find("kernel") is None and os_el.find("initrd") is None
    assert os_el.find("boot").get("dev") == "hd"
    assert os_el.get("firmware") is None and os_el.find("loader") is None
    assert user.ssh(VM, "echo", "ok").stdout == "ok\n"
    assert "status: done" in user.ssh(VM, "cloud-init", "status").stdout
    assert user.ssh(VM, "test", "-d", "/sys/firmware/efi", check=False).returncode == 1
    assert user.ssh(VM, "findmnt", "-no", "SOURCE", "/").stdout.strip() == "/dev/vda3"
    root_bytes = int(user.ssh(VM, "df", "-B1", "--output=size", "/").stdout.split()[-1])
    assert root_bytes > 8 << 30, "cloud-init did not grow the root partition to the disk"


def test_4_uefi_boot_of_a_recreated_disk(user: AivmUser, realstack: RealStack) -> None:
    user.ssh(VM, "touch", "marker")
    set_image_key(user, "firmware", "efi")
    started = time.monotonic()
    report = user.json("up", VM, "--recreate", "--yes")
    TIMINGS["UEFI up --recreate to ssh + cloud-init"] = time.monotonic() - started
    assert report["built"] == [f"{VM}.domain"]                # only the firmware changed
    assert f"Recreate the writable disk of VM {VM}" in report["steps"]
    os_el = live_os(realstack)
    assert os_el.find("kernel") is None and os_el.find("boot").get("dev") == "hd"
    assert os_el.find("loader").get("type") == "pflash" and os_el.find("nvram") is not None
    stored = Path(user.json("build", VM)["nodes"][f"{VM}.domain"]["path"]) / "domain.xml"
    domain = user.home / "resolved-domain.xml"    # as libvirt gets it: store references resolved
    domain.write_text(domain_xml.resolve(stored.read_text(), user.store))
    check = run(Cmd.of("virt-xml-validate", str(domain), "domain"), check=False)
    assert check.ok, check.stderr + check.stdout
    assert user.ssh(VM, "echo", "ok").stdout == "ok\n"
    assert "status: done" in user.ssh(VM, "cloud-init", "status").stdout
    assert user.ssh(VM, "test", "-d", "/sys/firmware/efi").returncode == 0
    assert user.ssh(VM, "test", "-e", "marker", check=False).returncode == 1
    print("\n" + "; ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def test_5_destroy_then_gc(user: AivmUser, realstack: RealStack) -> None:
    mine = {n: Path(s["path"]) for n, s in user.json("build", VM)["nodes"].items()}
    nvram = Path(live_os(realstack).findtext("nvram") or "")
    host_nvram = realstack.work / "lib" / nvram.relative_to("/var/lib/libvirt")
    assert host_nvram.is_file()
    user.run("destroy", VM, "--yes")
    assert VM not in {d.name() for d in realstack.connect().listAllDomains()}
    assert not host_nvram.exists(), "destroy left the VM's UEFI variables behind"
    assert Store(user.store).vm_roots(VM) == {}
    user.run("gc", "--yes")
    assert not any(p.exists() for p in mine.values()), "gc kept an entry of the destroyed VM"
