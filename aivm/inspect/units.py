"""Human sizes and durations, both ways."""

from __future__ import annotations

import re

from aivm.errors import AivmError

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)", re.IGNORECASE)
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def human_size(n: int) -> str:
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_size(text: str) -> int:
    """"500M", "2G", "1.5GiB", "4096" -> bytes (powers of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise AivmError(f"not a size: {text!r}", hint="write e.g. 500M, 2G or 4096 (bytes)",
                        reason="bad-size")
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * 1024 ** power)


def parse_duration(text: str) -> int:
    """"30d", "12h", "2w3d", "90m" -> seconds."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s", "", text):
        raise AivmError(f"not a duration: {text!r}", hint="write e.g. 30d, 12h, 2w or 90m",
                        reason="bad-duration")
    return sum(int(n) * _SECONDS[u] for n, u in parts)
