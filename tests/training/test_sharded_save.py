"""Under FSDP or DeepSpeed the main process does not hold the whole model: the trainer's own save
gathers it, and the main process rebuilds the merged model from that save and the starting
weights. Here a one-process trainer's save stands in for the gather; the rebuilt model must be
the model merged in place, byte for byte."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from complexif.training.common import load_policy, reload_saved, save_output
from complexif.training.data import sft_dataset
from complexif.training.sft import sft_trainer
from tests.conftest import repo_params, updated


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


def files(directory):
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("finetune", "save"), [("lora", "merged"), ("lora", "adapter"), ("full", "merged")]
)
def test_model_rebuilt_from_the_trainers_save_is_the_model_saved_in_place(
    tiny_model_dir, tmp_path, finetune, save
):
    trainer, tokenizer = _trainer(tiny_model_dir, tmp_path / "work", finetune)
    gathered = tmp_path / "gathered"
    trainer.save_model(str(gathered))
    assert (gathered / "adapter_config.json").is_file() is (finetune == "lora")
    rebuilt = reload_saved(gathered, tiny_model_dir)
    # The same output name in two places, as the stage's out on two machines.
    out_rebuilt, out_in_place = tmp_path / "rebuilt" / "sft", tmp_path / "in_place" / "sft"
    save_output(rebuilt, tokenizer, out_rebuilt, tiny_model_dir, save, "float32")
    save_output(trainer.model, tokenizer, out_in_place, tiny_model_dir, save, "float32")
    rebuilt, in_place = files(out_rebuilt), files(out_in_place)
    assert rebuilt.keys() == in_place.keys()
    assert [name for name in rebuilt if rebuilt[name] != in_place[name]] == []
    if save == "adapter":
        assert (out_rebuilt / "adapters" / "sft" / "adapter_model.safetensors").is_file()
        return
    # The weights moved: the comparison above is between trained models.
    merged = load_file(str(out_rebuilt / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(merged[k], base[k]) for k in base if k in merged)
