"""A small plan shaped like `aivm up`'s, whose actions record that they ran."""

from __future__ import annotations

from aivm.activate.plan import Action, Effect, Plan, Privilege, Step
from aivm.run import Cmd


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def action(self, meaning: str, text: str, *, fail: bool = False) -> Action:
        def call() -> None:
            if fail:
                raise RuntimeError(f"{meaning}: boom")
            self.calls.append(meaning)

        return Action.api(meaning, text, call)


def sample_plan(rec: Recorder, *, fail_at: str = "") -> Plan:
    def act(meaning: str, text: str) -> Action:
        return rec.action(meaning, text, fail=(meaning == fail_at))

    return Plan(
        steps=(
            Step("Inspect the host firewall", "to know whether the aivm table exists",
                 (act("list nft tables", "nft list tables"),),
                 Privilege.ROOT, Effect.READ),
            Step("Define and start network aivm-net", "network aivm-net is not defined",
                 (act("define network aivm-net from the store",
                      "libvirt[qemu:///system] networkDefineXML(/store/ab12-net/network.xml)"),
                  act("start network aivm-net",
                      "libvirt[qemu:///system] network(aivm-net).create()")),
                 Privilege.USER, Effect.SYSTEM_WRITE),
            Step("Apply firewall ruleset", "the aivm nft table is missing",
                 (act("replace the aivm nft table atomically",
                      "nft -f /store/cd34-nft/ruleset.nft"),),
                 Privilege.ROOT, Effect.SYSTEM_WRITE),
            Step("Record the VM's address", "ssh needs the guest IP",
                 (act("write the IP to the user state dir",
                      "write ~/.local/state/aivm/vm1/ip\n(one line: the guest's IPv4 address)"),),
                 Privilege.USER, Effect.USER_WRITE),
        ),
        notes=("domain vm1: up to date",),
    )


def cmd_action() -> Action:
    return Action.command(Cmd.of("qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b",
                                 "/store/ef56-overlay/disk.qcow2", "/state/vm1/disk.qcow2",
                                 meaning="create the VM's writable disk"))
