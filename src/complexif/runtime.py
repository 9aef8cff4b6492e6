"""What every DVC stage entry point shares: params, logging, the MLflow run, the quality gate,
and turning the errors a user can fix into a one-paragraph message instead of a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from complexif.config import ConfigError, Params, load_params
from complexif.io import DataError, write_jsonl

log = logging.getLogger("complexif.stage")


def setup_logging() -> None:
    level = os.environ.get("COMPLEXIF_LOG_LEVEL", "INFO").upper()
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


def run_stage(name: str, body: Callable[[Params, Any], None], sections: Sequence[str]) -> None:
    """Load params, open the stage's MLflow run (logging ``sections`` of params) and run ``body``.

    User-fixable failures (bad params, bad data, a failed quality gate, LLM calls that cannot
    succeed, the budget cap) exit with status 1 and a readable message; anything else is a bug
    and keeps its traceback.
    """
    from complexif.llm.accounting import BudgetExceeded
    from complexif.llm.base import FatalBackendError
    from complexif.llm.session import TooManyFailures
    from complexif.quality.gate import GateFailed
    from complexif.tracking import stage_run

    setup_logging()
    try:
        params = load_params(os.environ.get("COMPLEXIF_PARAMS", "params.yaml"))
        logged = {s: params.model_dump(mode="json")[s] for s in sections}
        with stage_run(name, logged) as run:
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
    records: list[dict[str, Any]], suite: str, params: Params, run: Any, artifact: str
) -> None:
    """Validate records with the suite's expectations before they are written; stop on failure."""
    import pandas as pd

    from complexif.quality.gate import gate

    df = pd.DataFrame.from_records(records) if records else pd.DataFrame()
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
    records: list[dict[str, Any]], path: str, suite: str, params: Params, run: Any
) -> None:
    """Gate, then write atomically: a file that fails its gate never appears on disk."""
    gate_records(records, suite, params, run, artifact=path)
    write_jsonl(path, records)
    log.info("wrote %d records to %s", len(records), path)
