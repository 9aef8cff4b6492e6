"""``python -m flows.serve``: the deployment it creates, without starting a server."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from flows import serve
from flows.pipeline import FLOW_NAME, complexif_pipeline


def test_serve_options_fit_flow_serve(tmp_path):
    options = serve.serve_options(workdir=tmp_path)
    # Every option is an argument of Flow.serve (a typo would only fail at serve time).
    inspect.signature(complexif_pipeline.serve).bind(**options)
    assert options["name"] == "complexif"
    assert options["parameters"] == {"workdir": str(tmp_path.resolve())}
    assert options["global_limit"] == 1  # one run at a time per DVC workspace
    assert serve.REPO_ROOT == Path(__file__).resolve().parents[2]


def test_deployment_entrypoint_is_importable():
    options = serve.serve_options()
    deployment = complexif_pipeline.to_deployment(
        name=options["name"],
        parameters=options["parameters"],
        entrypoint_type=options["entrypoint_type"],
    )
    assert f"{FLOW_NAME}/{deployment.name}" == "complexif-pipeline/complexif"
    module, _, attr = deployment.entrypoint.rpartition(".")
    assert getattr(importlib.import_module(module), attr) is complexif_pipeline


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve.main(["--help"])
    assert exit_info.value.code == 0
    assert "--max-concurrent-runs" in capsys.readouterr().out
