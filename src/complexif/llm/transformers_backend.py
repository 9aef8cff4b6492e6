"""Local generation: continuous batching over a slot KV cache, or transformers' generate."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from complexif.llm.base import (
    ChatRequest,
    ChatResponse,
    GenerationParams,
    merge_samples,
    split_samples,
)

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is available")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: bf16 products where the hardware has them (CUDA, or a CPU with AVX512-BF16 or
    AMX, where they are 3-5x faster than fp32), fp32 elsewhere."""
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if _cpu_has_fast_bf16() else "float32"


def _cpu_has_fast_bf16() -> bool:
    # oneDNN's own test (AVX512-BF16 or AMX); a private hook, so an absent one means "no".
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def load_model_and_tokenizer(path: str | Path, device: str, dtype: str):
    """Load a causal LM (a plain directory or an adapter stack) and its tokenizer, ready for
    left-padded batched generation."""
    from transformers import AutoTokenizer

    from complexif.llm.stored_model import load_causal_lm

    device = resolve_device(device)
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device == "cuda" else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_causal_lm(path, torch_dtype)
    model.to(device)
    model.eval()
    return model, tokenizer


class TransformersLLM:
    """Chat generation with a local model, on one of two engines.

    ``continuous`` (the default, for Llama-family models): :class:`ContinuousBatcher` keeps
    ``batch_size`` sequences decoding, a finished one leaving its slot to the next prompt at
    once; its products and KV cache run at ``precision`` with an fp32 residual stream. In fp32
    its greedy answers are transformers' own (tests compare them token for token).
    ``static``: transformers' ``generate`` on fixed batches of prompts sorted by length, the
    reference and the fallback for architectures the continuous engine does not run.
    Greedy unless ``temperature > 0``; a sampled request draws from a generator seeded by its
    own seed (continuous) or by its batch's (static), so a re-run reproduces its answers.
    """

    def __init__(
        self,
        model_path: str | Path,
        batch_size: int,
        device: str,
        *,
        engine: str,
        precision: str,
        dtype: str = "auto",
        name: str | None = None,
    ) -> None:
        from complexif.engine.decoder import supports

        self.model_path = str(model_path)
        self.name = name or Path(self.model_path).name
        self.batch_size = batch_size
        device = resolve_device(device)
        self.precision = resolve_precision(precision, device)
        if engine == "static" and dtype == "auto":
            dtype = self.precision  # the static engine has no mixed mode: the whole model
        self.model, self.tokenizer = load_model_and_tokenizer(model_path, device, dtype)
        self.device = self.model.device
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        if engine == "continuous" and (why := supports(self.model)) is not None:
            log.warning("%s: continuous batching does not support %s; using static", self.name, why)
            engine = "static"
        self.engine = engine
        self._batcher = None
        # Engine and precision change the arithmetic, so they are part of the cache identity.
        self.fingerprint = f"{model_fingerprint(self.model_path)}-{engine}-{self.precision}"

    def _render(self, request: ChatRequest) -> str:
        return self.tokenizer.apply_chat_template(
            list(request.messages), tokenize=False, add_generation_prompt=True
        )

    def generate(
        self,
        requests: Sequence[ChatRequest],
        progress: bool = True,
        on_result: Callable[[int, ChatResponse], None] | None = None,
    ) -> list[ChatResponse]:
        """Answers in request order. ``on_result(index, response)`` is called once per request
        as soon as its answer is final (the continuous engine: when that sequence finishes)."""
        if not requests:
            return []
        if any(r.params.n > 1 for r in requests):
            groups = [split_samples(r) for r in requests]
            flat = self.generate([s for g in groups for s in g], progress=progress)
            out, pos = [], 0
            for req, group in zip(requests, groups, strict=True):
                out.append(merge_samples(req, flat[pos : pos + len(group)]))
                pos += len(group)
        elif self.engine == "continuous":
            return self._generate_continuous(requests, progress, on_result)
        else:
            out = self._generate_static(requests, progress)
        if on_result is not None:
            for i, resp in enumerate(out):
                on_result(i, resp)
        return out

    # ------------------------------------------------------------------------------------
    # continuous engine

    @property
    def batcher(self):
        """The continuous batcher (built on first use; :mod:`complexif.engine.worker` shares it)."""
        if self._batcher is None:
            from complexif.engine.scheduler import ContinuousBatcher

            weight_dtype = getattr(torch, self.precision)
            self._batcher = ContinuousBatcher(
                self.model,
                self.eos_ids,
                n_slots=self.batch_size,
                capacity=256,  # grown to fit by each generate()
                weight_dtype=weight_dtype,
            )
        return self._batcher

    def seq_request(self, request: ChatRequest):
        """The engine's request for one single-sample chat request."""
        from complexif.engine.scheduler import SeqRequest

        ids = self.tokenizer(self._render(request), add_special_tokens=False).input_ids
        p = request.params
        return SeqRequest(tuple(ids), p.max_new_tokens, p.temperature, p.top_p, p.seed)

    def response(self, request: ChatRequest, result) -> ChatResponse:
        """The chat response for the engine's ``result`` of ``request``."""
        return ChatResponse(
            request_id=request.id,
            text=self.tokenizer.decode(list(result.tokens), skip_special_tokens=True).strip(),
            model=self.name,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=len(result.tokens),
        )

    def _generate_continuous(
        self,
        requests: Sequence[ChatRequest],
        progress: bool,
        on_result: Callable[[int, ChatResponse], None] | None = None,
    ) -> list[ChatResponse]:
        seqs = [self.seq_request(r) for r in requests]
        stream = None
        if on_result is not None:

            def stream(index: int, result) -> None:
                on_result(index, self.response(requests[index], result))

        with tqdm(
            total=len(requests), desc=f"generate[{self.name}]", unit="req", disable=not progress
        ) as bar:
            results = self.batcher.run(seqs, on_progress=bar.update, on_result=stream)
        return [self.response(r, res) for r, res in zip(requests, results, strict=True)]

    # ------------------------------------------------------------------------------------
    # static engine

    def _generate_static(
        self, requests: Sequence[ChatRequest], progress: bool
    ) -> list[ChatResponse]:
        texts = [self._render(r) for r in requests]
        lengths = [len(self.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
        # Group requests with identical generation params so one batch shares one generate() call.
        order = sorted(
            range(len(requests)), key=lambda i: (_params_key(requests[i].params), lengths[i])
        )
        results: list[ChatResponse | None] = [None] * len(requests)
        bar = tqdm(
            total=len(requests), desc=f"generate[{self.name}]", unit="req", disable=not progress
        )
        batch: list[int] = []
        for idx in order:
            if batch and (
                len(batch) == self.batch_size or requests[batch[0]].params != requests[idx].params
            ):
                self._run_batch(batch, requests, texts, results)
                bar.update(len(batch))
                batch = []
            batch.append(idx)
        if batch:
            self._run_batch(batch, requests, texts, results)
            bar.update(len(batch))
        bar.close()
        return [r for r in results if r is not None]

    @torch.inference_mode()
    def _run_batch(
        self,
        batch: list[int],
        requests: Sequence[ChatRequest],
        texts: list[str],
        results: list[ChatResponse | None],
    ) -> None:
        params: GenerationParams = requests[batch[0]].params
        enc = self.tokenizer(
            [texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        gen_kwargs = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.do_sample,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if params.do_sample:
            gen_kwargs.update(temperature=params.temperature, top_p=params.top_p)
            torch.manual_seed(params.seed)
        else:
            # Unset sampling defaults from generation_config so greedy decoding raises no warnings.
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        out = self.model.generate(**enc, **gen_kwargs)
        prompt_len = enc.input_ids.shape[1]
        for row, idx in enumerate(batch):
            new_tokens = out[row, prompt_len:]
            mask = new_tokens != self.tokenizer.pad_token_id
            ids = new_tokens.tolist()
            n_new = len(ids)
            finish = "length"
            for pos, tok in enumerate(ids):
                if tok in self.eos_ids:
                    n_new, finish = pos, "stop"
                    break
            text = self.tokenizer.decode(ids[:n_new], skip_special_tokens=True).strip()
            results[idx] = ChatResponse(
                request_id=requests[idx].id,
                text=text,
                model=self.name,
                finish_reason=finish,
                prompt_tokens=int(enc.attention_mask[row].sum()),
                completion_tokens=int(min(n_new, int(mask.sum()) if finish == "length" else n_new)),
            )


def model_fingerprint(path: str | Path) -> str:
    """A hash of a model directory's weights, config and tokenizer files.

    Part of every cache key for this model: retraining ``models/sft`` in place changes it, so
    the answers of the old weights are never served for the new ones. Hashing ~500 MB takes
    well under a second next to loading the model.
    """
    root = Path(path)
    if not root.is_dir():
        return hashlib.sha256(str(path).encode()).hexdigest()[:16]
    h = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(root)).encode())
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _params_key(p: GenerationParams) -> tuple:
    return (p.max_new_tokens, p.temperature, p.top_p, p.seed, p.n)


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    eos = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(eos)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
