"""Map TOML key paths to line numbers; used only on the error path.

tomllib keeps no positions, so a small scan of the text records where each
table header and each `key =` line sits, e.g. ("vms", 1, "cpus") -> 12. Array
of tables entries are counted in order. Keys it cannot place (inside inline
tables, array elements) fall back to the nearest enclosing key that it can.
"""

from __future__ import annotations

import re

from aivm.config.validate import KeyPath

_BARE = r"[A-Za-z0-9_-]+"
_KEY = rf'(?:{_BARE}|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_KEY_RE = re.compile(rf"^\s*({_KEY}(?:\s*\.\s*{_KEY})*)\s*=(.*)$")
_HEADER_RE = re.compile(rf"^\s*(\[\[?)\s*({_KEY}(?:\s*\.\s*{_KEY})*)\s*\]\]?")
_PART_RE = re.compile(_KEY)


def line_of(text: str, keypath: KeyPath) -> int:
    """The 1-based line of `keypath`, or of its nearest placed ancestor, else 1."""
    lines = key_lines(text)
    for end in range(len(keypath), 0, -1):
        found = lines.get(keypath[:end])
        if found is not None:
            return found
    return 1


def key_lines(text: str) -> dict[KeyPath, int]:
    scan = _Scan()
    for number, line in enumerate(text.splitlines(), start=1):
        scan.feed(number, line)
    return scan.lines


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(_unquote(p) for p in _PART_RE.findall(dotted))


def _unquote(part: str) -> str:
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
        return part[1:-1]
    return part


class _Scan:
    def __init__(self) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.prefix: KeyPath = ()
        self.aot_count: dict[tuple[str, ...], int] = {}
        self.depth = 0            # open [ and { of a multi-line value
        self.in_string = ""       # the open triple quote of a multi-line string

    def feed(self, number: int, line: str) -> None:
        if self.depth or self.in_string:
            self._continue(line)
            return
        header = _HEADER_RE.match(line)
        if header:
            self._header(number, header.group(1) == "[[", _parts(header.group(2)))
            return
        pair = _KEY_RE.match(line)
        if pair:
            self.lines.setdefault(self.prefix + _parts(pair.group(1)), number)
            self._continue(pair.group(2))

    def _header(self, number: int, is_aot: bool, names: tuple[str, ...]) -> None:
        if is_aot:
            self.aot_count[names] = self.aot_count.get(names, -1) + 1
        path: list[str | int] = []
        for i, name in enumerate(names):
            path.append(name)
            self.lines.setdefault(tuple(path), number)
            index = self.aot_count.get(names[: i + 1])
            if index is not None:
                path.append(index)
        self.prefix = tuple(path)
        self.lines.setdefault(self.prefix, number)

    def _continue(self, rest: str) -> None:
        """Track brackets and triple-quoted strings so continuation lines are not keys."""
        i = 0
        while i < len(rest):
            if self.in_string:
                end = rest.find(self.in_string, i)
                if end < 0:
                    return
                i, self.in_string = end + 3, ""
                continue
            ch = rest[i]
            if rest.startswith(('"""', "'''"), i):
                self.in_string, i = rest[i:i + 3], i + 3
            elif ch in "\"'":
                i = _skip_string(rest, i)
            elif ch == "#":
                return
            else:
                self.depth += (ch in "[{") - (ch in "]}")
                self.depth = max(self.depth, 0)
                i += 1


def _skip_string(text: str, start: int) -> int:
    quote, i = text[start], start + 1
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return i
