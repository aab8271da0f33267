"""The no-op `aivm build` fast path (aivm/fastpath.py): a second no-op build is served from
its record without importing click, prints exactly what the full no-op build printed, and
any change the result depends on sends the build down the normal path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aivm import fastpath
from aivm.host import facts

SERVED = "aivm: no-op build served from its record"
CONFIG = ('[[vms]]\nname = "{vm}"\nimage = "local"\n\n[[images]]\nname = "local"\n'
          'url = "{image}"\nsha256 = ""\n\n[[networks]]\nname = "aivm"\n')


class Setup:
    def __init__(self, tmp: Path) -> None:
        if not facts.boot_id() or shutil.which("qemu-img") is None:
            pytest.skip("needs a boot id (the accel cache's key) and qemu-img")
        self.home, self.image, self.store = tmp / "home", tmp / "image.qcow2", tmp / "store"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(self.image), "1M"],
                       check=True)
        (self.home / ".ssh").mkdir(parents=True)
        (self.home / ".ssh" / "id_ed25519.pub").write_text(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheFastPathTest t@aivm\n")
        state = self.home / ".local" / "state" / "aivm"
        state.mkdir(parents=True)
        (state / "accel.json").write_text(json.dumps({
            "version": facts.ACCEL_CACHE_VERSION, "boot_id": facts.boot_id(),
            "accel": "qemu", "reason": "test"}))
        self.config = self.home / ".config" / "aivm" / "config.toml"
        self.config.parent.mkdir(parents=True)
        self.config.write_text(CONFIG.format(vm="box", image=self.image))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "AIVM_"))}
        self.env.update(HOME=str(self.home), AIVM_STORE=str(self.store),
                        AIVM_STATE=str(tmp / "state"), AIVM_TRACE_FASTPATH="1")

    def run(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            importtime: bool = False) -> subprocess.CompletedProcess[str]:
        flags = ["-X", "importtime"] if importtime else []
        done = subprocess.run([sys.executable, *flags, "-m", "aivm", *args],
                              env=env or self.env, cwd=cwd or self.home, text=True,
                              capture_output=True, check=False, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    def warm(self) -> str:
        """Build everything, then one full no-op build (which writes the record)."""
        self.run("build")
        slow = self.run("build")
        assert SERVED not in slow.stderr and slow.stdout.startswith("nothing to build")
        return slow.stdout


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_a_second_noop_build_is_served_without_click_and_prints_the_same(setup: Setup) -> None:
    slow = setup.warm()
    fast = setup.run("build", importtime=True)
    assert SERVED in fast.stderr
    assert fast.stdout == slow == "nothing to build: 6 nodes cached\n"
    imported = [line.rsplit("|", 1)[-1].strip() for line in fast.stderr.splitlines()
                if line.startswith("import time:")]
    assert "aivm.fastpath" in imported and "click" not in imported
    assert "aivm.config.schema" not in imported


def test_targets_are_served_and_options_are_not(setup: Setup) -> None:
    setup.warm()
    assert SERVED not in setup.run("build", "box").stderr       # its own first record
    assert SERVED in setup.run("build", "box").stderr
    for args in (["build", "--explain"], ["--debug", "build"], ["build", "--dry-run"],
                 ["build", "--json", "-j", "1"]):
        assert SERVED not in setup.run(*args).stderr, args


def test_json_is_served_as_the_full_noop_build_prints_it(setup: Setup) -> None:
    setup.warm()
    first = setup.run("build", "--json")                # hashes nothing: records its output
    assert SERVED in setup.run("build", "--json").stderr
    served = setup.run("build", "--json")
    (setup.home / ".local" / "state" / "aivm" / "noop-build.json").unlink()
    again = setup.run("build", "--json")                # the full path once more
    assert SERVED not in again.stderr and SERVED not in first.stderr
    assert served.stdout == again.stdout == first.stdout
    assert json.loads(served.stdout)["built"] == [] and len(json.loads(served.stdout)) > 2


def test_config_edited_with_same_size_and_mtime_is_not_served(setup: Setup) -> None:
    setup.warm()
    before = setup.config.stat()
    replacement = setup.config.with_suffix(".new")
    replacement.write_text(CONFIG.format(vm="bot", image=setup.image))   # same size
    os.replace(replacement, setup.config)                          # a new inode
    os.utime(setup.config, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert setup.config.stat().st_size == before.st_size
    done = setup.run("build")
    assert SERVED not in done.stderr and done.stdout.startswith("built ")


def test_config_rewritten_in_place_within_the_same_second_is_not_served(setup: Setup) -> None:
    setup.warm()
    before = setup.config.stat()
    setup.config.write_text(CONFIG.format(vm="bot", image=setup.image))  # same inode, size
    second = before.st_mtime_ns - before.st_mtime_ns % 1_000_000_000
    os.utime(setup.config, ns=(before.st_atime_ns, second + (before.st_mtime_ns + 1) % 10**9))
    assert setup.config.stat().st_ino == before.st_ino
    done = setup.run("build")
    assert SERVED not in done.stderr and done.stdout.startswith("built ")


def test_a_changed_file_input_is_not_served(setup: Setup) -> None:
    setup.warm()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(setup.image), "2M"],
                   check=True)
    done = setup.run("build")
    assert SERVED not in done.stderr and done.stdout.startswith("built ")


def test_a_store_entry_removed_is_not_served(setup: Setup) -> None:
    setup.warm()
    entry = next(p for p in setup.store.iterdir() if p.name.endswith("-box.seed"))
    shutil.rmtree(entry)          # as `aivm gc` removes an unrooted entry
    done = setup.run("build")
    assert SERVED not in done.stderr and done.stdout == "built 1 of 6 nodes\n"


def test_another_cwd_or_aivm_variable_is_not_served(setup: Setup, tmp_path: Path) -> None:
    setup.warm()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert SERVED not in setup.run("build", cwd=elsewhere).stderr
    assert SERVED in setup.run("build", cwd=elsewhere).stderr     # then it has its own
    changed = {**setup.env, "AIVM_LIBVIRT_URI": "qemu:///session"}
    assert SERVED not in setup.run("build", env=changed).stderr


def test_an_unreadable_record_takes_the_normal_path(setup: Setup) -> None:
    setup.warm()
    record = setup.home / ".local" / "state" / "aivm" / "noop-build.json"
    assert record.is_file()
    record.write_text("{not json")
    done = setup.run("build")
    assert SERVED not in done.stderr and done.stdout == "nothing to build: 6 nodes cached\n"
    assert SERVED in setup.run("build").stderr                    # rewritten by that build


def test_a_build_that_printed_a_note_or_ran_a_command_writes_no_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    record = Path(fastpath.record_file())
    noted = fastpath.Recorder.start(["build"])
    assert noted is not None
    print("note: something the served build would not say", file=sys.stderr)
    noted.finish("nothing to build: 1 nodes cached\n", [])
    ran = fastpath.Recorder.start(["build"])
    assert ran is not None
    subprocess.run(["true"], check=True)
    ran.finish("nothing to build: 1 nodes cached\n", [])
    assert not record.exists()
    quiet = fastpath.Recorder.start(["build"])
    assert quiet is not None
    quiet.finish("nothing to build: 1 nodes cached\n", [])
    assert fastpath.lookup(["build"]) == "nothing to build: 1 nodes cached\n"
    assert fastpath.Recorder.start(["build", "--explain"]) is None


def test_the_entry_point_function_serves_too(setup: Setup) -> None:
    slow = setup.warm()
    code = "import sys; sys.argv = ['aivm', 'build']; from aivm.__main__ import main; main()"
    done = subprocess.run([sys.executable, "-c", code], env=setup.env, cwd=setup.home,
                          text=True, capture_output=True, check=True, timeout=60)
    assert SERVED in done.stderr and done.stdout == slow
