"""Prepare a Prefect server for the ComplexIF deployments, in one command (idempotent).

    PREFECT_API_URL=http://prefect-host:4200/api python -m flows.setup

1. creates the work pools ``prefect.yaml`` names (process pools) that do not exist yet;
2. sets the tag concurrency limits of ``orchestration.concurrency_limits`` (params.yaml), e.g.
   ``gpu: 1`` (one training or evaluation at a time) and ``llm-api: 4``;
3. runs ``prefect deploy --all``: the pipeline deployment and the two stage deployments.

Then start workers (:mod:`flows.worker`) and trigger ``complexif-pipeline/complexif`` from the UI.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from complexif.config import load_orchestration
from complexif.orchestration.deployments import (
    deploy_command,
    deploy_env,
    ensure_concurrency_limits,
    ensure_work_pools,
    work_pools,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.setup", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--project", default=str(REPO_ROOT), help="repository root (prefect.yaml)")
    parser.add_argument(
        "--no-deploy", action="store_true", help="pools and limits only, no `prefect deploy`"
    )
    args = parser.parse_args(argv)
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        print(
            "PREFECT_API_URL is not set: point it at the Prefect server the workers use, e.g. "
            "http://127.0.0.1:4200/api (`prefect server start`)",
            file=sys.stderr,
        )
        return 2
    project = Path(args.project).resolve()
    config = load_orchestration(project / "params.yaml")
    if config is None:
        print(f"{project}/params.yaml has no orchestration section", file=sys.stderr)
        return 2
    pools = work_pools(project)
    with get_client(sync_client=True) as client:
        created = ensure_work_pools(client, pools)
        limits = ensure_concurrency_limits(client, config.concurrency_limits)
    print(f"work pools: {', '.join(pools)} ({', '.join(created) or 'none'} created)")
    print("tag concurrency limits: " + ", ".join(f"{t}={n}" for t, n in limits.items()))
    if args.no_deploy:
        return 0
    proc = subprocess.run(deploy_command(), cwd=project, env=deploy_env())
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
