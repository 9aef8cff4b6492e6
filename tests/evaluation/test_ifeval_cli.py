"""``complexif ifeval score|check`` on the small fixture."""

from __future__ import annotations

import json
from pathlib import Path

from complexif.cli import main

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "ifeval"
ARGS = ["--input-data", str(FIX / "mini_input.jsonl"), "--responses"]


def test_score_writes_both_files_and_prints_table(tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval"
    rc = main(
        ["ifeval", "score", *ARGS, str(FIX / "mini_responses.jsonl"), "--output-dir", str(out)]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "prompt-level strict accuracy:      0.6667" in printed
    assert "instruction-level loose accuracy:  0.9091" in printed
    assert "punctuation:no_comma" in printed and "detectable_content" in printed
    for name in ("eval_results_strict.jsonl", "eval_results_loose.jsonl"):
        rows = [json.loads(line) for line in (out / name).read_text().splitlines()]
        assert len(rows) == 6
        for field in (
            "prompt",
            "instruction_id_list",
            "kwargs",
            "follow_all_instructions",
            "follow_instruction_list",
        ):
            assert field in rows[0]
    assert json.loads((out / "metrics.json").read_text())["num_prompts"] == 6


def _error(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


def test_bad_files_give_one_line_errors(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "o")
    missing = tmp_path / "nope.jsonl"
    assert main(["ifeval", "score", *ARGS, str(missing), "--output-dir", out]) == 2
    assert f"{missing}: file not found" in _error(capsys)

    bad = tmp_path / "responses.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    assert main(["ifeval", "score", *ARGS, str(bad), "--output-dir", out]) == 2
    assert "responses.jsonl:1: missing field 'response'" in _error(capsys)

    partial = tmp_path / "partial.jsonl"
    lines = (FIX / "mini_responses.jsonl").read_text().splitlines()
    partial.write_text("\n".join(lines[1:]) + "\n")
    assert main(["ifeval", "score", *ARGS, str(partial), "--output-dir", out]) == 2
    assert "no response for prompt key=1000" in _error(capsys)
    assert not (tmp_path / "o").exists()
    # ...unless missing responses are scored as empty.
    rc = main(["ifeval", "score", *ARGS, str(partial), "--output-dir", out, "--missing", "empty"])
    assert rc == 0


def test_check_command(capsys) -> None:
    base = ["ifeval", "check", "--instruction-id"]
    assert main([*base, "punctuation:no_comma", "--response", "a b"]) == 0
    assert capsys.readouterr().out.strip() == "PASS"
    assert main([*base, "punctuation:no_comma", "--response", "a, b"]) == 1
    assert capsys.readouterr().out.strip() == "FAIL"
    kwargs = json.dumps({"keywords": ["sea"]})
    assert main([*base, "keywords:existence", "--kwargs", kwargs, "--response", "The Sea"]) == 0
    capsys.readouterr()
    assert main([*base, "punctuation:no_coma", "--response", "a"]) == 2
    assert "Did you mean 'punctuation:no_comma'" in _error(capsys)
    assert main([*base, "keywords:existence", "--kwargs", "{bad", "--response", "a"]) == 2
    assert "--kwargs is not valid JSON" in _error(capsys)


def test_group_without_command_shows_help(capsys) -> None:
    assert main(["ifeval"]) == 2
    assert "score" in capsys.readouterr().out
    assert main([]) == 2
    assert "ifeval" in capsys.readouterr().out


def test_score_reports_matched_missing_and_extra(tmp_path: Path, capsys) -> None:
    lines = (FIX / "mini_responses.jsonl").read_text().splitlines()
    stray = json.dumps({"prompt": "a prompt of another benchmark", "response": "hi"})
    responses = tmp_path / "responses.jsonl"
    responses.write_text("\n".join([*lines[1:], stray]) + "\n")
    out = tmp_path / "o"
    rc = main(
        ["ifeval", "score", *ARGS, str(responses), "--output-dir", str(out), "--missing", "empty"]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "responses: 5 matched, 1 missing, 1 extra" in printed
    assert "1 prompts had no response and were scored as empty" in printed
    assert "1 responses are for no prompt of" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["responses"] == {"matched": 5, "missing": 1, "extra": 1}
    assert metrics["num_prompts"] == 6

    # Without --missing empty the error says how far off the file is.
    assert main(["ifeval", "score", *ARGS, str(responses), "--output-dir", str(out)]) == 2
    assert "(responses: 5 matched, 1 missing, 1 extra;" in _error(capsys)


def test_responses_matching_no_prompt_fail_even_with_missing_empty(tmp_path: Path, capsys) -> None:
    responses = tmp_path / "other.jsonl"
    responses.write_text(
        "".join(json.dumps({"prompt": f"other {i}", "response": "x"}) + "\n" for i in range(3))
    )
    out = tmp_path / "o"
    argv = ["ifeval", "score", *ARGS, str(responses), "--output-dir", str(out)]
    for extra in ([], ["--missing", "empty"]):
        assert main([*argv, *extra]) == 2
        err = _error(capsys)
        assert "none of the 3 responses is for one of the 6 prompts" in err
        assert "(0 matched, 6 missing, 3 extra)" in err
        assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_non_utf8_input_is_a_one_line_error_naming_file_and_line(tmp_path: Path, capsys) -> None:
    good = (FIX / "mini_responses.jsonl").read_bytes().splitlines(keepends=True)
    responses = tmp_path / "latin1.jsonl"
    # Line 3 in Latin-1: "café" with a bare 0xe9 byte.
    responses.write_bytes(b"".join(good[:2]) + b'{"prompt": "caf\xe9", "response": "x"}\n')
    out = str(tmp_path / "o")
    assert main(["ifeval", "score", *ARGS, str(responses), "--output-dir", out]) == 2
    err = _error(capsys)
    assert f"{responses}:3: not UTF-8 text (byte 0xe9 at column 16)" in err
    assert len(err.strip().splitlines()) == 1

    inputs = tmp_path / "input.jsonl"
    inputs.write_bytes(
        b"\n" + (FIX / "mini_input.jsonl").read_bytes().replace(b"Write", b"\xff", 1)
    )
    argv = ["ifeval", "score", "--input-data", str(inputs), "--responses"]
    assert main([*argv, str(FIX / "mini_responses.jsonl"), "--output-dir", out]) == 2
    assert f"{inputs}:2: not UTF-8 text (byte 0xff" in _error(capsys)

    response_file = tmp_path / "response.txt"
    response_file.write_bytes(b"first line\nsecond \x80 line\n")
    check = ["ifeval", "check", "--instruction-id", "punctuation:no_comma"]
    assert main([*check, "--response-file", str(response_file)]) == 2
    err = _error(capsys)
    assert f"{response_file}:2: not UTF-8 text (byte 0x80" in err
    assert len(err.strip().splitlines()) == 1
