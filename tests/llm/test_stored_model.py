"""A LoRA model stored as an adapter stack over the base loads as the model its merged copy held:
the same weights and the same greedy answers, for SFT over base and for DPO over SFT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from complexif.llm.stored_model import (
    STACK_FILE,
    StoredModelError,
    load_causal_lm,
    read_stack,
    save_merged,
    save_stack,
    stored_bytes,
)
from tests.conftest import gen_params

F32 = torch.float32


def _lora(model, seed: int):
    """``model`` under a LoRA adapter whose weights are moved, as training would."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # LoRA's A matrices start random
    peft = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_B" in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.2)
    return peft


@pytest.fixture()
def models(tiny_model_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(tiny_model_dir, root / "base")
    return root


def _tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_weights(a, b) -> bool:
    sa, sb = _state(a), _state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _answers(model_dir: Path) -> list[str]:
    from complexif.llm.base import ChatRequest
    from complexif.llm.transformers_backend import TransformersLLM

    llm = TransformersLLM(model_dir, 2, "cpu", engine="continuous", precision="float32")
    params = gen_params(12)
    prompts = ["Name a colour.", "Write two words about rain."]
    requests = [
        ChatRequest(id=str(i), messages=({"role": "user", "content": p},), params=params)
        for i, p in enumerate(prompts)
    ]
    return [r.text for r in llm.generate(requests, progress=False)]


def test_sft_then_dpo_stacks_load_as_their_merged_copies(models: Path) -> None:
    base = models / "base"
    tokenizer = _tokenizer(base)
    sft = _lora(load_causal_lm(base, F32), seed=1)
    save_stack(sft, tokenizer, models / "sft", base)
    save_merged(_lora(load_causal_lm(base, F32), seed=1), tokenizer, models / "sft-merged", F32)

    stack = read_stack(models / "sft")
    assert stack is not None
    assert stack.base == "../base"
    assert stack.adapters == ("adapters/sft",)
    assert _same_weights(
        load_causal_lm(models / "sft", F32), load_causal_lm(models / "sft-merged", F32)
    )

    # DPO trains a new adapter over SFT (merged in memory) and keeps SFT's adapter beside its own.
    dpo = _lora(load_causal_lm(models / "sft", F32), seed=2)
    save_stack(dpo, tokenizer, models / "dpo", models / "sft")
    save_merged(
        _lora(load_causal_lm(models / "sft-merged", F32), seed=2),
        tokenizer,
        models / "dpo-merged",
        F32,
    )
    stack = read_stack(models / "dpo")
    assert stack is not None
    assert stack.base == "../base"  # never models/sft: a stack needs only itself and the base
    assert stack.adapters == ("adapters/sft", "adapters/dpo")
    assert _same_weights(
        load_causal_lm(models / "dpo", F32), load_causal_lm(models / "dpo-merged", F32)
    )
    assert not _same_weights(
        load_causal_lm(models / "dpo", F32), load_causal_lm(models / "sft", F32)
    )

    assert _answers(models / "dpo") == _answers(models / "dpo-merged")
    assert stored_bytes(models / "dpo") < stored_bytes(models / "dpo-merged")
    # What DVC caches for a stack does not include the base weights.
    assert not list((models / "dpo").rglob("model.safetensors"))


def test_a_stack_on_another_base_or_none_is_refused(models: Path) -> None:
    base = models / "base"
    save_stack(_lora(load_causal_lm(base, F32), seed=1), _tokenizer(base), models / "sft", base)

    config = json.loads((base / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5 + config.get("rms_norm_eps", 1e-6)
    (base / "config.json").write_text(json.dumps(config))
    with pytest.raises(StoredModelError, match="trained on a base model with fingerprint"):
        load_causal_lm(models / "sft", F32)

    shutil.rmtree(base)
    with pytest.raises(StoredModelError, match="does not exist; fetch it"):
        load_causal_lm(models / "sft", F32)


def test_a_bad_stack_file_names_the_file_and_field(models: Path) -> None:
    base = models / "base"
    save_stack(_lora(load_causal_lm(base, F32), seed=1), _tokenizer(base), models / "sft", base)
    path = models / "sft" / STACK_FILE
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format": 7}))
    with pytest.raises(StoredModelError, match=rf"{STACK_FILE}: field 'format' is 7"):
        read_stack(models / "sft")
    path.write_text(json.dumps({**data, "adapters": []}))
    with pytest.raises(StoredModelError, match="field 'adapters' is empty"):
        read_stack(models / "sft")
    path.write_text("{")
    with pytest.raises(StoredModelError, match="not a readable model stack"):
        read_stack(models / "sft")


def test_saving_a_stack_twice_writes_the_same_bytes(models: Path) -> None:
    base = models / "base"
    tokenizer = _tokenizer(base)
    for name in ("a", "b"):
        save_stack(_lora(load_causal_lm(base, F32), seed=3), tokenizer, models / name / "sft", base)
    a, b = (
        {p.relative_to(d): p.read_bytes() for p in d.rglob("*") if p.is_file()}
        for d in (models / "a", models / "b")
    )
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_complexif_models_merge_writes_the_stack_as_whole_weights(models: Path) -> None:
    from complexif.cli import main
    from tests.conftest import REPO_ROOT

    base = models / "base"
    tokenizer = _tokenizer(base)
    save_stack(_lora(load_causal_lm(base, F32), seed=4), tokenizer, models / "sft", base)
    params = str(REPO_ROOT / "params.yaml")
    out = models / "sft-whole"
    argv = ["models", "merge", str(models / "sft"), str(out), "--dtype", "float32"]
    assert main([*argv, "--params", params]) == 0
    assert read_stack(out) is None and (out / "model.safetensors").is_file()
    assert _same_weights(load_causal_lm(out, F32), load_causal_lm(models / "sft", F32))
    assert main(["models", "merge", str(models / "nope"), str(out), "--params", params]) == 2
