"""The MLflow tracking server as a service: one database and one artifact store that every
machine logs to (workers set ``MLFLOW_TRACKING_URI=http://HOST:PORT``).

    python -m complexif.tracking.server                       # sqlite + ./mlflow-server/artifacts
    python -m complexif.tracking.server --host 0.0.0.0 --allowed-hosts tracking.internal:5000 \\
        --backend-store-uri postgresql://mlflow@db/mlflow --artifacts-destination s3://bucket/mlflow

The server proxies artifact uploads (``--serve-artifacts``), so workers need only its URL, not
access to its disk or bucket. Runs logged without a server keep going to ``./mlflow.db``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIR = Path("mlflow-server")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


def server_command(
    *,
    backend_store_uri: str,
    artifacts_destination: str,
    host: str,
    port: int,
    allowed_hosts: Sequence[str],
) -> list[str]:
    """``mlflow server`` with a database, a proxied artifact store and the hosts it answers."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts_destination,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if allowed_hosts:
        command += ["--allowed-hosts", ",".join(allowed_hosts)]
    return command


def _uri(value: str | None, default: Path, sqlite: bool = False) -> str:
    if value:
        return value
    path = default.resolve()
    return f"sqlite:///{path}" if sqlite else path.as_uri()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m complexif.tracking.server", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help="where the default sqlite database and artifacts live (default: ./mlflow-server)",
    )
    parser.add_argument("--backend-store-uri", help="database URI (default: sqlite in --dir)")
    parser.add_argument("--artifacts-destination", help="artifact store URI (default: in --dir)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="0.0.0.0 to serve other machines")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--allowed-hosts",
        default="",
        help="comma-separated Host headers accepted besides localhost (the name workers use)",
    )
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    command = server_command(
        backend_store_uri=_uri(args.backend_store_uri, args.dir / "mlflow.db", sqlite=True),
        artifacts_destination=_uri(args.artifacts_destination, args.dir / "artifacts"),
        host=args.host,
        port=args.port,
        allowed_hosts=[h for h in args.allowed_hosts.split(",") if h],
    )
    print(f"MLflow tracking server: export MLFLOW_TRACKING_URI=http://{args.host}:{args.port}")
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
