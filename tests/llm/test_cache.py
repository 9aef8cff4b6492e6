"""The response cache: keys separate everything that changes an answer; writers can race."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import replace

from complexif.llm.base import ChatRequest, ChatResponse
from complexif.llm.cache import ResponseCache, request_key
from tests.conftest import gen_params

REQ = ChatRequest("a", ({"role": "user", "content": "hi"},), gen_params(8))


def test_key_ignores_the_request_id_but_not_what_changes_the_answer():
    base = request_key("m", REQ)
    assert request_key("m", replace(REQ, id="other")) == base
    variants = [
        request_key("m2", REQ),
        request_key("m", replace(REQ, messages=({"role": "user", "content": "hi!"},))),
        request_key("m", replace(REQ, params=replace(REQ.params, seed=1))),
        request_key("m", replace(REQ, params=replace(REQ.params, n=2))),
        request_key("m", replace(REQ, params=replace(REQ.params, temperature=0.7))),
        request_key("m", replace(REQ, params=replace(REQ.params, max_new_tokens=9))),
        request_key("m", replace(REQ, prompt_version="v2")),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_round_trip_keeps_every_field_and_marks_hits_cached(tmp_path):
    resp = ChatResponse("a", "one", "m", "length", 5, 7, choices=("one", "two"))
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put("k", resp)
        cache.put("k", replace(resp, text="later"))  # first answer wins
        got = cache.get("k")
        assert cache.get("missing") is None
        assert len(cache) == 1
    assert got == replace(resp, request_id="", cached=True)
    assert got.texts == ("one", "two")


def test_persists_across_connections(tmp_path):
    path = tmp_path / "sub" / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put("k", ChatResponse("a", "x", "m", "stop", 1, 1))
    with ResponseCache(path) as cache:
        assert cache.get_many(["k", "nope"])["k"].text == "x"


def test_get_many_handles_more_keys_than_sqlite_binds(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        for i in range(1200):
            cache.put(f"k{i}", ChatResponse("a", str(i), "m", "stop", 1, 1))
        found = cache.get_many([f"k{i}" for i in range(0, 1300)])
    assert len(found) == 1200 and found["k1199"].text == "1199"


def _writer(path: str, worker: int, n: int) -> None:
    with ResponseCache(path) as cache:
        for i in range(n):
            # Half the keys are shared by every worker, half are the worker's own.
            key = f"shared{i}" if i % 2 else f"w{worker}-{i}"
            cache.put(key, ChatResponse("a", f"{worker}:{i}", "m", "stop", 1, 1))


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "c.sqlite")
    workers, n = 4, 150
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, w, n)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    with ResponseCache(path) as cache:
        assert len(cache) == workers * (n // 2) + n // 2


def test_cache_cli_stats_and_clear(tmp_path, capsys):
    import json

    from complexif.cli import main

    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        for i in range(3):
            cache.put(f"a{i}", ChatResponse("r", "x", "teacher-model", "stop", 1, 1))
        cache.put("b", ChatResponse("r", "x", "student-model", "stop", 1, 1))
    assert main(["cache", "stats", "--path", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 4 and stats["bytes"] > 0
    assert {m: row["entries"] for m, row in stats["models"].items()} == {
        "student-model": 1,
        "teacher-model": 3,
    }
    assert main(["cache", "clear", "--path", str(path), "--model", "teacher-model"]) == 0
    assert "deleted 3 cached answers (model 'teacher-model')" in capsys.readouterr().out
    with ResponseCache(path) as cache:
        assert len(cache) == 1 and cache.get("b") is not None
    assert main(["cache", "stats", "--path", str(path)]) == 0
    assert "1 answers" in capsys.readouterr().out


def test_cache_cli_names_a_missing_cache(tmp_path, capsys):
    from complexif.cli import main

    assert main(["cache", "stats", "--path", str(tmp_path / "none.sqlite")]) == 2
    assert "none.sqlite: no response cache there yet" in capsys.readouterr().err


def test_a_cache_from_before_the_run_column_keeps_working(tmp_path):
    import json
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
        "response TEXT NOT NULL, created REAL NOT NULL)"
    )
    blob = json.dumps(
        {
            "text": "old",
            "model": "m",
            "finish_reason": "stop",
            "prompt_tokens": 1,
            "completion_tokens": 1,
        }
    )
    old.execute("INSERT INTO responses VALUES ('k-old', 'm', ?, 1700000000.0)", (blob,))
    old.commit()
    old.close()

    with ResponseCache(path, run="respond (MLflow run abc)") as cache:
        assert cache.get("k-old").text == "old"
        cache.put("k-new", ChatResponse("a", "new", "m", "stop", 1, 1))
        found = cache.get_many_with_origin(["k-old", "k-new"])
        assert found["k-old"][1].run is None and found["k-old"][1].created == 1700000000.0
        assert found["k-new"][1].run == "respond (MLflow run abc)"
        assert cache.stats()["models"]["m"]["runs"] == 1  # the old row has no run on record
    with ResponseCache(path) as cache:  # a second open finds the column already there
        assert len(cache) == 2 and cache.run != "respond (MLflow run abc)"


def test_each_open_is_its_own_writer_unless_named(tmp_path):
    with ResponseCache(tmp_path / "a.sqlite") as a, ResponseCache(tmp_path / "a.sqlite") as b:
        assert a.run != b.run
    with ResponseCache(tmp_path / "a.sqlite", run="correct (MLflow run x)") as c:
        assert c.run == "correct (MLflow run x)"
