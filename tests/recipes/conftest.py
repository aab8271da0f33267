from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aivm.config.schema import Config, Firewall, Image, ImageSource, Network, Vm
from aivm.graph.store import Store
from aivm.run import Cmd, run
from tests.recipes.helpers import store_at

SSH_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxV3n0zZ0Q4bVqJ0uW9m0aYl1w0n3lJgqfUaH2f3pQk "
           "dev@example")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return store_at(tmp_path / "store")


@pytest.fixture
def ssh_key(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519.pub"
    path.write_text(SSH_KEY + "\n")
    return path


@pytest.fixture
def state_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIVM_STATE", "/var/lib/aivm-test-state")
    return Path("/var/lib/aivm-test-state")


def sample_config(ssh_key: Path, image: Image | None = None, **vm_fields: object) -> Config:
    image = image or Image(name="debian", source=ImageSource.DEBOOTSTRAP,
                           mirror="http://deb.debian.org/debian")
    net = Network(name="aivm", bridge="virbr-aivm",
                  firewall=Firewall(allow_tcp_ports=(22, 5432), allow_udp_ports=(5353,),
                                    extra_blocked=("93.184.216.0/24", "2606:2800:220::/48")))
    fields: dict[str, object] = {"name": "devbox", "image": image.name, "memory_mib": 2048,
                                 "cpus": 2, "disk_gib": 8, "ssh_pubkey": str(ssh_key),
                                 "uid": 1000, "gid": 1000, "packages": ("ripgrep", "tmux")}
    fields.update(vm_fields)
    vm = Vm(**fields)  # type: ignore[arg-type]
    return Config(vms=(vm,), networks=(net,), images=(image,))


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace of our own, removed afterwards (nothing touches the host's)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    name = f"aivm-t-{uuid.uuid4().hex[:8]}"
    run(Cmd.of("ip", "netns", "add", name, meaning="create a test network namespace"))
    try:
        yield name
    finally:
        run(Cmd.of("ip", "netns", "delete", name, meaning="delete the test network namespace"))
