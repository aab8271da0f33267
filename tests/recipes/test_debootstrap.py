"""Build the small Debian guest for real (about a minute) and look inside it without mounting."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from aivm.run import Cmd, run
from tests.recipes.helpers import build_debootstrap_image, build_nodes, debootstrap_node, store_at

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mmdebstrap's root mode needs root"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed"),
]


def debugfs(image: Path, request: str) -> str:
    return run(Cmd.of("debugfs", "-R", request, str(image), meaning="read the image")).stdout


def test_debootstrap_image_builds_and_is_a_clean_first_boot(tmp_path: Path,
                                                            shared_store: Path) -> None:
    entry = build_debootstrap_image(shared_store)
    assert sorted(p.name for p in entry.iterdir()) == [
        "boot.json", "disk.qcow2", "initrd.img", "manifest.json", "vmlinuz"]
    assert json.loads((entry / "boot.json").read_text()) == {
        "kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "root=/dev/vda rw console=ttyS0"}
    kernel = (entry / "vmlinuz").read_bytes()
    assert kernel[0x202:0x206] == b"HdrS"  # a bzImage the direct-boot loader accepts
    assert (entry / "initrd.img").stat().st_size > 1 << 20

    info = json.loads(run(Cmd.of("qemu-img", "info", "--output=json",
                                 str(entry / "disk.qcow2"))).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 3 << 30

    raw = tmp_path / "root.raw"
    run(Cmd.of("qemu-img", "convert", "-O", "raw", str(entry / "disk.qcow2"), str(raw)))
    label = run(Cmd.of("blkid", "-o", "value", "-s", "LABEL", str(raw))).stdout.strip()
    assert label == "aivm-root"
    fstab = debugfs(raw, "cat /etc/fstab")
    assert "LABEL=aivm-root / ext4" in fstab
    assert debugfs(raw, "cat /etc/machine-id") == ""
    assert "ssh_host_" not in debugfs(raw, "ls /etc/ssh")
    cloud = debugfs(raw, "cat /etc/cloud/cloud.cfg.d/90-aivm.cfg")
    assert "datasource_list: [NoCloud, None]" in cloud and "locale: false" in cloud
    assert "sshd" in debugfs(raw, "ls /usr/sbin")

    again = build_nodes(store_at(shared_store), [debootstrap_node()])
    assert again.built == [] and again.states["image.debian"].cached
