"""Secrets never enter the image: the build context that `.dockerignore` leaves, computed with
Docker's own matching rules (tests/docker_context.py, no Docker engine), holds no .env or key
file at any depth, and the Dockerfile has no other way to take one in."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.docker_context import (
    context_files,
    copied_by,
    dockerfile_instructions,
    excluded,
    read_patterns,
)

ROOT = Path(__file__).resolve().parents[1]
DOCKERIGNORE = ROOT / ".dockerignore"

SECRETS = [
    ".env",
    "sub/.env",
    "src/complexif/.env",
    ".env.local",
    ".env.production",
    "data/.env.example",
    "deploy/prod.env",
    ".envrc",
    ".netrc",
    ".pypirc",
    ".git-credentials",
    "certs/server.pem",
    "certs/server.key",
    "keys/id_rsa",
    "keys/id_ed25519.pub",
    ".ssh/config",
    "home/.aws/credentials",
]
SOURCES = [
    "Makefile",
    "README.md",
    "pyproject.toml",
    "params.yaml",
    "dvc.yaml",
    "dvc.lock",
    ".dvc/config",
    "requirements/lock.txt",
    "requirements/torch-cpu.txt",
    "requirements/no-deps.txt",
    "src/complexif/__init__.py",
    "src/complexif/config.py",
    "src/complexif/llm/environment.py",
    "stages/seeds.py",
    "flows/pipeline.py",
    "prompts/correct.txt",
    "expectations/seeds.json",
    "data/seed_tasks.jsonl",
    "tests/test_dockerignore.py",
]


def _tree(root: Path, files: list[str]) -> Path:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("OPENAI_API_KEY=sk-test\n" if rel in SECRETS else "source\n")
    return root


def test_the_context_drops_every_secret_and_keeps_the_sources(tmp_path):
    root = _tree(tmp_path, SECRETS + SOURCES)
    sent = context_files(root, DOCKERIGNORE)
    assert not sent & set(SECRETS), sorted(sent & set(SECRETS))
    assert set(SOURCES) <= sent, sorted(set(SOURCES) - sent)


def test_no_copy_in_the_dockerfile_can_take_a_secret(tmp_path):
    root = _tree(tmp_path, SECRETS + SOURCES)
    sent = context_files(root, DOCKERIGNORE)
    copies = [
        args for op, args in dockerfile_instructions(ROOT / "Dockerfile") if op in ("COPY", "ADD")
    ]
    assert copies
    for args in copies:
        assert not args.startswith("--from"), args  # another stage could hold anything
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
            taken = copied_by(source, sent)
            assert not taken & set(SECRETS), (args, sorted(taken & set(SECRETS)))
    # `COPY . .` is safe only because of .dockerignore: without it the key goes in.
    assert set(SECRETS) <= copied_by(".", context_files(root, tmp_path / "no-such-ignore-file"))


def test_no_build_argument_or_environment_variable_carries_a_key():
    # Build arguments and ENV values are stored in the image's history and config.
    secretish = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
    for op, args in dockerfile_instructions(ROOT / "Dockerfile"):
        if op in ("ARG", "ENV"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", args)
            assert not [n for n in names if secretish.search(n)], (op, args)


def test_env_files_are_ignored_by_git():
    import subprocess

    for path in [".env", "sub/.env", ".env.local", "deploy/prod.env"]:
        proc = subprocess.run(
            ["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False
        )
        assert proc.returncode == 0, f"{path} is not in .gitignore"


# Docker's documented examples (docs.docker.com, "Build context" > ".dockerignore files") and
# patternmatcher cases: the matcher the tests above rely on must give Docker's answers.
@pytest.mark.parametrize(
    ("lines", "path", "expected"),
    [
        (["*/temp*"], "somedir/temporary.txt", True),
        (["*/temp*"], "somedir/temp", True),
        (["*/temp*"], "temp", False),
        (["*/temp*"], "a/b/temp", False),
        (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
        (["temp?"], "tempa", True),
        (["temp?"], "temp", False),
        (["**/*.go"], "main.go", True),
        (["**/*.go"], "a/b/c.go", True),
        ([".env"], ".env", True),
        ([".env"], "sub/.env", False),  # rooted at the context, unlike .gitignore
        (["/.env"], ".env", True),
        (["**/.env"], "sub/deeper/.env", True),
        (["sub/"], "sub/file.py", True),  # a trailing slash is cleaned away
        (["sub"], "sub/deeper/file.py", True),  # a directory takes its whole tree
        (["./sub/../other"], "other/x", True),
        (["dir/**"], "dir/a/b", True),
        (["dir/**"], "dir", False),
        (["a**b"], "a/x/b", True),
        (["[a-c].txt"], "b.txt", True),
        (["[a-c].txt"], "d.txt", False),
        (["\\*.txt"], "*.txt", True),
        (["\\*.txt"], "a.txt", False),
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "CHANGES.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-x.md", False),
        (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
        (["sub", "!sub/keep.py"], "sub/keep.py", False),
        (["sub", "!sub/keep.py"], "sub/drop.py", True),
        (["# comment", "", "  spaced.txt  "], "spaced.txt", True),
        (["! spaced.txt"], "spaced.txt", False),
    ],
)
def test_matcher_gives_dockers_answers(tmp_path, lines, path, expected):
    ignore = tmp_path / ".dockerignore"
    ignore.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert excluded(path, read_patterns(ignore)) is expected
