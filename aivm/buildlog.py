"""Build logs: every build writes one, outside its entry (so never in its output digest,
never pushed to a cache).

    <store>/log/<key>.log            the log of the build that committed <key>
    <store>/log/failed/<key>.log     the log of a build of <key> that failed

While a recipe builds, the worker thread has a sink: every command `aivm.run` runs
(mmdebstrap, qemu-img, ...) is written to it with its output and exit code, and
recipes add their own lines with `note()` (pycdlib's ISO writer, ...). A recipe that
keeps its own log at `<store>/log/<key>.log` (provision: the guest's log) has it
appended to the build log when the build ends.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

_local = threading.local()


def log_dir(store_root: Path) -> Path:
    return store_root / "log"


def log_path(store_root: Path, key: str) -> Path:
    return log_dir(store_root) / f"{key}.log"


def failed_path(store_root: Path, key: str) -> Path:
    return log_dir(store_root) / "failed" / f"{key}.log"


def note(text: str) -> None:
    """A line for the current build's log (nothing outside a build)."""
    sink: IO[str] | None = getattr(_local, "sink", None)
    if sink is not None:
        sink.write(text.rstrip("\n") + "\n")
        sink.flush()


def note_command(argv: Any, returncode: int, stdout: str, stderr: str) -> None:
    if getattr(_local, "sink", None) is None:
        return
    text = f"$ {shlex.join(argv)}\n"
    text += "".join(f"  {line}\n" for line in (stdout + stderr).splitlines())
    note(text + f"  (exit {returncode})")


@contextlib.contextmanager
def sink(store_root: Path, key: str, name: str, kind: str) -> Iterator[Path]:
    """The build log of one build in this thread: written to a part file, which becomes
    `log/<key>.log` when the block ends with `keep()` called, else `log/failed/<key>.log`
    when it raised; a build reused from another process leaves no log of its own."""
    folder = log_dir(store_root)
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{key}.{os.getpid()}-{time.monotonic_ns()}.part"
    started = time.time()
    with part.open("w") as f:
        f.write(f"aivm build of {name} ({kind}), key {key}, "
                f"started {datetime.now(UTC).isoformat(timespec='seconds')}\n")
        _local.sink, _local.keep = f, False
        try:
            yield part
        except BaseException as exc:
            f.write(f"build failed: {getattr(exc, 'message', None) or exc}\n")
            _local.sink = None
            f.close()
            _settle(part, store_root, key, started, failed_path(store_root, key))
            raise
        finally:
            _local.sink = None
    if getattr(_local, "keep", False):
        _settle(part, store_root, key, started, log_path(store_root, key))
    else:
        part.unlink(missing_ok=True)


def keep() -> None:
    """The current build committed its entry: its log is kept."""
    _local.keep = True


def _settle(part: Path, store_root: Path, key: str, started: float, final: Path) -> None:
    """Append the recipe's own log of this build (if it wrote one) and the console log it
    kept beside it, then put the log in its final place."""
    own, console = log_path(store_root, key), log_dir(store_root) / f"{key}.console.log"
    with part.open("a") as f:
        if own.is_file() and own.stat().st_mtime >= started - 1:
            f.write(f"--- {own.name} (the recipe's own log) ---\n{own.read_text(errors='replace')}")
    final.parent.mkdir(parents=True, exist_ok=True)
    if final != own and console.is_file() and console.stat().st_mtime >= started - 1:
        os.replace(console, final.with_name(console.name))
    os.replace(part, final)
    if final != own and own.is_file() and own.stat().st_mtime >= started - 1:
        own.unlink()


def find(store_root: Path, key: str) -> Path | None:
    """The log of `key`: its committed build's, else its last failed build's."""
    for path in (log_path(store_root, key), failed_path(store_root, key)):
        if path.is_file():
            return path
    return None
