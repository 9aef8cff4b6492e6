"""A training stage stopped while the trainer writes a checkpoint resumes from the last whole one."""

from __future__ import annotations

import os

import pytest

from complexif.config import load_params
from tests.conftest import REPO_ROOT
from tests.training.steps import count_training_steps


def _records() -> list[dict]:
    return [
        {
            "id": f"s{i}",
            "messages": [
                {"role": "user", "content": f"Write the word {w} in capitals."},
                {"role": "assistant", "content": w.upper()},
            ],
        }
        for i, w in enumerate(["apple", "river", "stone", "cloud"])
    ]


def test_a_checkpoint_cut_off_mid_save_is_dropped_and_training_resumes_before_it(
    tiny_model_dir, tmp_path, monkeypatch
):
    import complexif.training.common as common
    from complexif.training.sft import train_sft

    monkeypatch.setattr(common, "CHECKPOINT_ROOT", tmp_path / "ckpt")
    base = load_params(REPO_ROOT / "params.yaml").train.sft
    cfg = base.model_copy(
        update={
            "max_steps": 6,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1,
            "max_length": 64,
            "checkpoint_steps": 2,
            "logging_steps": 1,
            "precision": "float32",
            "general_data": base.general_data.model_copy(update={"ratio": 0.0}),
        }
    )
    from transformers import Trainer

    real_save = Trainer._save_checkpoint

    def stopped_mid_save(self, model, trial):
        if self.state.global_step < 4:
            return real_save(self, model, trial)
        # Step 4's checkpoint gets its weights, then the stop signal arrives: no trainer state.
        self.save_model(os.path.join(self.args.output_dir, "checkpoint-4"), _internal_call=True)
        raise KeyboardInterrupt("stopped by SIGTERM")

    monkeypatch.setattr(Trainer, "_save_checkpoint", stopped_mid_save)
    with pytest.raises(KeyboardInterrupt):
        train_sft(_records(), tiny_model_dir, tmp_path / "m", cfg, device="cpu", curriculum=True)
    (work,) = (tmp_path / "ckpt").iterdir()
    assert sorted(p.name for p in work.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (work / "checkpoint-4" / "trainer_state.json").exists()

    monkeypatch.setattr(Trainer, "_save_checkpoint", real_save)
    steps_run = count_training_steps(monkeypatch)
    resumed = train_sft(
        _records(), tiny_model_dir, tmp_path / "m", cfg, device="cpu", curriculum=True
    )
    # Training went on from checkpoint-2 (steps 3 to 6); the cut-off checkpoint-4 was not trusted.
    assert steps_run == [3, 4, 5, 6]
    assert [row["step"] for row in resumed.history] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "m" / "complexif-model.json").exists()
