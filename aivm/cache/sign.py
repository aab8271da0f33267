"""Signatures over store manifests: ed25519 (the `cryptography` package).

Keys are spelled as Nix spells them: `NAME:BASE64`. A secret key file holds
`NAME:BASE64(32-byte seed)`; a public key (what `[store] trusted_keys` lists) is
`NAME:BASE64(32-byte public key)`; a signature is `NAME:BASE64(64 bytes)`. What is
signed is the canonical JSON of the manifest's identity and content (`payload`),
after a scheme prefix, so a signature can never be replayed onto another entry.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from aivm import fsutil
from aivm.errors import StoreError
from aivm.graph.keys import canonical_json
from aivm.graph.store import Manifest

PREFIX = b"aivm entry signature v1\0"
SIGNED_FIELDS = ("key", "digest", "kind", "name", "version", "inputs", "input_entries")


@dataclass(frozen=True)
class SecretKey:
    name: str
    key: Ed25519PrivateKey

    @property
    def public(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}:{base64.b64encode(raw).decode()}"


def payload(manifest: Manifest) -> bytes:
    data = manifest.__dict__
    return PREFIX + canonical_json({f: data[f] for f in SIGNED_FIELDS})


def keygen(path: Path, name: str) -> SecretKey:
    """Write a new secret key to `path` (mode 0600, never overwriting); return it."""
    if not name or ":" in name:
        raise StoreError(f"key name {name!r} is empty or has a colon",
                         hint="use a name such as `laptop-1`", reason="key-name")
    if path.exists():
        raise StoreError(f"{path} exists; not overwriting a secret key",
                         hint="choose another --out, or remove the old key first",
                         reason="key-exists")
    secret = SecretKey(name, Ed25519PrivateKey.generate())
    seed = secret.key.private_bytes_raw()
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(path, f"{name}:{base64.b64encode(seed).decode()}\n", mode=0o600)
    return secret


def load_secret(path: Path) -> SecretKey:
    try:
        name, seed = _split(path.read_text().strip(), 32, what=f"secret key file {path}")
    except OSError as exc:
        raise StoreError(f"cannot read the secret key file {path}: {exc.strerror}",
                         hint="create one with `aivm store keygen`", reason="secret-key") from exc
    return SecretKey(name, Ed25519PrivateKey.from_private_bytes(seed))


def sign(manifest: Manifest, secret: SecretKey) -> str:
    return f"{secret.name}:{base64.b64encode(secret.key.sign(payload(manifest))).decode()}"


def check(manifest: Manifest, signatures: Iterable[str], trusted: Iterable[str],
          *, source: str) -> str:
    """The name of a trusted key that signed `manifest`; a StoreError when none did."""
    keys = {}
    for spelled in trusted:
        name, raw = _split(spelled, 32, what="trusted key")
        keys[name] = Ed25519PublicKey.from_public_bytes(raw)
    sigs = list(signatures)
    where = f"entry {manifest.name} ({manifest.key[:12]}) from {source}"
    if not keys:
        raise StoreError(f"{where}: no trusted keys are configured",
                         hint="add the pusher's public key to [store] trusted_keys",
                         reason="untrusted")
    if not sigs:
        raise StoreError(f"{where} is unsigned; refused",
                         hint="push it with [store] secret_key_file set", reason="unsigned")
    for sig in sigs:
        try:
            name, raw = _split(sig, 64, what="signature")
        except StoreError:
            continue
        if name in keys:
            try:
                keys[name].verify(raw, payload(manifest))
                return name
            except InvalidSignature:
                continue
    names = ", ".join(sorted(s.split(":", 1)[0] for s in sigs))
    raise StoreError(f"{where} has no valid signature by a trusted key (signed by: {names}); "
                     "refused", hint="trust the signer's key in [store] trusted_keys, or the "
                     "entry was altered", reason="bad-signature")


def _split(spelled: str, size: int, *, what: str) -> tuple[str, bytes]:
    name, _, b64 = spelled.partition(":")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not name or len(raw) != size:
        raise StoreError(f"{what} {spelled[:40]!r} is not NAME:BASE64 of {size} bytes",
                         hint="keys come from `aivm store keygen`", reason="key-format")
    return name, raw


def default_secret_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "aivm" / "store-secret-key"
