"""The git side of moving the pipeline between machines: which commit a run starts from, a
worker's checkout moved to it, and a stage's results committed and pushed back.

Machines share nothing but git, the DVC remote and the servers: a worker's checkout holds code
and small git-tracked outputs (``dvc.lock``, gates, metrics); large outputs travel through DVC.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path


class GitError(RuntimeError):
    """A git command failed, or a checkout is not in the state a run needs."""


def git(
    root: str | os.PathLike[str],
    *args: str,
    env: Mapping[str, str] | None = None,
    strip: bool = True,
) -> str:
    """``git ARGS`` in ``root``; its stdout (stripped unless told not to). Raises :class:`GitError` with git's own
    message when it fails."""
    proc = subprocess.run(
        ["git", *args],
        cwd=os.fspath(root),
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise GitError(f"git {' '.join(args)} failed in {root}: {detail}")
    return proc.stdout.strip() if strip else proc.stdout


def dirty_paths(root: str | os.PathLike[str], *pathspec: str) -> list[str]:
    """Files that differ from HEAD: modified, staged, deleted, or untracked and not ignored
    (what a commit of the workspace would fold in); only under ``pathspec`` when given."""
    # Porcelain lines are "XY path": the status columns may start with a space.
    args = ("--", *pathspec) if pathspec else ()
    out = git(root, "status", "--porcelain", "--untracked-files=all", *args, strip=False)
    return [line[3:] for line in out.splitlines() if line.strip()]


def head(root: str | os.PathLike[str]) -> str:
    return git(root, "rev-parse", "HEAD")


def remote_url(root: str | os.PathLike[str], remote: str) -> str:
    """The URL of ``remote`` in the checkout at ``root`` (made absolute if it is a local path,
    so another directory can clone it)."""
    try:
        url = git(root, "remote", "get-url", remote)
    except GitError as exc:
        raise GitError(
            f"the checkout {root} has no git remote {remote!r}: a dispatched run needs the "
            "repository the workers clone (git remote add {remote} URL)"
        ) from exc
    if "://" not in url and ":" not in url.split("/", 1)[0]:
        local = Path(url)
        if not local.is_absolute():
            local = (Path(root) / local).resolve()
        return str(local)
    return url


def clone(url: str, branch: str, dest: Path) -> str:
    """A shallow clone of ``branch`` into ``dest``; its commit."""
    source = f"file://{url}" if Path(url).is_absolute() else url
    git(dest.parent, "clone", "--quiet", "--depth", "1", "--branch", branch, source, str(dest))
    return head(dest)


def require_clean(root: str | os.PathLike[str], what: str) -> None:
    dirty = dirty_paths(root)
    if dirty:
        shown = ", ".join(dirty[:10]) + (f" (+{len(dirty) - 10} more)" if len(dirty) > 10 else "")
        raise GitError(
            f"{what} {root} has uncommitted changes ({shown}); a run there would fold them into "
            "its results. Commit or discard them (git stash -u, or git checkout -- . && "
            "dvc checkout)."
        )


def checkout_commit(root: str | os.PathLike[str], remote: str, branch: str, commit: str) -> None:
    """Move a clean checkout to ``commit`` of ``remote``/``branch`` (detached)."""
    require_clean(root, "the worker checkout")
    git(root, "fetch", "--quiet", remote, branch)
    try:
        git(root, "cat-file", "-e", f"{commit}^{{commit}}")
    except GitError as exc:
        raise GitError(
            f"commit {commit} is not on {remote}/{branch} as seen from {root}: is this checkout "
            "a clone of the repository the run was started from?"
        ) from exc
    git(root, "checkout", "--quiet", "--detach", commit)


def _identity_args(root: str | os.PathLike[str]) -> list[str]:
    """``-c user.name/email`` for a worker whose git has no identity (a bare CI machine):
    commits made by the pipeline name the machine rather than fail."""
    try:
        git(root, "config", "user.email")
        return []
    except GitError:
        host = socket.gethostname() or "localhost"
        return ["-c", "user.name=complexif worker", "-c", f"user.email=complexif-worker@{host}"]


def commit_all(root: str | os.PathLike[str], message: str) -> str | None:
    """Commit every change in the workspace; the new commit, or None when nothing changed."""
    git(root, "add", "--all")
    if not git(root, "diff", "--cached", "--name-only"):
        return None
    git(root, *_identity_args(root), "commit", "--quiet", "--no-verify", "-m", message)
    return head(root)


def push_head(root: str | os.PathLike[str], remote: str, branch: str) -> None:
    """Push HEAD to ``remote``/``branch``; only a fast-forward (another run that moved the
    branch meanwhile makes this fail rather than be overwritten)."""
    try:
        git(root, "push", "--quiet", remote, f"HEAD:refs/heads/{branch}")
    except GitError as exc:
        raise GitError(
            f"could not push the stage's results to {remote}/{branch} ({exc}); if another run "
            "moved the branch meanwhile, start this one again"
        ) from exc
