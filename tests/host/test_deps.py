"""`aivm host install_deps`: the package list, dpkg's answer, the one root step."""

from __future__ import annotations

import re
from pathlib import Path

from aivm.activate import plan as plans
from aivm.activate.plan import Effect, Privilege
from aivm.host import deps

ROOT = Path(__file__).resolve().parents[2]


def test_disk_images_tools_are_in_the_list() -> None:
    for package in ("fdisk", "dosfstools", "mtools", "grub-pc-bin", "grub-efi-amd64-bin", "ovmf"):
        assert package in deps.PACKAGES


def test_same_packages_as_deps_sh() -> None:
    script = (ROOT / "scripts" / "deps.sh").read_text()
    listed = re.search(r'PACKAGES="([^"]*)"', script)
    assert listed is not None
    assert tuple(listed.group(1).split()) == deps.PACKAGES


def test_installed_reads_dpkg_query_lines() -> None:
    out = ("qemu-utils installed\nnftables not-installed\nlibvirt-dev:amd64 installed\n"
           "mmdebstrap config-files\n")
    assert deps.installed(out) == {"qemu-utils", "libvirt-dev"}


def test_plan_is_one_root_step_with_only_the_missing_packages() -> None:
    plan = deps.install_plan(("nftables", "mmdebstrap"))
    assert len(plan.steps) == 1
    step = plan.steps[0]
    assert (step.privilege, step.effect) == (Privilege.ROOT, Effect.SYSTEM_WRITE)
    shown = [a.cmd.argv for a in step.actions if a.cmd is not None]
    assert shown == [("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "update", "-q"),
                     ("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-q", "-y",
                      "nftables", "mmdebstrap")]
    assert plans.render(plan) == (
        "[1/1] Install the packages aivm needs  (root, system-write)\n"
        f"      why: 2 of {len(deps.PACKAGES)} are missing\n"
        "      - refresh the package lists\n"
        "      - install 2 package(s): nftables mmdebstrap")


def test_nothing_missing_is_a_note() -> None:
    plan = deps.install_plan(())
    assert plan.is_empty and plan.notes == (
        f"all {len(deps.PACKAGES)} packages aivm needs are installed",)


def test_missing_asks_the_real_dpkg() -> None:
    # on this Debian host dpkg answers; a made-up package is reported missing, dpkg itself is not
    assert deps.missing(("dpkg", "aivm-no-such-package")) == ("aivm-no-such-package",)
