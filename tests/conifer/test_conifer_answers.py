"""Conifer's answer and feedback steps: each prompt and parse on hand-made rows, then the whole
answering pass on a scripted backend (cut-off answers, whole internal feedback, the judge's
malformed verdicts in the ledger, exact funnel counts)."""

from __future__ import annotations

import json
import re

import pytest

from complexif.conifer.answers import answer_all, answer_step, read_instructions
from complexif.conifer.common import conifer_template
from complexif.conifer.feedback import (
    EXPLANATION_MARKER,
    Verdict,
    hardest_levels,
    internal_feedback_step,
    judge_step,
    parse_internal_feedback,
    parse_verdict,
    weak_answer_step,
)
from complexif.curation.funnel import Funnel
from complexif.io import DataError, write_jsonl
from complexif.llm.prompts import load_template
from complexif.llm.step import ParseError
from tests.conftest import gen_params, updated
from tests.conifer.conftest import (
    INSTRUCTIONS,
    ScriptedBackend,
    ScriptedSession,
    instruction,
    user_text,
)

ROW = instruction(
    "a", 2, "Describe a lighthouse in exactly 3 sentences.", ["Use exactly 3 sentences."]
)


def _template(params, name):
    return conifer_template(params, name)


# ---------------------------------------------------------------------------------------------
# Prompts


def test_answer_prompt_is_the_instruction_in_the_template(params):
    template = _template(params, params.conifer.answer.template)
    request = answer_step(template).request(ROW, gen_params(16), "cin-a2")
    (message,) = request.messages
    assert message["role"] == "user"
    assert message["content"].startswith(ROW["instruction"])
    assert message["content"] != ROW["instruction"]  # the template's own words follow
    # The template's version keys the cache: an edited prompt never serves old answers.
    assert request.prompt_version == template.version


def test_internal_feedback_prompt_lists_every_constraint_and_names_the_marker(params):
    row = {**ROW, "format_numerical": ["Use exactly 3 sentences.", "End with a question."]}
    template = _template(params, params.conifer.internal_feedback.template)
    request = internal_feedback_step(template).request(row, gen_params(16), "x")
    text = user_text(request)
    assert row["instruction"] in text
    assert "1. Use exactly 3 sentences.\n2. End with a question." in text
    assert EXPLANATION_MARKER in text  # the parse looks for what the prompt asked for
    assert "$" not in text


def test_weak_model_is_asked_the_instruction_as_a_user_would_ask_it(params):
    template = _template(params, params.conifer.external_feedback.template)
    request = weak_answer_step(template).request(ROW, gen_params(16), "x")
    # The 4-turn sample opens with the bare instruction: the weak answer must answer just that.
    assert user_text(request).strip() == ROW["instruction"]


def test_judge_prompt_shows_the_instruction_the_weak_answer_and_the_reference(params):
    row = {**ROW, "answer": "TEACHER ANSWER", "weak_answer": "WEAK ANSWER"}
    cfg = params.conifer.external_feedback
    repair = load_template(params.paths.prompts_dir, params.llm.json_repair_template)
    step = judge_step(_template(params, cfg.judge_template), repair)
    text = user_text(step.request(row, gen_params(16), "x"))
    assert row["instruction"] in text
    assert text.index("WEAK ANSWER") < text.index("TEACHER ANSWER")
    assert '"follows"' in text and '"critique"' in text
    assert step.repair is repair


def test_templates_fill_every_placeholder(params):
    # string.Template: a $name the code does not fill would fail at render time in a stage.
    cfg = params.conifer
    expected = {
        cfg.answer.template: {"instruction"},
        cfg.internal_feedback.template: {"instruction", "constraints", "marker"},
        cfg.external_feedback.template: {"instruction"},
        cfg.external_feedback.judge_template: {"instruction", "answer", "reference"},
    }
    for name, fields in expected.items():
        assert _template(params, name).placeholders == fields, name


# ---------------------------------------------------------------------------------------------
# Parses


def test_answer_parse_strips_and_refuses_an_empty_answer(params):
    step = answer_step(_template(params, params.conifer.answer.template))
    assert step.parse(ROW, "  An answer.\n") == "An answer."
    with pytest.raises(ParseError, match="empty"):
        step.parse(ROW, " \n ")


LONG_EXPLANATION = "\n".join(f"{i}. sentence {i} ends with a period." for i in range(1, 400))


@pytest.mark.parametrize(
    "marker",
    [
        f"\n{EXPLANATION_MARKER}\n",
        "\n**How the requirements are met:**\n",
        "\n### How the requirements are met\n",
        " how the requirements are met: ",  # a small model writes it inline
    ],
)
def test_internal_feedback_keeps_the_whole_text(marker):
    text = f"The lighthouse stands tall. Its lamp turns. Ships pass safely.{marker}"
    text += LONG_EXPLANATION
    # All of it: the response, the marker and every line of the explanation, not a few tokens.
    assert parse_internal_feedback(ROW, text + "\n") == text
    assert len(parse_internal_feedback(ROW, text)) > 10_000


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("The lighthouse stands tall. Its lamp turns. Ships pass safely.", "no 'How the"),
        (f"{EXPLANATION_MARKER}\n1. Three sentences.", "no response before"),
        (f"The lighthouse stands tall.\n{EXPLANATION_MARKER}\n  ", "no explanation after"),
    ],
)
def test_internal_feedback_without_its_parts_does_not_parse(text, why):
    with pytest.raises(ParseError, match=why):
        parse_internal_feedback(ROW, text)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ('{"follows": true, "critique": ""}', Verdict(True, "")),
        ('{"follows": true}', Verdict(True, "")),
        ('Verdict:\n```json\n{"follows": false, "critique": " Two sentences. "}\n```', None),
        ('Here: {"follows": false, "critique": "Two sentences."} Done.', None),
    ],
)
def test_verdicts_parse_wherever_the_json_is(text, verdict):
    expected = verdict or Verdict(False, "Two sentences.")
    assert parse_verdict(ROW, text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("The answer follows the request.", "no JSON"),
        ('{"follows": "false", "critique": "x"}', "'follows' must be true or false"),
        ('{"critique": "x"}', "'follows' must be true or false"),
        ('{"follows": false, "critique": "  "}', "'critique' is empty"),
        ('{"follows": false}', "'critique' is empty"),
        ('{"follows": false, "critique": ["x"]}', "'critique' must be a string"),
        ('["follows", false]', "expected a JSON object"),
    ],
)
def test_malformed_verdicts_do_not_parse(text, why):
    # A verdict that cannot be read is neither a pass nor a fail: it raises (and is ledgered).
    with pytest.raises(ParseError, match=why):
        parse_verdict(ROW, text)


def test_the_weak_model_answers_each_querys_highest_answered_level():
    rows = [
        instruction("a", 1, "a1"),
        instruction("a", 3, "a3"),
        instruction("b", 2, "b2"),
        instruction("a", 2, "a2"),
    ]
    assert [r["id"] for r in hardest_levels(rows)] == ["cin-a3", "cin-b2"]


# ---------------------------------------------------------------------------------------------
# Reading the instructions


def test_instructions_are_read_and_bad_rows_are_named_by_file_line_and_field(tmp_path):
    path = tmp_path / "instructions.jsonl"
    good = [instruction("a", 1, "x"), instruction("a", 2, "y", ["Use 2 lines."])]
    write_jsonl(path, good)
    assert read_instructions(path) == good
    cases = [
        ({"level": True}, "field 'level' must be a whole number"),
        ({"level": 0}, "field 'level' must be a whole number"),
        ({"instruction": " "}, "field 'instruction' is empty"),
        ({"format_numerical": ["", "x"]}, "field 'format_numerical'"),
        ({"format_numerical": "x"}, "field 'format_numerical' must be list"),
        ({"id": "cin-a1", "level": 3}, "field 'id' 'cin-a1' repeats line 1"),
        ({"id": "other"}, "field 'level' 2 of query 'cq-a' repeats line 2"),
    ]
    for change, message in cases:
        write_jsonl(path, [*good, {**good[1], **change}])
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: {message}"):
            read_instructions(path)
    missing = dict(good[0])
    del missing["query_id"]
    write_jsonl(path, [missing])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: missing field 'query_id'"):
        read_instructions(path)


# ---------------------------------------------------------------------------------------------
# The whole pass, scripted


INTERNAL = "Sentence one. Sentence two. Sentence three.\n" + EXPLANATION_MARKER + "\n"
INTERNAL += LONG_EXPLANATION


def _teacher_script(request):
    """Answers by what the prompt asks: an answer, internal feedback or a verdict."""
    text = user_text(request)
    if "Answer to check:" in text:
        if "lighthouse" in text:
            return '{"follows": false, "critique": "It has two sentences, not three."}'
        if "river" in text:
            return '```json\n{"follows": true, "critique": ""}\n```'
        return "I would say it is quite good."  # the haiku: no verdict, before or after repair
    if EXPLANATION_MARKER in text:
        if "haiku" in text:
            return "a haiku without any explanation"
        return INTERNAL
    if "table" in text:
        return ("| River | Length |\n| Nile | 6650 km", "length")  # cut off: never a target
    return f"TEACHER: {text.splitlines()[0]}"


def _weak_script(request):
    return f"WEAK: {user_text(request).strip()}"


def _session():
    return ScriptedSession(
        teacher=ScriptedBackend("teacher-model", _teacher_script),
        weak=ScriptedBackend("weak-model", _weak_script),
    )


def test_answering_pass_on_a_scripted_teacher(params):
    session = _session()
    funnel = Funnel("conifer_answers")
    records = answer_all(session, INSTRUCTIONS, params, funnel)

    # The cut-off answer (b2) is dropped; each other instruction has one record.
    by_id = {r["instruction_id"]: r for r in records}
    assert sorted(by_id) == ["cin-a1", "cin-a2", "cin-a3", "cin-b1", "cin-c1"]
    assert by_id["cin-a1"]["answer"] == "TEACHER: Describe a lighthouse."
    assert all(r["finish_reason"] == "stop" and r["model"] == "teacher-model" for r in records)
    assert len({r["id"] for r in records}) == len(records)

    # Internal feedback, whole, where there are format/numerical constraints and it parsed.
    assert by_id["cin-a2"]["internal_feedback"] == INTERNAL.strip()
    assert by_id["cin-a3"]["internal_feedback"] == INTERNAL.strip()
    assert by_id["cin-c1"]["internal_feedback"] is None  # no explanation: ledgered
    assert by_id["cin-a1"]["internal_feedback"] is None  # nothing to explain
    teacher = session.backends["teacher"].requests
    internal = [r for r in teacher if r.id.endswith("/internal")]
    assert sorted(r.id for r in internal) == [
        "cin-a2/internal",
        "cin-a3/internal",
        "cin-c1/internal",
    ]
    # The request may write the whole explanation (the original code capped it at 6 tokens).
    want = params.conifer.internal_feedback.max_new_tokens
    assert {r.params.max_new_tokens for r in internal} == {want}

    # External feedback: the weak model answered each query's hardest answered level.
    weak = session.backends["weak"].requests
    assert sorted(r.id for r in weak) == ["cin-a3/weak", "cin-b1/weak", "cin-c1/weak"]
    assert by_id["cin-a3"]["external_feedback"] == {
        "weak_answer": "WEAK: " + INSTRUCTIONS[2]["instruction"],
        "weak_model": "weak-model",
        "follows": False,
        "critique": "It has two sentences, not three.",
    }
    assert by_id["cin-b1"]["external_feedback"]["follows"] is True
    assert by_id["cin-c1"]["external_feedback"] is None  # verdict never parsed
    assert by_id["cin-a1"]["external_feedback"] is None

    # The malformed verdict got one repair re-ask, then went to the ledger with both reasons.
    judge = [r for r in teacher if r.id == "cin-c1/judge"]
    # The re-ask is the first ask plus the bad answer and the repair request.
    assert len(judge) == 2 and judge[1].messages[:-2] == judge[0].messages
    assert [m["role"] for m in judge[1].messages[-2:]] == ["assistant", "user"]
    ledger = {(e.request_id, e.kind, e.attempts) for e in session.ledger.entries}
    assert ledger == {("cin-c1/internal", "parse_failed", 1), ("cin-c1/judge", "parse_failed", 2)}

    steps = {s.step: (s.n_in, s.n_out, s.dropped) for s in funnel.steps}
    assert steps == {
        "answer": (6, 5, {"cut_off": 1}),
        "internal_feedback": (3, 2, {"parse_failed": 1}),
        "weak_answer": (3, 3, {}),
        # Out: the weak answers judged failing; an unreadable verdict is neither pass nor fail.
        "judge": (3, 1, {"judged_follows": 1, "parse_failed": 1}),
    }
    versions = by_id["cin-a3"]["prompt_versions"]
    assert set(versions) == {"recombine", "answer", "internal_feedback", "weak_answer", "judge"}
    assert set(by_id["cin-a1"]["prompt_versions"]) == {"recombine", "answer"}
    json.dumps(records)  # plain JSON


def test_cut_off_feedback_is_dropped_not_kept_in_part(params):
    def teacher(request):
        if EXPLANATION_MARKER in user_text(request):
            return (INTERNAL[:200], "length")
        return _teacher_script(request)

    def weak(request):
        return ("WEAK: an answer that stops mid", "length")

    session = ScriptedSession(
        teacher=ScriptedBackend("t", teacher), weak=ScriptedBackend("w", weak)
    )
    funnel = Funnel("conifer_answers")
    records = answer_all(session, INSTRUCTIONS[:3], params, funnel)
    assert all(r["internal_feedback"] is None and r["external_feedback"] is None for r in records)
    steps = {s.step: (s.n_in, s.n_out, s.dropped) for s in funnel.steps}
    assert steps["internal_feedback"] == (2, 0, {"cut_off": 2})
    assert steps["weak_answer"] == (1, 0, {"cut_off": 1})
    assert steps["judge"] == (0, 0, {})


def test_disabled_feedback_asks_nothing_and_says_so_in_the_funnel(params):
    off = updated(
        params,
        conifer={"internal_feedback": {"enabled": False}, "external_feedback": {"enabled": False}},
    )
    session = _session()
    funnel = Funnel("conifer_answers")
    records = answer_all(session, INSTRUCTIONS, off, funnel)
    assert all(r["internal_feedback"] is None and r["external_feedback"] is None for r in records)
    assert all(r.id == r.id.split("/")[0] for r in session.backends["teacher"].requests)
    assert "weak" not in session.clients  # the weak model is never even loaded
    steps = {s.step: (s.n_in, s.n_out, s.dropped) for s in funnel.steps}
    assert steps["internal_feedback"] == (3, 0, {"disabled": 3})
    assert steps["weak_answer"] == (3, 0, {"disabled": 3})
