"""Run one DVC stage and move its data: here (``dvc repro`` then ``dvc push``), or on a worker
at a given commit (check out, pull what the stage reads, run, push, commit the lock back).

Kept free of Prefect: the flows wrap these calls in tasks, tests call them directly.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from complexif.orchestration.dvc import (
    COMPLETED,
    RAN,
    RESTORED,
    UP_TO_DATE,
    StageFailedError,
    StageTracker,
    repro_command,
    run_streaming,
)
from complexif.orchestration.git import (
    GitError,
    checkout_commit,
    commit_all,
    dirty_paths,
    git,
    push_head,
)
from complexif.orchestration.remote import (
    default_remote,
    plan_stage,
    pull_command,
    push_command,
)

LineSink = Callable[[str], None]


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage."""

    stage: str
    status: str  # ran, up-to-date, restored-from-run-cache, completed
    duration_s: float
    commit: str | None = None  # the commit holding its results (dispatched runs)
    pulled: tuple[str, ...] = field(default=())  # outputs fetched from the DVC remote first
    pushed: bool = False  # its outputs were uploaded to the DVC remote

    def as_dict(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "status": self.status,
            "duration_s": round(self.duration_s, 2),
            "commit": self.commit,
            "pulled": list(self.pulled),
            "pushed": self.pushed,
        }


def _run(
    command: list[str],
    stage: str,
    root: Path,
    on_line: LineSink,
    env: Mapping[str, str] | None,
    tracker: StageTracker | None = None,
) -> float:
    def feed(line: str) -> None:
        if tracker is not None:
            tracker.feed(line)
        on_line(line)

    result = run_streaming(command, cwd=root, on_line=feed, env=env)
    if tracker is not None:
        tracker.finish(failed=result.returncode != 0)
    if result.returncode != 0:
        raise StageFailedError(stage, command, result.returncode, result.tail)
    return result.duration_s


def reproduce(
    root: str | os.PathLike[str],
    stage: str,
    *,
    force: bool = False,
    push: bool,
    on_line: LineSink = lambda line: None,
    env: Mapping[str, str] | None = None,
    on_outcome: Callable[[StageOutcome], None] | None = None,
) -> StageOutcome:
    """``dvc repro --single-item STAGE`` in ``root``; with ``push``, then ``dvc push STAGE``
    when the stage produced something (a stage DVC skipped has nothing new to upload).
    Raises :class:`StageFailedError` (the output's tail in its message) when a command fails.
    ``on_outcome`` is called with the outcome while the workspace still holds the stage's
    result (its ``dvc.lock`` entry): how a restored stage gets its MLflow record."""
    root = Path(root)
    tracker = StageTracker()
    duration = _run(repro_command(stage, force=force), stage, root, on_line, env, tracker)
    status = tracker.statuses.get(stage, COMPLETED)
    pushed = False
    if push and status in (RAN, RESTORED, COMPLETED):
        if default_remote(root) is None:
            on_line(f"(no default DVC remote in {root}: the outputs of {stage} stay local)")
        else:
            duration += _run(push_command(stage), stage, root, on_line, env)
            pushed = True
    outcome = StageOutcome(stage=stage, status=status, duration_s=duration, pushed=pushed)
    if on_outcome is not None:
        on_outcome(outcome)
    return outcome


def discard_changes(root: Path) -> None:
    """Put tracked files back as HEAD has them and delete untracked, non-ignored ones (DVC's
    cached outputs are ignored and stay, as a cache for the next run)."""
    git(root, "reset", "--quiet", "--hard", "HEAD")
    # Twice: a new .gitignore the stage wrote hides its outputs from the first pass, which
    # deletes that .gitignore and so exposes them to the second.
    for _ in range(2):
        git(root, "clean", "--quiet", "-d", "--force")


@contextmanager
def checkout_lock(root: Path) -> Iterator[None]:
    """One stage at a time per checkout: a worker may run several flow runs at once (the
    pipeline flow beside its stages), but two stages in one workspace would fight over its
    files. The lock lives in ``.git`` so it never shows up as a workspace change."""
    git_dir = Path(git(root, "rev-parse", "--absolute-git-dir"))
    with open(git_dir / "complexif-stage.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def reproduce_at_commit(
    root: str | os.PathLike[str],
    stage: str,
    *,
    commit: str,
    branch: str,
    remote: str,
    force: bool = False,
    on_line: LineSink = lambda line: None,
    env: Mapping[str, str] | None = None,
    on_outcome: Callable[[StageOutcome], None] | None = None,
) -> StageOutcome:
    """Run ``stage`` as a worker: check ``root`` (a clean clone) out at ``commit``; if the stage
    is up to date there, do nothing (not even download its data); otherwise pull the upstream
    outputs it reads, run it, push its outputs to the DVC remote, and commit ``dvc.lock`` and
    its git-tracked outputs onto ``remote``/``branch``. The outcome names the commit that holds
    the stage's results, which the next stage starts from."""
    root = Path(root).resolve()
    started = time.monotonic()
    with checkout_lock(root):
        if default_remote(root) is None:
            raise GitError(
                f"the worker checkout {root} has no default DVC remote: machines exchange data "
                "only through it (README: 'Past one machine')"
            )
        checkout_commit(root, remote, branch, commit)
        on_line(f"checked out {commit[:12]} of {remote}/{branch} in {root}")
        try:
            plan = plan_stage(root, stage)
            if not plan.stale and not force:
                on_line(
                    f"Stage '{stage}' is up to date at {commit[:12]}: nothing pulled, nothing run"
                )
                return StageOutcome(stage, UP_TO_DATE, time.monotonic() - started, commit=commit)
            if plan.inputs:
                on_line(f"pulling {', '.join(plan.inputs)}")
                _run(pull_command(plan.inputs), stage, root, on_line, env)
            # on_outcome runs inside the checkout lock, before another stage moves the clone.
            outcome = reproduce(
                root,
                stage,
                force=force,
                push=True,
                on_line=on_line,
                env=env,
                on_outcome=on_outcome,
            )
            stray = [p for p in dirty_paths(root) if not plan.is_result(p)]
            if stray:
                # Committing them would ship files nobody declared: dvc.yaml is missing them.
                raise GitError(
                    f"stage {stage!r} wrote files that are neither its outputs nor git-ignored: "
                    f"{', '.join(stray)} (declare them in dvc.yaml or ignore them)"
                )
            new = commit_all(root, f"dvc repro {stage}\n\nStarted from {commit}.")
            if new is not None:
                push_head(root, remote, branch)
                on_line(f"pushed {new[:12]} (dvc.lock of {stage}) to {remote}/{branch}")
        except BaseException:
            # The clone was clean when the stage started, so whatever git sees changed now is
            # the failed stage's: drop it, or every later run on this worker would refuse it.
            discard_changes(root)
            raise
        return replace(
            outcome,
            duration_s=time.monotonic() - started,
            commit=new or commit,
            pulled=plan.inputs,
        )
