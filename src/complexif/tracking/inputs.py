"""The data a stage reads, recorded on its MLflow run as inputs whose digest is DVC's hash.

The stage's dependencies come from ``dvc.yaml`` through DVC's own API (``foreach`` items and
``${...}`` resolved exactly as ``dvc repro`` resolves them). Code is left out: Python files and
everything under ``src/`` and ``stages/`` are versioned by the run's ``git_commit`` tag. Every
other dependency (data files, benchmark and model directories, prompt templates, expectation
suites) becomes one MLflow input with

- digest: DVC's hash of the path as it is now (md5; ``<md5>.dir`` for a directory), which is
  what DVC writes for this dependency into the stage's ``dvc.lock`` entry, and, for a file an
  upstream stage made, what that stage's entry records for its output (DVC writes a stage's lock
  as soon as the stage ends, so upstream entries are in place when a stage starts);
- input tags ``dvc.path``, ``dvc.md5`` and, for an upstream output, ``dvc.producer`` (its
  stage). An output that no longer matches its producer's lock entry (edited by hand, or the
  producer was not re-run) is logged with its real hash and a warning, plus ``dvc.lock_md5``.

Where DVC cannot hash a file, its own md5 is used (equal to DVC 3's hash of a file).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Dependencies that are code, versioned by the run's git commit rather than logged as inputs.
CODE_DIRS = ("src", "stages")
CODE_SUFFIXES = (".py",)
CONTEXT = "input"


@dataclass(frozen=True)
class StageInput:
    """One data dependency of a stage: its path (relative to the project root), DVC hash, and
    the stage whose output it is (with that stage's recorded hash), if any."""

    path: str
    md5: str | None
    producer: str | None = None
    lock_md5: str | None = None

    def tags(self) -> dict[str, str]:
        tags = {"dvc.path": self.path}
        if self.md5:
            tags["dvc.md5"] = self.md5
        if self.producer:
            tags["dvc.producer"] = self.producer
        if self.lock_md5 and self.lock_md5 != self.md5:
            tags["dvc.lock_md5"] = self.lock_md5
        return tags


def is_code(path: str) -> bool:
    parts = Path(path).parts
    return path.endswith(CODE_SUFFIXES) or (bool(parts) and parts[0] in CODE_DIRS)


def lock_outputs(lock_path: Path) -> dict[str, tuple[str, str]]:
    """``dvc.lock``'s outputs: path -> (stage, md5). Empty when there is no lock yet."""
    import yaml

    if not lock_path.is_file():
        return {}
    data = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    outputs: dict[str, tuple[str, str]] = {}
    for stage, entry in (data.get("stages") or {}).items():
        for out in entry.get("outs") or []:
            if out.get("md5"):
                outputs[_norm(out["path"])] = (stage, out["md5"])
    return outputs


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _norm(path: str) -> str:
    return Path(os.path.normpath(path)).as_posix()


def _dvc_hash(dep: Any) -> str | None:
    try:
        info = dep.get_hash()
        if info and info.value:
            return str(info.value)
    except Exception:
        log.debug("DVC could not hash %s", dep, exc_info=True)
    path = Path(dep.fs_path)
    return file_md5(path) if path.is_file() else None


def stage_inputs(stage: str, root: str | os.PathLike[str] = ".") -> list[StageInput]:
    """The data dependencies of DVC stage ``stage`` (``evaluate@sft``, ``train_sft``) of the
    project at ``root``, hashed as DVC hashes them. Raises DVC's errors when ``root`` is no DVC
    project or has no such stage."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    root = Path(root).resolve()
    inputs: list[StageInput] = []
    with Repo(os.fspath(root)) as repo:
        (found,) = repo.stage.collect(stage)
        base = Path(found.path).parent  # dvc.lock lies beside dvc.yaml; its paths start there
        produced = lock_outputs(base / "dvc.lock")
        seen: set[str] = set()
        for dep in found.deps:
            if isinstance(dep, ParamsDependency):
                continue  # params are logged as the run's params
            rel = _norm(os.path.relpath(dep.fs_path, base))
            if rel in seen or is_code(rel):
                continue
            seen.add(rel)
            producer, lock_md5 = produced.get(rel, (None, None))
            md5 = _dvc_hash(dep)
            if lock_md5 and md5 != lock_md5:
                log.warning(
                    "%s: input %s has hash %s but dvc.lock records %s for stage %s's output "
                    "(changed since %s ran?)",
                    stage,
                    rel,
                    md5,
                    lock_md5,
                    producer,
                    producer,
                )
            inputs.append(StageInput(rel, md5, producer, lock_md5))
    return inputs


def log_stage_inputs(
    run: Any, stage: str, root: str | os.PathLike[str] = ".", env: Mapping[str, str] | None = None
) -> list[StageInput]:
    """Log the data inputs of ``stage`` on ``run`` (a :class:`~complexif.tracking.run.StageRun`).

    Under DVC the stage is the one DVC says it runs (``DVC_STAGE``, its full address). Outside a
    DVC project, or for a name that is no stage of it, nothing is logged; a failure here is a
    warning, never the stage's failure: the record of inputs must not cost the stage's work.
    """
    if not getattr(run, "enabled", False):
        return []
    env = os.environ if env is None else env
    stage = env.get("DVC_STAGE") or stage
    try:
        inputs = stage_inputs(stage, root)
    except Exception as exc:
        # Run by DVC (DVC_STAGE set), the stage must be found: say so loudly when it is not.
        level = logging.WARNING if env.get("DVC_STAGE") else logging.INFO
        log.log(level, "no DVC inputs logged for %s: %s", stage, exc)
        return []
    for item in inputs:
        if item.md5 is None:
            log.warning("%s: input %s could not be hashed; not logged", stage, item.path)
            continue
        try:
            run.log_input_file(
                Path(root) / item.path,
                digest=item.md5,
                name=item.path,
                context=CONTEXT,
                tags=item.tags(),
            )
        except Exception:
            log.warning("%s: could not log input %s", stage, item.path, exc_info=True)
    return inputs
