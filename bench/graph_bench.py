"""aivm's own graph costs: no-op build, one-param rebuild, status of many VMs.

No libvirt needed: these measure the build graph, the key scheme and the
store, whole process included, on a realistic single-VM graph whose base
image is a 500 MB local file (a `local-image` node, keyed by content).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORK = Path("/var/tmp/aivm-bench")
AIVM = [str(Path(sys.executable).with_name("aivm"))]


def dummy_image(size_mib: int = 500) -> Path:
    """A qcow2 of `size_mib` MiB of incompressible data, made once."""
    path = WORK / f"dummy-{size_mib}M.qcow2"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        raw = path.with_suffix(".raw")
        with open(raw, "wb") as fh:
            for _ in range(size_mib):
                fh.write(os.urandom(1 << 20))
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                       check=True)
        raw.unlink()
    return path


class BenchUser:
    """A HOME with a config whose VM uses the dummy image; its own store."""

    def __init__(self, name: str) -> None:
        self.home = WORK / name / "home"
        self.store = WORK / name / "store"
        subprocess.run(["rm", "-rf", str(WORK / name)], check=True)
        self.home.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AIVM_"))}
        self.env.update(HOME=str(self.home), AIVM_STORE=str(self.store))
        self.run("config", "init", "--defaults")
        cfg = self.config.read_text().replace('image = "ubuntu-noble"', 'image = "local"')
        self.config.write_text(cfg + f'\n[[images]]\nname = "local"\nurl = "{dummy_image()}"\n'
                                     'sha256 = ""\n')

    @property
    def config(self) -> Path:
        return self.home / ".config" / "aivm" / "config.toml"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*AIVM, *args], env=self.env, text=True, capture_output=True,
                              check=True, cwd=self.home)

    def timed_json(self, *args: str) -> tuple[float, Any]:
        started = time.perf_counter()
        out = self.run(*args, "--json").stdout
        return time.perf_counter() - started, json.loads(out)


def noop_build(reps: int = 10) -> dict[str, Any]:
    user = BenchUser("noop")
    first_s, first = user.timed_json("build")
    runs, bare = [], []
    for _ in range(reps):           # alternate, so load drifts hit both alike
        runs.append(user.timed_json("build"))
        bare.append(python_startup())
    assert all(r[1]["built"] == [] for r in runs), "a no-op build built something"
    return {"first_build_s": first_s, "first_hashed_bytes": first["hashed_bytes"],
            "python_startup_median_s": statistics.median(bare),
            "noop_median_s": statistics.median(r[0] for r in runs),
            "noop_min_s": min(r[0] for r in runs),
            "noop_hashed_bytes": max(r[1]["hashed_bytes"] for r in runs), "reps": reps}


def python_startup() -> float:
    """Whole-process `python -c pass` with the interpreter aivm runs on: the floor a no-op
    build is compared with."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def one_param_change(reps: int = 5) -> dict[str, Any]:
    user = BenchUser("param")
    user.run("build")
    times, rebuilt = [], []
    for i in range(reps):
        text = user.config.read_text()
        mem = 2048 + 256 * (i + 1)
        user.config.write_text(__import__("re").sub(r"memory_mib = \d+", f"memory_mib = {mem}",
                                                    text, count=1))
        seconds, report = user.timed_json("build")
        times.append(seconds)
        rebuilt.append(report["built"])
    assert all(r == rebuilt[0] for r in rebuilt)
    return {"rebuilt": rebuilt[0], "median_s": statistics.median(times), "reps": reps}


STATUS_SCRIPT = r"""
import json, resource, sys, time
from pathlib import Path
from aivm.config.schema import Config, Image, Vm
from aivm.config.to_graph import vm_graph
from aivm.host.facts import read as read_facts
from aivm.graph.graph import merge
from aivm.graph.scheduler import resolve
from aivm.graph.statcache import StatCache
from aivm.graph.store import Store
from aivm.recipes import REGISTRY
n, image, key, store = int(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
t0 = time.perf_counter()
img = Image(name="local", url=image, sha256="")
vms = tuple(Vm(name=f"vm{i:05d}", image="local", ssh_pubkey=key, memory_mib=1024 + i % 7)
            for i in range(n))
cfg = Config(vms=vms, images=(img,))
facts = read_facts("qemu")
graph = merge(vm_graph(cfg, vm, facts) for vm in vms)
t1 = time.perf_counter()
states = resolve(graph, REGISTRY, Store(store).ensure(), StatCache(store / "cache" / "stat.json"))
t2 = time.perf_counter()
print(json.dumps({"vms": n, "nodes": len(states), "graph_s": t1 - t0, "status_s": t2 - t1,
                  "total_s": t2 - t0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def status_scaling(sizes: tuple[int, ...] = (100, 1000, 5000)) -> list[dict[str, Any]]:
    user = BenchUser("status")
    user.run("build")  # warm stat cache for the image
    key = str(user.home / ".ssh" / "aivm_ed25519.pub")
    out = []
    for n in sizes:
        proc = subprocess.run([sys.executable, "-c", STATUS_SCRIPT, str(n), str(dummy_image()),
                               key, str(user.store)], text=True, capture_output=True, check=True,
                              env=user.env)
        out.append(json.loads(proc.stdout))
    return out
