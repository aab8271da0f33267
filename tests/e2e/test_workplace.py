"""The agent's workplace on the real stack: attach folders in every mode to ONE running VM.

shared-root, shared (rw and ro) and git mode: write on the host, read in the
guest and back; ro refuses writes in the guest; detach leaves nothing mounted
on host or guest. Then `aivm code .` (no `code` on PATH: printed steps) and
settings sync. libvirtd runs in a mount namespace of its own, so host mounts
are made there (`AIVM_HYPERVISOR_PID`); folders live under /var/tmp so that
virtiofsd and QEMU can enter them.

The VM is the run's shared one (tests/e2e/aivm_user.py SharedBoot): its first `up`
restores the booted state an earlier module saved (or boots and saves it when this
module runs first), so this module costs no boot of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.aivm_user import SHARED_UID, AivmUser, SharedBoot, debian_user, first_path
from tests.e2e.harness import RealStack

pytestmark = [pytest.mark.realstack, pytest.mark.slow, pytest.mark.shared_boot(1)]

VM = "aivm-2404"
UID = SHARED_UID
TIMINGS: dict[str, float] = {}


class WorkplaceUser(AivmUser):
    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"     # no VS Code here
        return env


@pytest.fixture(scope="module")
def folders() -> Iterator[Path]:
    root = Path(f"/var/tmp/aivm-workplace-{os.getpid()}")
    root.mkdir(mode=0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def user(realstack: RealStack, shared_store: Path, shared_boot: SharedBoot,
         tmp_path_factory) -> Iterator[AivmUser]:
    home = tmp_path_factory.mktemp("home")
    base = debian_user(realstack, home, shared_store, shared=shared_boot)
    person = WorkplaceUser(base.stack, base.home, base.store, base.log, base.state)
    started = time.monotonic()
    first = person.json("up", "--yes")
    TIMINGS[f"first up ({first_path(first)})"] = time.monotonic() - started
    yield person
    import re

    for left in re.findall(r'(?m)^host_path = "(.*)"$', person.config.read_text()):
        person.run("detach", left, "--yes", check=False)   # never destroy over a live bind
    person.run("destroy", VM, "--yes", check=False)
    shared_boot.clear()
    print("\n".join(person.log))
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))


def make_folder(root: Path, name: str, owner: int | None = UID) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "from-host.txt").write_text(f"hello from the host ({name})\n")
    if owner is not None:
        os.chown(folder, owner, owner)
    return folder


def guest(user: AivmUser, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return user.ssh(VM, "sh", "-c", f"'{script}'", check=check)


def host_mounts(realstack: RealStack) -> str:
    pid = realstack.daemon_pids()["libvirtd"]
    return Path(f"/proc/{pid}/mountinfo").read_text()


def timed(name: str, user: AivmUser, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = user.run(*args, **kw)
    TIMINGS[name] = time.monotonic() - started
    return result


def check_shared(user: AivmUser, folder: Path, mode: str) -> None:
    out = timed(f"attach {mode}", user, "attach", str(folder), "--mode", mode, "--yes")
    assert out.stdout == f"attached {folder} to {VM} ({mode}, rw) at {folder}\n"
    expected = f"hello from the host ({folder.name})\n"
    assert guest(user, f"cat {folder}/from-host.txt").stdout == expected
    guest(user, f"echo written in the guest > {folder}/from-guest.txt")
    assert (folder / "from-guest.txt").read_text() == "written in the guest\n"
    assert (folder / "from-guest.txt").stat().st_uid == UID


def check_ro(user: AivmUser, folder: Path, mode: str) -> None:
    user.run("attach", str(folder), "--mode", mode, "--access", "ro", "--yes")
    assert "hello" in guest(user, f"cat {folder}/from-host.txt").stdout
    refused = guest(user, f"touch {folder}/nope", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stdout + refused.stderr
    assert not (folder / "nope").exists()
    (folder / "later.txt").write_text("host writes still show\n")
    assert guest(user, f"cat {folder}/later.txt").stdout == "host writes still show\n"


def check_detached(user: AivmUser, realstack: RealStack, folder: Path) -> None:
    timed("detach", user, "detach", str(folder), "--yes")
    assert guest(user, f"mountpoint -q {folder}", check=False).returncode != 0
    assert guest(user, f"grep -c {folder} /proc/mounts", check=False).stdout.strip() == "0"
    assert folder.name not in host_mounts(realstack)
    assert str(folder) not in user.config.read_text()
    assert (folder / "from-host.txt").exists(), "detach touched the user's files"


def test_shared_root_rw_ro_detach(user: AivmUser, realstack: RealStack, folders: Path) -> None:
    rw, ro = make_folder(folders, "sr-rw"), make_folder(folders, "sr-ro")
    before = {p: oct(p.stat().st_mode) for p in (rw, rw / "from-host.txt")}
    check_shared(user, rw, "shared-root")
    check_ro(user, ro, "shared-root")
    assert {p: oct(p.stat().st_mode) for p in before} == before, "permissions were changed"
    again = user.run("attach", str(rw), "--yes")        # saved mode reused, nothing to do
    assert again.stdout == f"attached {rw} to {VM} (shared-root, rw) at {rw}\n"
    check_detached(user, realstack, rw)
    check_detached(user, realstack, ro)


def test_shared_rw_ro_detach(user: AivmUser, realstack: RealStack, folders: Path) -> None:
    rw, ro = make_folder(folders, "sh-rw"), make_folder(folders, "sh-ro")
    check_shared(user, rw, "shared")
    check_ro(user, ro, "shared")
    mismatch = user.run("attach", str(rw), "--mode", "git", "--yes", check=False)
    assert mismatch.returncode == 1
    assert f"aivm detach {rw} --vm {VM}\n  aivm attach {rw} --vm {VM} --mode git" in mismatch.stderr
    check_detached(user, realstack, rw)
    check_detached(user, realstack, ro)

    import libvirt

    defined = realstack.connect().lookupByName(VM).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "sh-rw" not in defined and "sh-ro" not in defined


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=h", "-c",
                           "user.email=h@example.invalid", *args], check=True, text=True,
                          capture_output=True).stdout


def test_git_mode_push_fetch_detach(user: AivmUser, folders: Path) -> None:
    repo = make_folder(folders, "gitrepo", owner=None)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "host-1")
    (repo / "uncommitted.txt").write_text("stays on the host\n")
    out = timed("attach git", user, "attach", str(repo), "--mode", "git", "--yes")
    dst = f"/home/agent/{repo.name}"
    assert out.stdout == f"attached {repo} to {VM} (git, rw) at {dst}\n"
    assert guest(user, f"cat {dst}/from-host.txt").stdout == "hello from the host (gitrepo)\n"
    assert guest(user, f"test -e {dst}/uncommitted.txt", check=False).returncode == 1
    guest(user, f"cd {dst} && echo guest > g.txt && git add g.txt && "
                f"git -c user.name=g -c user.email=g@example.invalid commit -q -m guest-1")
    user.run("attach", str(repo), "--yes")   # saved git mode: fetch (push waits for a merge)
    assert "guest-1" in git(repo, "log", "--format=%s", f"aivm-{VM}/main")
    git(repo, "merge", "-q", "--ff-only", f"aivm-{VM}/main")
    (repo / "h2.txt").write_text("second host commit\n")
    git(repo, "add", "h2.txt")
    git(repo, "commit", "-q", "-m", "host-2")
    user.run("attach", str(repo), "--yes")
    assert guest(user, f"cat {dst}/h2.txt").stdout == "second host commit\n"
    assert guest(user, f"git -C {dst} log --format=%s -1").stdout == "host-2\n"
    user.run("detach", str(repo), "--yes")
    assert f"aivm-{VM}" not in git(repo, "remote")
    assert guest(user, f"git -C {dst} log --format=%s -1").stdout == "host-2\n"  # clone kept


def test_code_prints_steps_and_sync(user: AivmUser, folders: Path) -> None:
    folder = make_folder(folders, "code-here")
    (user.home / ".gitconfig").write_text("[user]\n\tname = Synced\n")
    outside = folders / "secret-rc"
    outside.write_text("export TOKEN=1\n")
    (user.home / ".bashrc").symlink_to(outside)
    out = timed("code . (VM up)", user, "code", ".", "--sync_settings", "--yes", cwd=folder)
    assert "Not starting VS Code: `code` (VS Code's command line) is not on PATH." in out.stdout
    assert f"  3. open the folder {folder}\n" in out.stdout
    assert "not synced: ~/.bashrc: a link to" in out.stderr
    assert guest(user, "cat ~/.gitconfig").stdout == "[user]\n\tname = Synced\n"
    assert "TOKEN" not in guest(user, "cat ~/.bashrc", check=False).stdout
    assert guest(user, f"cat {folder}/from-host.txt").stdout.startswith("hello")
    user.run("detach", str(folder), "--yes")


def test_the_guest_cannot_redirect_a_host_bind(user: AivmUser, realstack: RealStack,
                                               folders: Path) -> None:
    """Issue 12 item 1, as the guest would do it. (a) proj and proj/sub both saved (an old
    config; attaching the inner one is refused now); the guest replaces sub by a link to
    ~/.ssh; the next `aivm up` must refuse, where it used to bind ~/.ssh into the export
    read-write. (b) The guest (root in the VM, so root through virtiofsd) plants a link in
    the shared-root export where a later attach puts its mount point; the host must not
    mount the folder over the link's target."""
    from aivm.guest.attachments import GUEST_ROOT, slug

    secret = user.home / ".ssh"
    secret.mkdir(exist_ok=True)
    (secret / "id_ed25519").write_text("PRIVATE KEY\n")
    outer = make_folder(folders, "nest")
    (outer / "sub").mkdir()
    os.chown(outer / "sub", UID, UID)
    user.run("attach", str(outer), "--yes")
    nested = user.run("attach", str(outer / "sub"), "--yes", check=False)
    assert nested.returncode == 1 and f"{outer}/sub lies inside {outer}" in nested.stderr
    before = user.config.read_text()
    user.edit(lambda t: t + f'\n[[attachments]]\nhost_path = "{outer}/sub"\nvm = "{VM}"\n')
    guest(user, f"rm -rf {outer}/sub && ln -s {secret} {outer}/sub")
    assert (outer / "sub").is_symlink()
    up = timed("up refusing a swapped folder", user, "up", "--yes", check=False)
    assert up.returncode == 1 and "error: refusing to " in up.stderr, up.stderr
    assert str(secret) not in host_mounts(realstack)
    sub_slug = f"{GUEST_ROOT}/{slug(outer / 'sub')}"
    assert "PRIVATE" not in guest(user, f"cat {sub_slug}/id_ed25519", check=False).stdout
    user.edit(lambda _t: before)

    victim, target = folders / "victim", make_folder(folders, "later")
    victim.mkdir()
    (victim / "host-only.txt").write_text("the host's own file\n")
    guest(user, f"sudo ln -s {victim} {GUEST_ROOT}/{slug(target)}")
    planted = user.run("attach", str(target), "--yes", check=False)
    assert planted.returncode == 1, planted.stdout + planted.stderr
    assert "is a symbolic link (refusing to follow it)" in planted.stderr
    assert str(victim) not in host_mounts(realstack)
    assert (victim / "host-only.txt").read_text() == "the host's own file\n"
    assert str(target) not in user.config.read_text()
    guest(user, f"sudo rm {GUEST_ROOT}/{slug(target)}")
    user.run("detach", str(outer), "--yes")
    (outer / "sub").unlink()


def test_ssh_dot_then_destroy_keeps_the_users_files(user: AivmUser, realstack: RealStack,
                                                    folders: Path) -> None:
    """`aivm ssh .` works from the folder; destroying the VM with the folder still attached
    unmounts the binds first and never deletes through them. (Runs last: it destroys the VM.)"""
    folder = make_folder(folders, "ssh-dot")
    out = timed("ssh . (attach + command)", user, "ssh", ".", "--yes", "--", "cat",
                "from-host.txt", "&&", "pwd", cwd=folder)
    assert out.stdout.startswith("hello") and out.stdout.rstrip().endswith(str(folder))
    before = sorted(p.name for p in folder.iterdir())
    timed("destroy with a folder attached", user, "destroy", VM, "--yes")
    assert sorted(p.name for p in folder.iterdir()) == before
    assert (folder / "from-host.txt").read_text().startswith("hello")
    assert str(folder) not in host_mounts(realstack)
