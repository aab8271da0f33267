"""The root bind helper (aivm/guest/bindfd.py) on real mounts, in a private mount namespace.

Each case runs `unshare -m --propagation private` and, inside it, the helper exactly as
aivm runs it (`python -I bindfd.py ...`), then looks at the result from inside the same
namespace; the host's own mounts are never touched. Issue 12 item 1: the host side must
never follow a path component a guest can write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aivm.guest import hostmount

pytestmark = pytest.mark.realstack

DRIVER = r"""
import json, os, subprocess, sys
helper, steps = sys.argv[1], json.loads(sys.argv[2])
out = []
for step in steps:
    if step[0] == "helper":
        r = subprocess.run([sys.executable, "-I", helper, *step[1:]], capture_output=True,
                           text=True)
        out.append([r.returncode, r.stdout.strip(), r.stderr.strip()])
    elif step[0] == "read":
        try:
            out.append(open(step[1]).read())
        except OSError as exc:
            out.append(f"error {exc.errno}")
    elif step[0] == "write":
        try:
            open(step[1], "w").write("x")
            out.append("written")
        except OSError as exc:
            out.append(f"error {exc.errno}")
    elif step[0] == "mounted":
        text = open("/proc/self/mountinfo").read()
        out.append(step[1] in [line.split()[4] for line in text.splitlines()])
print(json.dumps(out))
"""


def run_in_namespace(*steps: list[str]) -> list:
    if os.geteuid() != 0:
        pytest.skip("needs root for unshare -m and mounts")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-I",
                           "-c", DRIVER, str(hostmount.HELPER), json.dumps(steps)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def ident(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}"


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    proj, secret, export = tmp_path / "proj", tmp_path / "home" / ".ssh", tmp_path / "export"
    for d in (proj / "sub", secret, export):
        d.mkdir(parents=True)
    (proj / "sub" / "file").write_text("sub\n")
    (secret / "id_ed25519").write_text("PRIVATE\n")
    return {"proj": proj, "sub": proj / "sub", "secret": secret, "export": export}


def test_binds_rw_and_ro_then_unbinds(tree: dict[str, Path]) -> None:
    sub, export = tree["sub"], tree["export"]
    out = run_in_namespace(
        ["helper", "bind", str(sub), ident(sub), str(export), "rw"],
        ["read", str(export / "rw" / "file")],
        ["write", str(export / "rw" / "new")],
        ["helper", "bind", str(sub), ident(sub), str(export / "ro-dir"), "ro", "ro"],
        ["write", str(export / "ro-dir" / "ro" / "nope")],
        ["helper", "bind", str(sub), ident(sub), str(export), "rw"],
        ["helper", "unbind", str(export), "rw"],
        ["mounted", str(export / "rw")])
    assert out[0][0] == 0 and out[0][1] == f"bound {sub} at {export}/rw"
    assert out[1:3] == ["sub\n", "written"]
    assert out[3][0] == 0 and out[4] == "error 30"            # EROFS from the first moment
    assert out[5][1] == f"{export}/rw already binds {sub}"    # a second restore: nothing new
    assert out[6][0] == 0 and out[7] is False
    assert not (export / "rw").exists() and (sub / "new").exists()


def test_a_symlink_swapped_in_by_the_guest_is_refused(tree: dict[str, Path]) -> None:
    """proj and proj/sub attached; the guest replaced sub by a link to ~/.ssh: the restore
    must not bind ~/.ssh (before the fix, `mount --bind PATH` followed the link)."""
    sub, secret, export = tree["sub"], tree["secret"], tree["export"]
    recorded = ident(sub)
    (sub / "file").unlink()
    sub.rmdir()
    sub.symlink_to(secret)
    out = run_in_namespace(
        ["helper", "bind", str(sub), recorded, str(export), "slug"],
        ["mounted", str(export / "slug")],
        ["read", str(export / "slug" / "id_ed25519")])
    assert out[0][0] == 2
    assert out[0][2] == f"refused: {sub}: is a symbolic link (refusing to follow it)"
    assert out[1] is False and out[2].startswith("error")


def test_another_folder_with_the_same_path_is_refused(tree: dict[str, Path]) -> None:
    sub, export = tree["sub"], tree["export"]
    recorded = ident(sub)
    sub.rename(sub.with_name("old"))
    sub.mkdir()
    out = run_in_namespace(["helper", "bind", str(sub), recorded, str(export), "slug"],
                           ["mounted", str(export / "slug")])
    assert out[0][0] == 2 and "is not the folder that was attached" in out[0][2]
    assert out[1] is False


def test_a_link_planted_at_the_mount_point_is_refused(tree: dict[str, Path]) -> None:
    """The guest can write the shared-root export: a link at a future mount point must not
    make the host mount a folder over the link's target (`mount --bind` follows it)."""
    sub, secret, export = tree["sub"], tree["secret"], tree["export"]
    (export / "slug").symlink_to(secret)
    out = run_in_namespace(["helper", "bind", str(sub), ident(sub), str(export), "slug"],
                           ["mounted", str(secret)],
                           ["read", str(secret / "id_ed25519")],
                           ["helper", "unbind", str(export), "slug"])
    assert out[0][0] == 2 and out[0][2].endswith("slug: is a symbolic link (refusing to "
                                                 "follow it)")
    assert out[1] is False and out[2] == "PRIVATE\n"
    assert out[3][0] == 2 and "is a symbolic link" in out[3][2]
    assert (export / "slug").is_symlink()


def test_dot_dot_and_relative_paths_are_refused(tree: dict[str, Path]) -> None:
    sub, export = tree["sub"], tree["export"]
    out = run_in_namespace(
        ["helper", "bind", f"{sub}/../sub", ident(sub), str(export), "a"],
        ["helper", "bind", "relative/path", ident(sub), str(export), "b"],
        ["helper", "bind", str(sub), ident(sub), str(export), ".."])
    assert [o[0] for o in out] == [2, 2, 2]
