"""provision: a disk layer with declared packages, files and shell steps baked in.

Input `base` is an image entry or another provision entry (layers stack).
Params: `packages` (apt), `files` ([dest, mode] per file input `file<N>`,
whose content is keyed, not its host path), `run` (shell steps, each run as
root with `bash -e`), `apt_sources` (sources.list lines used instead of the
image's own during the build; the image's own are put back afterwards) and
`allow` (extra `host:port` the builder may reach although not public).

Build: a thin qcow2 overlay on the input's disk is created as the entry's
`disk.qcow2` (backing file `../<input entry>/disk.qcow2`, relative, so the
store stays relocatable); a throw-away builder guest (aivm/recipes/builder.py)
boots it with a build seed of its own (instance-id = the node key), installs
the files, then the packages, then runs the steps in order, resets what must
differ per VM (machine-id, ssh host keys, cloud-init state, DHCP leases,
random seed, apt lists, package logs) and powers off. The committed entry is
that layer plus the input's kernel, initrd and boot.json (hard links), so a
VM's domain boots it the way it booted the input. The provisioning log is
kept at `<store>/log/<key>.log` (the console at `<key>.console.log`),
outside the entry and its digest. A failed step fails the node with the
step, its exit code and the tail of that log; the half-built layer is
removed with the temporary entry.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from aivm import run
from aivm.errors import AivmError, BuildError, CommandError
from aivm.graph.node import BuildContext, Node
from aivm.recipes import builder, render, values
from aivm.recipes.base import RecipeBase
from aivm.recipes.domain_xml import boot_info
from aivm.recipes.seed_iso import write_iso

GUEST_DIR = "/var/lib/aivm-build"
HOSTNAME = "aivm-builder"
MODE = re.compile(r"0?[0-7]{3}")
SOURCE_LINE = re.compile(r"deb(-src)? (\[[^\]\n]*\] )?(https?|file)://\S+( \S+)+")
TARGET = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")
STEP_LIMIT = 64 * 1024
FILES_LIMIT = 64 << 20
UNIT = """[Unit]
Description=aivm provision build
After=cloud-final.service
[Service]
Type=oneshot
ExecStart=/var/lib/aivm-build/build.sh
TimeoutStartSec=infinity
"""


class Provision(RecipeBase):
    kind: ClassVar[str] = "provision"
    version: ClassVar[int] = 1
    templates: ClassVar[tuple[str, ...]] = (
        "provision-build.sh", "meta-data.j2", "network-config.j2")
    defaults: ClassVar[Mapping[str, Any]] = {
        "packages": (), "run": (), "files": (), "apt_sources": (), "allow": (),
        "firmware": "bios"}   # how the builder boots an input without a kernel of its own
    inputs: ClassVar[tuple[str, ...]] = ("base",)
    tools: ClassVar[tuple[str, ...]] = ("qemu-img", "qemu-system-x86_64")

    def check_wiring(self, node: Node) -> None:
        if set(node.inputs) != set(self.inputs):
            raise AivmError(f"node {node.name}: inputs {sorted(node.inputs)}, kind provision "
                            "takes ['base']", reason="invalid-param")
        want = {file_role(i) for i in range(len(node.params.get("files", ())))}
        if set(node.files) != want:
            raise AivmError(f"node {node.name}: files {sorted(node.files)}, its files param "
                            f"names {sorted(want)}", reason="invalid-param")

    def check(self, node: Node) -> dict[str, Any]:
        self.check_wiring(node)
        p = self.params(node)
        v = {"packages": values.packages(p["packages"]),
             "run": tuple(shell_step(s) for s in _list(p["run"], "run")),
             "files": tuple(file_spec(f) for f in _list(p["files"], "files")),
             "apt_sources": tuple(source_line(s) for s in _list(p["apt_sources"], "apt_sources")),
             "allow": tuple(target(t) for t in _list(p["allow"], "allow")),
             "firmware": values.one_of(p["firmware"], ("bios", "efi"), "firmware")}
        if not (v["packages"] or v["run"] or v["files"]):
            raise values.invalid("provision", node.name, "it declares no packages, files or run "
                                 "steps", hint="declare what to bake in, or use the image itself")
        return v

    def build(self, ctx: BuildContext, into: Path) -> None:
        v = self.check(ctx.node)
        base = ctx.input("base")
        work = into / ".work"
        work.mkdir()
        try:
            make_layer(base, into)
            data = [Path(ctx.files[file_role(i)]).read_bytes() for i in range(len(v["files"]))]
            if sum(map(len, data)) > FILES_LIMIT:
                raise values.invalid("files", "...", f"more than {FILES_LIMIT >> 20} MiB in all",
                                     hint="copy large data in a run step from a declared host")
            titled = steps(v)
            write_seed(work / "seed.iso", ctx.key, titled, data, v["apt_sources"])
            r = builder.BuilderRun(
                disk=into / "disk.qcow2", seed=work / "seed.iso",
                boot={**boot_info(base), "firmware": v["firmware"]},
                console_log=work / "console.log", provision_log=work / "provision.log",
                fence_log=work / "fence.log", allow=declared(v), accel=builder.host_accel())
            boot_builder(r, ctx.key, into.parent, [t for t, _ in titled])
            export_boot(base, into)
        finally:
            shutil.rmtree(work, ignore_errors=True)


# params ------------------------------------------------------------------------------

def file_role(index: int) -> str:
    return f"file{index}"


def _list(value: Any, what: str) -> list[Any]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise values.invalid(what, value, "a list")
    return list(value)


def shell_step(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value \
            or len(value) > STEP_LIMIT:
        raise values.invalid("run step", value, "non-empty shell text, 64 KiB at most")
    return value


def file_spec(value: Any) -> tuple[str, str]:
    """[dest, mode]: an absolute guest path and an octal mode such as 0644."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise values.invalid("file", value, "[dest, mode]")
    dest, mode = value
    if not isinstance(mode, str) or not MODE.fullmatch(mode):
        raise values.invalid("file mode", mode, "octal digits such as 0644 or 755")
    return values.abs_path(dest, "file dest"), mode


def source_line(value: Any) -> str:
    if not isinstance(value, str) or not SOURCE_LINE.fullmatch(value) or len(value) > 2048:
        raise values.invalid("apt source", value, "one sources.list line: deb [options] URL "
                             "suite [components]")
    return value


def target(value: Any) -> str:
    if not isinstance(value, str) or not TARGET.fullmatch(value) \
            or not 1 <= int(value.rsplit(":", 1)[1]) <= 65535:
        raise values.invalid("allow target", value, "host:port, e.g. 192.168.1.5:3142")
    return value.lower()


def source_origin(line: str) -> str:
    """host:port of a sources.list line's URL ("" for file: URLs)."""
    url = next(w for w in line.split() if "://" in w)
    parts = urlsplit(url)
    if parts.scheme == "file" or not parts.hostname:
        return ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host.lower()}:{port}"


def declared(v: Mapping[str, Any]) -> tuple[str, ...]:
    """What the fence lets through although not public: the apt sources' hosts, `allow`."""
    found = [source_origin(s) for s in v["apt_sources"]] + list(v["allow"])
    return tuple(sorted({f for f in found if f}))


# the build seed ---------------------------------------------------------------------

def steps(v: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(title, bash script) in build order: files, then packages, then the run steps."""
    out: list[tuple[str, str]] = []
    if v["files"]:
        lines = [f"install -D -m {mode} {GUEST_DIR}/files/{i:03d} {shlex.quote(dest)}"
                 for i, (dest, mode) in enumerate(v["files"])]
        dests = ", ".join(dest for dest, _ in v["files"])
        out.append((f"install {len(lines)} file(s): {dests}", "\n".join(lines)))
    if v["packages"]:
        out.append(("apt-get update", "apt-get -q update --error-on=any"))
        out.append(("apt-get install " + " ".join(v["packages"]),
                    "apt-get -q install -y " + shlex.join(v["packages"])))
    for i, text in enumerate(v["run"]):
        first = text.strip().splitlines()[0]
        out.append((f"run[{i}]: {first[:100]}{' ...' if len(first) > 100 else ''}", text))
    return out


def user_data(key: str, titled: Sequence[tuple[str, str]], data: Sequence[bytes],
              sources: Sequence[str]) -> str:
    """The build seed's cloud-config, as JSON (a YAML subset: no value can inject syntax)."""
    script = render.template_path("provision-build.sh").read_bytes()
    files = [_write(f"{GUEST_DIR}/nonce", key.encode()),
             _write(f"{GUEST_DIR}/build.sh", script, "0755"),
             _write("/etc/systemd/system/aivm-build.service", UNIT.encode())]
    for i, (title, text) in enumerate(titled):
        files.append(_write(f"{GUEST_DIR}/steps/{i:03d}.title", title.encode() + b"\n"))
        files.append(_write(f"{GUEST_DIR}/steps/{i:03d}.sh", text.encode() + b"\n"))
    for i, blob in enumerate(data):
        files.append(_write(f"{GUEST_DIR}/files/{i:03d}", blob, "0600"))
    if sources:
        files.append(_write(f"{GUEST_DIR}/sources.list", ("\n".join(sources) + "\n").encode()))
    doc = {"users": [], "disable_root": True, "ssh_pwauth": False,
           "package_update": False, "package_upgrade": False, "write_files": files,
           "runcmd": [["systemctl", "daemon-reload"],
                      ["systemctl", "start", "--no-block", "aivm-build.service"]]}
    return "#cloud-config\n" + json.dumps(doc, indent=1) + "\n"


def _write(path: str, content: bytes, mode: str = "0644") -> dict[str, str]:
    return {"path": path, "encoding": "b64", "content": base64.b64encode(content).decode(),
            "owner": "root:root", "permissions": mode}


def write_seed(iso: Path, key: str, titled: Sequence[tuple[str, str]], data: Sequence[bytes],
               sources: Sequence[str]) -> None:
    write_iso(iso, {
        "user-data": user_data(key, titled, data, sources).encode(),
        "meta-data": render.render("meta-data.j2", instance_id=key, hostname=HOSTNAME).encode(),
        "network-config": render.render("network-config.j2", mac=builder.MAC).encode()})


# the disk ---------------------------------------------------------------------------

def make_layer(base: Path, into: Path) -> None:
    """The entry's disk: a thin qcow2 on the input's, by a relative backing path."""
    backing = base / "disk.qcow2"
    values.abs_path(str(backing), "base image path")
    run.run(run.Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                       "-b", os.path.relpath(backing, into), str(into / "disk.qcow2"),
                       meaning="create the provision layer over its input"))


def boot_builder(r: builder.BuilderRun, key: str, store_root: Path,
                 titles: Sequence[str]) -> None:
    """Boot, keep the logs, and fail with the step, its exit code and the log's tail."""
    try:
        result: run.Result | None = builder.boot(r)
    except CommandError as exc:   # the timeout killed it
        result, problem = None, exc.message
    log, console = builder.read(r.provision_log), builder.read(r.console_log)
    saved = keep_logs(store_root, key, log, builder.read(r.fence_log), console)
    verdict = builder.outcome(log, key)
    if verdict is not None and verdict.ok and result is not None and result.returncode == 0:
        return
    if verdict is not None and not verdict.ok:
        what = (f"step {verdict.step} ({titles[int(verdict.step)]})" if verdict.step.isdigit()
                and int(verdict.step) < len(titles) else f"step {verdict.step}")
        problem = f"{what} failed with exit code {verdict.exit_code}"
    elif result is not None:
        stderr = builder.tail(result.stderr, 3)
        problem = f"the builder guest stopped without a result (QEMU exit " \
                  f"{result.returncode}{': ' + stderr if stderr else ''})"
    tail = builder.tail(log) or "(no provisioning output; console:)\n" + builder.tail(console)
    raise BuildError(f"provision failed: {problem}; last lines of the guest log:\n{tail}",
                     hint=f"full log: {saved}; nothing was committed", reason="provision-failed")


def log_dir(store_root: Path) -> Path:
    return store_root / "log"


def keep_logs(store_root: Path, key: str, log: str, fence: str, console: str) -> Path:
    """The build log (provisioning + fence decisions) and the console, outside the entry."""
    out = log_dir(store_root)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{key}.log"
    path.write_text(log + "\n--- network fence (builder proxy) ---\n" + fence)
    (out / f"{key}.console.log").write_text(console)
    return path


def export_boot(base: Path, into: Path) -> None:
    """The input's boot.json, kernel and initrd, hard-linked (copied across filesystems)."""
    boot = base / "boot.json"
    if not boot.is_file():
        return
    names = ["boot.json"]
    try:
        data = json.loads(boot.read_text())
    except ValueError as exc:
        raise BuildError(f"{boot} is not JSON: {exc}", reason="bad-input") from exc
    names += [data[k] for k in ("kernel", "initrd") if data.get(k)]
    for name in names:
        if "/" in name:
            raise BuildError(f"{boot}: {name!r} is not a file name in the entry",
                             reason="bad-input")
        try:
            os.link(base / name, into / name)
        except OSError:
            shutil.copyfile(base / name, into / name)


def check_field(field: str, value: Any) -> None:
    """One `[[provisions]]` field, checked by the parsers the build uses (config lint)."""
    parsers: dict[str, Callable[[Any], object]] = {"packages": values.packages,
               "run": lambda v: [shell_step(s) for s in _list(v, "run")],
               "apt_sources": lambda v: [source_line(s) for s in _list(v, "apt_sources")],
               "allow": lambda v: [target(t) for t in _list(v, "allow")],
               "dest": lambda v: values.abs_path(v, "file dest"),
               "mode": lambda v: file_spec(("/", v))}
    parsers[field](value)
