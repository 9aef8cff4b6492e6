"""The curation stages over the API path, run as DVC would run them (``python -m stages.X``).

Acceptance of the API layer: pointed at a local server through params, respond and correct run to
completion, also with 20% injected faults, and their counts reconcile exactly; a stage killed with
``kill -9`` and re-run writes every row once and calls the server only for unfinished requests;
the budget cap stops a stage cleanly. Call counts are taken at the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from complexif.config import deep_merge
from complexif.io import read_jsonl, write_jsonl
from complexif.llm.responders import FixedLatencyResponder
from complexif.llm.server import serve_in_thread
from tests.conftest import REPO_ROOT
from tests.llm.servers import build_app
from tests.llm.servers import stats as server_stats

# Two constraints a tiny model's answer will fail, so the teacher is asked for fixes.
CONSTRAINTS = (["change_case:english_capital", "detectable_format:title"], [{}, {}])


def _instructions(n: int) -> list[dict]:
    ids, kwargs = CONSTRAINTS
    return [
        {
            "id": f"ins-{i:03d}",
            "prompt": f"Write a short note about topic {i}. Use all capital letters and a "
            "title in double angular brackets.",
            "instruction_id_list": ids,
            "kwargs": kwargs,
            "descriptions": [
                "Use all capital letters.",
                "Give it a title in double angular brackets.",
            ],
            "n_constraints": len(ids),
        }
        for i in range(n)
    ]


def _workspace(tmp_path: Path, n: int, base_url: str, model: str, **overrides) -> Path:
    """A project directory with params pointing both roles at ``base_url``."""
    ws = tmp_path / "ws"
    for folder in ("expectations", "prompts"):
        shutil.copytree(REPO_ROOT / folder, ws / folder)
    write_jsonl(ws / "data/instructions.jsonl", _instructions(n))
    # The timeout is well above a CPU batch's time (a client timeout on a request the server then
    # answers would be a retry no fault caused) and well below a hung request's 30 s.
    api = {"base_url": base_url, "timeout_s": 10.0, "max_retries": 8, "backoff_base_s": 0.05}
    api.update(overrides.pop("api", {}))
    role = {"backend": "openai", "model": model, "api": api}
    # One greedy answer per instruction: request counts below are per instruction.
    gen = {"max_new_tokens": 12, "n": 1, "temperature": 0.0}
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params = deep_merge(
        params,
        {
            "respond": {"student": {**role, "generation": gen}},
            "correct": {
                "strategy": "teacher",
                "max_rounds": 2,
                "teacher": {**role, "generation": gen},
            },
            "llm": {"progress": False},
        },
    )
    (ws / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, overrides)))
    return ws


def _env(tracking: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # This checkout's code, whatever is installed.
    env.update(PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]))
    env.update(COMPLEXIF_MLFLOW="0")
    if tracking is not None:
        env.update(
            COMPLEXIF_MLFLOW="1",
            MLFLOW_TRACKING_URI=f"sqlite:///{tracking / 'mlflow.db'}",
            COMPLEXIF_ARTIFACT_ROOT=str(tracking / "artifacts"),
        )
    return env


def _stage(
    ws: Path, name: str, check: bool = True, tracking: Path | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{name}"],
        cwd=ws,
        env=_env(tracking),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"stage {name} failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
    return proc


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve_cli(*args: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "complexif.cli", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url.removesuffix("/v1") + "/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start: {proc.communicate()[1].decode()[-3000:]}")
        time.sleep(0.2)


def _check_reconciled(ws: Path, n: int) -> None:
    responses = read_jsonl(ws / "data/responses.jsonl")
    ledger = read_jsonl(ws / "data/ledger/respond.jsonl")
    answered = [r["instruction_id"] for r in responses]
    failed = [e["request_id"] for e in ledger]
    assert len(answered) == len(set(answered))
    assert sorted(answered + failed) == [f"ins-{i:03d}" for i in range(n)]
    corrections = read_jsonl(ws / "data/corrections.jsonl")
    assert sorted(c["id"] for c in corrections) == sorted(r["id"] for r in responses)


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "20pct-faults"])
def test_respond_and_correct_through_complexif_serve_on_a_real_model(
    tmp_path, tiny_model_dir, faults
):
    fault_args = []
    if faults:
        fault_args = ["--fault-429", "0.05", "--fault-500", "0.05", "--fault-timeout", "0.05"]
        fault_args += ["--fault-malformed", "0.05"]
    proc, url = _serve_cli("--model", str(tiny_model_dir), "--name", "tiny", *fault_args)
    try:
        n = 24
        ws = _workspace(tmp_path, n, url, "tiny")
        _stage(ws, "respond")
        _stage(ws, "correct")
        stats = server_stats(url)
    finally:
        proc.terminate()
        proc.wait(30)
    _check_reconciled(ws, n)
    assert read_jsonl(ws / "data/ledger/respond.jsonl") == []
    assert read_jsonl(ws / "data/ledger/correct.jsonl") == []
    corrections = read_jsonl(ws / "data/corrections.jsonl")
    teacher_calls = sum(1 for c in corrections for a in c["trajectory"] if a["method"] == "teacher")
    assert teacher_calls >= n  # the random model fails both constraints: the teacher was asked
    assert all(a.get("error") is None for c in corrections for a in c["trajectory"])
    n_faults = sum(stats["faults"][k] for k in ("429", "500", "timeout", "malformed"))
    # Every request was answered once; each fault cost exactly one more request.
    assert stats["completed"] == n + teacher_calls
    assert stats["requests"] == stats["completed"] + n_faults
    if faults:
        assert n_faults >= 5


class GatedResponder:
    """Answers the instruction of "topic N" with ``answer for ins-N``; in the first phase it
    answers the first ``open_for`` requests and holds every later one (until the first phase
    ends), so a stage stopped meanwhile has had exactly those answers and is certainly not done.

    ``asked[phase]`` lists the instruction of every request whose body the server fully read,
    in arrival order: what the stage asked, whatever its connections did afterwards.
    """

    model = "echo"

    def __init__(self, open_for: int) -> None:
        self.open_for = open_for
        self.phase = "first"
        self.asked: dict[str, list[str]] = {"first": [], "second": []}

    def prompt_tokens(self, request) -> int:
        # The server's context check: words stand in for tokens, as in the echo double.
        return sum(len(m["content"].split()) for m in request.messages)

    async def respond(self, request):
        import asyncio
        import re

        from complexif.llm.base import ChatResponse

        topic = int(re.search(r"topic (\d+)\.", request.messages[-1]["content"]).group(1))
        ins_id = f"ins-{topic:03d}"
        phase = self.phase
        self.asked[phase].append(ins_id)
        if phase == "first" and len(self.asked[phase]) > self.open_for:
            while self.phase == "first":
                await asyncio.sleep(0.01)
        text = f"answer for {ins_id}"
        return ChatResponse(request.id, text, self.model, "stop", 1, len(text.split()))


def _stop_mid_stage(tmp_path: Path, responder: GatedResponder, url: str, n: int, signum: int):
    """Run respond until the server holds one request per client worker, then send ``signum``.

    Each worker sends its next request only after caching the previous answer, so once all of
    them wait on a held request nothing else is in flight: the first phase is complete.
    """
    concurrency = 4
    # A client timeout on a held request would be retried and blur the count: never here.
    api = {"concurrency": concurrency, "timeout_s": 3600.0}
    ws = _workspace(tmp_path, n, url, "echo", api=api)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.respond"],
        cwd=ws,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600  # a guard against a hang, not a measurement
    while len(responder.asked["first"]) < responder.open_for + concurrency:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the stage never reached the held requests"
        time.sleep(0.02)
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=600)
    responder.phase = "second"  # releases the held requests (their client is gone)
    assert len(responder.asked["first"]) == responder.open_for + concurrency
    return ws, proc.returncode, stderr


def _cached_instructions(ws: Path) -> list[str]:
    """The instruction of every answer in the response cache (answers name it)."""
    with contextlib.closing(sqlite3.connect(ws / ".cache/complexif/llm.sqlite")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT response FROM responses").fetchall()
    return sorted(json.loads(blob)["text"].removeprefix("answer for ") for (blob,) in rows)


def _rerun_asks_exactly_for_the_uncached(
    tmp_path: Path, ws: Path, responder: GatedResponder, n: int
) -> list[str]:
    """Rerun respond; check it asked once for every uncached instruction and for nothing else."""
    cached = _cached_instructions(ws)
    first = responder.asked["first"]
    answered_first = first[: responder.open_for]
    assert len(set(first)) == len(first)  # the first run asked each instruction once
    # Every cached answer is one the server gave; it had too few to finish the stage.
    assert 0 < len(cached) <= len(answered_first)
    assert set(cached) <= set(answered_first)

    rerun = _stage(ws, "respond", tracking=tmp_path)
    everything = [f"ins-{i:03d}" for i in range(n)]
    # The client says how many answers came from the cache and how many calls it retried.
    usage = re.search(r"respond/student: (\d+) calls, (\d+) cached, (\d+) retries", rerun.stderr)
    assert usage is not None, rerun.stderr[-3000:]
    calls, from_cache, retries = (int(g) for g in usage.groups())
    assert from_cache == len(cached) and calls == n - len(cached)
    second = responder.asked["second"]
    # Only the unfinished requests were sent again, each once (plus any retry the client made).
    assert set(second) == set(everything) - set(cached)
    assert len(second) == calls + retries
    responses = read_jsonl(ws / "data/responses.jsonl")
    assert sorted(r["instruction_id"] for r in responses) == everything
    assert len({r["id"] for r in responses}) == n
    assert all(r["response"] == f"answer for {r['instruction_id']}" for r in responses)
    return cached


def test_kill_9_mid_stage_then_rerun_calls_only_for_unfinished_requests(tmp_path):
    n = 150
    responder = GatedResponder(open_for=n // 3)
    with serve_in_thread(build_app(responder, "echo")) as url:
        ws, returncode, _ = _stop_mid_stage(tmp_path, responder, url, n, signal.SIGKILL)
        assert returncode == -signal.SIGKILL
        assert not (ws / "data/responses.jsonl").exists()  # no half-written output
        _rerun_asks_exactly_for_the_uncached(tmp_path, ws, responder, n)
    # The killed stage could not end its MLflow run; the rerun's start marked it KILLED.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "tags.mlflow.runName = 'respond'")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]


def test_sigterm_mid_stage_stops_cleanly_then_rerun_calls_only_for_unfinished_requests(
    tmp_path,
):
    from mlflow.tracking import MlflowClient

    n = 60
    responder = GatedResponder(open_for=n // 3)
    with serve_in_thread(build_app(responder, "echo")) as url:
        # The stage's main thread is blocked waiting on the client's event loop thread, whose
        # requests the server holds forever: only the signal can end it.
        ws, returncode, stderr = _stop_mid_stage(tmp_path, responder, url, n, signal.SIGTERM)
        assert returncode == 128 + signal.SIGTERM, stderr[-3000:]
        for noise in ("Traceback", "Exception ignored", "Task was destroyed", "Error"):
            assert noise not in stderr, stderr[-3000:]
        assert "[respond] stopped by SIGTERM; no partial output was written" in stderr
        assert sorted(str(p.relative_to(ws)) for p in ws.rglob("*.tmp")) == []
        assert not (ws / "data/responses.jsonl").exists()
        assert read_jsonl(ws / "data/ledger/respond.jsonl") == []  # nothing failed
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        (stopped,) = client.search_runs(experiments, "tags.mlflow.runName = 'respond'")
        assert stopped.info.status == "KILLED"

        _rerun_asks_exactly_for_the_uncached(tmp_path, ws, responder, n)
    runs = client.search_runs(experiments, "tags.mlflow.runName = 'respond'")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]


def test_budget_cap_stops_the_stage_cleanly_and_a_rerun_continues(tmp_path):
    n = 20
    with serve_in_thread(build_app(FixedLatencyResponder(0.0, text="word " * 20), "echo")) as url:
        # Each call: 12 tokens answered at $1/12 a token = $1; the budget allows 5.
        prices = {"echo": {"input": 0.0, "output": 1e6 / 12}}
        ws = _workspace(
            tmp_path,
            n,
            url,
            "echo",
            api={"concurrency": 1},
            llm={"prices": prices, "budget_usd": 5.5},
        )
        proc = _stage(ws, "respond", check=False)
        assert proc.returncode == 1
        assert "budget cap of $5.50 reached" in proc.stderr
        assert "raise llm.budget_usd and re-run" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert server_stats(url)["requests"] == 5
        ledger = read_jsonl(ws / "data/ledger/respond.jsonl")
        assert len(ledger) == n - 5 and {e["kind"] for e in ledger} == {"budget_exhausted"}
        assert len(read_jsonl(ws / "data/responses.jsonl")) == 5  # what was done is kept

        params = yaml.safe_load((ws / "params.yaml").read_text())
        params["llm"]["budget_usd"] = 100.0
        (ws / "params.yaml").write_text(yaml.safe_dump(params))
        _stage(ws, "respond")
        assert (
            server_stats(url)["requests"] == n
        )  # 15 new calls; the 5 paid answers came from the cache
    assert len(read_jsonl(ws / "data/responses.jsonl")) == n
    assert read_jsonl(ws / "data/ledger/respond.jsonl") == []


def test_unreachable_server_fails_the_stage_with_the_ledger_written(tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    ws = _workspace(tmp_path, 6, url, "echo", api={"max_retries": 1, "backoff_base_s": 0.01})
    proc = _stage(ws, "respond", check=False)
    assert proc.returncode == 1
    assert "6 of 6 requests failed" in proc.stderr and "Traceback" not in proc.stderr
    ledger = read_jsonl(ws / "data/ledger/respond.jsonl")
    assert len(ledger) == 6 and all("connection error" in e["reason"] for e in ledger)
    assert json.loads(json.dumps(ledger[0]))["attempts"] == 2


def test_correct_with_json_teacher_repairs_once_then_ledgers_parse_failures(tmp_path):
    from tests.llm.servers import ScriptedResponder

    def answer(request) -> str:
        first = request.messages[0]["content"]
        if "### Instruction" not in first:  # the student
            return "a plain answer, in lower case"
        topic = int(first.split("topic ")[1].split(".")[0])
        if len(request.messages) > 1:  # the repair re-ask: odd topics get it right the 2nd time
            return '{"response": "<<FIXED>>\\nALL CAPS"}' if topic % 2 else "sorry, no JSON"
        if topic % 3 == 0:  # fenced JSON after chatter: parsed on the first try
            return 'Here you go:\n```json\n{"response": "<<TITLE>>\\nALL CAPS NOW"}\n```'
        return "Revised answer: <<TITLE>> ALL CAPS"  # not JSON: gets one repair re-ask

    n = 12
    with serve_in_thread(build_app(ScriptedResponder(answer, model="scripted"), "scripted")) as url:
        ws = _workspace(
            tmp_path, n, url, "scripted", correct={"teacher_output": "json", "max_rounds": 1}
        )
        _stage(ws, "respond")
        _stage(ws, "correct", tracking=tmp_path)
        stats = server_stats(url)
    corrections = read_jsonl(ws / "data/corrections.jsonl")
    assert len(corrections) == n  # no row lost, whatever the teacher did
    ledger = read_jsonl(ws / "data/ledger/correct.jsonl")
    # Topics 0..11: 0,3,6,9 parse at once; of the rest, odd ones are repaired, even ones fail.
    failing_topics = [t for t in range(n) if t % 3 and t % 2 == 0]
    assert len(ledger) == len(failing_topics)
    assert {e["kind"] for e in ledger} == {"parse_failed"}
    assert all("after one repair re-ask" in e["reason"] for e in ledger)
    by_topic = {int(c["prompt"].split("topic ")[1].split(".")[0]): c for c in corrections}
    for topic, c in by_topic.items():
        teacher = [a for a in c["trajectory"] if a["method"] == "teacher"]
        assert len(teacher) == 1
        if topic in failing_topics:
            assert teacher[0]["error"].startswith("parse_failed")
        else:
            assert teacher[0]["error"] is None and teacher[0]["response"].startswith("<<")
    repairs = n - n // 3  # every first answer that was not fenced JSON got one re-ask
    assert stats["requests"] == n + n + repairs

    # Usage per role, the ledger counts and the ledger itself are in the stage's MLflow run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.mlflow.runName = 'correct'",
    )
    m = run.data.metrics
    assert m["llm.teacher.requests"] == n + repairs
    assert m["llm.teacher.failures"] == len(failing_topics)
    assert m["ledger.parse_failed"] == len(failing_topics)
    assert m["llm.teacher.completion_tokens"] > 0
    assert "correct.jsonl" in {a.path for a in client.list_artifacts(run.info.run_id)}
