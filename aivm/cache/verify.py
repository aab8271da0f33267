"""`aivm store verify`: re-hash committed entries against the digest in their manifest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aivm.graph.digest import entry_digest
from aivm.graph.store import MANIFEST, Store


@dataclass(frozen=True)
class Verdict:
    entry: Path
    status: str        # "ok", "changed", "no-digest" (committed by an older aivm), "unreadable"
    expected: str = ""
    found: str = ""

    def to_json(self) -> dict[str, str]:
        return {"entry": self.entry.name, "status": self.status, "expected": self.expected,
                "found": self.found}


def verify(store: Store) -> list[Verdict]:
    """One verdict per committed entry, in name order."""
    out = []
    for entry in store.entries():
        if (entry / MANIFEST).is_file():
            out.append(verify_entry(store, entry))
    return out


def verify_entry(store: Store, entry: Path) -> Verdict:
    try:
        expected = store.manifest(entry).digest
        if not expected:
            return Verdict(entry, "no-digest")
        found = entry_digest(entry)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Verdict(entry, "unreadable", found=str(exc))
    return Verdict(entry, "ok" if found == expected else "changed", expected, found)
