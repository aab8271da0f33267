"""`aivm gc --host`: marking a remote store's listing (the sweep is in tests/e2e/test_remote.py
and tests/remote/test_ssh_copy.py)."""

from __future__ import annotations

import hashlib
import json

from aivm.remote.gc import mark


def _entry(name: str, size: int, *inputs: str) -> str:
    manifest = {"key": "k", "input_entries": {f"in{i}": n for i, n in enumerate(inputs)}}
    return f"E {name} {size} {json.dumps(manifest)}"


def test_roots_and_pending_keep_their_closures() -> None:
    listing = "\n".join([
        _entry("aaa-base", 100), _entry("bbb-top", 10, "aaa-base"), _entry("ccc-old", 7),
        _entry("ddd-held", 3), _entry("eee-gone", 5, "ccc-old"),
        "R roots/vms/dev/dev.domain ../../../bbb-top",
        'P ["ddd-held"]',
    ])
    found = mark("alice@server", listing + "\n")
    assert found.live == ("aaa-base", "bbb-top", "ddd-held")
    assert found.dead == ("ccc-old", "eee-gone") and found.dead_bytes == 12
    roots = "R roots/vms/dev/dev.domain ../../../bbb-top\n"
    assert found.roots_digest == hashlib.sha256(roots.encode()).hexdigest()


def test_no_roots_everything_is_dead() -> None:
    found = mark("h", _entry("aaa-base", 1) + "\n")
    assert found.dead == ("aaa-base",) and found.live == ()
    assert found.roots_digest == hashlib.sha256(b"").hexdigest()
