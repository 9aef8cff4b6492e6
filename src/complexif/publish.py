"""Publish a run's recipe beside its results: the exact params and dvc.lock that produced them.

DVC writes ``dvc.lock`` only after the last stage, so no stage can copy it; ``complexif params
snapshot <dir>`` does, after ``dvc repro``. It refuses a lock that does not match the current
params (a run edited but not reproduced) so a published recipe always is the one that ran.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from complexif.config import load_params
from complexif.io import write_json, write_text


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _locked_params(lock: dict[str, Any]) -> dict[str, Any]:
    """Every params value the lock recorded, flattened to ``section.key`` -> value."""
    out: dict[str, Any] = {}
    for stage in (lock.get("stages") or {}).values():
        for values in (stage.get("params") or {}).values():
            out.update(values)
    return out


def _current(params: dict[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        node = node[part]
    return node


def _same(a: Any, b: Any) -> bool:
    """Equal params values; numbers compare by value ("5e-05" in a lock is PyYAML's 5.0e-5)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def snapshot(
    out_dir: str | Path, params_path: str | Path = "params.yaml", lock_path: str | Path = "dvc.lock"
) -> list[Path]:
    """Copy ``params_path`` and ``lock_path`` into ``out_dir`` with a ``run.json`` (commit, date,
    machine). Raises if the lock was produced with other params values than ``params_path``."""
    params_text = Path(params_path).read_text(encoding="utf-8")
    lock_text = Path(lock_path).read_text(encoding="utf-8")
    load_params(params_path)  # a published recipe must validate
    current = yaml.safe_load(params_text)
    stale = [
        key
        for key, value in _locked_params(yaml.safe_load(lock_text) or {}).items()
        if not _same(_current(current, key), value)
    ]
    if stale:
        raise ValueError(
            f"{lock_path} was produced with other values of {sorted(stale)[:5]} than "
            f"{params_path}; run `dvc repro` first"
        )
    out = Path(out_dir)
    written = [out / "params.yaml", out / "dvc.lock", out / "run.json"]
    write_text(written[0], params_text)
    write_text(written[1], lock_text)
    write_json(
        written[2],
        {
            "git_commit": _git_commit(),
            "snapshot_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "processor": platform.processor() or platform.machine(),
                "python": platform.python_version(),
            },
        },
    )
    return written
