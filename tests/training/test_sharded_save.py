"""Under FSDP or DeepSpeed the main process does not hold the whole model: the trainer's own save
gathers it, and the main process rebuilds the merged model from that save and the starting
weights. Here a one-process trainer's save stands in for the gather; the rebuilt model must be
the model merged in place, byte for byte."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from complexif.training.common import load_policy, merge_and_save, reload_saved, save_merged
from complexif.training.data import sft_dataset
from complexif.training.sft import sft_trainer
from tests.conftest import repo_params, updated
from tests.llm.test_model_source import files


def _trainer(model_dir, work, finetune):
    cfg = updated(
        repo_params().train.sft,
        finetune=finetune,
        max_length=64,
        precision="float32",
        checkpoint_steps=None,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        general_data={"ratio": 0.0},
    )
    model, tokenizer = load_policy(model_dir, "cpu", cfg.precision)
    records = [
        {
            "id": "s0",
            "messages": [
                {"role": "user", "content": "Say yes."},
                {"role": "assistant", "content": "Yes."},
            ],
        }
    ]
    dataset = sft_dataset(records, tokenizer, cfg.max_length)
    trainer = sft_trainer(model, tokenizer, dataset, cfg, device="cpu", work=work, curriculum=True)
    # Stand-in for training: move the weights the run trains, so the merge is not the identity.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in trainer.model.named_parameters():
            if param.requires_grad and (finetune == "full" or "lora_B" in name):
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return trainer, tokenizer


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_model_rebuilt_from_the_trainers_save_is_the_model_merged_in_place(
    tiny_model_dir, tmp_path, finetune
):
    trainer, tokenizer = _trainer(tiny_model_dir, tmp_path / "work", finetune)
    gathered = tmp_path / "gathered"
    trainer.save_model(str(gathered))
    assert (gathered / "adapter_config.json").is_file() is (finetune == "lora")
    save_merged(reload_saved(gathered, tiny_model_dir), tokenizer, tmp_path / "rebuilt")
    merge_and_save(trainer, tokenizer, tmp_path / "in_place")
    rebuilt, in_place = files(tmp_path / "rebuilt"), files(tmp_path / "in_place")
    assert rebuilt.keys() == in_place.keys()
    assert [name for name in rebuilt if rebuilt[name] != in_place[name]] == []
    # The weights moved: the comparison above is between trained models.
    merged = load_file(str(tmp_path / "rebuilt" / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(merged[k], base[k]) for k in base if k in merged)
