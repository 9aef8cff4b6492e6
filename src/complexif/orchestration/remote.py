"""The DVC side of moving the pipeline between machines: what one stage needs from the DVC
remote, whether it must run at all, and the commands that move its data.

A worker fetches only what its stage reads (the cached outputs of the stages upstream of it that
it depends on) and pushes only what the stage wrote, so each machine holds the data of the stages
it ran and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from complexif.orchestration.dvc import dvc_command


@dataclass(frozen=True)
class StagePlan:
    """What a worker must do for one stage at the checked-out commit."""

    stage: str
    stale: bool  # its command must run (deps, params, code or command changed; or no lock)
    # Cached outputs of upstream stages it reads that are missing here or stale: to pull first.
    inputs: tuple[str, ...]
    git_outputs: tuple[str, ...]  # its outputs DVC does not cache (committed to git instead)

    def is_result(self, path: str) -> bool:
        """Whether a changed file is part of what running the stage records in git."""
        return (
            path == "dvc.lock"
            or Path(path).name == ".gitignore"  # DVC lists new cached outputs there
            or any(_within(path, out) for out in self.git_outputs)
        )


def _find(index: Any, root: Path, stage: str) -> Any:
    from dvc.stage import PipelineStage

    from complexif.orchestration.dvc import _addressing

    for candidate in index.stages:
        if isinstance(candidate, PipelineStage) and _addressing(candidate, root) == stage:
            return candidate
    raise ValueError(f"no DVC stage {stage!r} in {root}")


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/" + os.sep) + "/")


def plan_stage(workdir: str | os.PathLike[str], stage: str) -> StagePlan:
    """Whether ``stage`` must run, judged without its data: a stage whose lock entry matches
    its code, params and the recorded hashes of its upstream outputs is up to date even where
    none of its files were downloaded (``dvc repro --allow-missing``). Also the upstream
    outputs it would read, should it run."""
    from dvc.repo import Repo

    root = Path(workdir).resolve()
    with Repo(os.fspath(root)) as repo, repo.lock:
        index = repo.index
        target = _find(index, root, stage)
        graph = index.graph
        upstream = list(graph.successors(target)) if target in graph else []
        # A missing dependency counts as unchanged only when the upstream lock records the
        # same hash for it, which is what `upstream` lets DVC compare.
        # A stage missing from dvc.lock has no recorded hashes, and DVC's allow-missing check
        # would take its absent files for "not downloaded" rather than "never made".
        never_ran = any(not item.hash_info for item in [*target.deps, *target.outs])
        # An upstream stage re-ran since: the hash it recorded for a file differs from the one
        # this stage recorded reading. Compared lock to lock, because a copy left here by an
        # earlier run would still match this stage's old entry.
        upstream_moved = any(
            dep.fs_path == out.fs_path and dep.hash_info != out.hash_info
            for dep in target.deps
            for up in upstream
            for out in up.outs
        )
        stale = never_ran or upstream_moved or target.changed(allow_missing=True, upstream=upstream)
        inputs: set[str] = set()
        for dep in target.deps:
            for up in upstream:
                for out in up.outs:
                    reads = _within(dep.fs_path, out.fs_path) or _within(out.fs_path, dep.fs_path)
                    # status() is empty when the workspace copy matches the lock already.
                    if out.use_cache and reads and out.status():
                        inputs.add(_relative(out.fs_path, root))
        git_outputs = sorted(
            _relative(out.fs_path, root) for out in target.outs if not out.use_cache
        )
    return StagePlan(
        stage=stage,
        stale=bool(stale),
        inputs=tuple(sorted(inputs)),
        git_outputs=tuple(git_outputs),
    )


def _relative(path: str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def pull_command(paths: tuple[str, ...] | list[str]) -> list[str]:
    """Fetch ``paths`` (DVC-tracked outputs) from the default remote into the workspace. A copy
    already there is an older version the lock no longer records (git is clean, the lock is the
    truth), so it is replaced without asking."""
    return dvc_command("pull", "--force", *paths)


def push_command(stage: str) -> list[str]:
    """Upload the cached outputs of ``stage`` to the default remote."""
    return dvc_command("push", stage)


def default_remote(workdir: str | os.PathLike[str]) -> str | None:
    """The name of the project's default DVC remote, or None when none is set."""
    from dvc.repo import Repo

    with Repo(os.fspath(workdir)) as repo:
        return repo.config["core"].get("remote") or None
