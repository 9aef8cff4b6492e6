"""Start a Prefect worker for one of the ComplexIF work pools, in this clone.

    PREFECT_API_URL=http://prefect-host:4200/api python -m flows.worker gpu

The clone is where the stages of the runs this worker picks up are executed (the deployments'
pull step moves there through ``COMPLEXIF_CHECKOUT``). It must be a clean clone of the
repository with the git remote and a default DVC remote the other machines also reach; the
checks below say what is missing before the worker starts rather than in the middle of a run.
Give every worker its own clone.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from complexif.config import ConfigError, load_orchestration
from complexif.orchestration.deployments import CHECKOUT_ENV, pool_of, worker_command
from complexif.orchestration.git import GitError, git, remote_url, require_clean
from complexif.orchestration.remote import default_remote
from flows.stage import POOL_DEPLOYMENTS

REPO_ROOT = Path(__file__).resolve().parent.parent


def check_checkout(root: Path) -> list[str]:
    """What keeps ``root`` from serving as a worker's clone (empty when nothing does)."""
    problems: list[str] = []
    try:
        config = load_orchestration(root / "params.yaml")
    except ConfigError as exc:
        return [str(exc)]
    if config is None:
        return [f"{root}/params.yaml has no orchestration section"]
    try:
        git(root, "rev-parse", "--show-toplevel")
        remote_url(root, config.git_remote)
        require_clean(root, "the clone")
    except GitError as exc:
        problems.append(str(exc))
    if default_remote(root) is None:
        problems.append(
            f"{root} has no default DVC remote (dvc remote add -d NAME URL, or keep the "
            "project's and point it elsewhere with dvc remote modify --local)"
        )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.worker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("kind", choices=sorted(POOL_DEPLOYMENTS), help="which pool to serve")
    parser.add_argument("--name", help="worker name shown in the UI (default: Prefect's)")
    parser.add_argument(
        "--limit", type=int, default=None, help="most flow runs at once (default: no limit)"
    )
    args = parser.parse_args(argv)
    root = REPO_ROOT
    problems = check_checkout(root)
    if problems:
        print("cannot start a worker here:\n- " + "\n- ".join(problems), file=sys.stderr)
        return 2
    pool = pool_of(root, "flows/stage.py", POOL_DEPLOYMENTS[args.kind])
    env = {**os.environ, CHECKOUT_ENV: str(root)}
    command = worker_command(pool, name=args.name, limit=args.limit)
    print(f"{args.kind} worker on pool {pool}, stages run in {root}", flush=True)
    os.execvpe(command[0], command, env)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
