"""The InFoBench judge: YES/NO parsing and the multi-turn chat over a scripted backend."""

from __future__ import annotations

import pytest

from complexif.evaluation.infobench.data import load_infobench
from complexif.evaluation.infobench.judge import (
    Stop,
    input_block,
    judge_infobench,
    parse_yes_no,
)
from complexif.evaluation.infobench.metrics import drfr_metrics
from complexif.llm.base import ChatFailure, ChatRequest
from complexif.llm.prompts import PromptTemplate, load_template
from complexif.llm.step import ParseError
from tests.conftest import REPO_ROOT, gen_params
from tests.evaluation.infobench.conftest import judge_client

TEMPLATE = PromptTemplate(
    "judge.txt", "Judge this.\n${input_block}Text: $output\nQuestion: $question"
)
REPAIR = PromptTemplate(
    "repair.txt", "Your previous reply could not be used: $error\n\nAnswer with YES or NO only."
)
PARAMS = gen_params(8)


# ----------------------------------------------------------------------------------------------
# parse_yes_no


@pytest.mark.parametrize(
    "text, verdict",
    [
        ("yes.", True),
        ("YES", True),
        ("Yes, every line rhymes.", True),
        ("No, because the second paragraph is not a dialogue.", False),
        ("no", False),
        ("**YES**", True),
        ('  "No."', False),
        ("The answer is YES.", True),
        ("I would say NO here.", False),
    ],
)
def test_parse_yes_no_reads_verdicts(text, verdict):
    assert parse_yes_no(text) is verdict


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("Maybe", "neither YES nor NO"),
        ("the answer is yes", "neither YES nor NO"),  # lower case inside: not a verdict
        ("It is YES for the first part and NO for the second.", "both YES and NO"),
        ("Partly: YES and NO.", "both YES and NO"),
    ],
)
def test_parse_yes_no_rejects_unusable_answers(text, reason):
    with pytest.raises(ParseError, match=reason):
        parse_yes_no(text)


# ----------------------------------------------------------------------------------------------
# judge_infobench

ROWS = [
    {
        "id": "a",
        "input": "Lemons, sugar.",
        "output": "1. Squeeze.",
        "questions": ["A1?", "A2?", "A3?"],
    },
    {"id": "b", "input": "", "output": "A poem.", "questions": ["B1?", "B2?"]},
]


def by_item(requests: list[ChatRequest]) -> dict[str, list[str]]:
    """Each item's request ids in the order the backend saw them."""
    out: dict[str, list[str]] = {}
    for r in requests:
        out.setdefault(r.id.split("/")[0], []).append(r.id)
    return out


def scripted(replies: dict[str, list[str]]):
    """Answers each request id with its next scripted reply (a repair re-ask has the same id)."""
    pending = {k: list(v) for k, v in replies.items()}

    def script(request: ChatRequest) -> str:
        return pending[request.id].pop(0)

    return script


def test_the_chat_grows_turn_by_turn():
    replies = {
        "a/infobench/q1": ["YES"],
        "a/infobench/q2": ["No, not numbered."],
        "a/infobench/q3": ["yes"],
        "b/infobench/q1": ["NO"],
        "b/infobench/q2": ["Yes."],
    }
    client = judge_client(scripted(replies))
    result = judge_infobench(client, ROWS, TEMPLATE, REPAIR, PARAMS)

    requests = client.backend.requests
    # Round by round: every live chat's question k, then question k+1 (the client may order a
    # round's requests as it likes).
    assert by_item(requests) == {
        "a": ["a/infobench/q1", "a/infobench/q2", "a/infobench/q3"],
        "b": ["b/infobench/q1", "b/infobench/q2"],
    }
    assert [sorted(o.request_id for o in r.outputs) for r in result.rounds] == [
        ["a/infobench/q1", "b/infobench/q1"],
        ["a/infobench/q2", "b/infobench/q2"],
        ["a/infobench/q3"],
    ]
    by_id = {r.id: r for r in requests}
    first_a = TEMPLATE.render(
        input_block='Input:\n"""\nLemons, sugar.\n"""\n\n', output="1. Squeeze.", question="A1?"
    )
    assert by_id["a/infobench/q3"].messages == (
        {"role": "user", "content": first_a},
        {"role": "assistant", "content": "YES"},
        {"role": "user", "content": "A2?"},
        {"role": "assistant", "content": "No, not numbered."},
        {"role": "user", "content": "A3?"},
    )
    for k in (1, 2, 3):
        assert len(by_id[f"a/infobench/q{k}"].messages) == 2 * k - 1
        assert by_id[f"a/infobench/q{k}"].messages == by_id["a/infobench/q3"].messages[: 2 * k - 1]
    # No input: no Input section in the first turn.
    assert by_id["b/infobench/q1"].messages == (
        {"role": "user", "content": "Judge this.\nText: A poem.\nQuestion: B1?"},
    )
    assert {r.prompt_version for r in requests} == {TEMPLATE.version}
    assert {r.params for r in requests} == {PARAMS}

    assert result.answers == {"a": (True, False, True), "b": (False, True)}
    assert result.stops == {}
    assert result.chats["a"] == (
        *by_id["a/infobench/q3"].messages,
        {"role": "assistant", "content": "yes"},
    )
    assert result.counts() == {"in": 5, "out": 5, "dropped": {}}
    assert [r.n_in for r in result.rounds] == [2, 2, 1]
    assert result.prompt_version == TEMPLATE.version
    assert client.ledger.entries == []


def test_unusable_answer_is_reasked_then_stops_the_chat():
    replies = {
        "a/infobench/q1": ["YES"],
        "a/infobench/q2": ["Maybe", "It depends."],  # unusable, and still unusable re-asked
        "b/infobench/q1": ["Partly YES, partly NO", "NO"],  # unusable, then repaired
        "b/infobench/q2": ["YES"],
    }
    client = judge_client(scripted(replies))
    result = judge_infobench(client, ROWS, TEMPLATE, REPAIR, PARAMS)

    requests = client.backend.requests
    # Each re-ask has the id of the question it repairs; a's third question is never asked.
    assert by_item(requests) == {
        "a": ["a/infobench/q1", "a/infobench/q2", "a/infobench/q2"],
        "b": ["b/infobench/q1", "b/infobench/q1", "b/infobench/q2"],
    }
    asked, repair = [r for r in requests if r.id == "a/infobench/q2"]
    assert repair.messages[:-2] == asked.messages
    assert repair.messages[-2] == {"role": "assistant", "content": "Maybe"}
    assert repair.messages[-1]["content"].startswith(
        "Your previous reply could not be used: the reply says neither YES nor NO"
    )

    assert result.answers == {"a": (True, None, None), "b": (False, True)}
    stop = result.stops["a"]
    assert (stop.question, stop.kind) == (2, "parse_failed")
    assert "after one repair re-ask" in stop.reason
    [entry] = client.ledger.entries
    assert (entry.request_id, entry.kind, entry.attempts, entry.role) == (
        "a/infobench/q2",
        "parse_failed",
        2,
        "judge",
    )
    assert result.counts() == {"in": 4, "out": 3, "dropped": {"parse_failed": 1}}
    # A repaired chat goes on from the usable answer alone.
    [b2] = [r for r in requests if r.id == "b/infobench/q2"]
    assert b2.messages[1:] == (
        {"role": "assistant", "content": "NO"},
        {"role": "user", "content": "B2?"},
    )
    # The transcript ends on the question left unanswered.
    assert result.chats["a"][-1] == {"role": "user", "content": "A2?"}


def test_without_a_repair_template_an_unusable_answer_stops_at_once():
    client = judge_client(scripted({"b/infobench/q1": ["Perhaps"]}))
    result = judge_infobench(client, ROWS[1:], TEMPLATE, None, PARAMS)
    assert [r.id for r in client.backend.requests] == ["b/infobench/q1"]
    assert result.answers == {"b": (None, None)}
    assert result.stops["b"].kind == "parse_failed"
    assert client.ledger.entries[0].attempts == 1


class FailingJudge:
    """An LLM whose requests named in ``fail`` come back as ledger failures."""

    name = "failing-judge"

    def __init__(self, fail: set[str]) -> None:
        self.fail = fail

    def generate(self, requests, progress=True):
        from complexif.llm.base import ChatResponse

        return [
            ChatFailure(r.id, "request_failed", "HTTP 500", attempts=3)
            if r.id in self.fail
            else ChatResponse(r.id, "YES", self.name, "stop", 1, 1)
            for r in requests
        ]


def test_a_failed_request_stops_the_chat_and_is_counted_apart():
    rows = ROWS
    result = judge_infobench(FailingJudge({"a/infobench/q1"}), rows, TEMPLATE, REPAIR, PARAMS)
    assert result.answers == {"a": (None, None, None), "b": (True, True)}
    assert result.stops == {"a": Stop(1, "request_failed", "HTTP 500")}
    items = [
        _item("a", "Easy_set", 3),
        _item("b", "Hard_set", 2),
    ]
    metrics = drfr_metrics(items, result.answers, result.stops)
    assert metrics["counts"] == {
        "items": 2,
        "items_judged": 1,
        "questions": 5,
        "judged": 2,
        "yes": 2,
        "unparseable": 0,
        "failed": 1,
        "unasked": 2,
    }
    assert metrics["drfr"] == 1.0
    assert metrics["drfr_easy"] is None


def _item(item_id, subset, n):
    from complexif.evaluation.infobench.data import Item

    return Item(item_id, "Do it.", "", "Test", subset, tuple(f"Q{i}?" for i in range(n)))


def test_rows_are_checked():
    client = judge_client(scripted({}))
    with pytest.raises(ValueError, match="judge row 1: id 'a' repeats"):
        judge_infobench(client, [ROWS[0], ROWS[0]], TEMPLATE, REPAIR, PARAMS)
    with pytest.raises(ValueError, match=r"judge row 0 \(x\): no questions"):
        judge_infobench(client, [{**ROWS[0], "id": "x", "questions": []}], TEMPLATE, REPAIR, PARAMS)
    with pytest.raises(ValueError, match="judge row 0: missing field 'output'"):
        judge_infobench(
            client, [{"id": "x", "input": "", "questions": ["Q?"]}], TEMPLATE, REPAIR, PARAMS
        )
    assert client.backend.requests == []


def test_repository_template_renders_the_fixture(sample_path):
    """The shipped template takes exactly the judge's fields and puts the input where asked."""
    template = load_template(REPO_ROOT / "prompts", "eval/infobench_judge.txt")
    repair = load_template(REPO_ROOT / "prompts", "eval/judge_repair.txt")
    assert template.placeholders == {"input_block", "output", "question"}
    assert repair.placeholders == {"error"}
    item = {i.id: i for i in load_infobench(sample_path, split="train")}["fixture_easy_2"]
    [turn] = template.render_messages(
        input_block=input_block(item.input), output="OUTPUT TEXT", question=item.questions[0]
    )
    text = turn["content"]
    assert text.index(item.input) < text.index("OUTPUT TEXT") < text.index(item.questions[0])
    assert "YES" in text and "NO" in text
    no_input = template.render(input_block=input_block(""), output="OUTPUT TEXT", question="Q?")
    assert "Input:" not in no_input
