"""A decoder-only transformer forward over a slot KV cache, for continuous batching.

Why not ``model.generate``: on a CPU with a small model, a decode step of transformers'
generate costs far more in per-step bookkeeping (a growing dynamic cache copied every step,
mask building, logits processors) than in arithmetic, and a static batch keeps decoding rows
that have finished. This module is the arithmetic only: the same weights, the model's own norm and activation
modules, the other operations in transformers' order, against a preallocated cache
where each sequence owns a *slot* (a row) and its own position. The scheduler
(:mod:`complexif.engine.scheduler`) decides which slots are filled.

Supported: ``llama``, ``mistral`` (no sliding window within the cache), ``qwen2`` (q/k/v biases)
and ``qwen3`` (q/k RMSNorm) checkpoints. :func:`supports` says whether a model qualifies; other
architectures fall back to transformers' generate in the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def supports(model) -> str | None:
    """``None`` when :class:`SlotDecoder` can run ``model``, else the reason it cannot."""
    cfg = model.config
    if cfg.model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {cfg.model_type!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
    if getattr(cfg, "mlp_bias", False):
        return "MLP biases"
    window = getattr(cfg, "sliding_window", None)
    if window and getattr(cfg, "use_sliding_window", cfg.model_type == "mistral"):
        return f"sliding-window attention ({window})"
    if getattr(cfg, "pretraining_tp", 1) not in (1, None):
        return "pretraining_tp > 1"
    return None


@dataclass
class _Layer:
    in_norm: Callable[[torch.Tensor], torch.Tensor]
    qkv_w: torch.Tensor
    qkv_b: torch.Tensor | None
    q_norm: Callable[[torch.Tensor], torch.Tensor] | None
    k_norm: Callable[[torch.Tensor], torch.Tensor] | None
    o_w: torch.Tensor
    post_norm: Callable[[torch.Tensor], torch.Tensor]
    gate_up_w: torch.Tensor
    act: Callable[[torch.Tensor], torch.Tensor]
    down_w: torch.Tensor


class SlotDecoder:
    """The forward pass of a Llama-family model over ``n_slots`` cache rows of ``capacity``.

    Weights are taken from a loaded transformers model (no copy where possible); q/k/v and
    gate/up projections are concatenated so one matrix product does the work of three or two.
    """

    def __init__(
        self, model, n_slots: int, capacity: int, weight_dtype: torch.dtype | None = None
    ) -> None:
        reason = supports(model)
        if reason is not None:
            raise ValueError(f"SlotDecoder does not support {reason}")
        cfg = model.config
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype  # the residual stream's
        # Matrix products and the KV cache may run narrower than the residual stream: on a CPU
        # with AVX512-BF16, bf16 products are 3-5x faster than fp32 ones, and a bf16 cache
        # halves the bytes attention reads per step; norms and residual adds stay in fp32.
        self.weight_dtype = weight_dtype or self.dtype
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.scale = self.head_dim**-0.5
        self.n_slots = n_slots
        self.capacity = capacity
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.final_norm = inner.norm
        self.lm_head = model.lm_head.weight.to(self.weight_dtype)
        self.layers = [self._fuse(layer, self.weight_dtype) for layer in inner.layers]
        # cos/sin for every position a slot can hold, from the model's own rotary module, so
        # every RoPE variant (llama3, yarn, dynamic ...) is handled by the code that defines it.
        positions = torch.arange(capacity, device=self.device)[None]
        probe = torch.zeros(1, 1, self.head_dim, device=self.device, dtype=self.dtype)
        cos, sin = inner.rotary_emb(probe, positions)
        self.cos, self.sin = cos[0], sin[0]  # [capacity, head_dim]
        shape = (len(self.layers), n_slots, self.n_kv, capacity, self.head_dim)
        self.k_cache = torch.zeros(shape, device=self.device, dtype=self.weight_dtype)
        self.v_cache = torch.zeros(shape, device=self.device, dtype=self.weight_dtype)

    @staticmethod
    def _fuse(layer, dtype: torch.dtype) -> _Layer:
        attn, mlp = layer.self_attn, layer.mlp
        biases = [p.bias for p in (attn.q_proj, attn.k_proj, attn.v_proj)]
        qkv = [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]
        # Norms and the activation are the model's own modules: their arithmetic is its own.
        return _Layer(
            in_norm=layer.input_layernorm,
            qkv_w=torch.cat(qkv).to(dtype),
            qkv_b=torch.cat(biases).to(dtype) if all(b is not None for b in biases) else None,
            q_norm=getattr(attn, "q_norm", None),
            k_norm=getattr(attn, "k_norm", None),
            o_w=attn.o_proj.weight.to(dtype),
            post_norm=layer.post_attention_layernorm,
            gate_up_w=torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).to(dtype),
            act=mlp.act_fn,
            down_w=mlp.down_proj.weight.to(dtype),
        )

    # ------------------------------------------------------------------------------------
    # Building blocks, in the order transformers' Llama-family modules compute them.

    @staticmethod
    def _linear(
        x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.linear(x.to(weight.dtype), weight, bias).to(x.dtype)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _qkv(self, layer: _Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """q [..., H, D], k and v [..., KV, D] for hidden states h [..., hidden]."""
        qkv = self._linear(h, layer.qkv_w, layer.qkv_b)
        nq, nk = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        q = qkv[..., :nq].unflatten(-1, (self.n_heads, self.head_dim))
        k = qkv[..., nq : nq + nk].unflatten(-1, (self.n_kv, self.head_dim))
        v = qkv[..., nq + nk :].unflatten(-1, (self.n_kv, self.head_dim))
        if layer.q_norm is not None and layer.k_norm is not None:
            q, k = layer.q_norm(q), layer.k_norm(k)
        cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # broadcast over heads
        return self._rotate(q, cos, sin), self._rotate(k, cos, sin), v

    def _mlp(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        gate, up = self._linear(layer.post_norm(x), layer.gate_up_w).chunk(2, dim=-1)
        return x + self._linear(layer.act(gate) * up, layer.down_w)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = self._linear(self.final_norm(x), self.lm_head)
        return logits.to(torch.promote_types(logits.dtype, torch.float32))

    # ------------------------------------------------------------------------------------

    def prefill(self, slots: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """Run whole prompts into their slots (positions from 0); logits of each last token.

        Prompts are right-padded into one batch: with a causal mask a real token never sees
        the padding after it, so padding changes no real position.
        """
        n, width = len(prompts), max(len(p) for p in prompts)
        if width > self.capacity:
            raise ValueError(f"prompt of {width} tokens exceeds the cache ({self.capacity})")
        ids = torch.zeros(n, width, dtype=torch.long, device=self.device)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt)] = torch.tensor(prompt, device=self.device)
        index = torch.tensor(slots, device=self.device)
        cos, sin = self.cos[:width], self.sin[:width]
        x = F.embedding(ids, self.embed)  # [n, T, hidden]
        for li, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, layer.in_norm(x), cos, sin)
            # [n, heads, T, D], in the cache's dtype so prefill attends as decode will
            q, k, v = (t.transpose(1, 2).to(self.weight_dtype) for t in (q, k, v))
            self.k_cache[li, index, :, :width] = k
            self.v_cache[li, index, :, :width] = v
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=self.scale, enable_gqa=self.n_kv != self.n_heads
            )
            x = x + self._linear(out.transpose(1, 2).flatten(-2), layer.o_w)
            x = self._mlp(layer, x)
        last = torch.tensor([len(p) - 1 for p in prompts], device=self.device)
        return self._logits(x[torch.arange(n, device=self.device), last])

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, rows: int) -> torch.Tensor:
        """One token for each of slots ``0..rows-1`` at its own position; their logits.

        ``tokens`` and ``positions`` are [rows]. A slot that holds no sequence may be decoded
        too (a wasted row is cheaper than a gather): it writes only at its own position, which a
        later prefill overwrites.
        """
        width = int(positions.max()) + 1
        # Where each row's new key goes in a layer's cache seen as [slots * KV * capacity, D]:
        # one index_copy_ per layer instead of a slow two-index index_put.
        heads = torch.arange(self.n_kv, device=self.device)
        slot_rows = torch.arange(rows, device=self.device)[:, None] * self.n_kv + heads[None]
        write_at = (slot_rows * self.capacity + positions[:, None]).flatten()
        visible = torch.arange(width, device=self.device)[None] <= positions[:, None]
        visible = visible[:, None, None]  # [rows, 1, 1, width]: each row sees its own prefix
        cos, sin = self.cos[positions], self.sin[positions]  # [rows, D]
        x = F.embedding(tokens, self.embed)  # [rows, hidden]
        for li, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, layer.in_norm(x), cos, sin)
            kc, vc = self.k_cache[li], self.v_cache[li]
            kc.view(-1, self.head_dim).index_copy_(0, write_at, k.flatten(0, 1).to(kc.dtype))
            vc.view(-1, self.head_dim).index_copy_(0, write_at, v.flatten(0, 1).to(vc.dtype))
            out = F.scaled_dot_product_attention(
                q[:, :, None].to(kc.dtype),  # [rows, H, 1, D]
                kc[:rows, :, :width],
                vc[:rows, :, :width],
                attn_mask=visible,
                scale=self.scale,
                enable_gqa=self.n_kv != self.n_heads,
            )
            x = x + self._linear(out.flatten(1), layer.o_w)
            x = self._mlp(layer, x)
        return self._logits(x)

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy a sequence's cache from slot ``src`` to slot ``dst`` (compaction)."""
        self.k_cache[:, dst, :, :length] = self.k_cache[:, src, :, :length]
        self.v_cache[:, dst, :, :length] = self.v_cache[:, src, :, :length]
