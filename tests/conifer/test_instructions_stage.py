"""The ``conifer_instructions`` stage end to end against a loopback server with a scripted teacher.

The teacher recognises each step by its prompt (the step's template with the values cut out)
and answers as scripted: good answers, answers that need the one repair re-ask, answers that
never parse, "no" verdicts, a duplicate and benchmark text. The test then checks both output
files row by row, the funnel (every step, in = out + dropped, the scripted drop reasons in the
scripted numbers), the ledger, the MLflow metrics and the gates.
"""

from __future__ import annotations

import json
import re
import string
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from complexif.config import Params
from complexif.conifer.format_numerical import load_requirements
from complexif.conifer.levels import render_constraints
from complexif.ids import content_id
from complexif.io import read_jsonl, write_jsonl
from complexif.llm.base import ChatRequest
from complexif.llm.prompts import TURN, PromptTemplate, load_template
from complexif.llm.server import serve_in_thread
from stages import conifer_instructions as stage
from tests.conftest import REPO_ROOT, repo_params, updated
from tests.llm.servers import ScriptedResponder, build_app

IFEVAL = REPO_ROOT / "data" / "benchmarks" / "ifeval" / "input_data.jsonl"
STEPS = [
    "reframe",
    "filter_context",
    "constraints",
    "recombine",
    "format_numerical",
    "filter_conflict",
]


def _one_line_ifeval(skip: int) -> str:
    prompts = [r["prompt"] for r in read_jsonl(IFEVAL)]
    plain = [p for p in prompts if re.fullmatch(r"[A-Z][A-Za-z0-9 ,.'?-]{60,180}", p)]
    return plain[skip]


BENCH_QUERY = _one_line_ifeval(0)  # the teacher "reframes" a seed into a benchmark prompt
BENCH_SENTENCE = _one_line_ifeval(1)  # ... and recombines a query into one

SEEDS = {
    "seed-a": "Help me plan a vegetable garden for a small backyard",
    "seed-b": "Can you explain how compound interest works for savings accounts",
    "seed-c": "Tell me about the history of the printing press in Europe",
    "seed-d": "What should I pack for a week of hiking in the Alps",
    "seed-long": "Describe " + "a long and winding mountain road " * 7,
    "seed-short": "Hi there friend",
    "seed-fr": "Pouvez-vous m'expliquer comment les abeilles fabriquent le miel",
    "seed-dup": "help me plan a vegetable garden, for a small backyard!",
}

A1 = "Explain how to plan a vegetable garden for a small backyard, step by step."
A2 = "Describe which vegetables grow best in a small backyard garden and why."
A3 = "Summarise the attached document about small backyard gardens."
B1 = "Explain how compound interest grows a savings account over ten years."
B2 = "Compare compound interest with simple interest for a first savings account."
B3 = "Ponder whether compound interest matters when choosing a savings account."
D1 = "Describe what to pack for a week of hiking in the Alps in summer."

BASE = {
    "Tone": ["friendly", "formal", "encouraging"],
    "Audience": ["for complete beginners", "for retired readers", "for busy parents"],
    "Length": ["under 300 words", "about one page"],
    "Content": ["include one worked example", "mention a common mistake", "end with a checklist"],
    "Style": ["use plain words", "avoid jargon", "use short sentences"],
}
LISTS = {
    A1: BASE,
    A2: {**BASE, "Season": ["in spring", "in autumn"]},
    B2: {"Tone": ["friendly", "formal"], "Audience": ["for students", "for savers"]},
    D1: {**BASE, "Form": ["answer in one word only", "reply with a single word"]},
}
CONFLICT = ("one word only", "single word")  # filter 2 says no
UNDECIDABLE = ("in spring", "in autumn")  # filter 2 never gives a verdict


def _pattern(text: str) -> re.Pattern[str]:
    """A template's text as a regex that recovers the values it was rendered with."""
    text = text.strip()
    out, seen, pos = [], set(), 0
    for m in string.Template.pattern.finditer(text):
        name = m.group("named") or m.group("braced")
        out.append(re.escape(text[pos : m.start()]))
        if m.group("escaped"):
            out.append(re.escape("$"))
        elif name in seen:
            out.append(f"(?P={name})")
        else:
            out.append(f"(?P<{name}>.*?)")
            seen.add(name)
        pos = m.end()
    out.append(re.escape(text[pos:]))
    return re.compile("".join(out), re.DOTALL)


def _last_user_turn(template: PromptTemplate) -> str:
    parts = TURN.split(template.text)
    return parts[-1] if len(parts) > 1 else template.text


@dataclass
class Teacher:
    """The scripted teacher; ``final[step][subject]`` is what became of each thing it was asked
    about (``ok``, ``repaired``, ``failed``, ``yes``, ``no``, ...)."""

    params: Params
    final: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    answers: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    repairs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        c, prompts = self.params.conifer, self.params.paths.prompts_dir
        names = {s: getattr(c, s).template for s in STEPS}
        self.patterns = {
            s: _pattern(_last_user_turn(load_template(prompts, f"{c.prompts_dir}/{n}")))
            for s, n in names.items()
        }
        self.repair_patterns = [
            _pattern(load_template(prompts, f"{c.prompts_dir}/{c.repair_template}").text),
            _pattern(load_template(prompts, self.params.llm.json_repair_template).text),
        ]

    def __call__(self, request: ChatRequest) -> str:
        messages = request.messages
        repair = any(p.fullmatch(messages[-1]["content"].strip()) for p in self.repair_patterns)
        asked = messages[-3 if repair else -1]["content"].strip()
        found = [(s, m) for s, p in self.patterns.items() if (m := p.fullmatch(asked))]
        if len(found) != 1:
            raise AssertionError(f"the teacher does not recognise this prompt:\n{asked}")
        ((step, m),) = found
        if repair:
            self.repairs.append(step)
        answer: Callable[[dict[str, str], bool], tuple[str, str, str]] = getattr(self, step)
        subject, outcome, text = answer(m.groupdict(), repair)
        self.final[step][subject] = outcome
        self.answers[step][subject] = text
        return text

    # Each returns (subject, outcome, answer).

    def reframe(self, v: dict[str, str], repair: bool) -> tuple[str, str, str]:
        seed = v["seed"]
        if "vegetable garden" in seed:
            return seed, "ok", f"Here you go:\n1. {A1}\n2. {A2}\n3. **{A3}**\n"
        if "compound interest" in seed:
            if not repair:
                return seed, "asked_again", "Sure, I can help with that!"
            return seed, "repaired", f"1) {B1}\n2) {B2}\n3) {B3}"
        if "printing press" in seed:
            return seed, "failed", "I would rather not talk about that."
        if "hiking" in seed:  # a duplicate of another seed's query, and a benchmark prompt
            return seed, "ok", f"- {D1}\n- {A1}\n- {BENCH_QUERY}"
        raise AssertionError(f"seed {seed!r} should not have reached the teacher")

    def filter_context(self, v: dict[str, str], repair: bool) -> tuple[str, str, str]:
        q = v["query"]
        if "attached document" in q:
            return q, "no", "No."
        if q.startswith("Ponder"):
            return q, "failed", "Hard to say."
        if "hiking" in q and not repair:
            return q, "asked_again", "Definitely."
        return q, "yes", "yes" if repair else "Yes."

    def constraints(self, v: dict[str, str], repair: bool) -> tuple[str, str, str]:
        q = v["query"]
        good = json.dumps(LISTS.get(q, {}))
        if q == A1:
            return q, "ok", f"Sure:\n```json\n{good}\n```"
        if q == A2:
            if not repair:
                return q, "asked_again", good[:-1] + ', "Extra": ["x",]}'  # trailing comma
            return q, "repaired", good
        if q == B1:
            return q, "failed", "{'Tone': ['calm'], 'Audience': ['savers']}"  # never JSON
        if q == B2:
            return q, "ok", good
        if q == D1:
            if not repair:
                return q, "asked_again", '{"Tone": ["calm"]}'  # one category is not enough
            return q, "repaired", good
        raise AssertionError(f"query {q!r} should not have reached the constraint step")

    def recombine(self, v: dict[str, str], repair: bool) -> tuple[str, str, str]:
        q, cons = v["query"], v["constraints"]
        subject = f"{q}\n{cons}"
        rewritten = f"{q.rstrip('.')}, with these requirements: {_flat(cons)}."
        if q == A2 and not repair:
            return subject, "asked_again", q  # unchanged: the parse asks again
        if q == B2:
            return subject, "failed", "ok"
        if q == A1 and "- Content:" in cons:
            return subject, "benchmark", f"{BENCH_SENTENCE} {rewritten}"
        return subject, "repaired" if repair else "ok", f"**Rewritten instruction:** {rewritten}"

    def format_numerical(self, v: dict[str, str], repair: bool) -> tuple[str, str, str]:
        ins, rules = v["instruction"], v["rules"]
        subject = f"{ins}\n{rules}"
        if "hiking" in ins:
            return subject, "failed", "Fine."
        if ins.startswith(A2.rstrip(".")) and not repair:
            return subject, "asked_again", ins
        text = f"{ins} Also: {' '.join(r.removeprefix('- ') for r in rules.splitlines())}"
        return subject, "repaired" if repair else "ok", text

    def filter_conflict(self, v: dict[str, str], repair: bool) -> tuple[str, str, str]:
        ins = v["instruction"]
        if any(c in ins for c in CONFLICT):
            return ins, "no", "no"
        if any(c in ins for c in UNDECIDABLE):
            return ins, "failed", "It depends on the reader."
        return ins, "yes", "yes"


def _flat(constraints: str) -> str:
    return "; ".join(line.removeprefix("- ") for line in constraints.splitlines())


class RecordingRun:
    """What the stage logs to its MLflow run."""

    run_id = None

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.artifacts: list[str] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.update(metrics)

    def log_artifact(self, path: Any, artifact_path: str | None = None) -> None:
        self.artifacts.append(str(path))


def _params(tmp_path: Path, base_url: str) -> Params:
    data = tmp_path / "data"
    api = {"base_url": base_url, "timeout_s": 30.0, "max_retries": 2, "backoff_base_s": 0.05}
    return updated(
        repo_params(),
        paths={
            "seeds": str(data / "seeds.jsonl"),
            "conifer_queries": str(data / "conifer" / "queries.jsonl"),
            "conifer_instructions": str(data / "conifer" / "instructions.jsonl"),
            "ledger_dir": str(data / "ledger"),
            "reports_dir": str(tmp_path / "reports"),
            "gates_dir": str(tmp_path / "reports" / "gates"),
            "expectations_dir": str(REPO_ROOT / "expectations"),
            "prompts_dir": str(REPO_ROOT / "prompts"),
            "ifeval_input": str(IFEVAL),
            "followbench_dir": str(REPO_ROOT / "data" / "benchmarks" / "followbench"),
        },
        llm={
            "cache": {"enabled": True, "path": str(tmp_path / "cache" / "llm.sqlite")},
            "env_file": str(tmp_path / ".env"),
            "progress": False,
        },
        conifer={
            "teacher": {"backend": "openai", "model": "scripted", "api": api},
            "seeds": {"n": None},
            # Every leveled instruction gets a variant, so each scripted rewrite is exercised.
            "format_numerical": {"fraction": 1.0},
        },
    )


@pytest.fixture(scope="module")
def run_stage(tmp_path_factory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("conifer")
    write_jsonl(
        tmp_path / "data" / "seeds.jsonl",
        [{"id": k, "text": t, "source": "test", "category": None} for k, t in SEEDS.items()],
    )
    params = _params(tmp_path, "http://127.0.0.1:1/v1")
    teacher = Teacher(params)
    with serve_in_thread(build_app(ScriptedResponder(teacher), "scripted")) as url:
        params = _params(tmp_path, url)
        run = RecordingRun()
        stage.main(params, run)
    return {
        "params": params,
        "teacher": teacher,
        "run": run,
        "queries": read_jsonl(params.paths.conifer_queries),
        "instructions": read_jsonl(params.paths.conifer_instructions),
        "funnel": json.loads((tmp_path / "reports" / "funnel" / f"{stage.STAGE}.json").read_text()),
        "ledger": read_jsonl(tmp_path / "data" / "ledger" / f"{stage.STAGE}.jsonl"),
        "tmp": tmp_path,
    }


def _funnel(result: dict[str, Any]) -> dict[str, tuple[int, int, dict[str, int]]]:
    return {s["step"]: (s["n_in"], s["n_out"], s["dropped"]) for s in result["funnel"]["steps"]}


def _count(final: dict[str, str], *outcomes: str) -> int:
    return sum(1 for o in final.values() if o in outcomes)


def test_the_queries_file(run_stage) -> None:
    queries = run_stage["queries"]
    assert {q["query"] for q in queries} == {A1, A2, B2, D1}
    versions = {
        s: load_template(
            REPO_ROOT / "prompts", f"conifer/{getattr(repo_params().conifer, s).template}"
        ).version
        for s in STEPS
    }
    seed_of = {A1: "seed-a", A2: "seed-a", B2: "seed-b", D1: "seed-d"}
    for q in queries:
        assert set(q) == {"id", "seed_id", "query", "constraints", "prompt_versions"}
        assert q["id"] == content_id(q["seed_id"], q["query"], prefix="cq-")
        assert q["seed_id"] == seed_of[q["query"]]
        assert q["constraints"] == LISTS[q["query"]]  # the repaired answers, as parsed
        assert q["prompt_versions"] == {s: versions[s] for s in STEPS[:3]}


def test_the_instructions_file(run_stage) -> None:
    rows, queries = run_stage["instructions"], {q["id"]: q for q in run_stage["queries"]}
    assert rows, "nothing passed filter 2"
    lists = load_requirements(REPO_ROOT / "prompts" / "conifer" / "format_numerical.yaml")
    patterns = [
        re.compile(re.escape(t.text).replace(r"\{n\}", r"\d+") + "$")
        for ts in lists.values()
        for t in ts
    ]
    assert rows == sorted(rows, key=lambda r: (r["query_id"], r["level"], r["id"]))
    assert len({r["id"] for r in rows}) == len(rows)
    # One instruction per query and level (a query's levels pack into one conversation).
    assert len({(r["query_id"], r["level"]) for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == {
            "id", "query_id", "seed_id", "query", "level", "instruction", "constraints",
            "format_numerical", "prompt_versions",
        }  # fmt: skip
        q = queries[r["query_id"]]
        assert (r["seed_id"], r["query"]) == (q["seed_id"], q["query"])
        assert 1 <= r["level"] <= 5
        for cat, subs in r["constraints"].items():
            assert set(subs) <= set(q["constraints"][cat])
        # The teacher's rewrite as written, the bold label taken off.
        assert r["instruction"].startswith(r["query"].rstrip("."))
        assert "Rewritten instruction" not in r["instruction"]
        assert _flat(render_constraints(r["constraints"])) in r["instruction"]
        # Filter 2 and decontamination removed what they should have.
        assert not any(c in r["instruction"] for c in CONFLICT + UNDECIDABLE)
        assert BENCH_SENTENCE not in r["instruction"]
        assert set(r["prompt_versions"]) == set(STEPS)
        if r["format_numerical"]:
            assert r["id"].startswith("cfn-")
            assert len(r["format_numerical"]) in repo_params().conifer.format_numerical.counts
            assert all(any(p.match(x) for p in patterns) for x in r["format_numerical"])
            assert r["instruction"].endswith(" ".join(r["format_numerical"]))
        else:
            assert r["id"].startswith("cin-")
    # Levels of one query nest: a later level asks for everything an earlier one did.
    by_query: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if not r["format_numerical"]:
            by_query[r["query_id"]].append(r)
    for levels in by_query.values():
        for a, b in zip(levels, levels[1:], strict=False):
            assert a["level"] < b["level"]
            assert all(set(s) <= set(b["constraints"][c]) for c, s in a["constraints"].items())
    # Both plain levels and format/numerical variants came through.
    assert any(r["format_numerical"] for r in rows) and any(not r["format_numerical"] for r in rows)


def test_the_funnel_counts_every_step_and_the_scripted_drops(run_stage) -> None:
    f, t = _funnel(run_stage), run_stage["teacher"].final
    assert list(f) == [
        "seeds", "reframe", "queries", "filter_context", "constraints", "levels", "recombine",
        "format_numerical", "decontaminate", "filter_conflict", "one_per_level",
    ]  # fmt: skip
    for step, (n_in, n_out, dropped) in f.items():
        assert n_in == n_out + sum(dropped.values()), step
    assert f["seeds"] == (8, 4, {"duplicate": 1, "not_en": 1, "too_few_words": 1, "too_long": 1})
    assert f["reframe"] == (4, 3, {"parse_failed": 1})
    assert f["queries"] == (9, 7, {"contaminated": 1, "duplicate": 1})
    assert f["filter_context"] == (7, 5, {"needs_context": 1, "parse_failed": 1})
    assert f["constraints"] == (5, 4, {"parse_failed": 1})
    # Levels: what the teacher was asked to recombine; B2's two categories give 1-2 levels.
    planned = len(t["recombine"])
    b2_levels = sum(1 for s in t["recombine"] if s.startswith(B2))
    assert 1 <= b2_levels <= 2
    assert f["levels"] == (20, planned, {"too_few_categories": 20 - planned})
    recombined = planned - b2_levels
    assert f["recombine"] == (planned, recombined, {"parse_failed": b2_levels})
    variants_failed = _count(t["format_numerical"], "failed")
    assert variants_failed >= 1
    assert f["format_numerical"] == (
        recombined,
        recombined - variants_failed,
        {"parse_failed": variants_failed},
    )
    candidates = recombined + recombined - variants_failed
    benchmark = _count(t["recombine"], "benchmark")
    assert benchmark >= 1
    # A leveled instruction with benchmark text, and its variant, which repeats it.
    assert f["decontaminate"] == (
        candidates,
        candidates - 2 * benchmark,
        {"contaminated": 2 * benchmark},
    )
    n_no, n_failed = _count(t["filter_conflict"], "no"), _count(t["filter_conflict"], "failed")
    assert n_no >= 1 and n_failed >= 1
    judged = candidates - 2 * benchmark
    assert len(t["filter_conflict"]) == judged
    assert f["filter_conflict"] == (
        judged,
        judged - n_no - n_failed,
        {"parse_failed": n_failed, "unanswerable_or_conflicting": n_no},
    )
    passed = judged - n_no - n_failed
    # Where a level's variant and its plain instruction both passed, the variant stands for it.
    superseded = f["one_per_level"][2].get("superseded_by_variant", 0)
    assert f["one_per_level"] == (passed, passed - superseded, f["one_per_level"][2])
    assert len(run_stage["instructions"]) == passed - superseded


def test_each_step_had_an_answer_repaired(run_stage) -> None:
    repaired = set(run_stage["teacher"].repairs)
    assert repaired == set(STEPS)
    t = run_stage["teacher"].final
    assert _count(t["reframe"], "repaired") == 1
    assert _count(t["constraints"], "repaired") == 2
    assert _count(t["recombine"], "repaired") >= 1
    assert _count(t["format_numerical"], "repaired") >= 1


def test_the_ledger_names_every_dropped_request(run_stage) -> None:
    ledger, f = run_stage["ledger"], _funnel(run_stage)
    n_failed = sum(d.get("parse_failed", 0) for _, _, d in f.values())
    assert len(ledger) == n_failed
    assert {e["kind"] for e in ledger} == {"parse_failed"}
    assert all(e["stage"] == stage.STAGE and e["role"] == "teacher" for e in ledger)
    assert all(e["attempts"] == 2 and "after one repair re-ask" in e["reason"] for e in ledger)
    ids = [e["request_id"] for e in ledger]
    # Each request id names its step, so the ledger says where a row was lost.
    assert "seed-c/reframe" in ids
    assert content_id("seed-b", B3, prefix="cq-") + "/filter_context" in ids
    assert content_id("seed-b", B1, prefix="cq-") + "/constraints" in ids
    by_prefix = defaultdict(int)
    for i in ids:
        by_prefix[i.split("-")[0]] += 1
    # Recombination (B2's levels) and filter 2 of leveled rows; the rewrites and filter 2 of
    # the variants.
    assert by_prefix["cin"] + by_prefix["cfn"] == (
        f["recombine"][2]["parse_failed"]
        + f["format_numerical"][2]["parse_failed"]
        + f["filter_conflict"][2]["parse_failed"]
    )


def test_mlflow_gets_the_funnel_and_the_gates(run_stage) -> None:
    metrics, f = run_stage["run"].metrics, _funnel(run_stage)
    for step, (n_in, n_out, dropped) in f.items():
        assert metrics[f"funnel.{step}.in"] == n_in
        assert metrics[f"funnel.{step}.out"] == n_out
        for reason, n in dropped.items():
            assert metrics[f"funnel.{step}.dropped.{reason}"] == n
    assert metrics["gate.conifer_queries.rows"] == len(run_stage["queries"])
    assert metrics["gate.conifer_instructions.rows"] == len(run_stage["instructions"])
    assert metrics["ledger.parse_failed"] == len(run_stage["ledger"])
    gates = run_stage["tmp"] / "reports" / "gates"
    for suite in ("conifer_queries", "conifer_instructions"):
        assert json.loads((gates / f"{suite}.json").read_text())["success"] is True
        assert str(gates / f"{suite}.json") in run_stage["run"].artifacts
