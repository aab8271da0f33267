"""A binary cache on an OCI registry: cold build against substitution, bytes pushed.

Debian's docker-registry serves 127.0.0.1:5000 inside the stack's namespace (as in
tests/e2e/test_binary_cache.py); every aivm command that talks to it runs there. Store A
builds the default VM graph cold (the Debian image from the host's mirror included) and
pushes it, signed; store B, empty, at another path, substitutes the same graph. Then a
second VM on the same image is built and pushed: only its own entries are new.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from aivm.cache import sign
from bench.timing import timed
from tests.cache import registry as reg
from tests.e2e.aivm_user import AivmUser, debian_user
from tests.e2e.harness import RealStack
from tests.e2e.test_binary_cache import in_netns, store_section

WORK = Path("/var/tmp/aivm-bench/cache")


def cold_vs_substituted(stack: RealStack) -> dict[str, Any]:
    subprocess.run(["rm", "-rf", str(WORK)], check=True)
    WORK.mkdir(parents=True)
    WORK.chmod(0o755)
    with reg.serving(WORK / "reg", stack.netns) as registry:
        secret = sign.keygen(WORK / "secret", "bench-1")
        a = debian_user(stack, WORK / "a", WORK / "store-a")
        a.edit(lambda t: t + store_section(secret_key_file=str(WORK / "secret"),
                                           push_to=registry.url))
        cold = timed(lambda: a.run("build"))
        first = _pushed_bytes(_in_netns(a, "store", "push"))
        b = _user_b(stack, a, registry.url, secret.public)
        report: dict[str, Any] = {}
        substituted = timed(lambda: report.update(json.loads(_in_netns(b, "build", "--json"))))
        b.edit(lambda t: t.split("\n[store]\n")[0] + '\n[[vms]]\nname = "second"\n' + store_section(
            secret_key_file=str(WORK / "secret"), push_to=registry.url,
            substituters=[registry.url], trusted_keys=[secret.public]))
        _in_netns(b, "build", "second")
        second = _pushed_bytes(_in_netns(b, "store", "push", "second"))
    return {"cold_build_s": cold, "substitution_s": substituted,
            "substituted_nodes": len(report.get("substituted", ())),
            "built_nodes": len(report.get("built", ())),
            "first_push_bytes": first, "second_vm_push_bytes": second}


def _user_b(stack: RealStack, a: AivmUser, url: str, public: str) -> AivmUser:
    home = WORK / "b"
    shutil.copytree(a.home, home, symlinks=True)
    b = AivmUser(stack, home, WORK / "store-b")
    b.edit(lambda t: t.split("\n[store]\n")[0] + store_section(substituters=[url],
                                                        trusted_keys=[public]))
    return b


def _in_netns(user: AivmUser, *args: str) -> str:
    return in_netns(user, *args).stdout


def _pushed_bytes(out: str) -> int:
    match = re.search(r"\((\d+) bytes\)", out)
    return int(match.group(1)) if match else 0
