# ruff: noqa: E501  (whole outputs and mountinfo lines are compared verbatim)
"""`aivm attach`, `detach`, `code`, `vm sync_settings` in-process, whole outputs compared.

libvirt is the in-memory `test:///default` driver with a stopped domain
named like the VM; no command runs (dry runs, refusals, printed steps).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from aivm.cli.app import App
from aivm.cli.main import cli
from aivm.config import stamp

DOMAIN = ("<domain type='test'><name>box</name><memory unit='MiB'>64</memory>"
          "<os><type>hvm</type></os></domain>")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    import libvirt

    home, state = tmp_path / "home", tmp_path / "state"
    (home / "proj").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AIVM_STATE", str(state))
    monkeypatch.delenv("AIVM_HYPERVISOR_PID", raising=False)
    monkeypatch.delenv("AIVM_NETNS", raising=False)
    for var in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY"):
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "config.toml"
    config.write_text('[[vms]]\nname = "box"\nuser = "agent"\n')
    conn = libvirt.open("test:///default")
    dom = conn.defineXML(DOMAIN)
    yield {"home": home, "config": config, "state": state, "proj": home / "proj"}
    dom.undefine()
    stamp.forget(config)


def invoke(env: dict[str, Path], *args: str, cwd: Path | None = None) -> Result:
    import os

    app = App(config_override=str(env["config"]), connect="test:///default")
    old = Path.cwd()
    os.chdir(cwd or env["proj"])
    try:
        return CliRunner().invoke(cli, list(args), obj=app, catch_exceptions=False)
    finally:
        os.chdir(old)


def test_attach_dry_run_of_a_stopped_vm_shows_the_whole_plan(env: dict[str, Path]) -> None:
    proj, state, config = env["proj"], env["state"] / "box", env["config"]
    from aivm.guest.attachments import slug
    from aivm.guest.hostmount import helper_cmd

    result = invoke(env, "attach", ".", "--dry-run")
    ident = f"{proj.stat().st_dev}:{proj.stat().st_ino}"
    helper = helper_cmd("bind", str(proj), ident, str(export := state / "shared-root"),
                        slug(proj), meaning="").shell()
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == f"""\
[1/4] Prepare the shared-root export of VM box  (root, system-write)
      why: one virtiofs export per VM; folders are bind-mounted under it, and it must be a shared mount so that later binds reach virtiofsd
      - create aivm's directory {export}
          $ mkdir -p -- {export}
      - make {export} a mount point
          $ mount --bind -- {export} {export}
      - let later bind mounts propagate to virtiofsd
          $ mount --make-shared -- {export}
[2/4] Bind {proj} into the export of VM box (read-write)  (root, system-write)
      why: the guest sees host folders only through aivm's own export directory
      - bind {proj} (device:inode {ident}) at {export}/{slug(proj)}, walking both paths without following symlinks
          $ {helper}
[3/4] Add the virtiofs device aivm-shared-root to VM box  (user, system-write)
      why: one virtiofs device exports every shared-root folder
      - add virtiofs export {export} (tag aivm-shared-root) to the VM's definition
          $ libvirt[test:///default] lookupByName('box').attachDeviceFlags(<filesystem type='mount' accessmode='passthrough'><driver type='virtiofs'/><source dir="{export}"/><target dir="aivm-shared-root"/></filesystem>, VIR_DOMAIN_AFFECT_CONFIG)
[4/4] Record the attachment of {proj}  (user, user-write)
      why: `aivm code .` and `aivm ssh .` restore saved attachments
      - save {proj} -> box (shared-root, rw) in {config}
          $ upsert [[attachments]] in {config}
note: VM box is not running: {proj} is mounted in the guest when it runs (`aivm ssh .` or `aivm code .` in the folder)
"""


def test_vm_attach_with_host_src_shared_ro_and_guest_dst(env: dict[str, Path]) -> None:
    proj = env["proj"]
    from aivm.guest.attachments import slug, tag

    result = invoke(env, "vm", "attach", "--vm", "box", "--host_src", str(proj), "--mode",
                    "shared", "--access", "ro", "--guest_dst", "/srv/p", "--dry-run",
                    cwd=env["home"])
    ro = env["state"] / "box" / "ro" / slug(proj)
    lines = [line for line in result.stderr.splitlines() if line.startswith(("[", "      -"))]
    assert lines == [
        f"[1/3] Bind {proj} into the export of VM box (read-only)  (root, system-write)",
        f"      - bind {proj} (device:inode {proj.stat().st_dev}:{proj.stat().st_ino}) at "
        f"{ro} read-only, walking both paths without following symlinks",
        f"[2/3] Add the virtiofs device {tag(proj)} to VM box  (user, system-write)",
        f"      - add virtiofs export {ro} (tag {tag(proj)}) to the VM's definition",
        f"[3/3] Record the attachment of {proj}  (user, user-write)",
        f"      - save {proj} -> box (shared, ro, at /srv/p) in {env['config']}"]


def test_attach_records_then_mode_mismatch_shows_detach_and_attach(env: dict[str, Path]) -> None:
    proj, config = env["proj"], env["config"]
    config.write_text(config.read_text() + f'\n[[attachments]]\nhost_path = "{proj}"\n'
                                           'vm = "box"\nmode = "shared"\n')
    result = invoke(env, "attach", ".", "--mode", "git")
    assert result.exit_code == 1
    assert result.stderr == (f"error: {proj} is attached to box in mode shared; it cannot switch "
                             "to git in place\n"
                             "hint: detach, then attach again in the new mode:\n"
                             f"  aivm detach {proj} --vm box\n"
                             f"  aivm attach {proj} --vm box --mode git\n")


def test_attach_refuses_the_home_folder_and_ssh_dir(env: dict[str, Path]) -> None:
    home = env["home"]
    (home / ".ssh").mkdir()
    for folder, names in ((home, f"{home}, {home}/.ssh"), (home / ".ssh", f"{home}/.ssh")):
        for yes in ((), ("--yes",)):   # --yes approves steps; it never overrides this
            result = invoke(env, "attach", str(folder), "--dry-run", *yes)
            assert result.exit_code == 1
            assert result.stderr == (
                f"error: refusing to attach {folder}: it exposes {names} to the VM (virtiofsd "
                "runs as root on the host)\nhint: attach a project folder instead; pass "
                "--allow-sensitive only if the VM really must see this (--yes does not override "
                "this)\n")


def test_attach_home_with_allow_sensitive_warns_loudly_then_goes_on(env: dict[str, Path]) -> None:
    home = env["home"]
    result = invoke(env, "attach", str(home), "--allow-sensitive", "--dry-run")
    assert result.exit_code == 0
    assert result.stderr.startswith(
        f"WARNING: attaching {home} exposes {home} to the VM; anything running in the guest "
        "can read it, and change it unless it is attached --access ro\n[1/4] Prepare")
    assert f"save {home} -> box (shared-root, rw) in" in result.stderr


def test_detach_of_an_unattached_folder(env: dict[str, Path]) -> None:
    result = invoke(env, "detach", ".")
    assert (result.exit_code, result.stderr) == (
        1, f"error: {env['proj']} is not attached to box\n"
           "hint: `aivm config show` lists the attachments\n")


def test_detach_dry_run_of_a_stopped_vm(env: dict[str, Path]) -> None:
    proj, config = env["proj"], env["config"]
    config.write_text(config.read_text() + f'\n[[attachments]]\nhost_path = "{proj}"\n'
                                           'vm = "box"\n')
    result = invoke(env, "detach", "--dry-run")
    assert result.exit_code == 0
    assert result.stderr == (
        f"[1/1] Forget the attachment of {proj}  (user, user-write)\n"
        "      why: it is detached\n"
        f"      - remove {proj} -> box from {config}\n"
        f"          $ remove [[attachments]] entry from {config}\n")


def test_attach_really_records_when_only_the_record_is_missing(env: dict[str, Path],
                                                               monkeypatch) -> None:
    """Host side already in place (its steps drop out): attach runs just the record step."""
    from aivm.guest import hostmount, virtiofs

    monkeypatch.setattr(hostmount, "is_mounted", lambda path, text=None: True)
    monkeypatch.setattr(virtiofs, "attach_step", lambda *a, **k: None)
    proj = env["proj"]
    result = invoke(env, "attach", ".", "--guest_dst", "/work/p")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"attached {proj} to box (shared-root, rw) at /work/p\n"
    assert f'host_path = "{proj}"\nvm = "box"\nmode = "shared-root"\nguest_dst = "/work/p"' \
        in env["config"].read_text()
    again = invoke(env, "attach", ".")
    assert again.stderr == (f"note: VM box is not running: {proj} is mounted in the guest when "
                            "it runs (`aivm ssh .` or `aivm code .` in the folder)\n"
                            "nothing to do: live state matches the store\n")
    assert again.stdout == f"attached {proj} to box (shared-root, rw) at /work/p\n"


def test_sync_settings_needs_a_running_vm(env: dict[str, Path]) -> None:
    for args in (("vm", "sync_settings"), ("vm", "sync-settings", "--paths", "~/.gitconfig")):
        result = invoke(env, *args)
        assert (result.exit_code, result.stderr) == (
            1, "error: VM box is not running\nhint: start it: aivm up box\n")


@pytest.mark.parametrize("command", [("ssh", "."), ("code", "."), ("attach", ".")])
def test_yes_never_overrides_the_sensitive_refusal(env: dict[str, Path],
                                                   command: tuple[str, ...]) -> None:
    """`aivm ssh .` passed --yes as the override (ssh_cmd.py): the home was attached."""
    home = env["home"]
    result = invoke(env, *command, "--yes", "--dry-run", cwd=home)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: refusing to attach {home}: it exposes {home} ")
    allowed = invoke(env, *command, "--allow-sensitive", "--dry-run", cwd=home)
    assert allowed.stderr.startswith(f"WARNING: attaching {home} exposes {home}")


def test_attach_refuses_a_folder_inside_an_attached_one(env: dict[str, Path]) -> None:
    proj, config = env["proj"], env["config"]
    (proj / "sub").mkdir()
    config.write_text(config.read_text() + f'\n[[attachments]]\nhost_path = "{proj}"\n'
                                           'vm = "other"\n')
    result = invoke(env, "attach", str(proj / "sub"), "--vm", "box", "--dry-run")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: refusing to attach {proj}/sub: {proj}/sub lies inside {proj}, attached to VM "
        "other (shared-root)\nhint: a guest that can write the outer folder could replace the "
        "inner one with a link; attach only the outer folder, or detach one of them: "
        f"aivm detach {proj} --vm other\n")


def test_a_saved_folder_that_is_gone_or_now_a_link_can_still_be_detached(
        env: dict[str, Path]) -> None:
    """The restore refusal's hint says `aivm detach PATH`: it must work for such a path."""
    home, config = env["home"], env["config"]
    (home / ".ssh").mkdir()
    (home / "sub").symlink_to(home / ".ssh")
    for gone in (home / "gone", home / "sub"):
        config.write_text(config.read_text() + f'\n[[attachments]]\nhost_path = "{gone}"\n'
                                               'vm = "box"\n')
        result = invoke(env, "detach", str(gone), "--vm", "box", "--dry-run")
        assert result.exit_code == 0, result.stderr
        assert result.stderr.startswith(f"[1/1] Forget the attachment of {gone}  (user, ")
