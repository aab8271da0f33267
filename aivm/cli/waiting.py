"""The wait display of `aivm up`: elapsed time and the current phase."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

PHASES = {"lease": "booting, waiting for a DHCP lease", "ssh": "waiting for ssh",
          "cloud-init": "waiting for cloud-init to finish", "ready": "ready"}


class PhaseDisplay:
    def __init__(self, vm: str, *, enabled: bool) -> None:
        self.vm = vm
        self.enabled = enabled
        self.started = time.monotonic()
        self.elapsed = 0.0
        self._last = ""
        self._status: Any = None

    def __enter__(self) -> PhaseDisplay:
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console

            self._status = Console(stderr=True).status(f"{self.vm}: starting")
            self._status.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()

    def phase(self, name: str, seconds: float) -> None:
        self.elapsed = time.monotonic() - self.started
        text = f"{self.vm}: {PHASES.get(name, name)} ({self.elapsed:.0f} s)"
        if self._status is not None:
            self._status.update(text)
        elif self.enabled and name != self._last:
            print(text, file=sys.stderr, flush=True)
        self._last = name
