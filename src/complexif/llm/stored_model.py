"""How a trained model is stored: whole weights, or LoRA adapters over a base model it names.

A LoRA run changes a few million numbers of a model with hundreds of millions; keeping the
merged copy of every SFT and DPO model made the DVC cache grow by the whole model per experiment.
So by default a trained model directory holds only its adapters and a reference:

    models/dpo/
      complexif-model.json    {"base": {"path": "../base", "fingerprint": ...},
                               "adapters": ["adapters/sft", "adapters/dpo"]}
      adapters/sft/           the SFT adapter (PEFT's adapter_config.json + safetensors)
      adapters/dpo/           the DPO adapter, trained over base + SFT merged
      tokenizer files

Loading applies the adapters in order, each merged into fp32 weights, which is exactly the
model the merged copy held: the same greedy answers (tests compare them). A model trained from
a stacked one copies that one's adapters, so every stack rests on the plain base model alone
and a stage that loads it needs only the stack and the base, never the models in between.

The base reference is a path relative to the stack (a registered copy names its base by a
``models:/`` URI instead, which :mod:`complexif.tracking.models` fetches and turns back into a
path); its fingerprint is checked on load, so a stack is never applied to weights it was not
trained on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STACK_FILE = "complexif-model.json"
ADAPTERS_DIR = "adapters"
STACK_FORMAT = 1


class StoredModelError(ValueError):
    """A stored model cannot be loaded as it is (a missing or different base, a bad stack file)."""


@dataclass(frozen=True)
class AdapterStack:
    """What :data:`STACK_FILE` says: the base model and the adapters to apply to it, in order."""

    base: str
    base_fingerprint: str
    adapters: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STACK_FORMAT,
            "base": {"path": self.base, "fingerprint": self.base_fingerprint},
            "adapters": list(self.adapters),
        }


def read_stack(model_dir: str | Path) -> AdapterStack | None:
    """The stack stored in ``model_dir``; None for a plain (whole-weights) model directory."""
    path = Path(model_dir) / STACK_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        base = data["base"]
        stack = AdapterStack(
            base=str(base["path"]),
            base_fingerprint=str(base["fingerprint"]),
            adapters=tuple(str(a) for a in data["adapters"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoredModelError(f"{path}: not a readable model stack ({exc})") from exc
    if data.get("format") != STACK_FORMAT:
        raise StoredModelError(
            f"{path}: field 'format' is {data.get('format')!r}; this release reads {STACK_FORMAT}"
        )
    if not stack.adapters:
        raise StoredModelError(f"{path}: field 'adapters' is empty")
    return stack


def write_stack(model_dir: str | Path, stack: AdapterStack) -> None:
    from complexif.io import write_json

    write_json(Path(model_dir) / STACK_FILE, stack.to_json())


def resolve_base(model_dir: str | Path, stack: AdapterStack) -> Path:
    """The local directory of the stack's base, a path taken from ``model_dir``."""
    if ":/" in stack.base:
        raise StoredModelError(
            f"{Path(model_dir) / STACK_FILE}: base {stack.base} is a registry URI; load a "
            "registered model through complexif.tracking.models, which fetches its base"
        )
    return (Path(model_dir) / stack.base).resolve()


def check_base(model_dir: str | Path, stack: AdapterStack, base_dir: Path) -> None:
    """Refuse a base that is missing or is not the model the adapters were trained on."""
    from complexif.llm.transformers_backend import model_fingerprint

    if not base_dir.is_dir():
        raise StoredModelError(
            f"{model_dir}: its adapters apply to the base model at {base_dir}, which does not "
            "exist; fetch it (`dvc pull`) or run `dvc repro` first"
        )
    found = model_fingerprint(base_dir)
    if found != stack.base_fingerprint:
        raise StoredModelError(
            f"{model_dir}: its adapters were trained on a base model with fingerprint "
            f"{stack.base_fingerprint}, but {base_dir} has {found}; re-run `dvc repro` so the "
            "model is trained again on this base"
        )


def load_causal_lm(model_dir: str | Path, dtype: Any):
    """A causal LM from a plain model directory or an adapter stack, in ``dtype`` (a torch
    dtype). A stack's adapters are merged one by one into fp32 weights first."""
    import torch
    from transformers import AutoModelForCausalLM

    stack = read_stack(model_dir)
    if stack is None:
        return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    base_dir = resolve_base(model_dir, stack)
    check_base(model_dir, stack, base_dir)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = apply_adapters(model, [Path(model_dir) / a for a in stack.adapters])
    return model if dtype == torch.float32 else model.to(dtype)


def apply_adapters(model, adapter_dirs: list[Path]):
    """``model`` with each LoRA adapter merged into its weights, in order."""
    from peft import PeftModel

    for adapter in adapter_dirs:
        if not (adapter / "adapter_config.json").is_file():
            raise StoredModelError(f"{adapter}: no adapter_config.json; the stack is incomplete")
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model


def save_stack(peft_model, tokenizer, out_dir: str | Path, start_dir: str | Path) -> None:
    """Save a LoRA model trained from ``start_dir`` as an adapter stack in ``out_dir``, atomically:
    ``start_dir``'s own adapters (when it is a stack) and then this one."""
    from complexif.llm.model_source import atomic_dir, normalise_saved_model
    from complexif.llm.transformers_backend import model_fingerprint

    out_dir, start_dir = Path(out_dir), Path(start_dir)
    start = read_stack(start_dir)
    if start is None:
        base_dir = start_dir.resolve()
        inherited: tuple[str, ...] = ()
    else:
        base_dir = resolve_base(start_dir, start)
        inherited = start.adapters
    name = _adapter_name(out_dir.name, inherited)
    with atomic_dir(out_dir) as tmp:
        for adapter in inherited:
            shutil.copytree(start_dir / adapter, tmp / adapter)
        peft_model.save_pretrained(tmp / ADAPTERS_DIR / name, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        normalise_saved_model(tmp)
        # The path PEFT records is wherever this process loaded the base from (the stack file is
        # the reference that counts): cleared, so equal adapters have equal bytes everywhere.
        _set_adapter_base(tmp / ADAPTERS_DIR / name)
        # PEFT's model card names this machine's paths and nothing the stack file does not.
        (tmp / ADAPTERS_DIR / name / "README.md").unlink(missing_ok=True)
        write_stack(
            tmp,
            AdapterStack(
                base=os.path.relpath(base_dir, out_dir.resolve()),
                base_fingerprint=start.base_fingerprint if start else model_fingerprint(base_dir),
                adapters=(*inherited, f"{ADAPTERS_DIR}/{name}"),
            ),
        )


def _adapter_name(stage: str, inherited: tuple[str, ...]) -> str:
    taken = {Path(a).name for a in inherited}
    if stage not in taken:
        return stage
    return f"{len(inherited) + 1}-{stage}"


def _set_adapter_base(adapter_dir: Path) -> None:
    from complexif.io import write_json

    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = None
    # True once loaded back for use; a trainer's own copy says False, a rebuilt one True.
    config["inference_mode"] = True
    write_json(path, config)


def stored_bytes(model_dir: str | Path) -> int:
    """Bytes a model directory takes on disk (what DVC caches for it)."""
    return sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file())


def save_merged(model, tokenizer, out_dir: str | Path, dtype: Any) -> None:
    """Save ``model`` (a LoRA adapter merged into its weights first) as a plain directory of
    ``dtype`` weights (a torch dtype)."""
    from complexif.llm.model_source import save_model_dir

    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model = model.to(dtype) if model.dtype != dtype else model
    # Trainers switch the KV cache off for training; the saved model is for generation.
    model.config.use_cache = True
    save_model_dir(model, tokenizer, out_dir)


def write_merged(model_dir: str | Path, out_dir: str | Path, dtype: Any) -> None:
    """Write ``model_dir`` (a stack or whole weights) as a plain directory of ``dtype`` weights,
    for tools that load only those (``vllm serve``, the hub)."""
    import torch
    from transformers import AutoTokenizer

    model = load_causal_lm(model_dir, torch.float32)
    save_merged(model, AutoTokenizer.from_pretrained(str(model_dir)), out_dir, dtype)
