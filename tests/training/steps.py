"""Which optimizer steps a Trainer actually runs (resume tests)."""

from __future__ import annotations


def count_training_steps(monkeypatch) -> list[int]:
    """Record the global step of every ``Trainer.training_step`` call from now on."""
    from transformers import Trainer

    steps_run: list[int] = []
    real_step = Trainer.training_step

    def counting_step(self, *args, **kwargs):
        steps_run.append(self.state.global_step + 1)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", counting_step)
    return steps_run
