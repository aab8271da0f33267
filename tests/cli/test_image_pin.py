"""`aivm host image_pin` records the digest a SHA256SUMS file lists; image_fetch verifies it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from click.testing import CliRunner

from aivm.cli.app import App
from aivm.cli.main import cli


def _invoke(tmp_path: Path, *args: str):  # type: ignore[no-untyped-def]
    app = App(config_override=str(tmp_path / "config.toml"),
              store_override=str(tmp_path / "store"))
    return CliRunner().invoke(cli, list(args), obj=app)


def test_pin_then_fetch_verifies(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOME", str(tmp_path))
    image = tmp_path / "mirror" / "disk.img"
    image.parent.mkdir()
    image.write_bytes(b"pretend qcow2" * 1000)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    (image.parent / "SHA256SUMS").write_text(f"{'1' * 64} *other.img\n{digest} *disk.img\n")
    url = f"file://{image}"

    pinned = _invoke(tmp_path, "host", "image_pin", "mine", "--url", url)
    assert pinned.exit_code == 0, pinned.output
    assert pinned.output == (f"image mine: pinned {url}\n  sha256 {digest} "
                             f"(from file://{image.parent}/SHA256SUMS)\n")
    text = (tmp_path / "config.toml").read_text()
    assert f'sha256 = "{digest}"' in text and f'url = "{url}"' in text

    fetched = _invoke(tmp_path, "host", "image_fetch", "mine")
    assert fetched.exit_code == 0, fetched.output
    assert f"sha256 {digest} verified" in fetched.output


def test_pin_refuses_an_unlisted_image(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOME", str(tmp_path))
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'1' * 64} *other.img\n")
    result = _invoke(tmp_path, "host", "image_pin", "mine", "--url", "https://x.example/a.img",
                     "--sums", str(sums))
    assert result.exit_code == 1
    assert "error: a.img is not listed in the SHA256SUMS file" in result.output
