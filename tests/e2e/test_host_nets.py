"""The host-side network checks on the real stack (issue 12 items 5 and 6; no guest boot).

In the stack's namespace (where AIVM_NETNS makes aivm read `ip -j link/addr/route`),
an address overlapping the configured subnet (on lo) and a bridge name that is an
existing non-bridge interface (a veth) are refused by `aivm up --dry-run` and `aivm host fw apply`,
before anything is built or applied; `host fw apply` needs the network with that
bridge to exist, and its preview names the bridge.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.aivm_user import AivmUser
from tests.e2e.harness import RealStack

pytestmark = [pytest.mark.realstack, pytest.mark.slow]

NET, BRIDGE, SUBNET = "hnets", "virbr-hnets", "10.79.0.0/24"
DUMMY = "hn-veth0"           # a veth end: this kernel has no dummy module
ON_LO = "10.79.0.5/32"


@pytest.fixture(scope="module")
def user(realstack: RealStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AivmUser]:
    home = tmp_path_factory.mktemp("hostnets-home")
    person = AivmUser(realstack, home, home / "store")   # builds only XML and a ruleset
    person.run("config", "init", "--defaults")
    person.edit(lambda t: t.replace('network = "aivm"', f'network = "{NET}"')
                .replace('name = "aivm"', f'name = "{NET}"')
                .replace('bridge = "virbr-aivm"', f'bridge = "{BRIDGE}"')
                .replace("10.77.0.", "10.79.0."))
    assert f'subnet = "{SUBNET}"' in person.config.read_text()
    yield person
    realstack.ns_run(["ip", "addr", "del", ON_LO, "dev", "lo"], check=False)
    realstack.ns_run(["ip", "link", "del", DUMMY], check=False)
    person.run("host", "fw", "remove", NET, "--yes", check=False)
    person.run("host", "net", "destroy", NET, "--yes", "--force", check=False)
    print("\n".join(person.log))


def refused(proc: object, phrase: str) -> None:
    import subprocess

    assert isinstance(proc, subprocess.CompletedProcess)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert phrase in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_overlapping_address_and_foreign_bridge_are_refused(user: AivmUser,
                                                            realstack: RealStack) -> None:
    # free: the dry run gets past the check (it lists what it would build)
    free = user.run("up", "--dry-run")
    assert "would build" in free.stdout
    # host fw apply needs the network with that bridge
    refused(user.run("host", "fw", "apply", NET, "--yes", check=False),
            f"error: network {NET} is not defined, and its firewall filters bridge '{BRIDGE}'")
    user.run("host", "net", "create", NET, "--yes")
    preview = user.run("host", "fw", "apply", NET, "--dry-run")
    assert (f"note: firewall of network {NET}: filters guest bridge {BRIDGE} (libvirt network "
            f"{NET}, subnet {SUBNET})") in preview.stderr
    assert "[1/1] Apply the firewall of network" in preview.stderr

    # an address inside the subnet on another interface (lo) of the stack's host
    realstack.ns_run(["ip", "addr", "add", ON_LO, "dev", "lo"])
    try:
        overlap = f"subnet {SUBNET} overlaps the host's address {ON_LO} of interface lo"
        refused(user.run("up", "--dry-run", check=False), overlap)
        refused(user.run("host", "fw", "apply", NET, "--yes", check=False), overlap)
        assert not realstack.ns_run(["nft", "list", "table", "inet", f"aivm_{NET}"],
                                    check=False).ok
    finally:
        realstack.ns_run(["ip", "addr", "del", ON_LO, "dev", "lo"])

    # a bridge name that is an existing interface of the host, not the network's bridge
    realstack.ns_run(["ip", "link", "add", DUMMY, "type", "veth", "peer", "name", "hn-veth1"])
    try:
        user.edit(lambda t: t.replace(f'bridge = "{BRIDGE}"', f'bridge = "{DUMMY}"'))
        refused(user.run("up", "--dry-run", check=False),
                f"error: network {NET}: bridge '{DUMMY}' is an existing interface of this host "
                "that is not the network's own bridge")
        refused(user.run("host", "fw", "apply", NET, "--yes", check=False),
                f"error: network {NET} uses bridge '{BRIDGE}', and its firewall filters bridge "
                f"'{DUMMY}'")
    finally:
        user.edit(lambda t: t.replace(f'bridge = "{DUMMY}"', f'bridge = "{BRIDGE}"'))
        realstack.ns_run(["ip", "link", "del", DUMMY])

    # the network's own bridge and route (now live) are not a conflict
    applied = user.run("host", "fw", "apply", NET, "--yes")
    assert applied.stdout.endswith("applied, up to date\n")
    assert "would build" in user.run("up", "--dry-run").stdout


def test_lo_is_refused_by_lint(user: AivmUser, tmp_path: Path) -> None:
    bad = tmp_path / "lo.toml"
    bad.write_text('[[networks]]\nname = "n"\nbridge = "lo"\n')
    proc = user.run("--config", str(bad), "config", "lint", check=False)
    assert proc.returncode == 1
    assert "invalid bridge: 'lo'" in proc.stdout + proc.stderr
