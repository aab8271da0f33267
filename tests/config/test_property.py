"""Property: whatever the file holds, load() returns a Config or raises ConfigError, only."""

from __future__ import annotations

import dataclasses
import string
from pathlib import Path

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aivm.config import load, schema
from aivm.config.lint import lint_text
from aivm.errors import ConfigError

VM_KEYS = [f.name for f in dataclasses.fields(schema.Vm)]
NET_KEYS = [f.name for f in dataclasses.fields(schema.Network)]
TOP_KEYS = ["schema_version", "active_vm", "behavior", "sync", "store", "images", "attachments"]
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), text,
                    st.floats(allow_nan=False), st.sampled_from(["10.77.0.0/24", "10.77.0.1",
                                                                 "auto", "shared", "vm-1", ""]))
junk_key = st.text(string.ascii_letters + "_-", min_size=1, max_size=10)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(junk_key, inner, max_size=3), max_leaves=6)


def table(keys: list[str]) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(st.sampled_from(keys) | junk_key, values, max_size=6)


documents = st.fixed_dictionaries({}, optional={
    "defaults": table(VM_KEYS),
    "vms": st.lists(table(VM_KEYS), max_size=3),
    "networks": st.lists(table(NET_KEYS), max_size=3),
    **{key: values for key in TOP_KEYS},
})
VALID = (Path(__file__).parent / "test_load.py").read_text().split('GOOD = """\\\n')[1] \
    .split('"""')[0]


def only_config_errors(source: str) -> None:
    try:
        load.loads(source, Path("p.toml"))
    except ConfigError as exc:
        head = exc.message.split(": ", 1)[0]
        assert head.startswith("p.toml:")
        line = int(head.rsplit(":", 1)[1])
        assert 1 <= line <= max(1, source.count("\n") + 1)
        assert exc.hint and exc.reason


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_generated_documents(doc: dict[str, object]) -> None:
    source = tomlkit.dumps(doc)
    only_config_errors(source)
    for problem in lint_text(source, Path("p.toml")):
        assert problem.line >= 1 and problem.hint


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(VALID)), st.integers(0, 8), text)
def test_mangled_text(at: int, cut: int, insert: str) -> None:
    only_config_errors(VALID[:at] + insert + VALID[at + cut:])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VM_KEYS), values)
def test_any_value_for_a_vm_key(key: str, value: object) -> None:
    only_config_errors(tomlkit.dumps({"vms": [{"name": "a", key: value}]}))


@given(junk_key.filter(lambda k: k not in VM_KEYS), values)
def test_unknown_keys_always_refused(key: str, value: object) -> None:
    source = tomlkit.dumps({"vms": [{"name": "a", key: value}]})
    try:
        load.loads(source, Path("p.toml"))
    except ConfigError as exc:
        assert exc.reason == "unknown-key"
        head, _, message = exc.message.partition(": ")
        assert message == f"unknown key {key!r} in vms"
        named = source.splitlines()[int(head.rsplit(":", 1)[1]) - 1]
        assert named.lstrip("[").startswith((f"{key} ", f"vms.{key}]", f"vms.{key}.")), named
    else:
        raise AssertionError("an unknown key was accepted")
