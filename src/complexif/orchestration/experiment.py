"""A DVC experiment run stage by stage: apply the params overrides to the workspace (as
``dvc exp run -S`` would), reproduce the stages one at a time (so each keeps its own task,
retries and tags in the flow), then save the result as a named experiment (``dvc exp save``).

Unlike ``dvc exp run``, a workspace with uncommitted changes is refused unless the caller says
otherwise: those changes would silently become part of the experiment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from complexif.orchestration.dvc import dvc_command, override_strings

DEFAULT_PARAMS_FILE = "params.yaml"
_SAVED = re.compile(r"Experiment has been saved as: (?P<name>\S+)")


def apply_overrides(workdir: str | os.PathLike[str], overrides: Mapping[str, Any]) -> None:
    """Write ``overrides`` (dotted keys -> values; ``file.yaml:key`` for another params file)
    into the params files, keeping their comments and layout. Keys must exist (a typo fails,
    naming the key); ``+key`` adds one. Nothing is written when any override is invalid."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides as dvc_apply

    by_file: dict[str, list[str]] = {}
    for override in override_strings(overrides):
        key, _, value = override.partition("=")
        plus = key[: len(key) - len(key.lstrip("+"))]
        name, sep, dotted = key[len(plus) :].rpartition(":")
        by_file.setdefault(name if sep else DEFAULT_PARAMS_FILE, []).append(
            f"{plus}{dotted}={value}"
        )
    root = Path(workdir)
    missing = [name for name in by_file if not (root / name).is_file()]
    if missing:
        raise ValueError(f"params override: {', '.join(str(root / m) for m in missing)} not found")
    originals = {name: (root / name).read_bytes() for name in by_file}
    try:
        for name, items in by_file.items():
            try:
                dvc_apply(root / name, items)
            except InvalidArgumentError as exc:
                raise ValueError(
                    f"params override in {root / name}: {exc.__cause__ or exc}"
                ) from exc
    except BaseException:
        for name, data in originals.items():  # all files or none
            (root / name).write_bytes(data)
        raise


def upstream_closure(
    order: Sequence[str], deps: Mapping[str, set[str]], selected: Sequence[str]
) -> list[str]:
    """``selected`` and every stage they depend on, transitively, in pipeline ``order``: what
    an experiment over ``selected`` must bring up to date (as ``dvc exp run TARGETS`` does)."""
    wanted: set[str] = set()
    stack = list(selected)
    while stack:
        stage = stack.pop()
        if stage not in wanted:
            wanted.add(stage)
            stack.extend(deps.get(stage, ()))
    return [s for s in order if s in wanted]


def save_command(name: str | None, *, force: bool = False) -> list[str]:
    """``dvc exp save``: the workspace (params, dvc.lock, outputs) as a named experiment;
    ``force`` replaces an experiment of the same name."""
    args = ["exp", "save"]
    if name:
        args += ["--name", name]
    if force:
        args.append("--force")
    return dvc_command(*args)


def saved_name(lines: Sequence[str]) -> str | None:
    """The experiment name ``dvc exp save`` reported."""
    for line in lines:
        match = _SAVED.search(line)
        if match:
            return match["name"]
    return None


def random_name(workdir: str | os.PathLike[str], baseline_rev: str) -> str:
    """A fresh experiment name as DVC makes them (``dvc exp run`` without ``--name``), chosen
    before the stages run so their MLflow runs can carry it."""
    from dvc.repo.experiments.utils import get_random_exp_name
    from dvc.scm import SCM

    return get_random_exp_name(SCM(os.fspath(workdir)), baseline_rev)


def experiment_rev(workdir: str | os.PathLike[str], baseline_rev: str, name: str) -> str | None:
    """The commit of experiment ``name`` on ``baseline_rev`` (what ``dvc exp save`` made); None
    if there is no such experiment."""
    from dvc.repo.experiments.refs import ExpRefInfo

    from complexif.orchestration.git import GitError, git

    try:
        return git(workdir, "rev-parse", "--verify", "--quiet", str(ExpRefInfo(baseline_rev, name)))
    except GitError:
        return None
