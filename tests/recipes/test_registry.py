from __future__ import annotations

import sys

import pytest

from aivm.errors import GraphError
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
