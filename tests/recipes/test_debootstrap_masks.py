"""The debootstrap image masks what a sandbox guest does not need (boot time)."""

from __future__ import annotations

import os
from pathlib import Path

from aivm.recipes import debootstrap


def test_configure_masks_units_and_restricts_datasources(tmp_path: Path) -> None:
    system = tmp_path / "etc/systemd/system"
    system.mkdir(parents=True)
    (system / "fstrim.timer").write_text("[Timer]\n")  # a unit file there is replaced
    debootstrap.configure(tmp_path)
    assert "e2scrub_reap.service" in debootstrap.MASKED_UNITS
    for unit in debootstrap.MASKED_UNITS:
        assert os.readlink(system / unit) == "/dev/null", unit
    cfg = (tmp_path / "etc/cloud/cloud.cfg.d/90-aivm.cfg").read_text()
    assert "datasource_list: [NoCloud, None]" in cfg
