"""`ssh://[user@]host[:port]`: another machine's aivm *store*, as a copy target.

`aivm store copy --to ssh://server` (and `aivm up` of a VM on that host) puts a closure
into the remote's store by key, as `nix copy --to ssh://` does: every command goes
through one multiplexed ssh connection (aivm/remote/connection.py); the remote's store
root is one of its facts (aivm/remote/facts.py). Per entry:

- presence by key: the remote's `<root>/<key[:32]>-<name>/manifest.json` is read; an
  entry there with the same output digest is skipped (nothing sent), one with another
  digest is refused (never overwritten);
- otherwise the entry streams as a tar into `<root>/.tmp-<key[:32]>-<name>-copy.*` on
  the remote, holding the remote store's lock shared and the key's lock (so the remote's
  gc and its sweep of killed builds leave it alone); the files' names and sizes are
  compared with the record's, then the temp is renamed into place: a copy that dies
  leaves only a `.tmp-*`, which the remote's next build or gc removes.

The remote needs only sh, tar, find, flock, mktemp and mv; no aivm. It is a copy target,
not a substituter (`lookup` says so).
"""

from __future__ import annotations

import json
import shlex
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from aivm.cache.backends import Record, Unreachable
from aivm.cache.files import Item
from aivm.errors import StoreError
from aivm.graph.store import FORMAT_VERSION, MANIFEST, Manifest, safe_name
from aivm.remote.address import Remote
from aivm.remote.connection import Connection
from aivm.remote.facts import probe
from aivm.run import Cmd, run

PREPARE = """set -eu
root={root}
found=$(cat "$root/aivm-store-version" 2>/dev/null || true)
if [ -n "$found" ] && [ "$found" != {version} ]; then
  echo "store $root has format $found" >&2; exit 4; fi
mkdir -p "$root/locks" "$root/names" "$root/roots/vms" "$root/roots/explicit" \\
  "$root/roots/pending" "$root/cache"
[ -n "$found" ] || echo {version} > "$root/aivm-store-version"
"""

RECEIVE = """set -eu
root={root}; final="$root"/{name}
exec 9>>"$root/.lock"; flock -s 9
exec 8>>"$root/locks/{key32}.lock"; flock 8
if [ -f "$final/{manifest}" ]; then cat >/dev/null; echo present; exit 0; fi
tmp=$(mktemp -d "$root/.tmp-{key32}-{safe}-copy.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
tar -x -p --no-same-owner --strip-components=1 -C "$tmp"
got=$(cd "$tmp" && find . -type f -printf '%P %s\\n' | LC_ALL=C sort)
if [ "$got" != {expected} ]; then echo "the copy of {name} is incomplete" >&2; exit 3; fi
chmod {mode} "$tmp"
mv -T "$tmp" "$final"
trap - EXIT
echo copied
"""


class SshStore:
    """The store of a remote host (see the module doc)."""

    def __init__(self, url: str, remote: Remote, conn: Connection | None = None) -> None:
        self.url = url
        self.conn = conn or Connection.to(remote)
        self._root = ""

    @property
    def root(self) -> str:
        """The remote store root (its facts), created on first use."""
        if not self._root:
            self.conn.open()
            root = probe(self.conn).store_root
            result = run(self.conn.script(PREPARE.format(root=shlex.quote(root),
                                                         version=FORMAT_VERSION),
                                          "prepare the store"), check=False)
            if not result.ok:
                raise StoreError(f"cannot use the store {root} on {self.conn.remote.label}: "
                                 f"{result.stderr.strip()[-300:]}",
                                 hint="check the remote user's AIVM_STORE and permissions",
                                 reason="remote-store")
            self._root = root
        return self._root

    def lookup(self, key: str, name: str) -> Record | None:
        raise Unreachable(f"{self.url} is a copy target, not a substituter",
                          hint="copy to it with `aivm store copy --to ssh://HOST`",
                          reason="cache-unreachable")

    def open_blob(self, item: Item) -> BinaryIO:
        raise Unreachable(f"{self.url} is a copy target, not a substituter",
                          hint="copy to it with `aivm store copy --to ssh://HOST`",
                          reason="cache-unreachable")

    def remote_manifest(self, key: str, name: str) -> Manifest | None:
        """The manifest of (key, name) in the remote store, None when it has no such entry."""
        path = f"{self.root}/{key[:32]}-{safe_name(name)}/{MANIFEST}"
        result = self.conn.run(("sh", "-c", 'if [ -f "$1" ]; then cat "$1"; fi', "sh", path),
                               "read a manifest")
        if not result.stdout.strip():
            return None
        try:
            return Manifest.from_json(result.stdout)
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path} on {self.conn.remote.label} is not a manifest",
                             hint="run `aivm store verify` there", reason="remote-store") from exc

    def upload(self, entry: Path, record: Record, advance: Callable[[int], None]) -> int:
        """Copy `entry` unless the remote has it; the bytes of file content sent."""
        m = record.manifest
        there = self.remote_manifest(m.key, m.name)
        if there is not None:
            if there.digest and m.digest and there.digest != m.digest:
                raise StoreError(f"{entry.name} on {self.conn.remote.label} differs from "
                                 "this store's (output digests differ)",
                                 hint="run `aivm store verify --repair` on both hosts",
                                 reason="digest-mismatch")
            return 0
        return self._send(entry, record, advance)

    def _send(self, entry: Path, record: Record, advance: Callable[[int], None]) -> int:
        files = [i for i in record.items if i.type == "file"]
        listing = sorted([f"{i.path} {i.size}" for i in files]
                         + [f"{MANIFEST} {(entry / MANIFEST).stat().st_size}"])
        script = RECEIVE.format(
            root=shlex.quote(self.root), name=shlex.quote(entry.name), manifest=MANIFEST,
            key32=record.manifest.key[:32], safe=safe_name(record.manifest.name),
            expected=shlex.quote("\n".join(listing)),
            mode=oct(stat.S_IMODE(entry.stat().st_mode))[2:])
        pipeline = (f"tar -C {shlex.quote(str(entry.parent))} -cf - {shlex.quote(entry.name)}"
                    f" | {shlex.join(self.conn.ssh_argv())} -- {shlex.quote(script)}")
        result = run(Cmd.of("sh", "-c", pipeline, meaning=f"copy {entry.name} to "
                            f"{self.conn.remote.label}", in_netns=True),
                     check=False, timeout=None)
        if not result.ok:
            raise Unreachable(f"copying {entry.name} to {self.conn.remote.label} failed: "
                              f"{result.stderr.strip()[-300:]}",
                              hint="check the remote's free space and its store's owner",
                              reason="cache-unreachable")
        if result.stdout.strip() == "present":
            return 0
        sent = sum(i.size for i in files)
        advance(sent)
        return sent
