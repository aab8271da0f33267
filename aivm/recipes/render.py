"""Render the recipe templates: jinja2 with StrictUndefined, XML autoescaped.

Templates live in aivm/recipes/templates/. A template whose name contains
".xml" is autoescaped; YAML templates quote every string through the `yaml`
filter (a JSON string is a valid YAML scalar), and nft templates receive only
values that aivm.recipes.values has already checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


def template_path(name: str) -> Path:
    return TEMPLATES / name


def _autoescape(name: str | None) -> bool:
    return name is not None and ".xml" in name


def yaml_scalar(value: Any) -> str:
    """A YAML-safe spelling of a string, number, bool or list: JSON, which YAML reads."""
    return json.dumps(value, ensure_ascii=True)


def render(template: str, /, **values: Any) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=_autoescape,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yaml"] = yaml_scalar
    return env.get_template(template).render(**values)


def write(into: Path, filename: str, template: str, /, **values: Any) -> Path:
    path = into / filename
    path.write_text(render(template, **values))
    return path
