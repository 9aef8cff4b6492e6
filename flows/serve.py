"""Serve the ComplexIF pipeline as a Prefect deployment, to be triggered from the Prefect UI.

From the repository root, in two terminals::

    prefect server start                     # API + UI on http://127.0.0.1:4200
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve

then open http://127.0.0.1:4200, go to Deployments -> ``complexif-pipeline/complexif`` ->
Run -> Custom run, and fill in the form (stages, force, params overrides, experiment name, ...;
each field is described there), or from a shell::

    prefect deployment run 'complexif-pipeline/complexif'
    prefect deployment run 'complexif-pipeline/complexif' -p force=true --param stages='["seeds"]'
    prefect deployment run 'complexif-pipeline/complexif' \\
        --params '{"params_overrides": {"train.sft.max_steps": 20}, "experiment_name": "short"}'

``python -m flows.serve`` keeps running: it polls for runs of the deployment and executes each
one in a subprocess of this checkout (same environment, working directory and git/DVC state).
Stop it with Ctrl-C.

The UI form is built by Prefect from the flow's signature (types and defaults) and the
``Args:`` section of its Google-style docstring (field descriptions); see
:func:`flows.pipeline.complexif_pipeline`. The deployment's default ``workdir`` is this
checkout's absolute path, so runs do not depend on the runner's working directory.

Only one flow run executes at a time (``--max-concurrent-runs 1``, a Prefect deployment
concurrency limit; further runs wait as "AwaitingConcurrencySlot"): two runs in one DVC
workspace would fight over DVC's repository lock and over the files themselves. To also cap GPU
or LLM-API work across deployments, create the tag limits of ``orchestration.concurrency_limits``
(``python -m flows.setup --no-deploy``).

This serves the pipeline from one checkout. To spread the stages over machines (work pools,
workers in their own clones, the DVC remote), see ``prefect.yaml`` and :mod:`flows.stage`.

Prefect keeps its own database under ``PREFECT_HOME`` (default ``~/.prefect``), separate from
MLflow's ``./mlflow.db``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect.types.entrypoint import EntrypointType

from flows.pipeline import FLOW_NAME, complexif_pipeline

DEPLOYMENT_NAME = "complexif"
REPO_ROOT = Path(__file__).resolve().parent.parent


def serve_options(
    *,
    name: str = DEPLOYMENT_NAME,
    workdir: str | Path = REPO_ROOT,
    max_concurrent_runs: int | None = 1,
) -> dict[str, Any]:
    """Keyword arguments for ``complexif_pipeline.serve``."""
    return {
        "name": name,
        "description": (
            "Reproduce the ComplexIF DVC pipeline (DVC skips up-to-date stages), or run a DVC "
            "experiment with params overrides."
        ),
        "tags": ["complexif"],
        # Deployment default; the form shows it and a run can change it.
        "parameters": {"workdir": str(Path(workdir).resolve())},
        "global_limit": max_concurrent_runs,
        # Import the flow as `flows.pipeline.complexif_pipeline` (this checkout is the working
        # directory of the served runs, so the package is importable there).
        "entrypoint_type": EntrypointType.MODULE_PATH,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m flows.serve",
        description=f"Serve the {FLOW_NAME!r} flow as a deployment (trigger runs from the UI).",
    )
    parser.add_argument("--name", default=DEPLOYMENT_NAME, help="deployment name")
    parser.add_argument(
        "--workdir", default=str(REPO_ROOT), help="default DVC project root of the runs"
    )
    parser.add_argument(
        "--max-concurrent-runs",
        type=int,
        default=1,
        help="flow runs allowed at once (default 1: DVC locks its workspace); 0 = unlimited",
    )
    args = parser.parse_args(argv)
    complexif_pipeline.serve(
        **serve_options(
            name=args.name,
            workdir=args.workdir,
            max_concurrent_runs=args.max_concurrent_runs or None,
        )
    )


if __name__ == "__main__":
    main()
