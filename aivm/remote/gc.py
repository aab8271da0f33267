"""`aivm gc --host server`: collect the store of another host over ssh (no aivm there).

One read (the remote store lock held shared) lists every committed entry with its input
entries, size and every root link's target and pending root's names; the live set is
marked here as aivm/graph/gc.py does (roots, pending roots, then input entries); the
removal runs under the remote store's exclusive lock and first checks that the roots
still read as they did in the preview, else removes nothing."""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass

from aivm.errors import StoreError
from aivm.remote.address import Remote
from aivm.remote.up import Host

READ = r"""set -eu
cd "$1"
exec 9>>.lock; flock -s 9
for e in */manifest.json; do
  [ -f "$e" ] || continue
  d=${e%/manifest.json}
  printf 'E %s %s ' "$d" "$(du -sb "$d" | cut -f1)"; tr -d '\n' < "$e"; echo
done
find roots/vms roots/explicit -type l -printf 'R %p %l\n' 2>/dev/null | LC_ALL=C sort
for p in roots/pending/*.json; do [ -f "$p" ] && { printf 'P '; tr -d '\n' < "$p"; echo; }; done
true
"""

REMOVE = r"""set -eu
cd "$1"; want=$2; shift 2
exec 9>>.lock; flock -x 9
now=$(find roots/vms roots/explicit -type l -printf 'R %p %l\n' 2>/dev/null | LC_ALL=C sort \
      | sha256sum | cut -c1-64)
if [ "$now" != "$want" ]; then echo "roots changed since the preview" >&2; exit 5; fi
for d in "$@"; do chmod -R u+w -- "$d"; rm -rf -- "$d"; echo "$d"; done
"""


@dataclass(frozen=True)
class RemoteGc:
    host: str
    live: tuple[str, ...]
    dead: tuple[str, ...]
    dead_bytes: int
    roots_digest: str

    def to_json(self) -> dict[str, object]:
        return {"host": self.host, "live": list(self.live), "dead": list(self.dead),
                "dead_bytes": self.dead_bytes}


def preview(remote: Remote) -> tuple[Host, RemoteGc]:
    host = Host.of(remote)
    text = host.conn.run(("sh", "-c", READ, "sh", host.facts.store_root),
                         "read the store for gc", timeout=600).stdout
    return host, mark(remote.label, text)


def mark(label: str, text: str) -> RemoteGc:
    """The live and dead entries of a READ listing."""
    entries: dict[str, tuple[int, list[str]]] = {}
    todo: list[str] = []
    root_lines = []
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "E":
            name, size, manifest = rest.split(" ", 2)
            inputs = json.loads(manifest).get("input_entries", {})
            entries[name] = (int(size), sorted(inputs.values()))
        elif kind == "R":
            root_lines.append(line)
            todo.append(rest.split(" ", 1)[1].rstrip("/").rsplit("/", 1)[-1])
        elif kind == "P":
            todo += [str(n) for n in json.loads(rest)]
    live: set[str] = set()
    while todo:
        name = todo.pop()
        if name in live or name not in entries:
            continue
        live.add(name)
        todo += entries[name][1]
    dead = sorted(set(entries) - live)
    digest = hashlib.sha256(("\n".join(root_lines) + "\n").encode()).hexdigest() \
        if root_lines else hashlib.sha256(b"").hexdigest()
    return RemoteGc(label, tuple(sorted(live)), tuple(dead),
                    sum(entries[n][0] for n in dead), digest)


def remove(host: Host, shown: RemoteGc) -> list[str]:
    """Remove the dead entries the preview showed; refused when the roots changed since."""
    if not shown.dead:
        return []
    result = host.conn.run(("sh", "-c", REMOVE, "sh", host.facts.store_root,
                            shown.roots_digest, *shown.dead),
                           "remove dead store entries", check=False, timeout=600)
    if not result.ok:
        raise StoreError(f"gc on {shown.host} removed nothing: "
                         f"{result.stderr.strip()[-200:] or shlex.join(result.cmd.argv[-3:])}",
                         hint="run `aivm gc --host` again", reason="remote-gc")
    return result.stdout.split()
