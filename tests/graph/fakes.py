"""Small test recipes: real builds into a real store, no VM involved."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from aivm.errors import BuildError, GraphError
from aivm.graph.node import BuildContext, Node


class Text:
    """Writes params["text"] plus its inputs' outputs, concatenated, to out.txt."""

    kind: ClassVar[str] = "text"
    version: ClassVar[int] = 1
    templates: ClassVar[tuple[str, ...]] = ("text.j2",)
    defaults: ClassVar[Mapping[str, Any]] = {"suffix": ""}
    inputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, log: list[str], lock: threading.Lock, delay: float = 0.0) -> None:
        self.log, self.lock, self.delay = log, lock, delay
        self.active = 0
        self.max_active = 0

    def preflight(self, node: Node) -> None:
        if node.params.get("preflight_fail"):
            raise BuildError("preflight said no", hint="test", reason="preflight")

    def build(self, ctx: BuildContext, into: Path) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(float(ctx.param("delay", self.delay)))
            if ctx.param("fail"):
                raise BuildError(f"{ctx.node.name} was told to fail", reason="told-to-fail")
            parts = [(ctx.input(r) / "out.txt").read_text() for r in sorted(ctx.inputs)]
            parts += [p.read_text() for _, p in sorted(ctx.files.items())]
            text = "".join(parts) + str(ctx.param("text", "")) + str(ctx.param("suffix", ""))
            (into / "out.txt").write_text(text)
            with self.lock:
                self.log.append(ctx.node.name)
        finally:
            with self.lock:
                self.active -= 1


@dataclass
class FakeRegistry:
    template_dir: Path
    delay: float = 0.0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.template_dir.mkdir(parents=True, exist_ok=True)
        tpl = self.template_dir / "text.j2"
        if not tpl.exists():
            tpl.write_text("{{ text }}\n")
        self.text = Text(self.log, threading.Lock(), self.delay)

    def recipe(self, kind: str) -> Text:
        if kind != "text":
            raise GraphError(f"unknown kind {kind}", reason="unknown-kind")
        return self.text

    def template_path(self, name: str) -> Path:
        return self.template_dir / name


def chain_graph(**overrides: Any) -> list[Node]:
    """base -> mid -> top, plus side (independent), like one VM's graph in miniature."""
    params: dict[str, dict[str, Any]] = {"base": {"text": "B"}, "mid": {"text": "M"},
                                         "top": {"text": "T"}, "side": {"text": "S"}}
    for name, extra in overrides.items():
        params[name] = {**params[name], **extra}
    return [
        Node("base", "text", params["base"]),
        Node("mid", "text", params["mid"], inputs={"base": "base"}),
        Node("top", "text", params["top"], inputs={"mid": "mid", "side": "side"}),
        Node("side", "text", params["side"]),
    ]
