"""What every DVC stage entry point shares: params, logging, the MLflow run, the quality gate,
turning the errors a user can fix into a one-paragraph message instead of a traceback, a clean
stop on SIGTERM, SIGINT or SIGHUP, and which process writes when a launcher started several."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from complexif.config import ConfigError, Params, load_params
from complexif.io import DataError, hold_signal, write_jsonl

log = logging.getLogger("complexif.stage")

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)


class StageStopped(KeyboardInterrupt):
    """A stop signal arrived. Raised in the main thread wherever it is (a blocking wait on
    worker threads included), it unwinds the stage like Ctrl-C: every ``finally`` and
    ``except BaseException`` runs, so temp files go, the response cache and checkpoints keep
    what finished, and the MLflow run is marked KILLED."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        # The shell's convention for "terminated by signal N".
        return 128 + self.signum


@contextmanager
def stop_signals(name: str) -> Iterator[None]:
    """While the block runs, SIGTERM/SIGINT/SIGHUP raise :class:`StageStopped` in the main thread.

    A second stop signal while the first one's cleanup runs exits at once (the user insists;
    nothing more is cleaned up). A signal the caller ignores (``nohup``, a background job's
    SIGINT) stays ignored. Outside the main thread, handlers cannot be set: nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def handler(signum: int, frame: object) -> None:
        nonlocal stopping
        if hold_signal(signum):
            return  # raised again as soon as the step that must not be cut in two is done
        if stopping:
            sig = signal.Signals(signum).name
            print(f"\n[{name}] {sig} again: exiting now, without cleanup", file=sys.stderr)
            sys.stderr.flush()
            os._exit(128 + signum)
        stopping = True
        raise StageStopped(signum)

    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# Where launchers put a process's global rank: torchrun (and so `accelerate launch`, DeepSpeed's
# launcher) sets RANK; MPI launchers set their own names.
RANK_VARIABLES = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")


def _launcher_int(names: Sequence[str], default: int) -> int:
    """The first of ``names`` a launcher set, as an int. Read from the environment, so it is
    known before (and without) torch.distributed being set up."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return int(value)
    return default


def process_rank() -> int:
    """This process's rank in a multi-process launch; 0 when no launcher started it."""
    return _launcher_int(RANK_VARIABLES, 0)


def is_main_process() -> bool:
    """True in the one process that writes a stage's outputs and owns its MLflow run."""
    return process_rank() == 0


WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def world_size() -> int:
    """How many processes a launcher started for this run; 1 when none did."""
    return _launcher_int(WORLD_SIZE_VARIABLES, 1)


def setup_logging() -> None:
    level = os.environ.get("COMPLEXIF_LOG_LEVEL", "INFO").upper()
    if not is_main_process() and level in ("DEBUG", "INFO"):
        level = "WARNING"  # the other processes of a multi-process run would repeat every line
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    # Libraries that narrate every request or migration at INFO drown the stage's own progress.
    for noisy in (
        "httpx",
        "httpx2",
        "openai",
        "alembic",
        "mlflow",
        "great_expectations",
        "urllib3",
        "filelock",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


Launcher = Callable[[Params], int | None]


def run_stage(
    name: str,
    body: Callable[[Params, Any], None],
    sections: Sequence[str],
    launcher: Launcher | None = None,
) -> None:
    """Load params, open the stage's MLflow run (logging ``sections`` of params) and run ``body``.

    User-fixable failures (bad params, bad data, a failed quality gate, LLM calls that cannot
    succeed, the budget cap) exit with status 1 and a readable message; anything else is a bug
    and keeps its traceback. A stop signal ends the stage cleanly (see :func:`stop_signals`)
    with status 128 + the signal's number (143 for SIGTERM, 130 for SIGINT) and one line.

    ``launcher``, given the params, may run the whole stage elsewhere (in several processes) and
    return that run's exit status, which becomes this process's; None runs it here. In a
    multi-process run only the main process (:func:`is_main_process`) opens the MLflow run: the
    others get a run object that logs nothing.
    """
    setup_logging()
    with stop_signals(name):
        try:
            _run_stage(name, body, sections, launcher)
        except StageStopped as exc:
            print(
                f"\n[{name}] stopped by {exc.signal_name}; no partial output was written, and "
                "finished LLM answers and training checkpoints are kept (a rerun resumes)",
                file=sys.stderr,
            )
            sys.exit(exc.exit_code)


def _run_stage(
    name: str,
    body: Callable[[Params, Any], None],
    sections: Sequence[str],
    launcher: Launcher | None,
) -> None:
    from complexif.llm.accounting import BudgetExceeded
    from complexif.llm.base import FatalBackendError
    from complexif.llm.session import TooManyFailures
    from complexif.quality.gate import GateFailed
    from complexif.tracking import StageRun, stage_run
    from complexif.tracking.inputs import log_stage_inputs

    try:
        params = load_params(os.environ.get("COMPLEXIF_PARAMS", "params.yaml"))
        if launcher is not None:
            status = launcher(params)
            if status is not None:
                sys.exit(status)
        logged = {s: params.model_dump(mode="json")[s] for s in sections}
        tracked = stage_run(name, logged) if is_main_process() else nullcontext(StageRun(name))
        with tracked as run:
            # What the stage reads, with DVC's hashes: lineage from data to this run.
            log_stage_inputs(run, name)
            body(params, run)
    except (
        GateFailed,
        ConfigError,
        DataError,
        BudgetExceeded,
        FatalBackendError,
        TooManyFailures,
    ) as exc:
        lead = {
            GateFailed: "stopped by the quality gate:\n",
            BudgetExceeded: "stopped: ",
            FatalBackendError: "LLM calls failed: ",
            TooManyFailures: "LLM calls failed: ",
        }.get(type(exc), "")
        print(f"\n[{name}] {lead}{exc}", file=sys.stderr)
        sys.exit(1)


def gate_records(
    records: list[dict[str, Any]],
    suite: str,
    params: Params,
    run: Any,
    artifact: str,
    columns: Sequence[str] = (),
) -> None:
    """Validate records with the suite's expectations before they are written; stop on failure.

    ``columns`` are the fields an empty file would have: with them, no records is judged by the
    suite's row-count expectation alone instead of failing every column check.
    """
    import pandas as pd

    from complexif.quality.gate import gate

    df = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=list(columns))
    from complexif.quality.gate import GateFailed

    result_path = Path(params.paths.gates_dir) / f"{suite}.json"
    try:
        result = gate(
            df,
            suite,
            expectations_dir=Path(params.paths.expectations_dir),
            result_path=result_path,
            artifact=artifact,
        )
    except GateFailed:
        # Attach the full validation result to the FAILED run before stopping.
        if result_path.exists():
            run.log_artifact(result_path)
        raise
    run.log_metrics(
        {f"gate.{suite}.rows": float(result.n_rows), f"gate.{suite}.seconds": result.duration_s}
    )
    run.log_artifact(result_path)


def write_gated(
    records: list[dict[str, Any]],
    path: str,
    suite: str,
    params: Params,
    run: Any,
    columns: Sequence[str] = (),
) -> None:
    """Gate, then write atomically: a file that fails its gate never appears on disk."""
    gate_records(records, suite, params, run, artifact=path, columns=columns)
    write_jsonl(path, records)
    log.info("wrote %d records to %s", len(records), path)
