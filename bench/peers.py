"""The peers: the same guest brought up by virt-install and by Vagrant, timed to ssh-ready.

Each function takes a started `RealStack` (tests/e2e/harness.py), runs the
peer tool *inside the stack's network namespace* against the stack's libvirtd
socket only, returns wall seconds, and removes every domain, network, volume,
pool and file it created, also on failure. Sub-timings go into `marks` when
a dict is passed.

- `virt_install_up`: seconds from invoking `virt-install --import` (direct
  kernel boot, the seed on virtio-scsi, on a NAT network defined beforehand
  and not timed) until `ssh echo ok` answers from inside the namespace.
- `vagrant_up`: wall seconds of `vagrant up` (vagrant-libvirt) in a fresh
  libvirt: it creates its storage pool, uploads the box into it, creates its
  management network and the domain, waits for ssh. The box itself is added
  to Vagrant once and kept (`vagrant box add` is a user's one-time step).
- `vagrant_destroy_up_cycle`: after one untimed `vagrant up`, the wall
  seconds of `vagrant destroy -f` then `vagrant up` (the box already sits in
  the pool, as on a user's machine).

Both peers boot the image built by bench.image (aivm's debootstrap recipe)
with aivm's benchmark VM's memory and vCPUs (1 GiB, 1) unless told otherwise.
After the timed part each also waits, over plain ssh from the namespace, for
`cloud-init status --wait` (marks["cloud-init done"], from the same start):
`aivm up` reports ready only then, so that is the like-for-like figure.
Vagrant's main disk is on SCSI (vagrant-libvirt adds a virtio-scsi controller
only for a SCSI main disk, and the seed cdrom needs one), so the guest's root
is /dev/sda there; synced folders are off (the guest has neither rsync nor
an NFS client, and aivm's side is timed without attachments).

    sudo .venv/bin/python -m bench.peers [--only virt-install|vagrant|cycle]
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aivm.errors import AivmError
from aivm.run import Cmd, run, which
from bench.image import DEFAULT_WORK, BenchImage, BenchSeed, work_dir

if TYPE_CHECKING:
    from tests.e2e.harness import RealStack

Marks = dict[str, float] | None

NETWORK = "bench-net"
BRIDGE = "virbr-bench"
SUBNET_PREFIX = "10.77.1"
MEMORY_MIB, CPUS = 1024, 1  # as aivm's side (tests/e2e/aivm_user.debian_user)
READY_S = 400.0              # boot under TCG: about 45 s; generous for a loaded machine
TOOL_PACKAGES = {"virt-install": "virtinst", "vagrant": "vagrant vagrant-libvirt"}
VAGRANT_ENV = ("VAGRANT_CHECKPOINT_DISABLE=1", "VAGRANT_DEFAULT_PROVIDER=libvirt",
               "VAGRANT_NO_COLOR=1")
SCSI_ROOT = "/dev/sda"
VAGRANT_NETWORK = "vagrant-libvirt"     # vagrant-libvirt's management network (its default)


class PeerError(AivmError):
    """A peer tool could not be run or did not bring the guest up."""


# ---- virt-install -----------------------------------------------------------------------


def virt_install_up(stack: RealStack, image: BenchImage, seed: BenchSeed, *,
                    name: str = "bench-vi", workdir: Path = DEFAULT_WORK,
                    memory_mib: int = MEMORY_MIB, cpus: int = CPUS,
                    marks: Marks = None) -> float:
    """Seconds from invoking `virt-install --import` until `ssh echo ok` answers."""
    from tests.e2e import manual_boot_check as mbc

    need_tool("virt-install")
    check_seed(seed)
    with contextlib.ExitStack() as undo:
        run_dir = fresh_dir(workdir / "runs" / name)
        undo.callback(shutil.rmtree, run_dir, ignore_errors=True)
        undo.push(echo_on_error(run_dir / "console.log"))
        overlay = make_overlay(image, run_dir / "disk.qcow2")
        net = start_network(stack)
        undo.callback(remove_network, net)
        undo.callback(remove_domain, stack, name)
        argv = virt_install_argv(stack, image, seed, name=name, overlay=overlay,
                                 console=stack.watch(run_dir / "console.log"),
                                 memory_mib=memory_mib, cpus=cpus, mac=seed.mac)
        t0 = time.monotonic()
        stack.ns_run(argv, meaning="virt-install --import the bench guest", timeout=300)
        mark(marks, "virt-install returned", t0)
        ip = mbc.wait_lease(net, READY_S)
        mark(marks, "lease", t0)
        mbc.wait_ssh(stack, str(seed.private_key), ip, READY_S)
        seconds = mark(marks, "ssh ok", t0)
        mbc.wait_cloud_init(stack, str(seed.private_key), ip)
        mark(marks, "cloud-init done", t0)
    return seconds


def virt_install_argv(stack: RealStack, image: BenchImage, seed: BenchSeed, *, name: str,
                      overlay: Path, console: Path, memory_mib: int, cpus: int,
                      mac: str) -> list[str]:
    """virt-install's own --cloud-init would put the seed on SATA, which the Debian cloud
    kernel cannot see (REALSTACK P3): the seed is a SCSI cdrom on a virtio-scsi controller."""
    boot = f"kernel={image.kernel},initrd={image.initrd},kernel_args={image.cmdline}"
    return ["virt-install", "--connect", stack.uri, "--import", "--name", name,
            "--memory", str(memory_mib), "--vcpus", str(cpus), "--virt-type", "qemu",
            "--machine", "q35", "--osinfo", "debian11",     # newest Debian in osinfo-db 20221130
            "--disk", f"path={overlay},format=qcow2,bus=virtio",
            "--controller", "type=scsi,model=virtio-scsi",
            "--disk", f"path={seed.iso},device=cdrom,bus=scsi,format=raw",
            "--network", f"network={NETWORK},mac={mac},model=virtio",
            "--boot", boot, "--rng", "/dev/urandom", "--graphics", "none",
            "--serial", f"file,path={console}", "--noautoconsole"]


# ---- vagrant ----------------------------------------------------------------------------


def vagrant_up(stack: RealStack, image: BenchImage, seed: BenchSeed, *,
               name: str = "bench-vg", workdir: Path = DEFAULT_WORK,
               memory_mib: int = MEMORY_MIB, cpus: int = CPUS,
               marks: Marks = None) -> float:
    """Wall seconds of `vagrant up` (vagrant-libvirt) to ssh-ready in a fresh libvirt."""
    with vagrant_project(stack, image, seed, name=name, workdir=workdir,
                         memory_mib=memory_mib, cpus=cpus) as project:
        t0 = time.monotonic()
        seconds = timed(marks, "vagrant up", lambda: vagrant(stack, project, "up"))
        check_ready(stack, seed, marks, t0)
    return seconds


def vagrant_destroy_up_cycle(stack: RealStack, image: BenchImage, seed: BenchSeed, *,
                             name: str = "bench-vg", workdir: Path = DEFAULT_WORK,
                             memory_mib: int = MEMORY_MIB, cpus: int = CPUS,
                             marks: Marks = None) -> float:
    """Wall seconds of `vagrant destroy -f && vagrant up` after a first, untimed up."""
    with vagrant_project(stack, image, seed, name=name, workdir=workdir,
                         memory_mib=memory_mib, cpus=cpus) as project:
        timed(marks, "first vagrant up (untimed)", lambda: vagrant(stack, project, "up"))
        t0 = time.monotonic()
        timed(marks, "vagrant destroy -f", lambda: vagrant(stack, project, "destroy", "-f"))
        timed(marks, "vagrant up again", lambda: vagrant(stack, project, "up"))
        seconds = time.monotonic() - t0
        check_ready(stack, seed, marks, t0)
    return seconds


@dataclass(frozen=True)
class VagrantProject:
    dir: Path       # holds the Vagrantfile and Vagrant's .vagrant state
    home: Path      # VAGRANT_HOME: the added box lives here, kept across runs;
                    # every vagrant command's output is appended to ../vagrant.log


@contextlib.contextmanager
def vagrant_project(stack: RealStack, image: BenchImage, seed: BenchSeed, *, name: str,
                    workdir: Path, memory_mib: int, cpus: int) -> Iterator[VagrantProject]:
    """A Vagrant project for the bench box; on exit, destroy and remove all it made."""
    need_tool("vagrant")
    check_seed(seed)
    box = vagrant_box(image, workdir)
    with contextlib.ExitStack() as undo:
        project = VagrantProject(fresh_dir(workdir / "runs" / name), vagrant_home(workdir))
        undo.callback(shutil.rmtree, project.dir, ignore_errors=True)
        undo.push(echo_on_error(project.dir / "console.log"))
        if not has_pool(stack, "default"):      # vagrant-libvirt creates it and fills it
            undo.callback(remove_pool, stack, "default")
        undo.callback(remove_networks, stack, VAGRANT_NETWORK)
        undo.callback(remove_domain, stack, f"{name}_default")
        undo.callback(vagrant, stack, project, "destroy", "-f", check=False)
        (project.dir / "Vagrantfile").write_text(vagrantfile(
            stack, image, seed, box=box, console=stack.watch(project.dir / "console.log"),
            memory_mib=memory_mib, cpus=cpus))
        yield project


def vagrantfile(stack: RealStack, image: BenchImage, seed: BenchSeed, *, box: str,
                console: Path, memory_mib: int, cpus: int) -> str:
    cmdline = image.cmdline.replace("/dev/vda", SCSI_ROOT)
    return f"""# written by bench/peers.py: the aivm bench guest under vagrant-libvirt
Vagrant.configure("2") do |config|
  config.vm.box = {rb(box)}
  config.vm.box_check_update = false
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.ssh.username = {rb(seed.user)}
  config.ssh.private_key_path = {rb(str(seed.private_key))}
  config.ssh.insert_key = false
  config.vm.provider :libvirt do |lv|
    lv.uri = {rb(stack.uri)}
    lv.driver = "qemu"
    lv.machine_type = "q35"
    lv.memory = {memory_mib}
    lv.cpus = {cpus}
    lv.kernel = {rb(str(image.kernel))}
    lv.initrd = {rb(str(image.initrd))}
    lv.cmd_line = {rb(cmdline)}
    lv.disk_bus = "scsi"
    lv.disk_controller_model = "virtio-scsi"
    lv.storage :file, device: :cdrom, path: {rb(str(seed.iso))}, bus: "scsi", dev: "sdb"
    lv.management_network_mac = {rb(seed.mac)}
    lv.graphics_type = "none"
    lv.random model: "random"
    lv.serial type: "file", source: {{path: {rb(str(console))}}}
  end
end
"""


def vagrant_box(image: BenchImage, workdir: Path) -> str:
    """Add the image to Vagrant as a local libvirt box (once per image); return its name."""
    name = f"aivm-bench-{image.entry.name[:12]}"
    home = vagrant_home(workdir)
    if (home / "boxes" / name).is_dir():
        return name
    with contextlib.ExitStack() as undo:
        staging = fresh_dir(workdir / "vagrant" / "box-staging")
        undo.callback(shutil.rmtree, staging, ignore_errors=True)
        (staging / "metadata.json").write_text(json.dumps(
            {"provider": "libvirt", "format": "qcow2", "virtual_size": virtual_gib(image.qcow2)}))
        (staging / "Vagrantfile").write_text(
            'Vagrant.configure("2") do |config|\n'
            '  config.vm.provider :libvirt do |lv|\n    lv.driver = "qemu"\n  end\nend\n')
        (staging / "box.img").symlink_to(image.qcow2)
        box_file = staging.with_suffix(".box")
        undo.callback(box_file.unlink, missing_ok=True)
        run(Cmd.of("tar", "-chf", str(box_file), "-C", str(staging),
                   "metadata.json", "Vagrantfile", "box.img", meaning="pack the bench box"))
        run(Cmd.of("env", f"VAGRANT_HOME={home}", *VAGRANT_ENV, "vagrant", "box", "add",
                   "--name", name, str(box_file), meaning="add the bench box to Vagrant"),
            timeout=600)
    return name


def vagrant(stack: RealStack, project: VagrantProject, *args: str, check: bool = True) -> str:
    """Run `vagrant ARGS` in the project, inside the stack's network namespace."""
    result = stack.ns_run(
        ["env", "-C", str(project.dir), f"VAGRANT_HOME={project.home}", *VAGRANT_ENV,
         "vagrant", *args],
        meaning=f"vagrant {' '.join(args)}", check=False, timeout=READY_S + 300)
    with (project.home.parent / "vagrant.log").open("a") as log:
        log.write(f"==== {project.dir.name}: vagrant {' '.join(args)} (exit {result.returncode})\n"
                  f"{result.stdout}{result.stderr}")
    if check and not result.ok:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise PeerError(f"vagrant {' '.join(args)} failed (exit {result.returncode}):\n{tail}",
                        hint=f"rerun by hand: cd {project.dir} && ip netns exec {stack.netns} "
                             f"vagrant {' '.join(args)}", reason="peer-failed")
    return result.stdout


def check_ready(stack: RealStack, seed: BenchSeed, marks: Marks, t0: float) -> None:
    """After `vagrant up` returns, the guest must answer plain ssh; then wait for cloud-init."""
    from tests.e2e import manual_boot_check as mbc

    net = stack.connect().networkLookupByName(VAGRANT_NETWORK)
    ip = next((str(lease["ipaddr"]) for lease in net.DHCPLeases(seed.mac)), "")
    if not ip:
        raise PeerError(f"vagrant up returned but {seed.mac} has no lease on {VAGRANT_NETWORK}",
                        reason="peer-not-ready")
    if mbc.ssh(stack, str(seed.private_key), ip, "echo", "ok").strip() != "ok":
        raise PeerError(f"vagrant up returned but ssh {ip} echo ok did not answer ok",
                        reason="peer-not-ready")
    mbc.wait_cloud_init(stack, str(seed.private_key), ip)
    mark(marks, "cloud-init done", t0)


def vagrant_home(workdir: Path) -> Path:
    home = workdir / "vagrant" / "home"
    home.mkdir(parents=True, exist_ok=True)
    return home


def rb(value: str) -> str:
    """A Ruby string literal (JSON's escaping is valid Ruby for these values)."""
    if "#" in value:
        raise PeerError(f"cannot put {value!r} in a Vagrantfile", reason="invalid-param")
    return json.dumps(value)


# ---- shared steps -----------------------------------------------------------------------


def need_tool(tool: str) -> None:
    if which(tool) is None:
        raise PeerError(f"{tool} is not installed", reason="missing-tool",
                        hint=f"sh scripts/bench-deps.sh (apt: {TOOL_PACKAGES[tool]})")


def check_seed(seed: BenchSeed) -> None:
    """manual_boot_check's wait_lease and ssh, reused here, know one MAC and one user."""
    from tests.e2e import manual_boot_check as mbc

    if (seed.mac, seed.user) != (mbc.MAC, mbc.USER):
        raise PeerError(f"the seed's MAC and user must be {mbc.MAC} and {mbc.USER}",
                        hint="make it with bench.image.bench_seed() defaults",
                        reason="invalid-param")


def fresh_dir(path: Path) -> Path:
    """An empty directory libvirt-qemu can traverse (0755), removing a leftover one."""
    if path.exists():
        shutil.rmtree(path)
    work_dir(path.parent)
    path.mkdir(mode=0o755)
    return path


def make_overlay(image: BenchImage, path: Path) -> Path:
    run(Cmd.of("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.qcow2),
               "-F", "qcow2", str(path), meaning="make a thin overlay on the bench image"))
    return path


def virtual_gib(qcow2: Path) -> int:
    out = run(Cmd.of("qemu-img", "info", "--output=json", str(qcow2),
                     meaning="read the image's virtual size")).stdout
    size = int(json.loads(out)["virtual-size"])
    return max(1, math.ceil(size / 2**30))


def start_network(stack: RealStack) -> Any:
    from tests.e2e.harness import nat_network_xml

    net = stack.connect().networkDefineXML(nat_network_xml(NETWORK, BRIDGE, SUBNET_PREFIX))
    net.create()
    return net


def remove_network(net: Any) -> None:
    from tests.e2e.harness import remove_network

    remove_network(net)


def remove_networks(stack: RealStack, *names: str) -> None:
    for net in stack.connect().listAllNetworks():
        if net.name() in names:
            remove_network(net)


def remove_domain(stack: RealStack, name: str) -> None:
    from tests.e2e.harness import remove_domain

    for dom in stack.connect().listAllDomains():
        if dom.name() == name:
            remove_domain(dom)


def has_pool(stack: RealStack, name: str) -> bool:
    return any(pool.name() == name for pool in stack.connect().listAllStoragePools())


def remove_pool(stack: RealStack, name: str) -> None:
    """Delete every volume of pool `name`, then the pool (vagrant-libvirt made both)."""
    for pool in stack.connect().listAllStoragePools():
        if pool.name() != name:
            continue
        if pool.isActive():
            pool.refresh(0)
            for vol in pool.listAllVolumes():
                vol.delete(0)
            pool.destroy()
        if pool.isPersistent():
            pool.undefine()


def echo_on_error(log: Path) -> Callable[..., bool]:
    """An ExitStack exit callback: print the guest console's tail when a step failed
    (the run directory, and the log in it, is removed right after)."""
    from tests.e2e.harness import console_log

    def exit_(exc_type: type[BaseException] | None, *_: object) -> bool:
        if exc_type is not None:
            console_log(log, lines=150)
        return False
    return exit_


def mark(marks: Marks, label: str, t0: float) -> float:
    seconds = time.monotonic() - t0
    if marks is not None:
        marks[label] = seconds
    return seconds


def timed(marks: Marks, label: str, step: Callable[[], object]) -> float:
    t0 = time.monotonic()
    step()
    return mark(marks, label, t0)


# ---- python -m bench.peers --------------------------------------------------------------


PEERS: dict[str, Callable[..., float]] = {
    "virt-install": virt_install_up, "vagrant": vagrant_up, "cycle": vagrant_destroy_up_cycle}


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from bench.image import bench_image, bench_seed
    from tests.e2e.harness import unavailable_reason

    parser = argparse.ArgumentParser(description="Time the peers once each, on the bench image.")
    parser.add_argument("--only", choices=sorted(PEERS), action="append")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args(argv)
    if reason := unavailable_reason():
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    image, seed = bench_image(args.work), bench_seed(args.work)
    print(f"image {image.qcow2}\nseed  {seed.iso}", flush=True)
    failed = 0
    for label in args.only or list(PEERS):
        failed += run_one(label, PEERS[label], image, seed, args.work)
    return 1 if failed else 0


def run_one(label: str, peer: Callable[..., float], image: BenchImage, seed: BenchSeed,
            workdir: Path) -> int:
    """One peer in a stack of its own; prints its seconds (or its error); 1 on failure."""
    from tests.e2e.harness import RealStack

    marks: dict[str, float] = {}
    try:
        with RealStack() as stack:
            seconds = peer(stack, image, seed, workdir=workdir, marks=marks)
    except AivmError as exc:
        print(f"{label}: FAILED [{exc.reason}] {exc.message}", flush=True)
        return 1
    detail = ", ".join(f"{k} {v:.1f} s" for k, v in marks.items())
    print(f"{label}: {seconds:.1f} s   ({detail})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
