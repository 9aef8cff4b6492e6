"""DVC plumbing for the Prefect flows, kept free of Prefect so it can be tested on its own.

- :func:`list_stages` reads the stage list from ``dvc.yaml`` through DVC's own parser (so
  ``foreach``/``matrix`` stages come out expanded as ``name@key`` and ``${...}`` interpolation is
  resolved), in pipeline order: a stable topological sort of DVC's stage graph that keeps the
  ``dvc.yaml`` order wherever the graph allows.
- :func:`run_streaming` runs a command and hands each output line to a callback as it arrives;
  :func:`stage_env` is the environment it gets (this interpreter's venv first on PATH).
- :class:`StageTracker` turns DVC's log lines ("Running stage 'x':", "Stage 'x' didn't change,
  skipping", "Stage 'x' is cached - skipping run, ...") into a per-stage status and duration.
- :func:`override_strings` turns ``{"train.sft.max_steps": 20}`` into the Hydra overrides
  ``dvc exp run -S`` takes (``train.sft.max_steps=20``), which
  :mod:`complexif.orchestration.experiment` applies to ``params.yaml``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Statuses reported per stage.
RAN = "ran"  # DVC executed the stage's command.
UP_TO_DATE = "up-to-date"  # DVC found nothing changed and skipped it.
RESTORED = "restored-from-run-cache"  # DVC skipped the command and checked outs out of its cache.
FAILED = "failed"
NOT_RUN = "not-run"  # Not reached (an earlier stage failed) or not part of the invocation.
COMPLETED = "completed"  # The command succeeded but DVC's output named no status for the stage.

TAIL_LINES = 40  # Lines of output quoted in a failure message.

_STAGE_EVENTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Running stage '(?P<stage>[^']+)':"), RAN),
    (re.compile(r"^(?:Stage )?'(?P<stage>[^']+)' didn't change, skipping"), UP_TO_DATE),
    (re.compile(r"^Stage '(?P<stage>[^']+)' is cached - skipping run"), RESTORED),
)


class StageFailedError(RuntimeError):
    """A DVC command exited non-zero; the message carries the tail of its output."""

    def __init__(
        self,
        stage: str,
        command: Sequence[str],
        returncode: int,
        tail: Sequence[str],
    ):
        self.stage = stage
        self.command = list(command)
        self.returncode = returncode
        self.tail = list(tail)
        shown = "\n".join(self.tail) if self.tail else "(no output)"
        super().__init__(
            f"DVC stage {stage!r} failed with exit code {returncode}.\n"
            f"Command: {format_command(command)}\n"
            f"--- last {len(self.tail)} line(s) of output ---\n{shown}"
        )

    def __reduce__(self):  # picklable although __init__ takes more than the message
        return (
            type(self),
            (self.stage, self.command, self.returncode, self.tail),
        )


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def dvc_command(*args: str) -> list[str]:
    """``dvc ARGS`` run by this interpreter, so the flow uses the DVC of its own environment
    (no reliance on a ``dvc`` executable being on PATH)."""
    return [sys.executable, "-m", "dvc", *args]


def stage_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for DVC and the stage commands: this process's, with this interpreter's
    virtualenv first on PATH, so ``python -m stages.x`` in ``dvc.yaml`` runs in the same
    environment as the flow even when the venv was not activated (``.venv/bin/python -m
    flows.serve``). Stage commands are Python programs: unbuffered, their output reaches the
    log as it happens."""
    env = dict(os.environ if base is None else base)
    if sys.prefix != sys.base_prefix:  # running inside a virtualenv
        bin_dir = os.path.dirname(sys.executable)
        path = env.get("PATH", "")
        if path.split(os.pathsep)[0] != bin_dir:
            env["PATH"] = bin_dir + (os.pathsep + path if path else "")
        env.setdefault("VIRTUAL_ENV", sys.prefix)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def repro_command(stage: str, *, force: bool = False) -> list[str]:
    """Reproduce exactly one stage; DVC still skips it when nothing it depends on changed."""
    return dvc_command("repro", "--single-item", *(["--force"] if force else []), stage)


def format_command(command: Sequence[str]) -> str:
    """The command as a user would type it (``python -m dvc`` shown as ``dvc``)."""
    parts = list(command)
    if parts[:3] == [sys.executable, "-m", "dvc"]:
        parts = ["dvc", *parts[3:]]
    return " ".join(_shell_quote(p) for p in parts)


def _shell_quote(part: str) -> str:
    if part and re.fullmatch(r"[\w@%+=:,./-]+", part):
        return part
    return "'" + part.replace("'", "'\"'\"'") + "'"


# --------------------------------------------------------------------------------------------
# `-S key=value` overrides
# --------------------------------------------------------------------------------------------

_KEY = re.compile(r"^(?:\+{1,2})?(?:[^\s=:]+:)?[A-Za-z_][\w-]*(?:\.[\w-]+)*$")
_DICT_KEY = re.compile(r"^[A-Za-z_][\w-]*$")


def flatten_overrides(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"sft": {"max_steps": 20}}}`` -> ``{"train.sft.max_steps": 20}``.

    Nested mappings are flattened so that only the named leaves are overridden (a dict value
    given to ``-S`` would replace the whole section). An empty mapping stays a value.
    """
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_overrides(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def override_strings(overrides: Mapping[str, Any]) -> list[str]:
    """``key=value`` overrides in the grammar of ``dvc exp run -S``.

    Keys are dotted paths into ``params.yaml`` (``train.sft.max_steps``); ``file.yaml:key``
    targets another params file. The key must already exist (DVC refuses unknown keys, which
    catches typos); prefix it with ``+`` to add a new key or ``++`` to add-or-override, as in
    Hydra. Values are written in Hydra's override grammar, which ``-S`` parses, so their types
    survive: ``20`` stays an int, ``"20"`` a string, ``True`` -> ``true``, ``None`` -> ``null``.
    """
    strings: list[str] = []
    for key, value in flatten_overrides(overrides).items():
        if not _KEY.match(key):
            raise ValueError(
                f"invalid params override key {key!r}: expected a dotted params.yaml path such "
                "as 'train.sft.max_steps' (optionally 'file.yaml:key', '+key' or '++key')"
            )
        strings.append(f"{key}={hydra_value(value)}")
    return strings


def hydra_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (what ``dvc exp run -S`` parses)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _hydra_quote(value)
    if isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            if not isinstance(k, str) or not _DICT_KEY.match(k):
                raise ValueError(f"params override: mapping key {k!r} is not a plain identifier")
            items.append(f"{k}: {hydra_value(v)}")
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hydra_value(v) for v in value) + "]"
    raise TypeError(f"params override: unsupported value type {type(value).__name__}")


def _hydra_quote(text: str) -> str:
    # In Hydra's quoted strings a backslash is an escape only before a quote or at the end.
    text = re.sub(r"(\\+)('|$)", lambda m: m.group(1) * 2 + m.group(2), text)
    return "'" + text.replace("'", "\\'") + "'"


# --------------------------------------------------------------------------------------------
# Stage discovery
# --------------------------------------------------------------------------------------------


def stage_base_name(stage: str) -> str:
    """``evaluate@sft`` -> ``evaluate``; ``sub/dvc.yaml:train_sft`` -> ``train_sft``."""
    return stage.rsplit(":", 1)[-1].split("@", 1)[0]


def list_stages(workdir: str | os.PathLike[str] = ".") -> list[str]:
    """All pipeline stages of the DVC project at ``workdir``, in an order that runs every stage
    after the stages it depends on (``dvc.yaml`` order where the graph leaves a choice).

    Names are DVC addressing relative to ``workdir`` (what ``dvc repro`` accepts there):
    ``seeds``, ``evaluate@base``, and ``path/dvc.yaml:name`` for stages in nested files.
    """
    return stage_graph(workdir)[0]


def stage_graph(workdir: str | os.PathLike[str] = ".") -> tuple[list[str], dict[str, set[str]]]:
    """:func:`list_stages` and, for each stage, the stages it depends on directly."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    root = Path(workdir).resolve()
    with Repo(os.fspath(root)) as repo:
        index = repo.index
        stages = [s for s in index.stages if isinstance(s, PipelineStage)]
        graph = index.graph
        names = {s: _addressing(s, root) for s in stages}
        # An edge A -> B in DVC's graph means "A depends on B".
        deps = {
            s: {d for d in graph.successors(s) if d in names} if s in graph else set()
            for s in stages
        }
    order = [names[s] for s in _stable_toposort(stages, deps)]
    return order, {names[s]: {names[d] for d in ds} for s, ds in deps.items()}


def _addressing(stage: Any, root: Path) -> str:
    rel = Path(os.path.relpath(stage.path, root)).as_posix()
    return stage.name if rel == "dvc.yaml" else f"{rel}:{stage.name}"


def _stable_toposort(items: list[Any], deps: Mapping[Any, set[Any]]) -> list[Any]:
    done: set[Any] = set()
    order: list[Any] = []
    pending = list(items)
    while pending:
        for i, item in enumerate(pending):
            if deps[item] <= done:
                order.append(pending.pop(i))
                done.add(item)
                break
        else:  # DVC rejects cycles itself; keep the file order rather than loop forever.
            order += pending
            break
    return order


def select_stages(available: Sequence[str], requested: Iterable[str] | None) -> list[str]:
    """The requested stages, in pipeline order. A base name selects every item of a
    ``foreach`` stage (``evaluate`` -> ``evaluate@base``, ``evaluate@sft``, ...)."""
    if requested is None:
        return list(available)
    wanted: set[str] = set()
    unknown: list[str] = []
    for name in requested:
        matches = [s for s in available if s == name or stage_base_name(s) == name]
        if not matches:
            unknown.append(name)
        wanted.update(matches)
    if unknown:
        raise ValueError(
            f"unknown DVC stage(s) {unknown}; the pipeline has: {', '.join(available) or '(none)'}"
        )
    return [s for s in available if s in wanted]


# --------------------------------------------------------------------------------------------
# Running and parsing
# --------------------------------------------------------------------------------------------


@dataclass
class CommandResult:
    command: list[str]
    returncode: int
    duration_s: float
    tail: list[str]


def run_streaming(
    command: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    on_line: Callable[[str], None],
    env: Mapping[str, str] | None = None,
    tail_lines: int = TAIL_LINES,
) -> CommandResult:
    """Run ``command`` in ``cwd`` with stderr merged into stdout, passing each line to
    ``on_line`` as soon as it is printed. Returns the exit code and the last ``tail_lines``.

    Carriage-return progress updates (tqdm) are collapsed to their final state, as a terminal
    would show them. If this process is interrupted, the child is terminated rather than left
    running (and holding DVC's lock).
    """
    tail: deque[str] = deque(maxlen=tail_lines)
    start = time.monotonic()
    proc = subprocess.Popen(
        list(command),
        cwd=os.fspath(cwd),
        env=dict(os.environ if env is None else env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n").split("\r")[-1].rstrip()
            tail.append(line)
            on_line(line)
        returncode = proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return CommandResult(list(command), returncode, time.monotonic() - start, list(tail))


@dataclass
class StageTracker:
    """Follows DVC's output line by line and records what happened to each stage.

    A stage's duration runs from its "Running stage" line to the next stage event (or the end
    of the command), so one ``dvc repro`` over many stages still yields per-stage timings.
    """

    statuses: dict[str, str] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    _current: str | None = None
    _started: float = 0.0

    def feed(self, line: str) -> None:
        text = line.strip()
        for pattern, status in _STAGE_EVENTS:
            match = pattern.match(text)
            if match:
                self._close()
                stage = match["stage"]
                self.statuses[stage] = status
                self.durations.setdefault(stage, 0.0)
                if status == RAN:
                    self._current, self._started = stage, time.monotonic()
                return

    def finish(self, *, failed: bool) -> str | None:
        """Close the timing of the last stage; on failure mark the stage that was running as
        failed and return its name."""
        running = self._current
        self._close()
        if failed and running is not None:
            self.statuses[running] = FAILED
            return running
        return None

    def _close(self) -> None:
        if self._current is not None:
            self.durations[self._current] = time.monotonic() - self._started
            self._current = None
