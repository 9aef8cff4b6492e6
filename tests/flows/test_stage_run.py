"""A worker's side of a dispatched run, without Prefect: real git clones of one origin, a real
local DVC remote, and a three-stage pipeline of trivial commands. Each clone gets only the data
of the stages it ran; results travel through the DVC remote and commits on the branch."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from complexif.orchestration.dvc import RAN, UP_TO_DATE, StageFailedError
from complexif.orchestration.git import GitError, dirty_paths, head
from complexif.orchestration.git import git as _git
from complexif.orchestration.remote import plan_stage
from complexif.orchestration.stage_run import reproduce, reproduce_at_commit


@pytest.fixture
def cluster(tmp_path, make_repo, toy_stages, dvc):
    """(origin, cpu clone, gpu clone, dvc remote dir): the project pushed to a bare origin with
    a default local DVC remote in its committed config."""
    project = make_repo(toy_stages, {"respond": {"n": 2}})
    remote = tmp_path / "dvc-remote"
    dvc(project, "remote", "add", "-d", "shared", str(remote))
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "dvc remote")
    origin = tmp_path / "origin.git"
    _git(tmp_path, "clone", "-q", "--bare", str(project), str(origin))
    clones = []
    for name in ("cpu", "gpu"):
        _git(tmp_path, "clone", "-q", str(origin), name)
        clones.append(tmp_path / name)
    return origin, clones[0], clones[1], remote


def _branch_head(origin: Path) -> str:
    return _git(origin, "rev-parse", "refs/heads/main")


def _run(clone: Path, stage: str, commit: str, **kw):
    lines: list[str] = []
    outcome = reproduce_at_commit(
        clone, stage, commit=commit, branch="main", remote="origin", on_line=lines.append, **kw
    )
    return outcome, lines


def test_stages_on_two_workers_share_only_git_and_the_dvc_remote(cluster):
    origin, cpu, gpu, remote = cluster
    start = _branch_head(origin)

    seeds, _ = _run(cpu, "seeds", start)
    assert seeds.status == RAN and seeds.pushed and seeds.pulled == ()
    assert seeds.commit != start and seeds.commit == _branch_head(origin)
    respond, _ = _run(cpu, "respond", seeds.commit)
    assert respond.status == RAN and respond.pulled == ()  # seeds.txt is already here
    # The git-tracked output and the lock travel in the commit pushed to the branch.
    assert _git(origin, "show", f"{respond.commit}:gate.json") == "{}"
    lock = yaml.safe_load(_git(origin, "show", f"{respond.commit}:dvc.lock"))
    assert set(lock["stages"]) == {"seeds", "respond"}

    train, lines = _run(gpu, "train_sft", respond.commit)
    assert train.status == RAN
    assert train.pulled == ("responses.txt",)  # only what it reads
    assert (gpu / "model.txt").read_text() == "seed;seed;!"
    # The gpu clone never received the seeds, the cpu clone never the model.
    assert not (gpu / "seeds.txt").exists()
    assert not (cpu / "model.txt").exists()
    assert any("pulling responses.txt" in line for line in lines)
    final = _branch_head(origin)
    assert train.commit == final and head(gpu) == final
    assert remote.is_dir() and any(remote.rglob("*"))

    # A second pass from the new head does nothing and downloads nothing, on either clone.
    for clone, stage in ((cpu, "seeds"), (cpu, "respond"), (gpu, "train_sft")):
        again, _ = _run(clone, stage, final)
        assert (again.status, again.commit, again.pulled) == (UP_TO_DATE, final, ())
    assert not (gpu / "seeds.txt").exists()
    assert _branch_head(origin) == final


def test_a_params_change_makes_only_the_affected_stage_stale(cluster, dvc):
    origin, cpu, gpu, _ = cluster
    commit = _branch_head(origin)
    for stage in ("seeds", "respond"):
        commit = _run(cpu, stage, commit)[0].commit
    commit = _run(gpu, "train_sft", commit)[0].commit
    _git(cpu, "fetch", "-q", "origin")
    _git(cpu, "checkout", "-q", "-B", "main", commit)
    params = cpu / "params.yaml"
    params.write_text(params.read_text().replace("n: 2", "n: 3"))
    _git(cpu, "commit", "-qam", "respond.n=3")
    assert not plan_stage(cpu, "seeds").stale
    assert plan_stage(cpu, "respond").stale
    _git(cpu, "push", "-q", "origin", "HEAD:main")

    changed = _run(cpu, "respond", _branch_head(origin))[0]
    assert changed.status == RAN
    retrained = _run(gpu, "train_sft", changed.commit)[0]
    assert retrained.status == RAN and (gpu / "model.txt").read_text() == "seed;" * 3 + "!"
    assert retrained.pulled == ("responses.txt",)  # its own copy was the old version


def test_dirty_worker_checkout_is_refused_and_left_alone(cluster):
    origin, cpu, _, _ = cluster
    (cpu / "params.yaml").write_text("respond: {n: 9}\n")
    with pytest.raises(GitError, match=r"uncommitted changes \(params.yaml\)"):
        _run(cpu, "seeds", _branch_head(origin))
    assert (cpu / "params.yaml").read_text() == "respond: {n: 9}\n"


def test_unknown_commit_is_named(cluster):
    _, cpu, _, _ = cluster
    with pytest.raises(GitError, match="commit 0{40} is not on origin/main"):
        _run(cpu, "seeds", "0" * 40)


def test_stage_writing_an_undeclared_file_is_stopped_before_commit(cluster, toy_stages, py_cmd):
    origin, cpu, _, _ = cluster
    stages = toy_stages
    stages["seeds"]["cmd"] = py_cmd(
        "open('seeds.txt', 'w').write('s'); open('scratch.log', 'w').write('x')"
    )
    (cpu / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    _git(cpu, "commit", "-qam", "seeds leaves a scratch file")
    _git(cpu, "push", "-q", "origin", "HEAD:main")
    before = _branch_head(origin)
    with pytest.raises(GitError, match=r"neither its outputs nor git-ignored: scratch.log"):
        _run(cpu, "seeds", before)
    assert _branch_head(origin) == before  # nothing half-committed
    assert dirty_paths(cpu) == []  # and the clone is ready for the next run


def test_failed_stage_commits_nothing_and_leaves_the_clone_clean(cluster, toy_stages, py_cmd):
    origin, cpu, _, _ = cluster
    commit = _branch_head(origin)
    for stage in ("seeds", "respond"):
        commit = _run(cpu, stage, commit)[0].commit
    # respond now fails, after DVC deleted its outputs (the git-tracked gate file among them).
    toy_stages["respond"]["cmd"] = py_cmd("import sys; print('no-answers-4711'); sys.exit(2)")
    _git(cpu, "checkout", "-q", "-B", "main", commit)
    (cpu / "dvc.yaml").write_text(yaml.safe_dump({"stages": toy_stages}, sort_keys=False))
    _git(cpu, "commit", "-qam", "respond fails")
    _git(cpu, "push", "-q", "origin", "HEAD:main")
    before = _branch_head(origin)
    with pytest.raises(StageFailedError, match="no-answers-4711"):
        _run(cpu, "respond", before)
    assert _branch_head(origin) == before
    # The clone is as the commit has it, so the next run here is not refused.
    assert dirty_paths(cpu) == [] and (cpu / "gate.json").read_text() == "{}"


def test_local_reproduce_pushes_only_when_the_stage_ran(cluster):
    _, cpu, _, remote = cluster
    first = reproduce(cpu, "seeds", push=True)
    assert (first.status, first.pushed) == (RAN, True)
    stored = sorted(p.name for p in remote.rglob("*") if p.is_file())
    assert stored
    second = reproduce(cpu, "seeds", push=True)
    assert (second.status, second.pushed) == (UP_TO_DATE, False)
