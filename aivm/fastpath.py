"""The no-op `aivm build` fast path: a record of what the last no-op build depended on.

Like ninja's log and Nix's evaluation cache: after an `aivm build` in which every node was
cached, aivm writes a record (atomically) keyed by everything the command read that is not
a file: its arguments, the working directory, aivm's version, the Python that runs it, the uid, the
boot id (the accel cache's key) and the environment (`AIVM_*`, `XDG_*`, HOME, PATH,
LIBVIRT_DEFAULT_URI). The record lists every file the result depended on with its stat
(device, inode, size, mtime_ns; "absent" for a file that did not exist): the config and
every file the build opened or listed (caught by an audit hook while it ran), every file
input of every node and every file the stat cache keyed, every store entry's manifest,
the places virtiofsd is looked for, and aivm's own modules.

`python -m aivm build [TARGETS]` (aivm/__main__.py) checks the record before importing
click: same key and every stat equal → it prints what the full no-op build printed and
exits 0. Anything else (another option, a changed or missing file, an unreadable record)
takes the normal path; the fast path never fails a command. A build that started a
subprocess or opened a socket writes no record (its result may depend on more than files).

This module imports only os, sys and json: it runs before everything else.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

RECORD_VERSION = 1
ENV_PREFIXES = ("AIVM_", "XDG_")
ENV_NAMES = ("HOME", "PATH", "LIBVIRT_DEFAULT_URI")
UNSTATTABLE = ("/proc/", "/sys/", "/dev/")
MAX_RECORDS = 32
WRITES = ("open", "os.remove", "os.rename", "os.replace", "os.mkdir", "os.rmdir",
          "os.truncate")   # an "open" here is one that _reads did not take
TRACE = "AIVM_TRACE_FASTPATH"   # set (to anything): say on stderr when the fast path serves


SERVED_OPTIONS = ("--json",)   # its output is recorded as printed


def servable(argv: list[str]) -> bool:
    """`build` with targets and `--json` only: any other option (global or build's) takes
    the normal path."""
    return bool(argv) and argv[0] == "build" and not any(
        a.startswith("-") and a not in SERVED_OPTIONS for a in argv[1:])


def record_file() -> str:
    """The records' file in aivm's per-user state dir (aivm/paths.py `user_state_dir`)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return os.path.join(base, "aivm", "noop-build.json")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def key(argv: list[str]) -> str:
    env = {k: v for k, v in os.environ.items()
           if (k.startswith(ENV_PREFIXES) or k in ENV_NAMES) and k != TRACE}
    from aivm import __version__

    return json.dumps({"argv": argv, "cwd": os.getcwd(), "version": __version__,
                       "python": sys.executable, "uid": os.getuid(), "boot": _boot_id(),
                       "env": env},
                      sort_keys=True)


def stamp(path: str) -> list[int] | None:
    """(device, inode, size, mtime_ns) of `path` (following links); None when absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _records() -> dict[str, Any]:
    try:
        with open(record_file()) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == RECORD_VERSION else {}


def lookup(argv: list[str]) -> str | None:
    """What the no-op build of `argv` printed, when nothing it depended on changed."""
    if not servable(argv):
        return None
    try:
        record = _records().get("records", {}).get(key(argv))
        if not isinstance(record, dict):
            return None
        stats = record["stats"]
        if any(stamp(path) != value for path, value in stats.items()):
            return None
        output = record["output"]
        return output if isinstance(output, str) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def serve(argv: list[str]) -> bool:
    """Print the recorded output of a no-op build and say True; False: take the normal path."""
    output = lookup(argv)
    if output is None:
        return False
    if os.environ.get(TRACE):
        sys.stderr.write("aivm: no-op build served from its record\n")
    sys.stdout.write(output)
    sys.stdout.flush()
    return True


class Recorder:
    """Watches a build (a `sys.addaudithook` hook) for the files it opens and lists, and
    for subprocesses and sockets, which make its result uncacheable."""

    active: Recorder | None = None
    hooked = False

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.paths: set[str] = set()
        self.written: set[str] = set()   # folders the build itself changed (pending roots)
        self.tainted = False

    @classmethod
    def start(cls, argv: list[str]) -> Recorder | None:
        """A recorder for this process's build, when its argv can be served later."""
        if not servable(argv):
            return None
        if not cls.hooked:
            sys.addaudithook(_audit)
            cls.hooked = True
        cls.active = recorder = cls(argv)
        sys.stderr = _Watched(sys.stderr, recorder)
        return recorder

    def saw(self, event: str, args: tuple[Any, ...]) -> None:
        listed = event in ("os.listdir", "os.scandir") and bool(args) and _is_path(args[0])
        if listed or (event == "open" and _reads(args)):
            self.paths.add(os.path.abspath(os.fsdecode(args[0])))
        elif event in WRITES and args and _is_path(args[0]):
            self.written.add(os.path.dirname(os.path.abspath(os.fsdecode(args[0]))))
        elif event.startswith(("subprocess.", "os.exec", "os.posix_spawn", "os.spawn",
                               "os.system", "os.fork", "socket.connect")):
            self.tainted = True

    def finish(self, output: str, depends_on: list[str]) -> None:
        """Write the record of this no-op build (never raises: a record is a cache)."""
        Recorder.active = None
        if isinstance(sys.stderr, _Watched):
            sys.stderr = sys.stderr.inner
        if self.tainted:
            return
        try:  # noqa: SIM105 - contextlib costs the fast path milliseconds of imports
            self._write(output, depends_on)
        except (OSError, ValueError, TypeError):
            pass

    def _write(self, output: str, depends_on: list[str]) -> None:
        from pathlib import Path

        from aivm import fsutil
        from aivm.host.facts import VIRTIOFSD

        modules = [m.__file__ for name, m in list(sys.modules.items())
                   if name.split(".")[0] == "aivm" and getattr(m, "__file__", None)]
        searched = [os.path.join(d, "virtiofsd") for d in os.environ.get("PATH", "").split(
            os.pathsep) if d]
        wanted = {os.path.abspath(p) for p in
                  (*self.paths, *depends_on, *VIRTIOFSD, *searched, *modules) if p}
        stats = {p: stamp(p) for p in sorted(wanted - self.written)
                 if not p.startswith(UNSTATTABLE)}
        data = _records()
        records = data.get("records", {})
        records = records if isinstance(records, dict) else {}
        new = {"output": output, "stats": stats}
        if records.get(key(self.argv)) == new:
            return                                    # unchanged: no write
        records.pop(key(self.argv), None)
        records[key(self.argv)] = new
        kept = dict(list(records.items())[-MAX_RECORDS:])
        target = Path(record_file())
        target.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(target, json.dumps({"version": RECORD_VERSION, "records": kept}),
                            durable=False)


class _Watched:
    """sys.stderr while a build is recorded: a note or warning the build printed there would
    be missing from a served no-op, so a build that printed one writes no record."""

    def __init__(self, inner: Any, recorder: Recorder) -> None:
        self.inner, self.recorder = inner, recorder

    def write(self, text: str) -> int:
        if text:
            self.recorder.tainted = True
        return int(self.inner.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _reads(args: tuple[Any, ...]) -> bool:
    """Whether an audited `open` (path, mode, flags) opens a path for reading only."""
    if not args or not _is_path(args[0]):
        return False
    mode = args[1] if len(args) > 1 else None
    if isinstance(mode, str):
        return not any(c in mode for c in "wax+")
    flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
    return flags & os.O_ACCMODE == os.O_RDONLY


def _is_path(value: object) -> bool:
    return isinstance(value, (str, bytes, os.PathLike))


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """The audit hook: it must never raise (that would fail the audited call)."""
    recorder = Recorder.active
    if recorder is None:
        return
    try:
        recorder.saw(event, args)
    except Exception:  # noqa: BLE001 - an odd event makes the build unrecordable, not fail
        recorder.tainted = True
