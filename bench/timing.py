"""The one stopwatch of the bench rows that time a single step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def timed(step: Callable[[], Any]) -> float:
    """Seconds `step()` took (monotonic clock); its result is dropped."""
    started = time.monotonic()
    step()
    return time.monotonic() - started
