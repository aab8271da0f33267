"""git mode: the guest works on its own clone; only committed state crosses over.

The guest repo is initialised with `receive.denyCurrentBranch=updateInstead`
so a host push updates its working tree; the host gets a remote `aivm-<vm>`
(URL `<alias>:<guest path>`, the VM's ssh alias: its name, aivm/guest/sshconf.py;
the attach plan makes the alias resolvable for plain `git push`). Attaching pushes the
host's current branch, then fetches the guest's branches into
`refs/remotes/aivm-<vm>/`; the host's working tree and uncommitted changes
are never touched. Guest commands run as the guest user (no sudo).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from aivm.activate.plan import Action, Effect, Privilege, Step
from aivm.errors import AivmError
from aivm.guest import ssh, sshconf
from aivm.run import Cmd, run


def remote_name(vm: str) -> str:
    return f"aivm-{vm}"


@dataclass(frozen=True)
class HostRepo:
    folder: Path
    branch: str
    remote_url: str | None      # the current URL of remote aivm-<vm>, None when absent


def _git(folder: Path, *args: str, meaning: str, netns: bool = False) -> Cmd:
    prefix = ("-c", f"core.sshCommand={sshconf.git_ssh_command()}") if netns else ()
    return Cmd.of("git", *prefix, "-C", str(folder), *args, meaning=meaning, in_netns=netns)


def inspect(folder: Path, vm: str) -> HostRepo:
    """The host repo's current branch and aivm remote; refuse a folder with no commit."""
    head = run(_git(folder, "symbolic-ref", "--short", "-q", "HEAD", meaning="read the branch"),
               check=False)
    has_commit = run(_git(folder, "rev-parse", "-q", "--verify", "HEAD^{commit}",
                          meaning="check for a commit"), check=False).ok
    if not has_commit or not head.ok:
        raise AivmError(f"git mode needs a git repository with a commit on a branch: {folder}",
                        hint=f"run `git init && git commit` in {folder} (a detached HEAD "
                             "cannot be pushed), or use --mode shared-root",
                        reason="not-a-git-repo")
    url = run(_git(folder, "remote", "get-url", remote_name(vm), meaning="read the remote"),
              check=False)
    return HostRepo(folder, head.stdout.strip(), url.stdout.strip() if url.ok else None)


def guest_init_script(dst: str, branch: str) -> str:
    q = shlex.quote(dst)
    return (f"mkdir -p {q}\n"
            f"test -d {q}/.git || git init -q -b {shlex.quote(branch)} {q}\n"
            f"git -C {q} config receive.denyCurrentBranch updateInstead\n")


def guest_step(target: ssh.Target, dst: str, branch: str) -> Step:
    script = guest_init_script(dst, branch)
    return Step(f"Prepare the guest repository {dst}",
                "the guest keeps its own clone; host pushes update its working tree",
                (Action.command(ssh.command(target, ["sh", "-euc", shlex.quote(script)],
                                            meaning=f"git init {dst} in {target.vm} with "
                                                    "receive.denyCurrentBranch=updateInstead")),))


def url(vm: str, dst: str) -> str:
    return f"{sshconf.alias(vm)}:{dst}"


def remote_step(repo: HostRepo, vm: str, dst: str) -> Step | None:
    want = url(vm, dst)
    if repo.remote_url == want:
        return None
    verb = "add" if repo.remote_url is None else "set-url"
    cmd = _git(repo.folder, "remote", verb, remote_name(vm), want,
               meaning=f"{verb} remote {remote_name(vm)} -> {want}")
    return Step(f"Register the remote {remote_name(vm)} in {repo.folder}",
                "push to and fetch from the guest's clone by name", (Action.command(cmd),),
                Privilege.USER, Effect.USER_WRITE)


def push_step(repo: HostRepo, vm: str) -> Step:
    ref = f"HEAD:refs/heads/{repo.branch}"
    push = _git(repo.folder, "push", "-q", remote_name(vm), ref,
                meaning=f"git push {remote_name(vm)} {ref}", netns=True)
    return Step(f"Push {repo.branch} to VM {vm}",
                "the guest gets the host's committed state (uncommitted changes stay here); "
                "skipped while the guest has commits the host has not merged",
                (Action.api(push.meaning, push.shell(), lambda: push_unless_behind(repo, vm)),))


def push_unless_behind(repo: HostRepo, vm: str) -> bool:
    """Push HEAD unless the guest's branch (as last fetched) has commits HEAD lacks."""
    import logging

    theirs = f"refs/remotes/{remote_name(vm)}/{repo.branch}"
    known = run(_git(repo.folder, "rev-parse", "-q", "--verify", theirs,
                     meaning="read the guest branch"), check=False).ok
    if known and not run(_git(repo.folder, "merge-base", "--is-ancestor", theirs, "HEAD",
                              meaning="compare with the guest branch"), check=False).ok:
        logging.getLogger("aivm").warning(
            "not pushed: VM %s has commits on %s that %s lacks; merge %s/%s first", vm,
            repo.branch, repo.folder, remote_name(vm), repo.branch)
        return False
    run(_git(repo.folder, "push", "-q", remote_name(vm), f"HEAD:refs/heads/{repo.branch}",
             meaning=f"git push {remote_name(vm)}", netns=True), timeout=300)
    return True


def fetch_step(repo: HostRepo, vm: str) -> Step:
    return Step(f"Fetch the guest's commits from VM {vm}",
                f"guest branches appear as {remote_name(vm)}/<branch>; nothing is merged",
                (Action.command(_git(repo.folder, "fetch", "-q", remote_name(vm),
                                     meaning=f"git fetch {remote_name(vm)}", netns=True),
                                timeout=300),),
                Privilege.USER, Effect.USER_WRITE)


def remove_remote_step(folder: Path, vm: str) -> Step | None:
    present = run(_git(folder, "remote", "get-url", remote_name(vm), meaning="read the remote"),
                  check=False).ok
    if not present:
        return None
    return Step(f"Remove the remote {remote_name(vm)} from {folder}",
                "the folder is detached; the guest keeps its clone and its commits",
                (Action.command(_git(folder, "remote", "remove", remote_name(vm),
                                     meaning=f"git remote remove {remote_name(vm)}")),),
                Privilege.USER, Effect.USER_WRITE)
