"""The sensitive-folder check, by identity: the hostile list of issue 12 (item 2).

Every path below was accepted by `attach --dry-run` before (string comparison, a short
list); each must now be refused. Homes and aivm's directories are tmp dirs (HOME,
SUDO_USER and the account list monkeypatched); system directories are the real ones.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from aivm import paths
from aivm.errors import AivmError
from aivm.guest import attachments, sensitive


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home" / "me"
    for sub in ("", ".ssh", ".gnupg", ".aws", ".kube", ".docker", ".config/gh",
                ".config/aivm", ".config/gcloud", ".azure", ".local/share/keyrings", ".cargo",
                ".password-store", ".claude", "src/proj"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (home / ".netrc").write_text("machine x login y password z\n")
    (tmp_path / "store").mkdir()
    (tmp_path / "state" / "box").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AIVM_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    for var in ("XDG_CONFIG_HOME", "AIVM_CONFIG", "AIVM_STORE", "SUDO_USER"):
        monkeypatch.delenv(var, raising=False)
    return home


def ctx_for(home: Path) -> sensitive.Context:
    return sensitive.context(home=home, store=home.parents[1] / "store",
                             config=home / ".config" / "aivm" / "config.toml")


SYSTEM = ["/", "/usr", "/usr/bin", "/var", "/var/lib", "/var/log", "/boot", "/home", "/run",
          "/proc", "/proc/self", "/sys", "/dev", "/etc", "/etc/ssh", "/root", "/opt", "/bin",
          "/lib", "/tmp", "/var/tmp"]
HOME = ["", "..", ".ssh", ".gnupg", ".aws", ".kube", ".docker", ".config", ".config/gh",
        ".config/aivm", ".config/gcloud", ".azure", ".local", ".local/share/keyrings",
        ".cargo", ".password-store", ".claude", "src/../.ssh"]


@pytest.mark.parametrize("place", SYSTEM)
def test_system_directories_are_refused(home: Path, place: str) -> None:
    if not os.path.isdir(place):
        pytest.skip(f"{place} does not exist here")
    with pytest.raises(AivmError) as err:
        sensitive.check(Path(place), ctx_for(home), allow=False)
    assert err.value.reason == "sensitive-path"


@pytest.mark.parametrize("rel", HOME)
def test_home_and_credential_folders_are_refused(home: Path, rel: str) -> None:
    with pytest.raises(AivmError) as err:
        sensitive.check(home / rel, ctx_for(home), allow=False)
    assert err.value.reason == "sensitive-path"
    assert "--allow-sensitive" in err.value.hint and "--yes does not" in err.value.hint


@pytest.mark.parametrize("which", ["store", "store-entry", "state", "state-vm", "user-state",
                                   "package", "python"])
def test_aivms_own_directories_are_refused(home: Path, which: str) -> None:
    (home.parents[1] / "store" / "abc-entry").mkdir()
    (home / ".local" / "state" / "aivm").mkdir(parents=True)
    folder = {"store": home.parents[1] / "store",
              "store-entry": home.parents[1] / "store" / "abc-entry",
              "state": paths.state_root(), "state-vm": paths.state_root() / "box",
              "user-state": paths.user_state_dir(),
              "package": Path(sensitive.__file__).parents[1], "python": Path(sys.prefix)}[which]
    assert sensitive.exposed(folder, ctx_for(home)), f"{folder} was accepted"


def test_a_project_folder_is_fine_and_containers_allow_inside(home: Path, tmp_path: Path) -> None:
    ctx = ctx_for(home)
    assert sensitive.check(home / "src" / "proj", ctx, allow=False) is None
    assert sensitive.exposed(home / "src", ctx) == ()
    parent = sensitive.exposed(tmp_path / "home", ctx)
    assert parent[:2] == (home, home / ".aws") and home / ".ssh" in parent


def test_the_config_file_folder_is_protected_but_not_what_is_beside_it(tmp_path: Path,
                                                                       home: Path) -> None:
    config = tmp_path / "elsewhere" / "config.toml"
    (tmp_path / "elsewhere" / "proj").mkdir(parents=True)
    config.write_text("")
    ctx = sensitive.context(home=home, store=tmp_path / "store", config=config)
    assert sensitive.exposed(tmp_path / "elsewhere" / "proj", ctx) == ()
    assert config.parent in sensitive.exposed(tmp_path / "elsewhere", ctx)


def test_a_link_and_another_spelling_are_the_same_place(home: Path, tmp_path: Path) -> None:
    (tmp_path / "innocent").symlink_to(home / ".ssh")
    ctx = ctx_for(home)
    assert sensitive.exposed(tmp_path / "innocent", ctx) == (home / ".ssh",)
    assert sensitive.exposed(home / "src" / ".." / ".ssh", ctx) == (home / ".ssh",)


def test_sudo_users_home_is_protected(home: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "home" / "sudoer"
    (other / ".ssh").mkdir(parents=True)
    entry = pwd.struct_passwd(("sudoer", "x", 4321, 4321, "", str(other), "/bin/sh"))
    monkeypatch.setattr(pwd, "getpwnam", lambda name: entry if name == "sudoer" else None)
    monkeypatch.setenv("SUDO_USER", "sudoer")
    ctx = ctx_for(home)
    assert other / ".ssh" in sensitive.exposed(other / ".ssh", ctx)
    assert other in sensitive.exposed(other, ctx)


def test_every_accounts_home_when_run_as_root(home: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "srv-homes" / "alice"
    (other / ".aws").mkdir(parents=True)
    entry = pwd.struct_passwd(("alice", "x", 4322, 4322, "", str(other), "/bin/sh"))
    monkeypatch.setattr(pwd, "getpwall", lambda: [entry])
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert sensitive.exposed(other / ".aws", ctx_for(home)) == (other / ".aws",)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert sensitive.exposed(other / ".aws", ctx_for(home)) == ()


def test_allow_sensitive_warns_naming_what_is_exposed(home: Path) -> None:
    warning = sensitive.check(home / "..", ctx_for(home), allow=True)
    assert warning is not None and warning.startswith("WARNING: attaching ")
    assert f"exposes {home}, {home / '.aws'}, " in warning and " more to the VM" in warning


def test_proc_1_cwd_is_a_clean_error_not_a_traceback() -> None:
    if os.access("/proc/1/cwd", os.R_OK):
        pytest.skip("this process may read /proc/1/cwd")
    with pytest.raises(AivmError) as err:
        attachments.folder_of("/proc/1/cwd")
    assert err.value.reason == "unreadable-folder"


UNSHARE_CHECK = """
import sys
from pathlib import Path
from aivm.guest import sensitive
home, mnt = Path(sys.argv[1]), Path(sys.argv[2])
ctx = sensitive.context(home=home, store=home / "store", config=home / "config.toml")
print(sensitive.exposed(mnt / "keys", ctx))
print(sensitive.exposed(mnt, ctx))
print(sensitive.exposed(mnt.parent, ctx))
"""


@pytest.mark.realstack
def test_a_bind_mount_of_a_credential_folder_under_another_name(home: Path,
                                                                tmp_path: Path) -> None:
    """Real mounts, in a private mount namespace (`unshare -m`): the host's are untouched."""
    if os.geteuid() != 0:
        pytest.skip("needs root for unshare -m and mount --bind")
    innocent = tmp_path / "data" / "backup"
    innocent.mkdir(parents=True)
    (home / ".ssh" / "keys").mkdir()
    script = (f'mount --bind "$1" "$2" && exec {sys.executable} -c "$3" "$4" "$2"')
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                          str(home / ".ssh"), str(innocent), UNSHARE_CHECK, str(home)],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    lines = out.stdout.splitlines()
    assert lines[0] == f"(PosixPath('{home / '.ssh'}'),)"          # inside the bind
    assert lines[1] == f"(PosixPath('{home / '.ssh'}'),)"          # the bind itself
    assert lines[2] == f"(PosixPath('{home / '.ssh'}'),)"          # a parent: a mount below
    assert str(innocent) not in Path("/proc/self/mountinfo").read_text()
