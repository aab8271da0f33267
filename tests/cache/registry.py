"""A Debian `docker-registry` on loopback inside a network namespace the test creates
(and removes), optionally behind htpasswd basic auth. Nothing leaves the namespace."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import netns as ns

PORT = 5000


@dataclass(frozen=True)
class TestRegistry:
    netns: str
    url: str            # oci://127.0.0.1:5000/team/aivm
    root: Path          # its storage
    user: str = ""
    password: str = ""

    def env(self) -> dict[str, str]:
        return {"AIVM_OCI_USER": self.user, "AIVM_OCI_PASSWORD": self.password} \
            if self.user else {}


def available() -> bool:
    return shutil.which("docker-registry") is not None and os.geteuid() == 0


def _config(root: Path, htpasswd: Path | None) -> str:
    auth = (f"auth:\n  htpasswd:\n    realm: aivm-test\n    path: {htpasswd}\n"
            if htpasswd else "")
    return (f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {root}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{PORT}\n{auth}")


@contextlib.contextmanager
def running(tmp: Path, name: str, *, auth: bool = False) -> Iterator[TestRegistry]:
    """The registry inside a new namespace `name`; it and the namespace are gone afterwards."""
    ns.netns_add(name)
    try:
        with serving(tmp, name, auth=auth) as registry:
            yield registry
    finally:
        ns.netns_delete(name)


@contextlib.contextmanager
def serving(tmp: Path, name: str, *, auth: bool = False) -> Iterator[TestRegistry]:
    """The registry on 127.0.0.1 inside the existing namespace `name`, stopped afterwards."""
    root = tmp / "registry"
    root.mkdir(parents=True)
    htpasswd = None
    user, password = ("aivm", "s3cret-test") if auth else ("", "")
    if auth:
        htpasswd = tmp / "htpasswd"
        subprocess.run(["htpasswd", "-Bbc", str(htpasswd), user, password], check=True,
                       capture_output=True)
    config = tmp / "registry.yml"
    config.write_text(_config(root, htpasswd))
    pid = None
    try:
        script = 'docker-registry serve "$1" </dev/null >"$2" 2>&1 & echo $!'
        pid = int(ns.ns_exec(name, "sh", "-c", script, "sh", str(config),
                             str(tmp / "registry.log"), meaning="start the test registry")
                  .stdout.split()[0])
        ns.wait_until(lambda: ns._listening(name, PORT), 20.0, "the test registry")
        yield TestRegistry(name, f"oci://127.0.0.1:{PORT}/team/aivm", root, user, password)
    finally:
        if pid is not None:
            ns.stop_pid(pid)


def blob_files(reg: TestRegistry) -> list[Path]:
    return [p for p in reg.root.rglob("data") if "/blobs/" in str(p)]
