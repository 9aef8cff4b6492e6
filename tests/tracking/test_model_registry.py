"""Registered models: an adapter stack is logged without its base weights, the base once; a
registered model loads (pyfunc, or as a directory for `complexif serve`) and answers as the DVC
output does; scores land on the version and the alias follows the best one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from complexif.llm.stored_model import load_causal_lm, read_stack, save_stack
from complexif.llm.transformers_backend import model_fingerprint
from complexif.tracking.chat_model import ChatSettings
from complexif.tracking.models import (
    AliasRule,
    RegisteredVersion,
    download_model_dir,
    ensure_registered,
    find_version,
    record_scores,
    register_model,
)
from tests.llm.test_stored_model import F32, _answers, _lora, _tokenizer

SETTINGS = ChatSettings(
    engine="continuous", precision="float32", batch_size=2, max_new_tokens=12, device="cpu"
)
PROMPTS = ["Name a colour.", "Write two words about rain."]


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    yield experiment
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def stacks(tiny_model_dir: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "base")
    tokenizer = _tokenizer(models / "base")
    save_stack(
        _lora(load_causal_lm(models / "base", F32), 1), tokenizer, models / "sft", models / "base"
    )
    save_stack(
        _lora(load_causal_lm(models / "sft", F32), 2), tokenizer, models / "dpo", models / "sft"
    )
    return models


def _register(model_dir: Path, name: str, experiment: str) -> RegisteredVersion:
    import mlflow

    with mlflow.start_run(experiment_id=experiment):
        return register_model(model_dir, name, SETTINGS, base_name="t-base", registered_by="test")


def test_registered_stacks_share_one_base_and_answer_as_the_dvc_output(
    store: str, stacks: Path, tmp_path: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    sft = _register(stacks / "sft", "t-sft", store)
    dpo = _register(stacks / "dpo", "t-dpo", store)
    assert (sft, dpo) == (RegisteredVersion("t-sft", "1"), RegisteredVersion("t-dpo", "1"))
    client = MlflowClient()
    # The base was logged once, for the first stack; the second found it by its fingerprint.
    assert [str(v.version) for v in client.search_model_versions("name = 't-base'")] == ["1"]
    base = find_version(client, "t-base", model_fingerprint(stacks / "base"))
    assert base is not None and str(base.version) == "1"
    found = find_version(client, "t-dpo", model_fingerprint(stacks / "dpo"))
    assert found is not None and str(found.version) == "1"

    # The stack's own artifacts hold adapters, never the base weights.
    logged = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=dpo.uri, dst_path=str(tmp_path / "raw"))
    )
    assert not list(logged.rglob("model.safetensors"))
    assert read_stack(next(logged.glob("artifacts/*"))).base == "models:/t-base/1"
    # Downloaded for use, the stack points at the downloaded base.
    local = download_model_dir(dpo.uri)
    base_copy = (local / read_stack(local).base).resolve()
    assert model_fingerprint(base_copy) == model_fingerprint(stacks / "base")

    expected = _answers(stacks / "dpo")
    loaded = mlflow.pyfunc.load_model(dpo.uri)
    assert loaded.predict(PROMPTS) == expected
    # Generation params pass through the signature: fewer tokens, a shorter answer.
    short = loaded.predict(PROMPTS[:1], params={"max_new_tokens": 3})
    assert expected[0].startswith(short[0]) and len(short[0]) < len(expected[0])
    assert _answers(local) == expected

    # Registering the same weights again (a rerun) is a new version; ensure_registered reuses.
    again = ensure_registered(
        stacks / "dpo", "t-dpo", SETTINGS, base_name="t-base", registered_by="test"
    )
    assert again == dpo


def test_the_alias_moves_to_a_better_version_only(store: str, stacks: Path) -> None:
    from mlflow import MlflowClient

    rule = AliasRule(alias="best", metric="ifeval.prompt_level_strict_acc", higher_is_better=True)
    first = _register(stacks / "sft", "t-sft", store)
    second = _register(stacks / "sft", "t-sft", store)
    assert record_scores(first, {"ifeval.prompt_level_strict_acc": 0.30}, rule)
    assert not record_scores(second, {"ifeval.prompt_level_strict_acc": 0.25}, rule)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("t-sft", "best").version) == first.version
    assert client.get_model_version("t-sft", "2").tags["ifeval.prompt_level_strict_acc"] == "0.25"
    assert record_scores(second, {"ifeval.prompt_level_strict_acc": 0.31}, rule)
    assert str(client.get_model_version_by_alias("t-sft", "best").version) == second.version
    assert download_model_dir("models:/t-sft@best").parent.parent.name.startswith("2-")


def test_an_unknown_alias_is_a_clear_error(store: str, stacks: Path) -> None:
    _register(stacks / "sft", "t-sft", store)
    with pytest.raises(Exception, match="best"):
        download_model_dir("models:/t-sft@best")


def test_complexif_serve_answers_with_a_registered_model(
    store: str, stacks: Path, tmp_path: Path
) -> None:
    import os

    from tests.conftest import REPO_ROOT
    from tests.llm.servers import client
    from tests.llm.test_server import _serve_cli

    dpo = _register(stacks / "dpo", "t-dpo", store)
    record_scores(dpo, {"m": 1.0}, AliasRule("best", "m", True))
    expected = _answers(stacks / "dpo")[0]
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{REPO_ROOT}"}
    argv = ["serve", "--params", str(REPO_ROOT / "params.yaml"), "--model", "models:/t-dpo@best"]
    argv += ["--port", "0", "--device", "cpu", "--engine", "continuous", "--precision", "float32"]
    with _serve_cli(argv, env=env, cwd=tmp_path) as seen:
        assert seen[-1].startswith("serving models:/t-dpo@best at http://"), seen
        url = seen[-1].split(" at ")[1].strip()
        out = client(url).chat.completions.create(
            model="models:/t-dpo@best",
            messages=[{"role": "user", "content": PROMPTS[0]}],
            max_tokens=12,
            temperature=0.0,
        )
        assert out.choices[0].message.content == expected
