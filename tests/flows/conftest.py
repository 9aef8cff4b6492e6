"""Fixtures for the Prefect flow tests: an isolated Prefect home, a temporary Prefect server, and
tiny git+DVC repositories built in ``tmp_path``."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# Before Prefect is imported: no telemetry, and Prefect's state (profiles, local results,
# database) in a throwaway home, never ~/.prefect nor MLflow's ./mlflow.db.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
_PREFECT_HOME = tempfile.mkdtemp(prefix="complexif-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)

# Commits in the temporary repos (ours and `dvc exp run`'s) need an identity; keep the user's
# git config (hooks, templates) out of them.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "complexif-tests",
    "GIT_AUTHOR_EMAIL": "tests@complexif.invalid",
    "GIT_COMMITTER_NAME": "complexif-tests",
    "GIT_COMMITTER_EMAIL": "tests@complexif.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


@pytest.fixture(scope="session", autouse=True)
def _isolated_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _GIT_ENV.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect server with its own SQLite database, for the whole session."""
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings(updates={PREFECT_HOME: _PREFECT_HOME}):
        with prefect_test_harness(server_startup_timeout=90):
            yield


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)


def _dvc(repo: Path, *args: str) -> str:
    """Run ``dvc ARGS`` in ``repo`` with this interpreter; returns stdout+stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _py_cmd(code: str) -> str:
    """A dvc.yaml ``cmd`` running ``code`` with this interpreter (no reliance on PATH)."""
    assert '"' not in code, "use single quotes inside stage code"
    return f'"{sys.executable}" -c "{code}"'


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """``make_repo(stages, params=None)``: a committed git+DVC repo in ``tmp_path`` whose
    ``dvc.yaml`` holds ``stages`` (and ``params.yaml`` holds ``params``)."""

    def make(stages: dict[str, Any], params: dict[str, Any] | None = None) -> Path:
        repo = tmp_path / "repo"
        repo.mkdir()
        _git(repo, "-c", "init.defaultBranch=main", "init", "-q")
        _dvc(repo, "init", "-q")
        (repo / "dvc.yaml").write_text(
            yaml.safe_dump({"stages": stages}, sort_keys=False), encoding="utf-8"
        )
        if params is not None:
            (repo / "params.yaml").write_text(
                yaml.safe_dump(params, sort_keys=False), encoding="utf-8"
            )
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "tiny pipeline")
        return repo

    return make


@pytest.fixture
def dvc() -> Callable[..., str]:
    """``dvc(repo, *args)``: run DVC in ``repo``, assert success, return its output."""
    return _dvc


@pytest.fixture
def py_cmd() -> Callable[[str], str]:
    """``py_cmd(code)``: a dvc.yaml ``cmd`` running Python ``code`` with this interpreter."""
    return _py_cmd


@pytest.fixture
def toy_stages(py_cmd) -> dict[str, Any]:
    """seeds -> respond (params respond.n; also a git-tracked gate file) -> train_sft: the
    shape of ComplexIF's pipeline with trivial commands, for moving stages between clones."""
    return {
        "seeds": {"cmd": py_cmd("open('seeds.txt', 'w').write('seed;')"), "outs": ["seeds.txt"]},
        "respond": {
            "cmd": py_cmd(
                "open('responses.txt', 'w').write(open('seeds.txt').read() * ${respond.n}); "
                "open('gate.json', 'w').write('{}')"
            ),
            "deps": ["seeds.txt"],
            "params": ["respond.n"],
            "outs": ["responses.txt", {"gate.json": {"cache": False}}],
        },
        "train_sft": {
            "cmd": py_cmd("open('model.txt', 'w').write(open('responses.txt').read() + '!')"),
            "deps": ["responses.txt"],
            "outs": ["model.txt"],
        },
    }
