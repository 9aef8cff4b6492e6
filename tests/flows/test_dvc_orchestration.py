"""The DVC plumbing of the flows, without Prefect: stage discovery, commands, output parsing."""

from __future__ import annotations

import os
import pickle
import sys

import pytest

from complexif.orchestration.dvc import (
    RAN,
    RESTORED,
    UP_TO_DATE,
    StageFailedError,
    StageTracker,
    format_command,
    hydra_value,
    list_stages,
    override_strings,
    repro_command,
    run_streaming,
    select_stages,
    stage_base_name,
    stage_env,
)


def test_list_stages_expands_foreach_in_dependency_order(make_repo, py_cmd):
    # Defined out of order: `evaluate` (foreach) first, though it needs train_sft's output.
    repo = make_repo(
        {
            "evaluate": {
                "foreach": ["base", "sft"],
                "do": {
                    "cmd": py_cmd("open('eval_${item}.txt', 'w').write('x')"),
                    "deps": ["model.txt"],
                    "outs": ["eval_${item}.txt"],
                },
            },
            "seeds": {"cmd": py_cmd("open('seeds.txt', 'w').write('s')"), "outs": ["seeds.txt"]},
            "train_sft": {
                "cmd": py_cmd("open('model.txt', 'w').write('m')"),
                "deps": ["seeds.txt"],
                "outs": ["model.txt"],
            },
            "report": {"cmd": py_cmd("print(1)"), "deps": ["eval_base.txt", "eval_sft.txt"]},
        }
    )
    stages = list_stages(repo)
    assert stages == ["seeds", "train_sft", "evaluate@base", "evaluate@sft", "report"]

    assert select_stages(stages, None) == stages
    # A base name selects every foreach item; the result is in pipeline order.
    assert select_stages(stages, ["report", "evaluate", "seeds"]) == [
        "seeds",
        "evaluate@base",
        "evaluate@sft",
        "report",
    ]
    assert select_stages(stages, ["evaluate@sft"]) == ["evaluate@sft"]
    with pytest.raises(ValueError, match=r"unknown DVC stage\(s\) \['trian_sft'\].*train_sft"):
        select_stages(stages, ["trian_sft"])


def test_stage_base_name():
    assert stage_base_name("evaluate@dpo") == "evaluate"
    assert stage_base_name("train_sft") == "train_sft"
    assert stage_base_name("sub/dvc.yaml:evaluate@base") == "evaluate"


def test_commands():
    assert repro_command("respond")[-3:] == ["repro", "--single-item", "respond"]
    assert repro_command("respond", force=True)[-4:] == [
        "repro",
        "--single-item",
        "--force",
        "respond",
    ]
    assert format_command(repro_command("evaluate@base")) == "dvc repro --single-item evaluate@base"


def test_override_strings_types_and_nesting():
    strings = override_strings(
        {
            "train.sft.max_steps": 20,
            "train": {"dpo": {"beta": 0.1, "enabled": True}},
            "model.revision": None,
            "seeds.sources": ["a b", "c"],
            "compose.note": "it's",
            "respond.model": "20",
            "params.yaml:report.title": "x",
            "+new.key": 1,
        }
    )
    assert strings == [
        "train.sft.max_steps=20",
        "train.dpo.beta=0.1",
        "train.dpo.enabled=true",
        "model.revision=null",
        "seeds.sources=['a b', 'c']",
        "compose.note='it\\'s'",
        "respond.model='20'",  # a string stays a string
        "params.yaml:report.title='x'",
        "+new.key=1",
    ]
    assert hydra_value({"k": 1, "j": "v"}) == "{k: 1, j: 'v'}"
    assert hydra_value("ends with \\") == "'ends with \\\\'"
    for bad in ["", "a b", "x=1", ".lead"]:
        with pytest.raises(ValueError, match="invalid params override key"):
            override_strings({bad: 1})
    with pytest.raises(TypeError):
        hydra_value(object())


def test_stage_tracker_parses_dvc_output():
    tracker = StageTracker()
    for line in [
        "Reproducing experiment 'short'",
        "Stage 'seeds' didn't change, skipping",
        "Running stage 'train_sft':",
        "> python train.py",
        "Stage 'evaluate@base' is cached - skipping run, checking out outputs",
        "Running stage 'evaluate@sft':",
        "",
    ]:
        tracker.feed(line)
    assert tracker.finish(failed=False) is None
    assert tracker.statuses == {
        "seeds": UP_TO_DATE,
        "train_sft": RAN,
        "evaluate@base": RESTORED,
        "evaluate@sft": RAN,
    }
    assert set(tracker.durations) == set(tracker.statuses)

    failing = StageTracker()
    failing.feed("Running stage 'respond':")
    assert failing.finish(failed=True) == "respond"
    assert failing.statuses["respond"] == "failed"


def test_run_streaming_streams_lines_and_keeps_tail(tmp_path):
    code = (
        "import sys\n"
        "for i in range(50): print(f'line {i}')\n"
        "print('progress 10%\\rprogress 100%')\n"
        "print('oops', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    seen: list[str] = []
    result = run_streaming([sys.executable, "-c", code], cwd=tmp_path, on_line=seen.append)
    assert result.returncode == 3
    assert seen[0] == "line 0" and len(seen) == 52
    assert seen[-2:] == ["progress 100%", "oops"]  # \r updates collapse; stderr is merged
    assert result.tail[-1] == "oops" and len(result.tail) == 40

    error = StageFailedError("respond", [sys.executable, "-m", "dvc", "repro"], 3, result.tail)
    assert "DVC stage 'respond' failed with exit code 3" in str(error)
    assert "Command: dvc repro" in str(error)
    assert str(error).endswith("progress 100%\noops")
    copy = pickle.loads(pickle.dumps(error))  # Prefect may serialize a task's exception
    assert str(copy) == str(error) and copy.stage == "respond" and copy.returncode == 3


def test_stage_env_runs_stages_with_this_interpreter():
    env = stage_env({"PATH": "/usr/bin", "PYTHONUNBUFFERED": "0"})
    assert env["PYTHONUNBUFFERED"] == "0"  # the caller's setting wins
    if sys.prefix != sys.base_prefix:  # `python` in dvc.yaml resolves to this venv's
        assert env["PATH"] == os.path.dirname(sys.executable) + os.pathsep + "/usr/bin"
    assert stage_env(env)["PATH"] == env["PATH"]  # idempotent
