"""FollowBench scoring end to end on the shipped data: rules where the benchmark has them, a
scripted judge for the rest; an unparseable judgement is re-asked once, then ledgered and
counted as unparseable, never as YES or NO."""

import json

import pytest

from complexif.evaluation.followbench.data import evaluated_items
from complexif.evaluation.followbench.rules import is_rule_scored
from complexif.evaluation.followbench.run import (
    followbench_groups,
    load_answers,
    score_followbench,
)
from complexif.io import DataError
from tests.conftest import REPO_ROOT, repo_params, updated
from tests.conifer.conftest import ScriptedBackend, ScriptedSession


@pytest.fixture
def params():
    return updated(
        repo_params(),
        paths={
            "prompts_dir": str(REPO_ROOT / "prompts"),
            "followbench_dir": str(REPO_ROOT / "data/benchmarks/followbench"),
        },
        evaluate={"followbench": {"categories": ["style", "example"], "groups_per_category": 2}},
    )


def _level(request) -> int:
    # The judged item's level: the number of YES/NO strings its prompt asks for.
    text = request.messages[-1]["content"]
    if text.startswith("Your previous reply could not be used"):
        text = request.messages[-3]["content"]
    return int(text.split("a Python list of ")[1].split()[0])


def test_rules_judge_and_unparseable_are_counted_apart(params, tmp_path):
    groups = followbench_groups(params)
    items = evaluated_items(groups)
    answers = {item.id: f"answer to {item.id}" for item in items}

    def judge(request):
        level = _level(request)
        # Levels 1-3: all constraints met but the last; levels 4-5: no usable verdict.
        return repr(["YES"] * (level - 1) + ["NO"]) if level <= 3 else "Hard to say."

    session = ScriptedSession(judge=ScriptedBackend("judge-model", judge))
    metrics = score_followbench(
        params, groups, answers, lambda: session.client("judge", params.evaluate.judge), tmp_path
    )
    ruled = [i for i in items if is_rule_scored(i)]
    judged = [i for i in items if not is_rule_scored(i)]
    assert ruled and judged  # example items are ruled; style items judged
    counts = metrics["counts"]
    assert counts["items"] == len(items) == 20
    assert counts["rule_scored"] == len(ruled)
    assert counts["judged"] == sum(i.level <= 3 for i in judged)
    assert counts["unparseable"] == sum(i.level > 3 for i in judged)
    # Each unparseable item was asked twice (the repair re-ask), then ledgered under its id.
    failed = [e for e in session.ledger.entries if e.kind == "parse_failed"]
    assert sorted(e.request_id for e in failed) == sorted(
        f"{i.id}/followbench_judge" for i in judged if i.level > 3
    )
    assert len(session.backends["judge"].requests) == len(judged) + counts["unparseable"]
    # The style HSR at levels 1-3 comes only from the judge (one NO each: never hard-satisfied)
    # and SSR is the share of YES: (level - 1) / level.
    style = metrics["by_category"]["style"]
    assert style["hsr"]["level_2"] == 0.0
    assert style["ssr"]["level_2"] == pytest.approx(0.5)
    assert style["ssr"]["level_3"] == pytest.approx(2 / 3)
    assert style["hsr"]["level_4"] is None  # nothing judged there: no fake 0
    # Who judged, with which prompt, is kept with the metrics.
    assert metrics["judge"]["model"] == params.evaluate.judge.model
    assert metrics["judge"]["prompt"] == "eval/followbench_judge.txt"
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["counts"] == counts
    verdicts = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").open()]
    assert len(verdicts) == len(items)
    unparsed = [v for v in verdicts if v["method"] == "judge" and v["level"] > 3]
    assert all(v["satisfied"] is None and v["hard"] is None for v in unparsed)


def test_without_a_judge_only_rule_scored_items_count(params, tmp_path):
    groups = followbench_groups(params)
    items = evaluated_items(groups)
    answers = {item.id: "" for item in items}
    metrics = score_followbench(params, groups, answers, None, tmp_path)
    ruled = sum(is_rule_scored(i) for i in items)
    assert metrics["counts"]["rule_scored"] == ruled
    assert metrics["counts"]["judged"] == 0
    assert metrics["counts"]["not_judged"] == len(items) - ruled
    assert "judge" not in metrics


def test_answers_match_by_id_or_by_prompt_text(params, tmp_path):
    groups = followbench_groups(params)
    items = evaluated_items(groups)
    path = tmp_path / "answers.jsonl"
    lines = [{"id": items[0].id, "response": "by id"}]
    lines += [{"prompt": item.instruction, "response": "by prompt"} for item in items[1:]]
    lines.append({"id": "nope/1/1", "response": "ignored"})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    answers = load_answers(path, groups)
    assert answers[items[0].id] == "by id"
    assert all(answers[item.id] == "by prompt" for item in items[1:])


def test_answers_file_problems_name_file_and_line(params, tmp_path):
    groups = followbench_groups(params)
    path = tmp_path / "answers.jsonl"
    path.write_text('{"response": "x"}\n')
    with pytest.raises(DataError, match="answers.jsonl:1: needs field 'id' or field 'prompt'"):
        load_answers(path, groups)
    path.write_text('{"id": "content/1/1"}\n')
    with pytest.raises(DataError, match="answers.jsonl:1.*response"):
        load_answers(path, groups)
    path.write_text('{"prompt": "no such instruction", "response": "x"}\n')
    with pytest.raises(DataError, match="no answer matches a FollowBench item"):
        load_answers(path, groups)


def test_cli_scores_rule_items_without_a_judge(tmp_path, capsys):
    from complexif.cli import main
    from complexif.evaluation.followbench.data import load_followbench

    groups = load_followbench(REPO_ROOT / "data/benchmarks/followbench", ("example",))
    items = evaluated_items(groups)
    # The example category is rule-scored: an answer that fills the target's template passes.
    first = items[0]
    template = first.target.replace("{instruction}\n", "")
    filled = template.replace("{{", "{").replace("}}", "}").replace("{answer}", "Lunch")
    answers = tmp_path / "answers.jsonl"
    lines = [{"id": first.id, "response": filled}]
    lines += [{"id": i.id, "response": "no"} for i in items[1:]]
    answers.write_text("".join(json.dumps(x) + "\n" for x in lines))
    params_file = tmp_path / "params.yaml"
    text = (REPO_ROOT / "params.yaml").read_text()
    text = text.replace(
        "categories: [content, situation, style, format, example, mixed]", "categories: [example]"
    )
    params_file.write_text(text)
    out = tmp_path / "out"
    argv = ["followbench", "score", "--answers", str(answers), "--output-dir", str(out)]
    argv += [
        "--params",
        str(params_file),
        "--data-dir",
        str(REPO_ROOT / "data/benchmarks/followbench"),
    ]
    assert main([*argv, "--no-judge", "--all"]) == 0
    printed = capsys.readouterr().out
    assert "(200 items: 200 rule-scored, 0 judged, 0 unparseable, 0 not judged)" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    from complexif.evaluation.followbench.rules import rule_score

    assert rule_score(first, filled)
    sent = {x["id"]: x["response"] for x in lines}
    passed = [i for i in items if rule_score(i, sent[i.id])]
    # (Some example templates are a bare {answer}: "no" fills them too.)
    assert metrics["hsr"]["level_1"] == pytest.approx(sum(i.level == 1 for i in passed) / 40)
    assert metrics["counts"]["rule_scored"] == 200
    # Without --all only the params' sample is scored; a file short of it is refused.
    sample = evaluated_items(
        followbench_groups(
            updated(
                repo_params(),
                paths={"followbench_dir": str(REPO_ROOT / "data/benchmarks/followbench")},
                evaluate={"followbench": {"categories": ["example"]}},
            )
        )
    )
    answers.write_text("".join(json.dumps({"id": i.id, "response": ""}) + "\n" for i in sample[1:]))
    assert main([*argv, "--no-judge"]) == 2
    assert f"no answer for 1 of {len(sample)} FollowBench items" in capsys.readouterr().err
