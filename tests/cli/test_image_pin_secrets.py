"""`aivm host image_pin` with credentials in the URL: used, recorded in the config, never printed.

The SHA256SUMS file and the image are served by a loopback HTTP server
(127.0.0.1) that records the Authorization header of each request.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from aivm.cli.app import App
from aivm.cli.main import cli
from tests.recipes.test_fetch import PAYLOAD, serving


def test_pin_prints_the_url_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    with serving() as (base, served):
        served.files["/img/SHA256SUMS"] = f"{digest} *disk.img\n".encode()
        url = base.replace("http://", "http://al:pw9@") + "/img/disk.img?tok=tok9"
        app = App(config_override=str(tmp_path / "config.toml"),
                  store_override=str(tmp_path / "store"))
        result = CliRunner().invoke(cli, ["host", "image_pin", "mine", "--url", url], obj=app)
    assert result.exit_code == 0, result.output
    shown = base.replace("http://", "http://al:***@")
    assert result.output == (f"image mine: pinned {shown}/img/disk.img?tok=***\n"
                             f"  sha256 {digest} (from {shown}/img/SHA256SUMS)\n")
    assert served.auths == ["Basic " + base64.b64encode(b"al:pw9").decode()]
    assert f'url = "{url}"' in (tmp_path / "config.toml").read_text()  # the config keeps it
