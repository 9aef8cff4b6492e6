"""The continuous-batching engine against transformers itself.

In float64 the engine's arithmetic and transformers' agree to rounding, so greedy answers must be
identical token for token: any difference is a bug in the forward pass or in the scheduling
(admission, slot reuse, compaction), never noise.
"""

from __future__ import annotations

import pytest
import torch

from complexif.engine.decoder import SlotDecoder, supports
from complexif.engine.scheduler import ContinuousBatcher, SeqRequest

VOCAB = 97
EOS = 3


def _req(prompt, max_new_tokens, temperature=0.0, top_p=1.0, seed=0) -> SeqRequest:
    """A request, greedy unless the test samples (the engine itself has no defaults)."""
    return SeqRequest(prompt, max_new_tokens, temperature, top_p, seed)


def _tiny(model_type: str, seed: int = 0):
    import transformers

    small = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=EOS,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    classes = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {}),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, {}),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, {"head_dim": 16}),
        "mistral": (
            transformers.MistralConfig,
            transformers.MistralForCausalLM,
            {"sliding_window": None},
        ),
    }
    config_cls, model_cls, extra = classes[model_type]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**small, **extra)).to(torch.float64).eval()
    # Random init is nearly uniform over the vocabulary; sharpen it so greedy choices are
    # decided by the model, not by rounding, and the stop token comes up sometimes.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def _prompts(n: int, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 24, (n,), generator=g).tolist()
    return [torch.randint(4, VOCAB, (k,), generator=g).tolist() for k in lengths]


def _hf_greedy(model, prompt: list[int], max_new: int) -> list[int]:
    out = model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=EOS,
        pad_token_id=0,
    )[0, len(prompt) :].tolist()
    return out[: out.index(EOS)] if EOS in out else out


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3", "mistral"])
def test_decoder_logits_equal_the_models_own_forward(model_type):
    model = _tiny(model_type)
    assert supports(model) is None
    decoder = SlotDecoder(model, n_slots=3, capacity=64)
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    with torch.inference_mode():
        # Slots out of order, so a slot/row mix-up cannot pass.
        first = decoder.prefill([2, 0, 1], prompts)
        full = [model(torch.tensor([p])).logits[0] for p in prompts]
        for row in range(len(prompts)):
            torch.testing.assert_close(first[row], full[row][-1], rtol=0, atol=1e-9)
        # One more token each, every row at its own position, rows in slot order.
        nxt = [20, 21, 22]
        slot_of = [2, 0, 1]
        tokens = torch.tensor([nxt[slot_of.index(s)] for s in range(3)])
        positions = torch.tensor([len(prompts[slot_of.index(s)]) for s in range(3)])
        step = decoder.decode(tokens, positions, rows=3)
        for row, p in enumerate(prompts):
            ref = model(torch.tensor([p + [nxt[row]]])).logits[0, -1]
            torch.testing.assert_close(step[slot_of[row]], ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_greedy_answers_equal_transformers_generate_under_continuous_batching(model_type):
    model = _tiny(model_type)
    prompts = _prompts(12)
    max_new = [3, 17, 9, 30, 1, 12, 25, 6, 30, 2, 14, 8]
    # Fewer slots than prompts: finished sequences hand their slots on, the tail is compacted.
    batcher = ContinuousBatcher(model, [EOS], n_slots=4, capacity=64, prefill_tokens=40)
    results = batcher.run([_req(tuple(p), m) for p, m in zip(prompts, max_new, strict=True)])
    with torch.inference_mode():
        expected = [_hf_greedy(model, p, m) for p, m in zip(prompts, max_new, strict=True)]
    assert [list(r.tokens) for r in results] == expected
    for r, m in zip(results, max_new, strict=True):
        assert r.finish_reason == ("length" if len(r.tokens) == m else "stop")
    assert [r.prompt_tokens for r in results] == [len(p) for p in prompts]
    assert any(r.finish_reason == "stop" for r in results)  # the stop path was exercised
    assert not batcher.busy


def test_compaction_moves_live_sequences_without_changing_them():
    model = _tiny("llama", seed=1)
    prompts = _prompts(3, seed=2)
    requests = [_req(tuple(p), m) for p, m in zip(prompts, [2, 25, 30], strict=True)]
    one_at_a_time = ContinuousBatcher(model, [], n_slots=1, capacity=64).run(requests)
    batcher = ContinuousBatcher(model, [], n_slots=3, capacity=64)
    done: dict[int, object] = {}
    for i, r in enumerate(requests):  # slots 0, 1, 2 in submission order
        batcher.submit(r, lambda res, i=i: done.__setitem__(i, res))
    while batcher.busy:
        batcher.step()
    # Slot 0 freed after two tokens with nobody waiting: the sequence in slot 2 moved into it.
    assert batcher.stats.compactions == 1
    assert [done[i] for i in range(3)] == one_at_a_time


def test_an_answer_does_not_depend_on_its_batch_or_its_admission_time():
    model = _tiny("llama", seed=3)
    prompts = _prompts(9, seed=5)
    greedy = _req(tuple(prompts[0]), 20)
    sampled = _req(tuple(prompts[1]), 20, temperature=0.9, top_p=0.8, seed=42)
    alone = ContinuousBatcher(model, [EOS], n_slots=2, capacity=64).run([greedy, sampled])
    crowd = [
        _req(tuple(p), 15, temperature=t)
        for p, t in zip(prompts[2:], [0.0, 1.0] * 3 + [0.0], strict=True)
    ]
    busy = ContinuousBatcher(model, [EOS], n_slots=3, capacity=64).run([*crowd, sampled, greedy])
    assert busy[-1] == alone[0]
    assert busy[-2] == alone[1]
    other_seed = _req(sampled.prompt, 20, temperature=0.9, top_p=0.8, seed=43)
    assert ContinuousBatcher(model, [EOS], n_slots=1, capacity=64).run([other_seed]) != [alone[1]]


def test_requests_that_cannot_fit_are_refused_and_cancelled_ones_free_their_slot():
    model = _tiny("llama")
    batcher = ContinuousBatcher(model, [EOS], n_slots=1, capacity=32)
    with pytest.raises(ValueError, match="exceeds the context of 32 tokens"):
        batcher.submit(_req(tuple(range(4, 24)), 13), lambda r: None)
    with pytest.raises(ValueError, match="empty prompt"):
        batcher.submit(_req((), 4), lambda r: None)
    done: list = []
    first = batcher.submit(_req((5, 6, 7), 20), done.append)
    batcher.submit(_req((8, 9), 2), done.append)
    batcher.step()  # the first holds the only slot
    batcher.cancel(first)
    while batcher.busy:
        batcher.step()
    assert len(done) == 1 and done[0].prompt_tokens == 2
    # run() grows the cache to fit its requests.
    [long] = batcher.run([_req(tuple(range(4, 44)), 10)])
    assert batcher.capacity >= 50 and long.prompt_tokens == 40


def test_unsupported_architectures_are_named():
    import transformers

    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2)
    reason = supports(transformers.GPT2LMHeadModel(config))
    assert reason is not None and "gpt2" in reason
    with pytest.raises(ValueError, match="does not support model type 'gpt2'"):
        SlotDecoder(transformers.GPT2LMHeadModel(config), 1, 8)


def test_bf16_products_stay_close_to_fp32():
    model = _tiny("llama").to(torch.float32)
    prompts = _prompts(4)
    exact = SlotDecoder(model, 4, 64).prefill([0, 1, 2, 3], prompts)
    fast = SlotDecoder(model, 4, 64, weight_dtype=torch.bfloat16).prefill([0, 1, 2, 3], prompts)
    assert fast.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: logits move by a few percent of their spread, no more.
    spread = exact.std()
    assert (fast - exact).abs().max() < 0.1 * spread
    assert (fast.argmax(-1) == exact.argmax(-1)).float().mean() >= 0.75
