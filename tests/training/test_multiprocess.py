"""The SFT stage in two CPU processes (gloo, through the stage's own `accelerate launch`) trains
like one process on the same global batch, and only the main process writes.

Both runs are the real stage (``python -m stages.train_sft``) in a project folder of their own,
on the tiny model and the same 8 conversations: one process with 4 rows a step, and two with 2
each (global batch 4 both ways). Every process's file writes are recorded by an audit hook that a
``sitecustomize`` on the path installs, so a write by the second process is seen even where it
would leave the same bytes as the first's. A third case stops a two-process run with SIGTERM
after its first checkpoint and runs it again: it resumes there.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from complexif.config import deep_merge
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # two stage runs, four Python processes with torch: over a minute

WORDS = ["apple", "river", "stone", "cloud", "maple", "ocean", "tiger", "piano"]
STEPS = 6

# What the two runs share over the repo's params: a fixed 6-step run logged at every step, fp32
# (no autocast choice between machines), no general data, resumable checkpoints every 2 steps
# (so both processes write checkpoints and the main one removes them at the end), and the data in
# file order, so a step sees the same rows however they are split between processes.
COMMON = {
    "train": {
        "device": "cpu",
        "sft": {
            "max_steps": STEPS,
            "learning_rate": 1.0e-2,
            "gradient_accumulation_steps": 1,
            "max_length": 64,
            "warmup_steps": 0.0,
            "lr_scheduler_type": "constant",
            "logging_steps": 1,
            "precision": "float32",
            "checkpoint_steps": 2,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
            "general_data": {"ratio": 0.0},
        },
    },
    "build_data": {"curriculum": "easy_to_hard"},
}

# Records each write-like call (file opened for writing, directory made, rename, removal) with
# the path, for processes whose environment names an audit folder, one log per process, named by
# its rank ("none" for a process no launcher started: the stage as DVC runs it, the launcher).
# torch.save and safetensors write natively, unseen, but every output is also written through
# Python (the atomic temp folder or file, the JSON and CSV, the tokenizer files), so an output
# write by any process shows.
SITECUSTOMIZE = """
import os, sys
_dir = os.environ.get("COMPLEXIF_TEST_AUDIT_DIR")
if _dir:
    _rank = os.environ.get("RANK", "none")
    _fd = os.open(os.path.join(_dir, f"{_rank}-{os.getpid()}.log"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    _WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    _EVENTS = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree",
               "shutil.move", "os.link", "os.symlink"}

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            if not isinstance(path, (str, bytes, os.PathLike)):
                return
            if not (any(c in str(mode or "") for c in "wax+") or (flags or 0) & _WRITING):
                return
            paths = [path]
        elif event in _EVENTS:
            paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
        else:
            return
        for p in paths:
            os.write(_fd, (event + "\\t" + os.path.abspath(os.fsdecode(p)) + "\\n").encode())

    sys.addaudithook(_hook)
"""


def _records() -> list[dict]:
    return [
        {
            "id": f"s{i}",
            "messages": [
                {"role": "user", "content": f"Write the word {w} in capitals, twice."},
                {"role": "assistant", "content": f"{w.upper()} {w.upper()}"},
            ],
        }
        for i, w in enumerate(WORDS)
    ]


def _project(
    root: Path, model_dir: Path, num_processes: int, batch: int, steps: int = STEPS
) -> Path:
    shutil.copytree(model_dir, root / "models" / "base")
    (root / "data").mkdir()
    (root / "data" / "sft.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8"
    )
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    changes = deep_merge(
        COMMON,
        {
            "train": {
                "distributed": {"num_processes": num_processes, "main_process_port": 0},
                "sft": {"per_device_train_batch_size": batch, "max_steps": steps},
            }
        },
    )
    (root / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, changes)))
    return root


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _env(root: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "COMPLEXIF_LAUNCHED")
        and not k.startswith(("MLFLOW_", "ACCELERATE_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
        COMPLEXIF_PARAMS=str(root / "params.yaml"),
        COMPLEXIF_MLFLOW="0",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        # Two processes on a small machine: one thread each, as torchrun sets them.
        OMP_NUM_THREADS="1",
    )
    return env


STAGE = [sys.executable, "-m", "stages.train_sft"]


def _run(root: Path, hooks: Path, audit: Path) -> subprocess.CompletedProcess:
    audit.mkdir()
    env = _env(root)
    env["PYTHONPATH"] = os.pathsep.join([str(hooks), env["PYTHONPATH"]])
    env["COMPLEXIF_TEST_AUDIT_DIR"] = str(audit)
    return subprocess.run(STAGE, cwd=root, env=env, capture_output=True, text=True, timeout=900)


def _writes(audit: Path, root: Path) -> dict[str, set[str]]:
    """Project paths each rank wrote (by rank: "0", "1", "none")."""
    out: dict[str, set[str]] = {}
    for log in audit.glob("*.log"):
        rank = log.name.split("-")[0]
        for line in log.read_text(encoding="utf-8").splitlines():
            _, path = line.split("\t", 1)
            if Path(path).is_relative_to(root):
                out.setdefault(rank, set()).add(Path(path).relative_to(root).as_posix())
    return out


def _curve(root: Path) -> list[dict[str, float]]:
    with open(root / "reports" / "train_sft_loss.csv", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir) -> dict[int, dict]:
    base = tmp_path_factory.mktemp("multiprocess")
    hooks = base / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    out = {}
    for n, batch in [(1, 4), (2, 2)]:
        root = _project(base / f"p{n}", tiny_model_dir, n, batch)
        before = _files(root)
        done = _run(root, hooks, base / f"audit{n}")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
        out[n] = {
            "root": root,
            "new": _files(root) - before,
            "writes": _writes(base / f"audit{n}", root),
            "curve": _curve(root),
            # every figure of the training (metrics/train_sft.json has the headline only)
            "metrics": json.loads((root / "models" / "sft" / "train_metrics.json").read_text()),
            "log": done.stderr,
        }
    return out


def test_two_processes_ran_under_the_launcher_and_one_did_not(runs):
    assert set(runs[2]["writes"]) <= {"0", "1", "none"}
    assert "1" in runs[2]["writes"]  # the second process ran (it wrote its checkpoint state)
    assert "training in 2 processes" in runs[2]["log"]
    assert "training in" not in runs[1]["log"]
    assert set(runs[1]["writes"]) == {"none"}  # no launcher variables: trained in place


def test_loss_curves_of_one_and_two_processes_match(runs):
    one, two = runs[1]["curve"], runs[2]["curve"]
    steps = [float(s) for s in range(1, STEPS + 1)]
    assert [r["step"] for r in one] == steps
    assert [r["step"] for r in two] == steps
    loss1, loss2 = [r["loss"] for r in one], [r["loss"] for r in two]
    # Each step sees the same 4 rows either way, and the loss is averaged over the tokens of
    # all processes (TRL's default), so the gradients are the same sums taken in another order:
    # float32 rounding apart, the runs are one (measured: within 1e-7 relative). 1e-4 leaves room
    # for other CPUs' summation orders and is still well below what one step of training changes
    # (1.5e-3 and more here): a curve a step ahead or behind fails, and so does a global batch
    # of 8 (2 processes x 4 rows: 4.6e-4 off at the first step, measured).
    for a, b in zip(loss1, loss2, strict=True):
        assert b == pytest.approx(a, rel=1e-4)
    # The same descent: the loss falls at every step, in both runs.
    for loss in (loss1, loss2):
        assert all(b < a for a, b in zip(loss, loss[1:], strict=False)), loss
    assert runs[2]["metrics"]["n_examples"] == runs[1]["metrics"]["n_examples"] == len(WORDS)
    assert runs[2]["metrics"]["train_loss"] == pytest.approx(
        runs[1]["metrics"]["train_loss"], rel=1e-4
    )


def test_two_processes_write_one_copy_of_each_output_from_the_main_process(runs):
    two = runs[2]
    outputs = {"metrics/train_sft.json", "reports/train_sft_loss.csv"}
    model_files = {f for f in two["new"] if f.startswith("models/sft/")}
    # The default save is an adapter stack over models/base (train.sft.save: adapter).
    assert {
        "models/sft/complexif-model.json",
        "models/sft/adapters/sft/adapter_model.safetensors",
        "models/sft/adapters/sft/adapter_config.json",
        "models/sft/train_metrics.json",
    } <= model_files
    # Nothing else was left in the project: no second copy, no half-written temp file, no
    # checkpoint left behind (the main process removes them once every process is done).
    assert two["new"] == outputs | model_files
    assert two["new"] == runs[1]["new"]
    assert not list((two["root"] / CHECKPOINTS).iterdir())
    # The second process wrote only its share of the checkpoints (its RNG state), never an
    # output; the first wrote every output; the launching processes wrote nothing there.
    in_checkpoints = {f for f in two["writes"]["1"] if _in_checkpoints(f)}
    assert two["writes"]["1"] - in_checkpoints == set()
    # Its RNG state goes into each checkpoint (through torch.save, which writes natively and so
    # escapes the hook, but the folder it makes for it shows).
    assert any("/checkpoint-" in f for f in in_checkpoints)
    written_by_main = two["writes"]["0"]
    for folder in ("metrics/", "reports/", "models/sft"):
        assert any(f.startswith(folder) for f in written_by_main), folder
    assert two["writes"].get("none", set()) == set()


CHECKPOINTS = ".cache/complexif/checkpoints"


def _in_checkpoints(path: str) -> bool:
    """Under the checkpoint folder, or one of the folders made on the way to it."""
    return path.startswith(CHECKPOINTS + "/") or CHECKPOINTS.startswith(path)


def _weights(model_dir: Path) -> dict:
    """The model's weights as inference sees them: a stack loads with its adapters merged."""
    import torch

    from complexif.llm.stored_model import load_causal_lm

    return {
        k: v.detach().clone()
        for k, v in load_causal_lm(model_dir, torch.float32).state_dict().items()
    }


def test_the_two_process_model_is_the_one_process_model(runs):
    w1 = _weights(runs[1]["root"] / "models" / "sft")
    w2 = _weights(runs[2]["root"] / "models" / "sft")
    assert w1.keys() == w2.keys()
    base = _weights(runs[1]["root"] / "models" / "base")
    moved = [k for k in w1 if not (w1[k] == base[k]).all()]
    assert moved  # trained: the merged LoRA changed weights
    for k in moved:
        delta1, delta2 = w1[k] - base[k], w2[k] - base[k]
        # The same update, to float32 rounding (see above).
        assert (delta1 - delta2).norm() <= 1e-3 * delta1.norm(), k


def test_a_stopped_two_process_run_keeps_its_checkpoints_and_the_rerun_resumes(
    tmp_path, tiny_model_dir
):
    steps = 60
    root = _project(tmp_path / "p", tiny_model_dir, 2, 2, steps=steps)
    err = tmp_path / "stopped.err"
    with open(err, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            STAGE, cwd=root, env=_env(root), stdout=subprocess.DEVNULL, stderr=fh
        )
        try:
            # The first whole checkpoint (its trainer state is written last), then SIGTERM to
            # the stage as DVC started it: the launcher and the training processes are in
            # sessions of their own, so only this signal reaches them.
            pattern = f"{CHECKPOINTS}/sft-*/checkpoint-*/trainer_state.json"
            deadline = time.monotonic() + 600
            while not list(root.glob(pattern)) and proc.poll() is None:
                assert time.monotonic() < deadline, err.read_text()[-3000:]
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    log = err.read_text(encoding="utf-8")
    assert status == 128 + signal.SIGTERM, log[-3000:]
    assert "stopped by SIGTERM" in log
    assert not (root / "models" / "sft").exists() and not (root / "metrics").exists()
    states = [json.loads(p.read_text()) for p in root.glob(pattern)]
    assert states, "the stop removed the checkpoints"
    saved_step = max(s["global_step"] for s in states)
    assert saved_step < steps

    again = subprocess.run(
        STAGE, cwd=root, env=_env(root), capture_output=True, text=True, timeout=900
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from the last checkpoint" in again.stderr
    assert [r["step"] for r in _curve(root)] == [float(s) for s in range(1, steps + 1)]
    assert (root / "models" / "sft" / "adapters" / "sft" / "adapter_model.safetensors").is_file()
    assert not list((root / CHECKPOINTS).iterdir())
