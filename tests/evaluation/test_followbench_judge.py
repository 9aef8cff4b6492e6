"""The FollowBench judge: its prompt shows the evolution path, and only a well-formed verdict
list counts (anything else is a ParseError, re-asked and then ledgered by the runner)."""

import pytest

from complexif.evaluation.followbench.judge import PathWording, judge_step, parse_verdicts
from complexif.llm.base import GenerationParams
from complexif.llm.prompts import PromptTemplate, load_template
from complexif.llm.step import ParseError
from tests.conftest import REPO_ROOT

PROMPTS = REPO_ROOT / "prompts/eval"


@pytest.mark.parametrize(
    ("text", "level", "expected"),
    [
        ("['YES', 'NO', 'YES']", 3, (True, False, True)),
        ("Step 1 holds.\nStep 2 does not.\n['YES', 'NO']", 2, (True, False)),
        ('reasoning\n["yes", "No"]', 2, (True, False)),
        ("The list: ['NO'] as asked", 1, (False,)),
        ("It is met.\nYES", 1, (True,)),
        ("**NO**", 1, (False,)),
        ("['YES','YES','YES','YES','YES']\n\n", 5, (True,) * 5),
    ],
)
def test_well_formed_verdicts_parse(text, level, expected):
    assert parse_verdicts(text, level) == expected


@pytest.mark.parametrize(
    ("text", "level", "reason"),
    [
        ("", 2, "empty"),
        ("   \n \n", 1, "empty"),
        ("['YES', 'NO']", 3, "2 element"),  # too short
        ("['YES', 'NO', 'YES']", 2, "3 element"),  # too long
        ("['YES', 'MAYBE']", 2, "'YES' or 'NO'"),
        ("['YES', 1]", 2, "'YES' or 'NO'"),
        ("[YES, NO]", 2, "not a Python list"),
        ("['YES', 'NO']\nI hope this helps.", 2, "last line"),  # the list must end the reply
        ("YES", 2, "last line"),  # a bare word only at level 1
        ("YES and NO", 1, "last line"),
        ("The answer satisfies the constraint.", 1, "last line"),
    ],
)
def test_malformed_verdicts_are_parse_errors(text, level, reason):
    with pytest.raises(ParseError, match=reason):
        parse_verdicts(text, level)


def test_prompt_shows_the_whole_evolution_path_and_the_answer():
    wording = PathWording.load(PROMPTS)
    template = load_template(REPO_ROOT / "prompts", "eval/followbench_judge.txt")
    step = judge_step(template, wording, None)
    row = {
        "id": "style/7/2/followbench_judge",
        "item_id": "style/7/2",
        "category": "style",
        "level": 2,
        "path": ["Write a poem.", "Write a poem about the sea.", "Write a sad poem about the sea."],
        "answer": "Waves weep.",
    }
    request = step.request(row, GenerationParams(16, 0.0, 1.0, 0, 1), row["id"])
    # The demonstration first, then the real item as the last user turn.
    assert [m["role"] for m in request.messages] == ["user", "assistant", "user"]
    last = request.messages[-1]["content"]
    for text in row["path"] + [row["answer"], "With 2 added constraints:", "style constraint"]:
        assert text in last
    assert last.index("Write a poem.") < last.index("about the sea.") < last.index("Waves weep.")
    assert "list of 2 strings" in last
    assert step.parse(row, "['YES', 'NO']") == (True, False)


def test_new_path_wording_changes_the_prompt_version(tmp_path):
    template = PromptTemplate("t.txt", "$kind $path $answer $n")
    wording = PathWording.load(PROMPTS)
    other = PathWording(
        kinds=wording.kinds,
        original="Start:",
        added_one=wording.added_one,
        added_many=wording.added_many,
    )
    a = judge_step(template, wording, None).template.version
    b = judge_step(template, other, None).template.version
    assert a != b


def test_path_wording_file_must_have_every_heading(tmp_path):
    (tmp_path / "followbench_path.yaml").write_text("kinds: {style: style}\noriginal: x\n")
    with pytest.raises(ValueError, match="followbench_path.yaml: needs"):
        PathWording.load(tmp_path)
