"""`make bench`: aivm's costs, and aivm against virt-install and Vagrant, in one run.

Prints one table and writes bench/results/latest.json. Not part of `make test`:
the numbers are reported, never asserted. Set BENCH_REPS to change the number
of repetitions of the boots (default 3); BENCH_SKIP=peers,vm,cache,provision
to skip parts.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import graph_bench

RESULTS = Path(__file__).with_name("results")


def machine() -> dict[str, Any]:
    mem = Path("/proc/meminfo").read_text().split()[1]
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "?")
    return {"date": time.strftime("%Y-%m-%d"), "kernel": platform.release(),
            "cores": os.cpu_count(), "memory_gib": round(int(mem) / 2**20, 1), "cpu": cpu,
            "python": platform.python_version()}


def peers(reps: int) -> dict[str, Any]:
    from bench import peers as p
    from bench.image import bench_image, bench_seed
    from tests.e2e.harness import RealStack

    image, seed = bench_image(), bench_seed()
    out: dict[str, Any] = {}
    for label, fn in (("virt_install_up_s", p.virt_install_up), ("vagrant_up_s", p.vagrant_up),
                      ("vagrant_destroy_up_cycle_s", p.vagrant_destroy_up_cycle)):
        times, ready = [], []
        for _ in range(reps):
            marks: dict[str, float] = {}
            with RealStack() as stack:
                try:
                    times.append(fn(stack, image, seed, marks=marks))
                except Exception as exc:  # a peer failing is a result to report, not a crash
                    out[label + "_error"] = f"{type(exc).__name__}: {exc}"[:300]
                    break
            # aivm's "ready" includes cloud-init finishing: compare like with like
            ready.append(marks.get("cloud-init done", times[-1]))
        if times:
            out[label] = statistics.median(times)
            out[label.replace("_s", "_cloud_init_s")] = statistics.median(ready)
    return out


def vm(reps: int) -> dict[str, Any]:
    from bench import vm_bench
    from tests.e2e.harness import RealStack

    with RealStack() as stack:
        return vm_bench.lifecycle(stack, reps)


def cache() -> dict[str, Any]:
    from bench import cache_bench
    from tests.cache import registry
    from tests.e2e.harness import RealStack

    if not registry.available():
        return {"error": "docker-registry is not installed"}
    with RealStack() as stack:
        try:
            return cache_bench.cold_vs_substituted(stack)
        except Exception as exc:  # a failing part is a result to report, not a crash
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def provision() -> dict[str, Any]:
    from bench import provision_bench
    from tests.e2e.harness import RealStack

    with RealStack() as stack:
        try:    # the vm part's store holds the Debian image when it ran first
            return provision_bench.three_packages(stack, provision_bench.WORK / "vm" / "store")
        except Exception as exc:  # a failing part is a result to report, not a crash
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def table(r: dict[str, Any]) -> str:
    g, s, v, p = r["graph"], {x["vms"]: x for x in r["status"]}, r.get("vm", {}), r.get("peers", {})
    rows = [
        ("no-op `aivm build` (whole process, median)", f"{g['noop_median_s']:.3f} s", "<= 0.15 s"),
        ("no-op `aivm build` / `python -c pass` (medians, same run)",
         f"{ratio(g['noop_median_s'], g.get('python_startup_median_s'))}x", "<= 2.5x"),
        ("image bytes read by a no-op build", f"{g['noop_hashed_bytes']}", "0"),
        ("one param changed (memory): nodes rebuilt / time",
         f"{', '.join(r['param']['rebuilt'])} / {r['param']['median_s']:.3f} s", "1 node"),
    ]
    rows += [(f"status of {n} VMs ({x['nodes']} nodes): time / peak RSS",
              f"{x['total_s']:.3f} s / {x['peak_rss_mib']:.0f} MiB",
              "<= 1 s" if n == 1000 else "") for n, x in sorted(s.items())]
    if v:
        rows += [
            ("cold create (image build + boot) to ssh-ready", f"{v['cold_create_s']:.1f} s", ""),
            ("`aivm up` after `aivm destroy` to ssh-ready (booted-state restore)",
             f"{v['warm_create_s']:.1f} s", ""),
            ("`aivm up --recreate` to ssh-ready (booted-state restore)",
             f"{v['recreate_s']:.1f} s" + ("" if v.get("recreate_restored") else
                                            " (not restored!)"), "<= 10 s"),
            ("`aivm up --recreate` to ssh-ready (fresh boot, restore_snapshots = false)",
             f"{v['recreate_fresh_boot_s']:.1f} s", ""),
            ("booted-state restore speed-up over a fresh-boot re-create",
             f"{ratio(v['recreate_fresh_boot_s'], v['recreate_s'])}x", ">= 10x"),
            ("re-create speed-up over a cold create",
             f"{ratio(v['cold_create_s'], v['recreate_s'])}x", ">= 5x"),
            ("aivm's own overhead in that up (total - guest ready)",
             f"{v['warm_overhead_s']:.1f} s", ""),
            ("`aivm destroy && aivm up` cycle", f"{v['destroy_up_cycle_s']:.1f} s", ""),
        ]
    c = r.get("cache", {})
    if c.get("error"):
        rows.append(("binary cache: cold build / substitution", c["error"], ""))
    elif c:
        rows += [
            ("default VM graph: cold build / substitution from an OCI registry",
             f"{c['cold_build_s']:.1f} s / {c['substitution_s']:.1f} s "
             f"({c['substituted_nodes']} substituted, {c['built_nodes']} built)", ""),
            ("bytes pushed: first VM / a second VM on the same image",
             f"{c['first_push_bytes']} / {c['second_vm_push_bytes']}", ""),
        ]
    pr = r.get("provision", {})
    if pr.get("error"):
        rows.append(("three packages: re-create with / without a provision layer", pr["error"], ""))
    elif pr:
        rows += [
            ("three packages, re-create to ready with a provision layer (fresh boot)",
             f"{pr['recreate_with_layer_s']:.1f} s", ""),
            ("three packages, re-create to ready then install them (no layer)",
             f"{pr['recreate_and_install_s']:.1f} s", ""),
            ("with the layer / without it", ratio(pr["recreate_with_layer_s"],
                                                  pr["recreate_and_install_s"]), "< 1"),
        ]
    if p:
        rows += [
            ("virt-install --import to ssh / to cloud-init done",
             f"{p.get('virt_install_up_s', 0):.1f} s / "
             f"{p.get('virt_install_up_cloud_init_s', 0):.1f} s", ""),
            ("`vagrant up` (vagrant-libvirt) to ssh / to cloud-init done",
             f"{p.get('vagrant_up_s', 0):.1f} s / {p.get('vagrant_up_cloud_init_s', 0):.1f} s", ""),
            ("aivm fresh-boot re-create / virt-install (both booting, to cloud-init done)",
             ratio(v.get("recreate_fresh_boot_s"), p.get("virt_install_up_cloud_init_s")),
             "<= 1"),
            ("aivm fresh-boot re-create / vagrant up (both booting, to cloud-init done)",
             ratio(v.get("recreate_fresh_boot_s"), p.get("vagrant_up_cloud_init_s")), "<= 0.5"),
            ("aivm destroy+up (restore) / vagrant destroy -f + up (boot)",
             ratio(v.get("destroy_up_cycle_s"),
                   p.get("vagrant_destroy_up_cycle_cloud_init_s")), "<= 0.15"),
        ]
        rows += [(k, v2, "") for k, v2 in p.items() if k.endswith("_error")]
    width = max(len(a) for a, _, _ in rows)
    lines = [f"{'measure':<{width}}  {'result':<28} target", "-" * (width + 40)]
    lines += [f"{a:<{width}}  {b:<28} {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> int:
    reps = int(os.environ.get("BENCH_REPS", "3"))
    skip = set(filter(None, os.environ.get("BENCH_SKIP", "").split(",")))
    result: dict[str, Any] = {"machine": machine(), "graph": graph_bench.noop_build(10),
                              "param": graph_bench.one_param_change(5),
                              "status": graph_bench.status_scaling()}
    if os.geteuid() == 0 and "vm" not in skip:
        result["vm"] = vm(reps)
    if os.geteuid() == 0 and "cache" not in skip:
        result["cache"] = cache()
    if os.geteuid() == 0 and "provision" not in skip:
        result["provision"] = provision()
    if os.geteuid() == 0 and "peers" not in skip:
        result["peers"] = peers(reps)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    print(f"aivm bench, {m['date']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}, "
          f"Linux {m['kernel']}, Python {m['python']}\n")
    print(table(result))
    print(f"\nwritten: {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
