"""The train stages' launcher, without training: which command ``accelerate launch`` gets (read
back by accelerate's own parser and checks), when a stage launches at all, how the launcher's
status and stop signals come back, and that only the main process tracks and writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from complexif.config import ConfigError
from complexif.runtime import StageStopped, is_main_process, process_rank, run_stage, world_size
from complexif.training import launch
from complexif.training.common import TrainResult
from complexif.training.launch import LAUNCHED_ENV, launch_command, relaunch, wants_launcher
from complexif.training.report import log_training
from tests.conftest import REPO_ROOT, repo_params, updated

CONFIGS = REPO_ROOT / "configs" / "accelerate"
LAUNCHER_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "MV2_COMM_WORLD_RANK",
    "MV2_COMM_WORLD_SIZE",
    LAUNCHED_ENV,
)


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    """Each test starts as a process no launcher started (whatever runs pytest)."""
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _distributed(**changes):
    return updated(repo_params().train.distributed, **changes)


def _params(**changes):
    params = repo_params()
    train = params.train.model_copy(update={"distributed": _distributed(**changes)})
    return params.model_copy(update={"train": train})


def _parsed(cmd: list[str]):
    """``cmd`` as accelerate launch reads and validates it (no process is started)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    args = launch_command_parser().parse_args(cmd[3:])
    validated, _, _ = _validate_launch_command(args)
    return validated


def test_shipped_params_train_in_one_process():
    cfg = repo_params().train.distributed
    assert cfg.num_processes == 1 and cfg.config_file is None
    assert not wants_launcher(cfg)


def test_several_processes_or_an_accelerate_config_launch():
    assert wants_launcher(_distributed(num_processes=2))
    # A DeepSpeed or FSDP config on one GPU (CPU offload) still needs the launcher.
    assert wants_launcher(_distributed(config_file="configs/accelerate/fsdp.yaml"))


def test_plain_ddp_command_runs_the_stage_module_under_torchrun_without_autocast():
    cmd = launch_command(
        _distributed(num_processes=2, main_process_port=29511),
        ["--module", "stages.train_sft"],
        "/venv/bin/python",
    )
    assert cmd == [
        "/venv/bin/python",
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--multi_gpu",
        "--num_machines",
        "1",
        "--dynamo_backend",
        "no",
        "--mixed_precision",
        "no",
        "--main_process_port",
        "29511",
        "--module",
        "stages.train_sft",
    ]
    args = _parsed(cmd)
    # --multi_gpu is what selects torchrun (several processes, CPU-only machines included);
    # --cpu would select the one-process launcher.
    assert args.multi_gpu and not args.cpu and not args.use_fsdp and not args.use_deepspeed
    assert args.num_processes == 2 and args.num_machines == 1
    assert args.module and args.training_script == "stages.train_sft"
    assert args.mixed_precision == "no" and args.main_process_port == 29511


def test_port_is_left_to_accelerate_when_null():
    cmd = launch_command(_distributed(num_processes=3), ["stage.py"], "python")
    assert "--main_process_port" not in cmd
    assert _parsed(cmd).num_processes == 3


@pytest.mark.parametrize(
    ("config", "kind"),
    [("fsdp.yaml", "use_fsdp"), ("deepspeed_zero2.yaml", "use_deepspeed")],
)
def test_shipped_accelerate_configs_parse_and_leave_processes_and_precision_to_params(config, kind):
    path = str(CONFIGS / config)
    cmd = launch_command(
        _distributed(num_processes=4, config_file=path), ["--module", "stages.train_dpo"], "py"
    )
    assert cmd[cmd.index("--config_file") + 1] == path
    assert "--multi_gpu" not in cmd  # the config file says how
    args = _parsed(cmd)
    assert getattr(args, kind)
    assert args.num_processes == 4  # train.distributed.num_processes, not the file
    assert args.mixed_precision == "no"  # train.*.precision decides
    text = Path(path).read_text(encoding="utf-8")
    assert "\nnum_processes:" not in text and "\nmixed_precision:" not in text


def test_fsdp_config_gathers_whole_weights_for_the_merge():
    args = _parsed(
        launch_command(
            _distributed(num_processes=2, config_file=str(CONFIGS / "fsdp.yaml")), ["s.py"], "py"
        )
    )
    assert args.fsdp_state_dict_type == "FULL_STATE_DICT"


def test_deepspeed_config_is_zero_stage_2():
    args = _parsed(
        launch_command(
            _distributed(num_processes=2, config_file=str(CONFIGS / "deepspeed_zero2.yaml")),
            ["s.py"],
            "py",
        )
    )
    assert args.zero_stage == 2


def test_one_process_trains_here(monkeypatch):
    monkeypatch.setattr(launch, "run_launcher", _refuse)
    assert relaunch(_params()) is None


def _refuse(*args, **kwargs):
    raise AssertionError("nothing should be launched")


def test_launch_reruns_this_stage_marked_as_launched_and_returns_its_status(monkeypatch):
    seen = {}

    def fake_run(cmd, env):
        seen.update(cmd=cmd, env=env)
        return 5

    monkeypatch.setattr(launch, "run_launcher", fake_run)
    monkeypatch.setattr(launch, "stage_target", lambda: ["--module", "stages.train_sft"])
    assert relaunch(_params(num_processes=2)) == 5
    assert seen["cmd"][0] == sys.executable
    assert seen["cmd"][-2:] == ["--module", "stages.train_sft"]
    assert seen["cmd"][seen["cmd"].index("--num_processes") + 1] == "2"
    assert seen["env"][LAUNCHED_ENV] == "1"
    assert seen["env"]["PATH"] == os.environ["PATH"]


@pytest.mark.parametrize(
    "env",
    [
        {LAUNCHED_ENV: "1"},
        {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "2"},
        {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"},
    ],
)
def test_a_launched_process_trains_instead_of_launching_again(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(launch, "run_launcher", _refuse)
    assert relaunch(_params(num_processes=2)) is None


def test_a_launch_of_another_size_warns_about_the_global_batch(monkeypatch, caplog):
    for name, value in {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(launch, "run_launcher", _refuse)
    with caplog.at_level("WARNING"):
        assert relaunch(_params(num_processes=2)) is None
    assert "num_processes is 2, but the launcher started 4 processes" in caplog.text


def test_a_missing_accelerate_config_is_a_config_error_naming_the_key(monkeypatch, tmp_path):
    monkeypatch.setattr(launch, "run_launcher", _refuse)
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"train\.distributed\.config_file: .*nope\.yaml"):
        relaunch(_params(num_processes=2, config_file=missing))


def test_stage_target_names_the_module_python_ran(tmp_path):
    package = tmp_path / "probes"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    script = package / "stage.py"
    script.write_text(
        "import json\n"
        "from complexif.training.launch import stage_target\n"
        "print(json.dumps(stage_target()))\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}

    def target(*how: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, *how], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert target("-m", "probes.stage", "--x", "1") == ["--module", "probes.stage", "--x", "1"]
    assert target(str(script)) == [str(script.resolve())]


# --------------------------------------------------------------------------------------------
# Running the launcher: status and stop signals


def test_launcher_status_becomes_the_stage_status():
    assert launch.run_launcher([sys.executable, "-c", "import sys; sys.exit(3)"], os.environ) == 3
    assert launch.run_launcher([sys.executable, "-c", "pass"], os.environ) == 0
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert launch.run_launcher([sys.executable, "-c", killed], os.environ) == 128 + 9


CHILD = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def stop(signum, frame):
    (out / "got").write_text(signal.Signals(signum).name)
    sys.exit(7)
signal.signal(signal.SIGTERM, stop)
(out / "ready").write_text("")
time.sleep(60)
"""


def test_a_stop_signal_is_passed_to_the_launcher_once_then_stops_the_stage(tmp_path):
    def stop_when_ready():
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=stop_when_ready, daemon=True).start()
    with pytest.raises(StageStopped) as stopped:
        launch.run_launcher([sys.executable, "-c", CHILD, str(tmp_path)], os.environ)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert (tmp_path / "got").read_text() == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before  # this process's handler is back


# --------------------------------------------------------------------------------------------
# Which process tracks and writes


@pytest.mark.parametrize(
    ("env", "rank", "size"),
    [
        ({}, 0, 1),
        ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, 1, 2),
        ({"PMI_RANK": "3", "PMI_SIZE": "4"}, 3, 4),
    ],
)
def test_rank_and_world_size_come_from_the_launcher_environment(monkeypatch, env, rank, size):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (process_rank(), world_size(), is_main_process()) == (rank, size, rank == 0)


@pytest.mark.parametrize(("rank", "tracked"), [("0", True), ("1", False), ("3", False)])
def test_only_the_main_process_opens_the_stage_run(monkeypatch, rank, tracked):
    from contextlib import contextmanager

    import complexif.tracking as tracking

    opened = []

    @contextmanager
    def recording_stage_run(stage, params):
        opened.append(stage)
        yield tracking.StageRun(stage=stage)

    monkeypatch.setattr(tracking, "stage_run", recording_stage_run)
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("COMPLEXIF_PARAMS", str(REPO_ROOT / "params.yaml"))
    runs = []
    run_stage("probe", lambda params, run: runs.append(run), ["train"])
    assert opened == (["probe"] if tracked else [])
    (run,) = runs
    assert not run.enabled and run.stage == "probe"


def test_a_launcher_status_ends_the_stage_before_its_body(monkeypatch):
    monkeypatch.setenv("COMPLEXIF_PARAMS", str(REPO_ROOT / "params.yaml"))
    monkeypatch.setenv("COMPLEXIF_MLFLOW", "0")
    ran = []
    with pytest.raises(SystemExit) as ended:
        run_stage("probe", lambda p, r: ran.append(1), ["train"], launcher=lambda params: 4)
    assert ended.value.code == 4 and ran == []
    # None: train here.
    run_stage("probe", lambda p, r: ran.append(1), ["train"], launcher=lambda params: None)
    assert ran == [1]


class _Run:
    def __init__(self) -> None:
        self.logged: list = []

    def log_metrics(self, metrics, step=None) -> None:
        self.logged.append(metrics)

    def log_artifact(self, path, artifact_path=None) -> None:
        self.logged.append(str(path))


@pytest.mark.parametrize(("rank", "writes"), [("0", True), ("1", False)])
def test_only_the_main_process_writes_metrics_and_curve(monkeypatch, tmp_path, rank, writes):
    monkeypatch.setenv("RANK", rank)
    run = _Run()
    result = TrainResult(metrics={"train_loss": 1.0}, history=[{"step": 1.0, "loss": 1.0}])
    log_training(
        run, result, str(tmp_path / "m.json"), str(tmp_path / "c.csv"), str(tmp_path / "d.json")
    )
    written = ["c.csv", "d.json", "m.json"] if writes else []
    assert sorted(p.name for p in tmp_path.iterdir()) == written
    assert bool(run.logged) is writes
