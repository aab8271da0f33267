"""Signing keys and signatures (ed25519)."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from aivm.cache import sign
from aivm.cli.main import cli
from aivm.errors import StoreError
from tests.graph.test_digest import _manifest


def test_keygen_cli_writes_a_private_key_and_prints_the_public_one(tmp_path: Path) -> None:
    out = tmp_path / "k"
    result = CliRunner().invoke(cli, ["store", "keygen", "--name", "lab", "--out", str(out)])
    assert result.exit_code == 0
    public = result.stdout.strip()
    assert public.startswith("lab:") and len(public) == len("lab:") + 44
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sign.load_secret(out).public == public
    again = CliRunner().invoke(cli, ["store", "keygen", "--name", "lab", "--out", str(out)])
    assert again.exit_code != 0 and "not overwriting" in again.stderr


def test_a_signature_covers_key_digest_kind_name_and_inputs(tmp_path: Path) -> None:
    secret = sign.keygen(tmp_path / "k", "lab")
    m = _manifest("blake3:" + "1" * 64)
    sig = sign.sign(m, secret)
    assert sign.check(m, [sig], [secret.public], source="t") == "lab"
    for change in ({"key": "x" * 64}, {"digest": "blake3:" + "2" * 64}, {"kind": "other"},
                   {"name": "n2"}, {"inputs": {"base": "y" * 64}}):
        with pytest.raises(StoreError, match="no valid signature"):
            sign.check(dataclasses.replace(m, **change), [sig], [secret.public], source="t")
    with pytest.raises(StoreError, match="unsigned"):
        sign.check(m, [], [secret.public], source="t")
    with pytest.raises(StoreError, match="no trusted keys"):
        sign.check(m, [sig], [], source="t")
