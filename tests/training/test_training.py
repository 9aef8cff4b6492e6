"""SFT and DPO run for real (2 steps) on a tiny local model and write a loadable merged model."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from complexif.config import deep_merge
from complexif.training.data import dpo_dataset
from complexif.training.dpo import train_dpo
from complexif.training.sft import train_sft
from tests.conftest import REPO_ROOT, repo_params, updated
from tests.training.steps import count_training_steps

# What a 2-step run on a tiny model needs, over the repo's train.sft / train.dpo: every step
# logged and at full learning rate, no checkpoints, no general data mixed in.
TINY = {
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "max_length": 64,
    "logging_steps": 1,
    "warmup_steps": 0.0,
    "lr_scheduler_type": "linear",
    "checkpoint_steps": None,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
}


def _sft_cfg(**changes):
    tiny = {**TINY, "general_data": {"ratio": 0.0}}
    return updated(repo_params().train.sft, **deep_merge(tiny, changes))


def _dpo_cfg(**changes):
    return updated(repo_params().train.dpo, **deep_merge(TINY, changes))


def _sft_records(n=4):
    return [
        {
            "id": f"s{i}",
            "messages": [
                {"role": "user", "content": f"Write the word {w} in capitals."},
                {"role": "assistant", "content": w.upper()},
            ],
        }
        for i, w in enumerate(["apple", "river", "stone", "cloud"][:n])
    ]


def _dpo_records():
    return [
        {
            "id": f"d{i}",
            "prompt": [{"role": "user", "content": f"Say {w} in lowercase."}],
            "chosen": [{"role": "assistant", "content": w}],
            "rejected": [{"role": "assistant", "content": w.upper()}],
        }
        for i, w in enumerate(["apple", "river", "stone", "cloud"])
    ]


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_dpo_dataset_keeps_conversational_columns():
    ds = dpo_dataset(_dpo_records())
    assert set(ds.column_names) == {"prompt", "chosen", "rejected"}


MERGED = {"save": "merged", "merged_dtype": "float32"}


def test_sft_then_dpo_train_and_save_merged_models(tiny_model_dir, tmp_path):
    cfg = _sft_cfg(learning_rate=1e-2, **MERGED)
    sft = train_sft(
        _sft_records(), tiny_model_dir, tmp_path / "sft", cfg, device="cpu", curriculum=True
    )
    assert [row["step"] for row in sft.history] == [1.0, 2.0]
    assert all(row["loss"] > 0 for row in sft.history)
    assert sft.metrics["n_examples"] == 4
    base_w, sft_w = _weights(tiny_model_dir), _weights(tmp_path / "sft")
    # Merged LoRA: same tensor names as the base (no adapter keys), and some weights moved.
    assert set(sft_w) <= set(base_w)
    assert any(not torch.equal(base_w[k], sft_w[k]) for k in sft_w)

    dcfg = _dpo_cfg(learning_rate=1e-2, **MERGED)
    dpo = train_dpo(_dpo_records(), tmp_path / "sft", tmp_path / "dpo", dcfg, device="cpu")
    assert len(dpo.history) == 2
    assert "rewards/margins" in dpo.history[-1]
    assert dpo.metrics["n_pairs"] == 4
    assert any(
        not torch.equal(sft_w[k], v) for k, v in _weights(tmp_path / "dpo").items() if k in sft_w
    )


def test_sft_then_dpo_store_adapter_stacks_over_the_base(tiny_model_dir, tmp_path):
    from complexif.llm.stored_model import load_causal_lm, read_stack

    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / "base")
    cfg = _sft_cfg(learning_rate=1e-2)
    assert cfg.save == "adapter"  # the shipped default
    train_sft(_sft_records(), models / "base", models / "sft", cfg, device="cpu", curriculum=True)
    train_dpo(_dpo_records(), models / "sft", models / "dpo", _dpo_cfg(), device="cpu")
    stack = read_stack(models / "dpo")
    assert stack is not None
    assert (stack.base, stack.adapters) == ("../base", ("adapters/sft", "adapters/dpo"))
    assert not list(models.glob("[sd]*/model.safetensors"))
    weights = [
        load_causal_lm(models / m, torch.float32).state_dict() for m in ("base", "sft", "dpo")
    ]
    for before, after in zip(weights, weights[1:], strict=False):
        assert any(not torch.equal(before[k], after[k]) for k in before)


def test_dpo_sft_loss_weight_adds_the_nll_of_chosen(tiny_model_dir, tmp_path):
    """The first logged loss (before any update) is DPO's log(2) plus w * NLL(chosen)."""
    base = dict(max_steps=1, per_device_train_batch_size=4, learning_rate=1e-9)
    plain = train_dpo(
        _dpo_records(),
        tiny_model_dir,
        tmp_path / "a",
        _dpo_cfg(**base, sft_loss_weight=0.0),
        device="cpu",
    )
    mixed = train_dpo(
        _dpo_records(),
        tiny_model_dir,
        tmp_path / "b",
        _dpo_cfg(**base, sft_loss_weight=1.0),
        device="cpu",
    )
    assert plain.history[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    # A random tiny model has an NLL of roughly log(vocab) ~ 10.8 per token.
    assert mixed.history[0]["loss"] > plain.history[0]["loss"] + 5


def test_empty_data_is_a_clear_error(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="no SFT records"):
        train_sft([], tiny_model_dir, tmp_path / "x", _sft_cfg(), device="cpu", curriculum=True)
    with pytest.raises(ValueError, match="no DPO pairs"):
        train_dpo([], tiny_model_dir, tmp_path / "x", _dpo_cfg(), device="cpu")


def _sft_loss(records, model_dir, out, **overrides) -> float:
    cfg = _sft_cfg(
        max_steps=1,
        per_device_train_batch_size=len(records),
        learning_rate=1e-9,
        precision="float32",
        **overrides,
    )
    return train_sft(records, model_dir, out, cfg, device="cpu", curriculum=True).history[0]["loss"]


def test_padding_free_batches_give_the_padded_loss(tiny_model_dir, tmp_path):
    # Examples of very different lengths, one longer than max_length, one of two turns:
    # padding-free batches must neither let examples attend to each other nor truncate
    # differently from TRL's padded path.
    records = _sft_records()
    records[1]["messages"][1]["content"] = "RIVER " * 60
    records[2]["messages"][0]["content"] = "Please, " * 10 + "write the word stone in capitals."
    records[3]["messages"] += [
        {"role": "user", "content": "And the word river?"},
        {"role": "assistant", "content": "RIVER"},
    ]
    padded = _sft_loss(records, tiny_model_dir, tmp_path / "a", max_length=48, padding_free=False)
    free = _sft_loss(records, tiny_model_dir, tmp_path / "b", max_length=48, padding_free=True)
    assert free == pytest.approx(padded, rel=1e-4)
    longer = _sft_loss(records, tiny_model_dir, tmp_path / "c", max_length=96, padding_free=True)
    assert longer != pytest.approx(free, rel=1e-4)  # max_length is really applied


def test_precision_sets_mixed_precision_and_saved_models_generate_with_a_cache(
    tiny_model_dir, tmp_path
):
    import json
    from pathlib import Path

    from complexif.training.common import trainer_kwargs

    assert trainer_kwargs(_sft_cfg(precision="bfloat16"), "cpu", Path("x"), [])["bf16"]
    assert not trainer_kwargs(_sft_cfg(precision="float32"), "cpu", Path("x"), [])["bf16"]
    cfg = _sft_cfg(max_steps=1, precision="bfloat16", **MERGED)
    result = train_sft(
        _sft_records(2), tiny_model_dir, tmp_path / "m", cfg, device="cpu", curriculum=True
    )
    assert result.history[0]["loss"] > 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["use_cache"] is True and config["dtype"] == "float32"


def test_dpo_refuses_padding_free():
    with pytest.raises(ValueError, match="does not support padding-free"):
        _dpo_cfg(padding_free=True)


def test_full_fine_tune_changes_every_weight_matrix(tiny_model_dir, tmp_path):
    cfg = _sft_cfg(learning_rate=1e-2, finetune="full", merged_dtype="float32")
    train_sft(_sft_records(), tiny_model_dir, tmp_path / "full", cfg, device="cpu", curriculum=True)
    before, after = _weights(tiny_model_dir), _weights(tmp_path / "full")
    assert set(after) == set(before)  # a plain model, no adapter keys
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    # Every projection and the embeddings move, not just a low-rank update of some.
    assert any("embed_tokens" in k for k in changed)
    assert all(any(p in k for k in changed) for p in ("q_proj", "mlp.down_proj"))
    dcfg = _dpo_cfg(max_steps=1, learning_rate=5e-5, finetune="full", merged_dtype="float32")
    result = train_dpo(_dpo_records(), tmp_path / "full", tmp_path / "dpo", dcfg, device="cpu")
    assert result.metrics["n_pairs"] == 4


def test_an_interrupted_run_resumes_from_its_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    import complexif.training.common as common

    monkeypatch.setattr(common, "CHECKPOINT_ROOT", tmp_path / "ckpt")
    cfg = _sft_cfg(max_steps=4, learning_rate=1e-2, checkpoint_steps=2)
    # A crash after step 2's checkpoint: the trainer's save hook raises once the checkpoint
    # is on disk, as a kill would.
    from transformers import Trainer

    real_save = Trainer._save_checkpoint

    def save_then_die(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_sft(
            _sft_records(), tiny_model_dir, tmp_path / "m", cfg, device="cpu", curriculum=True
        )
    (work,) = (tmp_path / "ckpt").iterdir()
    assert [p.name for p in work.glob("checkpoint-*")] == ["checkpoint-2"]
    monkeypatch.setattr(Trainer, "_save_checkpoint", real_save)
    steps_run = count_training_steps(monkeypatch)
    resumed = train_sft(
        _sft_records(), tiny_model_dir, tmp_path / "m", cfg, device="cpu", curriculum=True
    )
    # Only steps 3 and 4 ran again; the loss curve still has all four (from the checkpoint's
    # state), and the finished run cleans up its checkpoints.
    assert steps_run == [3, 4]
    assert [row["step"] for row in resumed.history] == [1, 2, 3, 4]
    assert not work.exists()
    assert (tmp_path / "m" / "complexif-model.json").exists()


def test_general_data_is_mixed_in_evenly(tmp_path):
    from complexif.io import DataError
    from complexif.training.mixing import load_general, mix_general
    from complexif.training.sft import with_general_data

    general = load_general(REPO_ROOT / "data/general_chat.jsonl")
    assert len(general) >= 20
    curated = [{"id": f"c{i}", "messages": []} for i in range(20)]
    mixed = mix_general(curated, general, 0.25, seed=0)
    assert len(mixed) == 25
    assert [r for r in mixed if r["id"].startswith("c")] == curated  # order kept
    spots = [i for i, r in enumerate(mixed) if r["id"].startswith("general")]
    assert max(b - a for a, b in zip(spots, spots[1:], strict=False)) <= 6  # spread out
    assert mix_general(curated, general, 0.25, seed=0) == mixed
    cfg = _sft_cfg(general_data={"ratio": 0.0})
    assert with_general_data(curated, cfg) == curated
    bad = tmp_path / "g.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(DataError, match=r"g\.jsonl:1: field 'messages'"):
        load_general(bad)
