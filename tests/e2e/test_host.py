"""`aivm host doctor`, `host net` and `host fw` against the real stack (no guest boot).

libvirtd runs in the stack's network namespace; `nft` runs there too (AIVM_NETNS),
so the network's bridge, its NAT rules and the aivm table never reach the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.aivm_user import AivmUser
from tests.e2e.harness import RealStack

pytestmark = pytest.mark.realstack

NET = "hostnet"
TABLE = "aivm_hostnet"


@pytest.fixture(scope="module")
def user(realstack: RealStack, shared_store: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[AivmUser]:
    home = tmp_path_factory.mktemp("host-home")
    person = AivmUser(realstack, home, shared_store)  # under /var/tmp: QEMU can enter it
    person.run("config", "init", "--defaults")
    # a network of its own, so that the scenario tests' `aivm` network is never touched
    person.edit(lambda t: t.replace('network = "aivm"', f'network = "{NET}"')
                .replace('name = "aivm"', f'name = "{NET}"')
                .replace('bridge = "virbr-aivm"', 'bridge = "virbr-hostnet"'))
    yield person
    person.run("host", "fw", "remove", NET, "--yes", check=False)
    person.run("host", "net", "destroy", NET, "--yes", "--force", check=False)
    print("\n".join(person.log))


def nft_table(stack: RealStack) -> bool:
    return stack.ns_run(["nft", "list", "table", "inet", TABLE], check=False).ok


def test_doctor_json_on_the_real_stack(user: AivmUser, realstack: RealStack) -> None:
    proc = user.run("host", "doctor", "--json", "--sudo", check=False)
    import json

    data = json.loads(proc.stdout)
    assert proc.returncode == (0 if data["ok"] else 1)
    by = {c["name"]: c for c in data["checks"]}
    assert data["uri"] == realstack.uri
    assert by["libvirt"]["level"] == "pass"
    assert by["libvirt"]["detail"].startswith(f"reachable at {realstack.uri} (libvirt 9.")
    assert by["permissions"] == {"name": "permissions", "level": "pass", "required": True,
                                 "fix": "", "detail": "running as root"}
    for tool in ("qemu-img", "nft", "virtiofsd", "mmdebstrap"):
        assert by[tool]["level"] == "pass", by[tool]
    assert by["kvm"]["level"] in ("pass", "warn") and by["kvm"]["required"] is False
    assert by[f"network {NET}"]["detail"].startswith("not created yet")
    assert by[f"firewall {NET}"]["detail"] == f"nft table inet {TABLE} not applied"
    assert data["ok"] is True, [c for c in data["checks"] if c["level"] == "fail"]


def test_net_and_fw_lifecycle(user: AivmUser, realstack: RealStack) -> None:
    conn = realstack.connect()
    assert user.run("host", "net", "status", NET).stdout.startswith(f"network {NET}: missing")
    made = user.run("host", "net", "create", NET, "--yes")
    assert made.stdout.startswith(f"network {NET}: active, up to date\n")
    assert conn.networkLookupByName(NET).isActive()
    again = user.run("host", "net", "create", NET, "--yes")
    assert f"note: network {NET}: up to date" in again.stderr

    assert user.run("host", "fw", "status", NET).stdout == (
        f"firewall of network {NET}: not applied (`aivm host fw apply {NET}`)\n")
    applied = user.run("host", "fw", "apply", NET, "--yes")
    assert applied.stdout == f"firewall of network {NET}: nft table inet {TABLE} applied, " \
                             "up to date\n"
    assert nft_table(realstack)
    assert f"note: firewall of network {NET}: up to date" in \
        user.run("host", "fw", "apply", NET, "--yes").stderr
    doctor = user.json("host", "doctor", "--sudo")
    assert {c["name"]: c["detail"] for c in doctor["checks"]}[f"firewall {NET}"] == \
        f"nft table inet {TABLE} applied"

    # "up to date" is the live content: a table emptied or edited behind aivm's back differs
    def listing() -> str:
        return realstack.ns_run(["nft", "-s", "list", "table", "inet", TABLE]).stdout

    as_applied = listing()
    for tamper in (["nft", "flush", "table", "inet", TABLE],
                   ["nft", "insert", "rule", "inet", TABLE, "input", "accept"]):
        realstack.ns_run(tamper)
        assert user.run("host", "fw", "status", NET).stdout == (
            f"firewall of network {NET}: nft table inet {TABLE} applied, outdated: it differs "
            f"from the store's ruleset (`aivm host fw apply {NET}`)\n")
        fixed = user.run("host", "fw", "apply", NET, "--yes")
        assert f"Apply the firewall of network {NET}" in fixed.stderr
        assert fixed.stdout.endswith("applied, up to date\n")
        assert listing() == as_applied

    user.run("host", "fw", "remove", NET, "--yes")
    assert not nft_table(realstack)
    assert user.run("host", "fw", "status", NET).stdout.endswith("not applied "
                                                                 f"(`aivm host fw apply {NET}`)\n")
    user.run("host", "net", "destroy", NET, "--yes")
    assert NET not in [n.name() for n in conn.listAllNetworks(0)]
    assert user.run("host", "net", "status", NET).stdout.startswith(f"network {NET}: missing")

