"""The tiny-preset project used by the end-to-end tests: the repository's files copied into a
fresh git repo with ``presets/tiny.yaml`` applied, and one complete ``dvc repro`` of it (the
single-machine reference the dispatched run is compared with)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from complexif.presets import apply_preset

REPO_ROOT = Path(__file__).resolve().parents[1]
# A stuck command fails rather than hangs; beside the rest of the suite (`make test`'s two
# workers) the repro takes longer than alone.
TIMEOUT_S = 3600


def project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    # Outputs of a local run (models, generated data) are not part of the project.
    skip = ("models/", "mlartifacts/", "dvc_plots/")
    return [f for f in out if (REPO_ROOT / f).is_file() and not f.startswith(skip)]


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def project_env(repo: Path) -> dict[str, str]:
    """The stages' environment: this interpreter's venv, the copied project's own code, MLflow
    in the project directory, a git identity for commits."""
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join([str(repo / "src"), str(repo)]),
        MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}",
        COMPLEXIF_ARTIFACT_ROOT=str(repo / "mlartifacts"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    env.pop("COMPLEXIF_MLFLOW", None)
    return env


def build(repo: Path) -> tuple[Path, dict[str, str]]:
    """Copy the project to ``repo``, apply the tiny preset, commit, and ``dvc repro`` it once;
    the log goes to ``first_repro.log`` and the lock it wrote to ``first_repro.lock``."""
    for rel in project_files():
        dest = repo / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, dest)
    apply_preset(repo / "presets/tiny.yaml", repo / "params.yaml")
    env = project_env(repo)
    run(["git", "init", "-q", "-b", "main"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "tiny"], repo, env)
    proc = run([sys.executable, "-m", "dvc", "repro"], repo, env)
    (repo / "first_repro.log").write_text(proc.stdout + proc.stderr)
    # Later tests change the workspace (a tampered file, a failed stage); keep what this run made.
    shutil.copy2(repo / "dvc.lock", repo / "first_repro.lock")
    return repo, env
