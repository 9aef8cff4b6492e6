"""Shared fixtures. Nothing here downloads: models are built locally from the embedded tokenizer."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The end-to-end pipeline (``tiny_repo``, about half an hour on 2 cores) comes first: under
    # `make test`'s ``-n 2 --dist loadfile`` one worker starts it at once and the other takes
    # every other file meanwhile; scheduled last, it would run alone at the end.
    items.sort(key=lambda item: "tiny_repo" not in getattr(item, "fixturenames", ()))


M = TypeVar("M", bound=BaseModel)


@functools.cache
def repo_params() -> Any:
    """The repository's params.yaml, validated. Tests build their configs from it (the only
    source of defaults) and change what they need with :func:`updated`."""
    from complexif.config import load_params

    return load_params(REPO_ROOT / "params.yaml")


def gen_params(max_new_tokens: int, **changes: Any) -> Any:
    """A request's generation parameters for tests: greedy, one answer, seed 0, unless
    ``changes`` say otherwise (the library has none: params.yaml or the API request gives them)."""
    from complexif.llm.base import GenerationParams

    greedy = {"temperature": 0.0, "top_p": 1.0, "seed": 0, "n": 1}
    return GenerationParams(max_new_tokens=max_new_tokens, **{**greedy, **changes})


def updated(model: M, **changes: Any) -> M:
    """A validated copy of a config model with ``changes`` merged in (nested dicts merge, so
    ``updated(cfg, lora={"r": 4})`` keeps the other LoRA keys)."""
    from complexif.config import deep_merge

    return type(model).model_validate(deep_merge(model.model_dump(), changes))


@pytest.fixture(scope="session")
def embedded_tokenizer_dir(tmp_path_factory) -> Path:
    """The SmolLM2 tokenizer (with its chat template), converted once from the embedded GGUF."""
    from transformers import AutoTokenizer

    from complexif.llm.model_source import resolve_source

    src = resolve_source("embedded", None)
    tok = AutoTokenizer.from_pretrained(src.path, gguf_file=src.gguf_file)
    out = tmp_path_factory.mktemp("tokenizer")
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_tokenizer_dir) -> Path:
    """A randomly initialised 2-layer Llama with the real tokenizer: fast, and a real model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(embedded_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The tiny-preset project after one complete ``dvc repro`` (``tests/tiny_pipeline.py``):
    shared by the end-to-end test and the dispatched run it is compared with."""
    from tests.tiny_pipeline import build

    return build(tmp_path_factory.mktemp("pipeline") / "repo")
