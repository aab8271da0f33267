"""One value validator (aivm/recipes/values.py): what config lint accepts for the binary
cache, the cache code accepts too (open_cache, signature keys)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aivm.cache import backends, sign
from aivm.config import checks
from aivm.errors import AivmError
from aivm.recipes import values

URL_PARTS = st.sampled_from(["file://", "file:///", "oci://", "oci:///", "ssh://", "http://",
                             "ghcr.io", "/", "//", "a", "srv", " ", "'", '"', "\n", "%20",
                             "team/aivm", "?", "#", ":5000", "..", "é"])
urls = st.lists(URL_PARTS, max_size=6).map("".join) | st.text(max_size=20)
KEY_PARTS = st.sampled_from(["k", "k:", ":", " ", "\n", base64.b64encode(b"\1" * 32).decode(),
                             base64.b64encode(b"\2" * 31).decode(), "=", "A" * 43, "+/"])
keys = st.lists(KEY_PARTS, max_size=4).map("".join) | st.text(max_size=50)


@settings(max_examples=400, deadline=None)
@given(urls)
def test_a_cache_url_lint_accepts_opens(url: str) -> None:
    if url == "" or checks.cache_url(url) is not None:
        return
    assert values.cache_url(url) == url
    assert backends.open_cache(url).url == url


@settings(max_examples=400, deadline=None)
@given(keys)
def test_a_trusted_key_lint_accepts_is_a_key_the_verifier_reads(key: str) -> None:
    if checks.trusted_keys((key,)) is not None:
        return
    name, raw = sign._split(key, 32, what="key")
    assert name and len(raw) == 32


@pytest.mark.parametrize(("url", "ok"), [
    ("file:///srv/aivm-cache", True), ("oci://ghcr.io/team/aivm", True),
    ("oci://ghcr.io/", False), ("file://host/x", False), ("file:///a b", False),
    ("oci://file://", False), ("oci://ghcr.io/?x", False)])  # once accepted by lint, refused

def test_cache_url_lint_and_values_agree(url: str, ok: bool) -> None:
    assert (checks.cache_url(url) is None) is ok
    if ok:
        values.cache_url(url)
    else:
        with pytest.raises(AivmError):
            values.cache_url(url)
