"""Config.require_*: one lookup-or-error per config table (message, hint, reason)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aivm.config.schema import Config, Image, Network, Provision, Vm
from aivm.errors import ConfigError

CFG = Config(vms=(Vm(name="dev"),), networks=(Network(name="lab"),),
             images=(Image(name="tiny"),), provisions=(Provision(name="tools", base="tiny"),))


def test_found_entries_are_returned() -> None:
    assert CFG.require_vm("dev") is CFG.vms[0]
    assert CFG.require_network("lab") is CFG.networks[0]
    assert CFG.require_image("tiny") is CFG.images[0]
    assert CFG.require_provision("tools") is CFG.provisions[0]
    assert CFG.require_network(Network().name) == Network()   # the built-in default


@pytest.mark.parametrize(("lookup", "message", "hint", "reason"), [
    (lambda c: c.require_vm("x"), "no VM named 'x' (declared: dev)",
     "add a [[vms]] entry, or name a declared one", "unknown-vm"),
    (lambda c: c.require_network("x"), "no network named 'x' (declared: lab)",
     "add a [[networks]] entry, or name a declared one", "unknown-network"),
    (lambda c: c.require_image("x"), "no image named 'x' (declared: tiny)",
     "add an [[images]] entry, or name a declared one", "unknown-image"),
    (lambda c: c.require_provision("x"), "no provision named 'x' (declared: tools)",
     "add a [[provisions]] entry, or name a declared one", "unknown-provision"),
    (lambda c: c.require_network("x", "VM dev"), "VM dev uses network 'x', which is not defined",
     "add a [[networks]] entry with that name", "unknown-network"),
])
def test_missing_entries_raise_a_config_error_with_a_hint(
        lookup: Callable[[Config], object], message: str, hint: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        lookup(CFG)
    assert (err.value.message, err.value.hint, err.value.reason) == (message, hint, reason)


def test_an_empty_table_says_none() -> None:
    with pytest.raises(ConfigError, match=r"\(declared: none\)"):
        Config().require_vm("dev")
