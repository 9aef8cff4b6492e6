"""Every Conifer step sends its template's turns as chat turns: a demonstration in a template
must reach the model as an earlier user/assistant exchange, never as marker lines inside one
message (a step that rendered the template as one string would do exactly that)."""

import re

import pytest

from complexif.conifer.answers import answer_step
from complexif.conifer.common import conifer_template
from complexif.conifer.feedback import internal_feedback_step, judge_step, weak_answer_step
from complexif.conifer.instructions import build_steps
from complexif.llm.prompts import TURN, load_template
from tests.conftest import repo_params

ROW = {
    "id": "cin-1",
    "text": "Plan a small garden.",
    "query": "Explain how to plan a small vegetable garden.",
    "constraints": {"Audience": ["beginners"], "Tone": ["friendly"]},
    "instruction": "Explain to beginners, in a friendly tone, how to plan a small vegetable garden.",
    "format_numerical": ["Keep the whole reply under 120 words."],
    "answer": "Pick a sunny spot ...",
    "weak_answer": "Gardens are nice.",
}


def _steps():
    params = repo_params()
    c = params.conifer
    repair = load_template(params.paths.prompts_dir, params.llm.json_repair_template)
    steps = list(vars(build_steps(params)).values())
    steps += [
        answer_step(conifer_template(params, c.answer.template)),
        internal_feedback_step(conifer_template(params, c.internal_feedback.template)),
        weak_answer_step(conifer_template(params, c.external_feedback.template)),
        judge_step(conifer_template(params, c.external_feedback.judge_template), repair),
    ]
    return steps


@pytest.mark.parametrize("step", _steps(), ids=lambda s: s.name)
def test_template_turns_are_chat_turns(step):
    messages = step.prompt(ROW)
    assert messages[-1]["role"] == "user"
    for m in messages:
        assert not TURN.search(m["content"]), (step.name, m["content"][:200])
    roles = [m["role"] for m in messages]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), roles
    # The row's own text reaches the last turn (the demonstrations are fixed).
    assert any(
        v in messages[-1]["content"] for v in (ROW["text"], ROW["query"], ROW["instruction"])
    )
    demonstrated = len(re.findall(TURN, step.template.text)) > 1
    assert (len(messages) > 1) == demonstrated
