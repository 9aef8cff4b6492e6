"""The step runner (``complexif.llm.step``) through the real LLMClient: order, samples, the one
repair re-ask, the ledger, failures passed through, counts and reconciliation.

Most tests drive a scripted :class:`BatchBackend` (what it was asked is kept); the failure test
goes through a real loopback server that errors, as an API would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from complexif.llm.base import ChatRequest, ChatResponse
from complexif.llm.cache import request_key
from complexif.llm.openai_backend import OpenAIBackend
from complexif.llm.prompts import PromptTemplate
from complexif.llm.retry import RetryPolicy
from complexif.llm.server import serve_in_thread
from complexif.llm.step import (
    LLMStep,
    ParseError,
    answer_step,
    json_answer,
    run_step,
    template_prompt,
    text_answer,
    user_turn,
)
from tests.conftest import gen_params
from tests.llm.servers import ScriptedBackend, ScriptedResponder, build_app, llm_client
from tests.llm.servers import stats as server_stats

PARAMS = gen_params(16, seed=5)
ASK = PromptTemplate("ask.txt", "Question: $question")
REPAIR = PromptTemplate("json_repair.txt", "Not usable: $error. Only JSON please.")


def _ask(parse: Callable[[Any, str], Any], repair: PromptTemplate | None = None) -> LLMStep[Any]:
    return LLMStep(
        "ask",
        "teacher",
        ASK,
        prompt=template_prompt(ASK, lambda row: {"question": row["question"]}),
        parse=parse,
        repair=repair,
    )


def _asked(request: ChatRequest) -> str:
    return request.messages[0]["content"].removeprefix("Question: ")


def _shape(row: Any, value: Any) -> str:
    return value["response"]


def test_outputs_come_back_in_row_order_with_their_rows(tmp_path):
    # The client sorts a batch by prompt length; longest first here, so any mix-up shows.
    rows = [{"id": f"r{i}", "question": "why " * (5 - i)} for i in range(5)]
    backend = ScriptedBackend(lambda r: _asked(r).upper())
    result = run_step(llm_client(backend, tmp_path), _ask(text_answer), rows, PARAMS)
    assert [r.id for r in backend.requests] != [row["id"] for row in rows]  # it did reorder
    assert [o.row["id"] for o in result.outputs] == ["r0", "r1", "r2", "r3", "r4"]
    assert [o.request_id for o in result.outputs] == ["r0", "r1", "r2", "r3", "r4"]
    assert result.values == [row["question"].upper() for row in rows]
    assert result.counts() == {"in": 5, "out": 5, "dropped": {}}
    # The request carries the template's version: an edited prompt never hits old answers.
    assert {r.prompt_version for r in backend.requests} == {ASK.version}


def test_samples_are_requests_of_their_own_ids_and_seeds(tmp_path):
    rows = [{"id": "a", "question": "one"}, {"id": "b", "question": "two"}]
    backend = ScriptedBackend(lambda r: f"{_asked(r)} {r.params.seed}")
    client = llm_client(backend, tmp_path)
    result = run_step(client, _ask(text_answer), rows, PARAMS, samples=3)
    assert sorted((r.id, r.params.seed) for r in backend.requests) == [
        ("a#0", 5),
        ("a#1", 6),
        ("a#2", 7),
        ("b#0", 5),
        ("b#1", 6),
        ("b#2", 7),
    ]
    # Sample by sample, rows in order within a sample.
    assert [(o.request_id, o.sample, o.value) for o in result.outputs] == [
        ("a#0", 0, "one 5"),
        ("b#0", 0, "two 5"),
        ("a#1", 1, "one 6"),
        ("b#1", 1, "two 6"),
        ("a#2", 2, "one 7"),
        ("b#2", 2, "two 7"),
    ]
    assert result.counts() == {"in": 6, "out": 6, "dropped": {}}

    # Each sample is cached on its own: a fourth sample later asks only for the new ones.
    backend.requests.clear()
    again = run_step(client, _ask(text_answer), rows, PARAMS, samples=4)
    assert sorted(r.id for r in backend.requests) == ["a#3", "b#3"]
    assert again.values[:6] == result.values

    # One sample: the bare key and the seed as given.
    backend.requests.clear()
    single = run_step(client, _ask(text_answer), rows[:1], gen_params(16, seed=9))
    assert [(r.id, r.params.seed) for r in backend.requests] == [("a", 9)]
    assert single.outputs[0].sample == 0


def test_n_above_one_and_no_samples_are_refused(tmp_path):
    client = llm_client(ScriptedBackend(lambda r: "x"), tmp_path)
    rows = [{"id": "a", "question": "q"}]
    with pytest.raises(ValueError, match=r"step ask: one answer per request.*samples=2"):
        run_step(client, _ask(text_answer), rows, gen_params(16, n=2))
    with pytest.raises(ValueError, match="step ask: samples must be at least 1, got 0"):
        run_step(client, _ask(text_answer), rows, PARAMS, samples=0)


def test_a_parse_error_with_repair_gets_exactly_one_re_ask_then_the_ledger(tmp_path):
    def answer(request: ChatRequest) -> str:
        question = _asked(request)
        if len(request.messages) > 1:  # the repair re-ask
            return '{"response": "fixed"}' if question == "fixable" else "still not json"
        if question == "good":
            return 'Sure!\n```json\n{"response": "fine"}\n```'
        if question == "wrong shape":
            return '{"answer": "fine"}'
        return "I think the answer is fine."

    rows = [{"id": q, "question": q} for q in ("good", "fixable", "hopeless", "wrong shape")]
    backend = ScriptedBackend(answer)
    client = llm_client(backend, tmp_path)
    result = run_step(client, _ask(json_answer(_shape), repair=REPAIR), rows, PARAMS)

    assert [(o.row["id"], o.value) for o in result.outputs] == [
        ("good", "fine"),
        ("fixable", "fixed"),
    ]
    # 4 first answers, then one re-ask for each of the three that did not parse, no more.
    assert len(backend.requests) == 7
    re_asks = backend.requests[4:]
    assert sorted(r.id for r in re_asks) == ["fixable", "hopeless", "wrong shape"]
    hopeless = next(r for r in re_asks if r.id == "hopeless")
    assert hopeless.messages[1] == {"role": "assistant", "content": "I think the answer is fine."}
    assert hopeless.messages[2]["content"].startswith("Not usable: no JSON object")
    assert hopeless.prompt_version == f"{ASK.version}+{REPAIR.version}"
    assert "wrong shape" in next(r for r in re_asks if r.id == "wrong shape").messages[2]["content"]

    assert [(e.request_id, e.kind, e.attempts) for e in client.ledger.entries] == [
        ("hopeless", "parse_failed", 2),
        ("wrong shape", "parse_failed", 2),
    ]
    assert all("after one repair re-ask" in e.reason for e in client.ledger.entries)
    assert [f.request_id for f in result.failures] == ["hopeless", "wrong shape"]
    usage = client.meter.role("teacher")
    assert (usage.repairs, usage.failures) == (3, 2)
    assert result.counts() == {"in": 4, "out": 2, "dropped": {"parse_failed": 2}}


def test_a_parse_error_without_repair_is_ledgered_at_once(tmp_path):
    def number(row: Any, text: str) -> int:
        if not text.strip().isdigit():
            raise ParseError(f"not a number: {text!r}")
        return int(text)

    rows = [{"id": "a", "question": "7"}, {"id": "b", "question": "seven"}]
    backend = ScriptedBackend(_asked)
    client = llm_client(backend, tmp_path)
    result = run_step(client, _ask(number), rows, PARAMS)
    assert len(backend.requests) == 2  # no re-ask
    assert result.values == [7]
    assert [(e.request_id, e.kind, e.attempts) for e in client.ledger.entries] == [
        ("b", "parse_failed", 1)
    ]
    assert client.ledger.entries[0].reason == "not a number: 'seven'"
    assert client.meter.role("teacher").repairs == 0
    assert result.counts() == {"in": 2, "out": 1, "dropped": {"parse_failed": 1}}


def test_client_failures_pass_through_ledgered_once_and_never_re_asked(tmp_path):
    # A server that errors for "boom" (first ask) and for "boom later" (the repair re-ask).
    def answer(request: ChatRequest) -> str:
        question = _asked(request)
        if question == "boom" or (question == "boom later" and len(request.messages) > 1):
            raise RuntimeError("model crashed")
        return '{"response": "ok"}' if question == "fine" else "not json"

    with serve_in_thread(build_app(ScriptedResponder(answer), "scripted")) as url:
        backend = OpenAIBackend(
            "scripted",
            base_url=url,
            api_key="test",
            concurrency=4,
            rpm=None,
            tpm=None,
            timeout_s=10.0,
            retry=RetryPolicy(max_retries=0, base_s=0.01, max_s=0.05),
        )
        client = llm_client(backend, tmp_path)
        rows = [{"id": q, "question": q} for q in ("fine", "boom", "boom later")]
        result = run_step(client, _ask(json_answer(_shape), repair=REPAIR), rows, PARAMS)
        client.close()
        # fine, boom, boom later, then the one re-ask for boom later: boom is not re-asked.
        assert server_stats(url)["requests"] == 4
    assert result.values == ["ok"]
    assert [(f.request_id, f.kind) for f in result.failures] == [
        ("boom", "request_failed"),
        ("boom later", "request_failed"),
    ]
    # The client ledgered each failure; the step adds no second entry.
    assert [(e.request_id, e.kind) for e in client.ledger.entries] == [
        ("boom", "request_failed"),
        ("boom later", "request_failed"),
    ]
    assert all("HTTP 500" in e.reason for e in client.ledger.entries)
    assert result.counts() == {"in": 3, "out": 1, "dropped": {"request_failed": 2}}


def test_counts_add_up_across_samples_and_a_lost_answer_is_an_error(tmp_path):
    def answer(request: ChatRequest) -> str:
        return "not json" if request.params.seed == 6 else '{"response": "ok"}'

    rows = [{"id": "a", "question": "q"}, {"id": "b", "question": "r"}]
    client = llm_client(ScriptedBackend(answer), tmp_path)
    result = run_step(client, _ask(json_answer(_shape)), rows, PARAMS, samples=2)
    counts = result.counts()
    assert counts == {"in": 4, "out": 2, "dropped": {"parse_failed": 2}}
    assert counts["in"] == counts["out"] + sum(counts["dropped"].values())
    assert [f.request_id for f in result.failures] == ["a#1", "b#1"]

    class Forgetful:
        """An LLM that drops the last answer of every call."""

        name = "forgetful"

        def generate(self, requests, progress=True):
            return [ChatResponse(r.id, "x", self.name, "stop", 1, 1) for r in requests][:-1]

    with pytest.raises(RuntimeError, match="forgetful: 1 results for 2 requests"):
        run_step(Forgetful(), _ask(text_answer), rows, PARAMS)


def test_the_answer_step_asks_the_bare_prompt_so_earlier_cached_answers_still_hit(tmp_path):
    # Before the step runner, respond and IFEval sent exactly this request; its cache key must
    # not move, or every cached answer would be paid for again.
    backend = ScriptedBackend(lambda r: "fresh")
    client = llm_client(backend, tmp_path, role="student")
    rows = [{"id": "ins-1", "prompt": "Write a haiku."}, {"id": "ins-2", "prompt": "Say hi."}]
    before = [
        ChatRequest(row["id"], ({"role": "user", "content": row["prompt"]},), PARAMS)
        for row in rows[:1]
    ]
    assert client.cache is not None
    client.cache.put(
        request_key(client.model_id, before[0]),
        ChatResponse("ins-1", "cached haiku", "scripted", "stop", 3, 2),
    )
    result = run_step(client, answer_step("student"), rows, PARAMS)
    assert result.values == ["cached haiku", "fresh"]
    assert result.outputs[0].response.cached
    (asked,) = backend.requests
    assert asked == ChatRequest("ins-2", user_turn("Say hi."), PARAMS, prompt_version="")
