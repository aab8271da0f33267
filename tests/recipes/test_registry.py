from __future__ import annotations

import sys

import pytest

from aivm.errors import AivmError, GraphError
from aivm.recipes import KINDS, REGISTRY
from aivm.run import Cmd, run


def test_unknown_kind_is_a_graph_error() -> None:
    with pytest.raises(GraphError) as err:
        REGISTRY.recipe("teapot")
    assert err.value.reason == "unknown-kind"
    assert "domain-xml" in err.value.hint


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_honours_the_contract(kind: str) -> None:
    recipe = REGISTRY.recipe(kind)
    assert recipe.kind == kind
    assert isinstance(recipe.version, int) and recipe.version >= 1
    assert isinstance(recipe.inputs, tuple) and isinstance(recipe.templates, tuple)
    for name in recipe.templates:
        assert REGISTRY.template_path(name).is_file(), name
    assert REGISTRY.recipe(kind) is recipe


def test_importing_the_registry_loads_no_heavy_module() -> None:
    code = ("import sys, aivm.recipes, aivm.config.to_graph; "
            "heavy = {'jinja2', 'pycdlib', 'urllib.request', 'aivm.recipes.fetch'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = run(Cmd.of(sys.executable, "-c", code, meaning="import aivm.recipes")).stdout
    assert out.strip() == "[]"


def test_preflight_names_a_missing_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    from aivm.graph.node import Node

    monkeypatch.setattr("aivm.run.which", lambda name: None if name == "qemu-img" else "/x")
    with pytest.raises(AivmError) as err:
        REGISTRY.recipe("overlay").preflight(
            Node("v.overlay", "overlay", params={"size_gib": 8}, inputs={"base": "b"}))
    assert err.value.reason == "missing-tool"
    assert "qemu-utils" in err.value.hint


def test_debootstrap_needs_a_mirror_and_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from aivm.graph.node import Node

    monkeypatch.setattr("aivm.run.which", lambda name: "/usr/bin/" + name)
    recipe = REGISTRY.recipe("debootstrap")
    with pytest.raises(AivmError) as err:
        recipe.preflight(Node("image.d", "debootstrap"))
    assert err.value.reason == "invalid-param" and "mirror" in err.value.message
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(AivmError) as err:
        recipe.preflight(Node("image.d", "debootstrap",
                              params={"mirror": "http://deb.debian.org/debian"}))
    assert err.value.reason == "needs-root"
