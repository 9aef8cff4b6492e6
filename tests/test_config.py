import ast
import copy
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from complexif.config import (
    ConfigError,
    Params,
    deep_merge,
    key_lines,
    key_locator,
    load_params,
    section_fields,
    validation_problems,
)
from complexif.presets import apply_preset
from tests.conftest import REPO_ROOT

PARAMS_TEXT = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")


def _params_with(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the repo's params.yaml with one text edit (``old`` must occur once)."""
    assert PARAMS_TEXT.count(old) == 1, old
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_TEXT.replace(old, new), encoding="utf-8")
    return path


def _line_of(path: Path, fragment: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if fragment in line)


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_params(path)
    return str(exc.value)


def test_shipped_params_load_and_match_the_defaults_schema():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.evaluate.models == ["base", "sft", "dpo"]
    assert sum(params.compose.k_distribution.values()) == pytest.approx(1.0)


def test_unknown_key_is_an_error_naming_file_line_and_key(tmp_path):
    path = _params_with(tmp_path, "    epochs: 2.0\n", "    epochs: 2.0\n    max_stpes: 3\n")
    line = _line_of(path, "max_stpes")
    assert _error(path) == f"{path}:{line}: train.sft.max_stpes: unknown key (a typo?)"


def test_k_distribution_outside_one_to_five_is_rejected(tmp_path):
    path = _params_with(
        tmp_path,
        "k_distribution: {3: 0.3333, 4: 0.3333, 5: 0.3334}",
        "k_distribution: {0: 1.0, 6: 1.0}",
    )
    assert "compose.k_distribution: k_distribution keys must be in 1..5" in _error(path)


# --------------------------------------------------------------------------------------------
# params.yaml is the only source of defaults


SECTIONS: set[tuple] = set()


def _schema_keys(raw: dict, model: type[BaseModel], path: tuple = ()) -> list[tuple]:
    """Every key params.yaml sets that the schema knows, walking into sections and lists of
    sections (not into values such as k_distribution, which are mappings of data)."""
    keys = []
    for name, inner in section_fields(model).items():
        if name not in raw:
            continue
        keys.append((*path, name))
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            SECTIONS.add((*path, name))
            keys += _schema_keys(raw[name], inner, (*path, name))
        elif isinstance(inner, tuple) and inner[0] == "list" and isinstance(inner[1], type):
            for i, item in enumerate(raw[name] or []):  # a nullable list may be null
                keys += _schema_keys(item, inner[1], (*path, name, i))
    return keys


RAW = yaml.safe_load(PARAMS_TEXT)
KEYS = _schema_keys(RAW, Params)


def _without(key: tuple) -> dict:
    raw = copy.deepcopy(RAW)
    node = raw
    for part in key[:-1]:
        node = node[part]
    del node[key[-1]]
    return raw


def _missing_key_line(path: Path, key: tuple) -> str:
    """The one line load_params gives for ``key`` left out of ``path``, as a regex."""
    dotted = re.escape(".".join(map(str, key)))
    return rf"{re.escape(str(path))}(:\d+)?: {dotted}: required key missing "


def test_every_key_of_params_yaml_is_required():
    # A key that still loads when removed has a second default in code, which can disagree.
    # Validated in memory (load_params would parse the YAML three times for each of 400 keys);
    # the message is made as load_params makes it, and the file round trip is the next test's.
    assert len(KEYS) > 150
    path = REPO_ROOT / "params.yaml"
    locate = key_locator(path, PARAMS_TEXT)
    sneaked_back = []
    for key in KEYS:
        try:
            Params.model_validate(_without(key))
        except ValidationError as exc:
            lines = validation_problems(exc, locate)
            assert len(lines) == 1 and re.match(_missing_key_line(path, key), lines[0]), lines
        else:
            sneaked_back.append(".".join(map(str, key)))
    assert not sneaked_back, (
        f"keys with a default in code as well as in params.yaml: {sneaked_back}"
    )


@pytest.mark.parametrize(
    "key", [KEYS[0], KEYS[len(KEYS) // 2], KEYS[-1]], ids=lambda key: ".".join(map(str, key))
)
def test_a_missing_key_in_the_file_is_one_line_naming_file_and_key(tmp_path, key):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_without(key), sort_keys=False))
    lines = _error(path).splitlines()
    assert len(lines) == 1 and re.match(_missing_key_line(path, key), lines[0]), lines


def _defaulted_fields(model: type[BaseModel], seen: set) -> set[str]:
    out = set()
    if model in seen:
        return out
    seen.add(model)
    for name, field in model.model_fields.items():
        if not field.is_required():
            out.add(f"{model.__name__}.{name}")
        inner = section_fields(model)[name]
        while isinstance(inner, tuple):
            inner = inner[1]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out |= _defaulted_fields(inner, seen)
    return out


def test_no_config_field_has_a_default_except_optional_list_item_keys():
    # seeds.sources[].field is the one optional key: only a JSONL file whose text sits under an
    # unusual name needs it, so params.yaml's own source leaves it out.
    assert _defaulted_fields(Params, set()) == {"SeedSource.field"}
    assert "field" not in RAW["seeds"]["sources"][0]


# Names in library signatures that match a params.yaml key but are not that knob. Each entry:
# (file under src/complexif, qualified name, argument) -> why it is not a second default.
NOT_A_PARAMS_DEFAULT = {
    ("constraints/phrasing.py", "Phrasebook", "source"): "where a phrasebook was read from",
    ("constraints/phrasing.py", "Phrasebook.from_dict", "source"): "where a phrasebook came from",
    ("curation/discrimination.py", "Attempt", "model"): "the model that wrote an attempt",
    ("curation/seeds.py", "word_shingles", "n"): "shingle length of near-dup detection",
    ("curation/seeds.py", "near_duplicate_pairs", "n"): "shingle length of near-dup detection",
    ("llm/base.py", "LLM.generate", "progress"): "per-call progress switch",
    ("llm/base.py", "BatchBackend.generate", "progress"): "per-call progress switch",
    ("llm/client.py", "LLMClient.generate", "progress"): "per call; llm.progress is required",
    ("llm/transformers_backend.py", "TransformersLLM.generate", "progress"): "per call",
    ("llm/progress.py", "UsageBar.update", "n"): "requests finished by this update",
    ("llm/cache.py", "ResponseCache.clear", "model"): "None clears every model's answers",
    ("llm/factory.py", "make_local_llm", "name"): "display name; None: the directory's",
    ("llm/transformers_backend.py", "TransformersLLM.__init__", "name"): "display name",
    ("llm/transformers_backend.py", "TransformersLLM.__init__", "dtype"): "load dtype, not "
    "model.dtype (the prepared model's storage type)",
    ("llm/openai_backend.py", "OpenAIBackend.__init__", "seed"): "seed of the backoff jitter",
    ("llm/faults.py", "FaultConfig", "seed"): "seed of injected test faults",
    ("llm/responders.py", "FixedLatencyResponder.__init__", "model"): "a test double's name",
    ("orchestration/deployments.py", "worker_command", "name"): "a worker's display name",
    # The ifeval part of issue 9 owns this: `complexif ifeval` reads the vendored IFEval file.
    ("evaluation/ifeval.py", "load_input_data", "path"): "the vendored IFEval input",
    ("tracking/pipeline.py", "pipeline_run", "name"): "the MLflow parent run's name",
    ("evaluation/followbench/data.py", "load_followbench", "categories"): "all of the "
    "benchmark's; the evaluate stage passes evaluate.followbench.categories",
    # An API request's own optional fields: None means the client did not send it.
    ("llm/server.py", "CompletionBody", "temperature"): "absent from the request",
    ("llm/server.py", "CompletionBody", "top_p"): "absent from the request",
    ("llm/server.py", "CompletionBody", "seed"): "absent from the request",
    ("llm/server.py", "CompletionBody", "n"): "absent from the request",
    ("llm/server.py", "CompletionBody", "max_tokens"): "absent: serve.max_tokens applies",
    ("llm/server.py", "serve_in_thread", "host"): "a test server on loopback",
    ("llm/server.py", "serve_in_thread", "port"): "0: any free port (tests)",
}


def _params_value_names() -> set[str]:
    """Names of the keys that hold values (not sections): the knobs a signature could copy."""
    return {str(key[-1]) for key in KEYS if key not in SECTIONS and not isinstance(key[-1], int)}


def _has_default(value: ast.expr | None) -> bool:
    if value is None:
        return False
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "Field":
        return bool(value.args) or any(
            k.arg in ("default", "default_factory") for k in value.keywords
        )
    return True


def _signature_defaults(tree: ast.Module):
    """(qualified name, argument) of every function argument and class field with a default."""

    def visit(node: ast.AST, prefix: str):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qual = f"{prefix}{child.name}"
                args = child.args
                positional = args.posonlyargs + args.args
                with_default = positional[len(positional) - len(args.defaults) :]
                with_default += [
                    a for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d
                ]
                for arg in with_default:
                    yield qual, arg.arg, child.lineno
                yield from visit(child, f"{qual}.")
            elif isinstance(child, ast.ClassDef):
                qual = f"{prefix}{child.name}"
                for stmt in child.body:
                    if (
                        isinstance(stmt, ast.AnnAssign)
                        and isinstance(stmt.target, ast.Name)
                        and _has_default(stmt.value)
                    ):
                        yield qual, stmt.target.id, stmt.lineno
                yield from visit(child, f"{qual}.")

    yield from visit(tree, "")


def test_no_library_signature_redeclares_a_params_default():
    # `def f(max_rounds=8)` beside params.yaml's `max_rounds: 1` is how defaults drifted apart
    # (issue 9): callers pass the params value, so a library default can only disagree with it.
    names = _params_value_names()
    src = REPO_ROOT / "src" / "complexif"
    found = set()
    offenders = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        if rel == "config.py":
            continue
        for qual, arg, lineno in _signature_defaults(ast.parse(path.read_text(encoding="utf-8"))):
            if arg not in names:
                continue
            found.add((rel, qual, arg))
            if (rel, qual, arg) not in NOT_A_PARAMS_DEFAULT:
                offenders.append(f"src/complexif/{rel}:{lineno}: {qual}({arg}=...)")
    assert not offenders, "defaults that belong in params.yaml only:\n" + "\n".join(offenders)
    stale = sorted(set(NOT_A_PARAMS_DEFAULT) - found)
    assert not stale, f"NOT_A_PARAMS_DEFAULT entries that no longer exist (delete them): {stale}"


# --------------------------------------------------------------------------------------------
# Validation: ranges, strict types, api_key_env


def _params_set(tmp_path: Path, dotted: str, value: str) -> Path:
    """A copy of the repo's params.yaml with the value of ``dotted`` replaced by ``value``
    (YAML text), on its own line, comments and layout kept."""
    lines = PARAMS_TEXT.splitlines(keepends=True)
    index = key_lines(PARAMS_TEXT)[tuple(dotted.split("."))] - 1
    leaf = re.escape(dotted.split(".")[-1])
    lines[index], n = re.subn(
        rf"(\b{leaf}:[ \t]*)(\[[^\]]*\]|[^,}}#\n]*?)([ \t]*(?:[,}}]|#|$))",
        lambda m: m.group(1) + value + m.group(3),
        lines[index],
        count=1,
    )
    assert n == 1, lines[index]
    path = tmp_path / "params.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return path


INVALID = [
    # (key, new value as YAML text, the error after "<file>:<line>: ")
    ("train.sft.learning_rate", "-1", "train.sft.learning_rate: must be > 0 (got -1)"),
    ("train.dpo.learning_rate", "0", "train.dpo.learning_rate: must be > 0 (got 0)"),
    (
        "train.sft.per_device_train_batch_size",
        "0",
        "train.sft.per_device_train_batch_size: must be >= 1 (got 0)",
    ),
    (
        "train.dpo.per_device_train_batch_size",
        "-2",
        "train.dpo.per_device_train_batch_size: must be >= 1 (got -2)",
    ),
    (
        "train.sft.gradient_accumulation_steps",
        "0",
        "train.sft.gradient_accumulation_steps: must be >= 1 (got 0)",
    ),
    ("train.sft.max_length", "0", "train.sft.max_length: must be >= 1 (got 0)"),
    ("train.dpo.max_length", "-5", "train.dpo.max_length: must be >= 1 (got -5)"),
    (
        "evaluate.generation.max_new_tokens",
        "0",
        "evaluate.generation.max_new_tokens: must be >= 1 (got 0)",
    ),
    ("train.sft.lora.r", "0", "train.sft.lora.r: must be >= 1 (got 0)"),
    ("train.dpo.lora.dropout", "1.5", "train.dpo.lora.dropout: must be < 1 (got 1.5)"),
    ("train.dpo.lora.dropout", "1", "train.dpo.lora.dropout: must be < 1 (got 1)"),
    # Strict types: no string or boolean is read as a number, no float as an integer.
    ("seeds.n", "'100'", "seeds.n: must be an integer (got '100', text to YAML)"),
    ("correct.max_rounds", "true", "correct.max_rounds: must be an integer (got True)"),
    ("train.dpo.beta", "false", "train.dpo.beta: must be a number (got False)"),
    ("serve.port", "8000.5", "serve.port: must be an integer (got 8000.5)"),
    (
        "train.sft.learning_rate",
        "3e-4",
        "train.sft.learning_rate: must be a number (got '3e-4', text to YAML: write the "
        "exponent with a dot, as 3.0e-4)",
    ),
    (
        "train.sft.activation_checkpointing",
        "1",
        "train.sft.activation_checkpointing: must be true or false (got 1)",
    ),
    ("llm.cache.path", "7", "llm.cache.path: must be a string (got 7)"),
    # Ranges and cross-checks
    ("seeds.n", "-1", "seeds.n: must be >= 0 (got -1)"),
    ("seeds.seed", "-1", "seeds.seed: must be >= 0 (got -1)"),
    (
        "seeds.min_words",
        "500",
        "seeds: min_words (500) must be <= max_words (400): no seed could pass",
    ),
    ("serve.port", "99999", "serve.port: must be <= 65535 (got 99999)"),
    ("serve.port", "0", "serve.port: must be >= 1 (got 0)"),
    ("evaluate.ifeval.subset", "0", "evaluate.ifeval.subset: must be >= 1 (got 0)"),
    (
        "evaluate.models",
        "[base, base]",
        "evaluate.models: a model is listed twice: ['base', 'base']",
    ),
    (
        "train.sft.warmup_steps",
        "1.5",
        "train.sft.warmup_steps: must be a ratio in [0, 1) or a whole number of steps (got 1.5)",
    ),
    (
        "respond.student.api.base_url",
        "localhost:8000",
        "respond.student.api.base_url: must be an http:// or https:// URL (got 'localhost:8000')",
    ),
    (
        "correct.strategy",
        "programm",
        "correct.strategy: must be 'none', 'program', 'teacher' or 'program_then_teacher' "
        "(got 'programm')",
    ),
]


@pytest.mark.parametrize(
    ("key", "value", "message"), INVALID, ids=[f"{k}={v}" for k, v, _ in INVALID]
)
def test_invalid_values_are_one_line_naming_file_line_and_key(tmp_path, key, value, message):
    path = _params_set(tmp_path, key, value)
    (line,) = _error(path).splitlines()
    match = re.fullmatch(rf"{re.escape(str(path))}:(\d+): (.*)", line)
    assert match, line
    assert match.group(2) == message
    # The line is the key's own (for a cross-check, its section's).
    named = message.split(":")[0].split(".")[-1]
    assert f"{named}:" in path.read_text().splitlines()[int(match.group(1)) - 1]


def _api_key_env(tmp_path: Path, value: str) -> Path:
    return _params_set(tmp_path, "respond.student.api.api_key_env", value)


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-4f9Qa8ZtW2mN7xK1LpV3RbC6sD0eHgJy",
        "sk-ant-api03-abcdefghijklmnop",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        "9f8e7d6c5b4a39281706f5e4d3c2b1a0ffee",
    ],
)
def test_an_api_key_pasted_into_api_key_env_is_refused_and_never_echoed(tmp_path, secret):
    path = _api_key_env(tmp_path, secret)
    error = _error(path)
    assert secret not in error and secret[:12] not in error
    (line,) = error.splitlines()
    assert line.startswith(f"{path}:{_line_of(path, secret)}: respond.student.api.api_key_env: ")
    assert "looks like an API key" in line and ".env" in line and "environment" in line


@pytest.mark.parametrize("name", ["openai key", "lower_case", "1KEY", "KEY-NAME", ""])
def test_api_key_env_must_be_an_environment_variable_name(tmp_path, name):
    path = _api_key_env(tmp_path, repr(name))
    (line,) = _error(path).splitlines()
    assert "respond.student.api.api_key_env: must be the name of an environment variable" in line
    assert "(value not shown)" in line


def test_several_problems_give_one_line_each(tmp_path):
    path = _params_set(tmp_path, "train.sft.learning_rate", "-1")
    path.write_text(path.read_text().replace("port: 8000", "port: 99999"))
    lines = _error(path).splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "train.sft.learning_rate: must be > 0 (got -1)",
        "serve.port: must be <= 65535 (got 99999)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("paths: [\n", r":2: not valid YAML: "),
        ("- paths\n- model\n", r": expected a mapping of sections at the top level, got a list"),
        ("\xff\xfe", r": not UTF-8 text \(byte 0\)"),
    ],
)
def test_a_malformed_params_file_is_one_line_naming_it(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_bytes(text.encode("latin-1"))
    error = _error(path)
    assert len(error.splitlines()) == 1
    assert re.match(re.escape(str(path)) + expected, error), error


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path):
    path = _params_with(tmp_path, "  max_rounds: 1 ", "  max_rounds: 5\n  max_rounds: 1 ")
    line = _line_of(path, "max_rounds: 1 ")
    assert _error(path) == (
        f"{path}:{line}: correct.max_rounds: given twice (first at line {line - 1}); "
        "only one value can count"
    )


# --------------------------------------------------------------------------------------------
# Presets


def test_presets_merge_keep_comments_and_validate(tmp_path):
    out = apply_preset(
        REPO_ROOT / "presets/tiny.yaml", REPO_ROOT / "params.yaml", tmp_path / "p.yaml"
    )
    text = out.read_text()
    assert "# ComplexIF parameters" in text
    params = load_params(out)
    assert params.seeds.n == 6
    assert params.compose.k_distribution == {1: 0.3, 2: 0.4, 3: 0.3}  # replaced, not merged
    # Untouched keys keep the params file's values.
    assert (
        params.train.sft.learning_rate
        == load_params(REPO_ROOT / "params.yaml").train.sft.learning_rate
    )
    full = load_params(
        apply_preset(
            REPO_ROOT / "presets/full.yaml", REPO_ROOT / "params.yaml", tmp_path / "f.yaml"
        )
    )
    assert full.evaluate.ifeval.subset is None and full.seeds.n is None


@pytest.mark.parametrize(
    "preset",
    sorted(
        p.relative_to(REPO_ROOT / "presets").as_posix()
        for p in (REPO_ROOT / "presets").rglob("*.yaml")
    ),
)
def test_every_shipped_preset_applies_and_validates(tmp_path, preset):
    # A preset may name a model by placeholder ("<teacher model, ...>"), which the user fills
    # in: it must apply once they do, and be refused, naming the key, while they have not.
    text = (REPO_ROOT / "presets" / preset).read_text()
    filled = re.sub(r"<[^<>\n]+>", "my-model", text)
    if filled != text:
        with pytest.raises(ConfigError, match=r"\.model: <.*> is a placeholder"):
            apply_preset(REPO_ROOT / "presets" / preset, REPO_ROOT / "params.yaml", tmp_path / "x")
    (tmp_path / preset.replace("/", "_")).write_text(filled)
    out = apply_preset(
        tmp_path / preset.replace("/", "_"), REPO_ROOT / "params.yaml", tmp_path / "p.yaml"
    )
    load_params(out)


def test_merged_floats_stay_numbers_to_yaml_1_1(tmp_path):
    # ruamel writes 5e-06, which YAML 1.1 (PyYAML, load_params) reads as a string.
    out = apply_preset(
        REPO_ROOT / "presets/full.yaml", REPO_ROOT / "params.yaml", tmp_path / "f.yaml"
    )
    raw = yaml.safe_load(out.read_text())
    assert raw["train"]["dpo"]["learning_rate"] == 5e-6
    assert isinstance(raw["train"]["dpo"]["learning_rate"], float)


def test_local_server_preset_points_both_roles_at_the_api():
    out = load_params(REPO_ROOT / "params.yaml").model_dump()
    preset = yaml.safe_load((REPO_ROOT / "presets/local_server.yaml").read_text())
    merged = Params.model_validate(deep_merge(out, preset))
    for role in (merged.respond.student, merged.correct.teacher):
        assert role.backend == "openai"
        assert role.api.base_url == "http://127.0.0.1:8000/v1"


def test_a_preset_can_set_prices_a_mapping_keyed_by_model(tmp_path):
    preset = tmp_path / "prices.yaml"
    preset.write_text("llm:\n  prices: {gpt-4o: {input: 2.5, output: 10.0}}\n")
    params = load_params(apply_preset(preset, REPO_ROOT / "params.yaml", tmp_path / "out.yaml"))
    assert params.llm.prices["gpt-4o"].output == 10.0


def test_preset_with_unknown_key_is_rejected_before_writing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  sft:\n    max_stpes: 3\n")
    with pytest.raises(ConfigError, match="max_stpes"):
        apply_preset(bad, REPO_ROOT / "params.yaml", tmp_path / "out.yaml")
    assert not (tmp_path / "out.yaml").exists()


def _apply_cli(tmp_path, preset_text: str, capsys) -> tuple[int, str, Path]:
    from complexif.cli import main

    params = tmp_path / "params.yaml"
    params.write_text(PARAMS_TEXT)
    preset = tmp_path / "preset.yaml"
    preset.write_text(preset_text)
    code = main(["params", "apply", str(preset), "--params", str(params)])
    err = capsys.readouterr().err
    assert params.read_text() == PARAMS_TEXT  # nothing lost, nothing half-written
    return code, err, preset


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train:\n  sft: {max_steps: 3\n", r":3: not valid YAML: expected ',' or '\}'"),
        (
            "- seeds\n- train\n",
            r": expected a mapping of params sections at the top level, got a list",
        ),
        ("42\n", r": expected a mapping of params sections at the top level, got a number"),
        (
            "seeds:\n  n: 3\ntrain: [sft, dpo]\n",
            r":3: train: is a section, so the preset must give a mapping of its keys, not a list",
        ),
        (
            "train:\n  sft:\n    - max_steps: 3\n",
            r":2: train.sft: is a section, so the preset must give a mapping of its keys, not a list",
        ),
        (
            "train:\n  sft:\n    learning_rate: -1\n",
            r":3: train.sft.learning_rate: must be > 0 \(got -1\)",
        ),
        ("seeds:\n  n: 1\n  n: 2\n", r":3: seeds.n: given twice \(first at line 2\)"),
    ],
)
def test_cli_apply_of_a_bad_preset_is_one_line_naming_the_preset(tmp_path, capsys, text, expected):
    code, err, preset = _apply_cli(tmp_path, text, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert re.match("error: " + re.escape(str(preset)) + expected, err), err


def test_cli_apply_names_the_params_file_for_a_value_the_preset_did_not_set(tmp_path, capsys):
    from complexif.cli import main

    params = _params_set(tmp_path, "train.sft.learning_rate", "-1")
    before = params.read_text()
    preset = tmp_path / "preset.yaml"
    preset.write_text("seeds:\n  n: 3\n")
    assert main(["params", "apply", str(preset), "--params", str(params)]) == 2
    line = _line_of(params, "learning_rate: -1")
    assert capsys.readouterr().err.strip() == (
        f"error: {params}:{line}: train.sft.learning_rate: must be > 0 (got -1)"
    )
    assert params.read_text() == before


def test_cli_params_apply_and_show(tmp_path, capsys):
    from complexif.cli import main

    out = tmp_path / "p.yaml"
    assert (
        main(
            [
                "params",
                "apply",
                str(REPO_ROOT / "presets/tiny.yaml"),
                "--params",
                str(REPO_ROOT / "params.yaml"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert main(["params", "show", "--params", str(out)]) == 0
    assert '"n": 6' in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(PARAMS_TEXT + "nope: 1\n")
    assert main(["params", "show", "--params", str(bad)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {bad}:{_line_of(bad, 'nope')}: nope: unknown key (a typo?)"
    )


@pytest.mark.parametrize(
    "recipe",
    sorted(p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.glob("results/*/params.yaml")),
)
def test_published_recipes_are_complete_params_files(recipe, tmp_path):
    # `complexif params snapshot` publishes params.yaml next to results. Its commit (run.json)
    # reproduces it exactly; on today's code every key it sets must still be known and valid,
    # with only sections added since it was published (conifer, curation, ...) from params.yaml.
    from complexif.config import deep_merge

    published = yaml.safe_load((REPO_ROOT / recipe).read_text())
    merged = tmp_path / "params.yaml"
    merged.write_text(yaml.safe_dump(deep_merge(yaml.safe_load(PARAMS_TEXT), published)))
    params = load_params(merged)  # raises on a key that is unknown or invalid today
    for section, value in published.items():
        if isinstance(value, dict):
            for key in value:
                assert key in type(getattr(params, section)).model_fields, (section, key)
