import pytest
import torch

from complexif.llm.base import ChatRequest, GenerationParams
from complexif.llm.transformers_backend import TransformersLLM
from tests.conftest import gen_params

DEFAULTS = {"engine": "continuous", "precision": "auto"}


def _requests(params: GenerationParams) -> list[ChatRequest]:
    prompts = [
        "hi",
        "Write a long story about a dragon who learns to sing.",
        "2+2?",
        "Name a colour.",
    ]
    return [
        ChatRequest(id=f"r{i}", messages=({"role": "user", "content": p},), params=params)
        for i, p in enumerate(prompts)
    ]


def test_answers_come_back_in_request_order_with_token_counts(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir, 3, "cpu", name="tiny", **DEFAULTS)
    params = gen_params(8)
    out = llm.generate(_requests(params), progress=False)
    assert [r.request_id for r in out] == ["r0", "r1", "r2", "r3"]
    assert all(r.model == "tiny" for r in out)
    assert all(0 < r.completion_tokens <= 8 or r.finish_reason == "stop" for r in out)
    assert all(r.finish_reason in ("stop", "length") for r in out)
    assert out[1].prompt_tokens > out[0].prompt_tokens


@pytest.mark.parametrize("engine", ["static", "continuous"])
def test_batches_give_the_same_greedy_answers_as_one_by_one(tiny_model_dir, engine):
    params = gen_params(6)

    def answers(batch_size: int) -> list[str]:
        llm = TransformersLLM(tiny_model_dir, batch_size, "cpu", engine=engine, precision="float32")
        assert llm.engine == engine
        return [r.text for r in llm.generate(_requests(params), progress=False)]

    assert answers(4) == answers(1)


def test_the_continuous_engine_answers_as_transformers_generate_does(tiny_model_dir):
    params = gen_params(12)
    out = {}
    for engine in ("static", "continuous"):
        llm = TransformersLLM(tiny_model_dir, 2, "cpu", engine=engine, precision="float32")
        out[engine] = llm.generate(_requests(params), progress=False)
    strip = [(r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens) for r in out["static"]]
    assert strip == [
        (r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens) for r in out["continuous"]
    ]


def test_engine_and_precision_are_part_of_the_cache_identity(tiny_model_dir):
    fp32 = TransformersLLM(tiny_model_dir, 16, "cpu", engine="continuous", precision="float32")
    bf16 = TransformersLLM(tiny_model_dir, 16, "cpu", engine="continuous", precision="bfloat16")
    static = TransformersLLM(tiny_model_dir, 16, "cpu", engine="static", precision="float32")
    assert len({fp32.fingerprint, bf16.fingerprint, static.fingerprint}) == 3
    assert fp32.fingerprint.endswith("-continuous-float32")
    assert static.model.dtype == torch.float32 and bf16.model.dtype == torch.float32
    bf16_static = TransformersLLM(tiny_model_dir, 16, "cpu", engine="static", precision="bfloat16")
    assert bf16_static.model.dtype == torch.bfloat16  # no mixed mode there: the whole model


def test_architectures_the_engine_does_not_run_fall_back_to_static(
    tmp_path, caplog, embedded_tokenizer_dir
):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(embedded_tokenizer_dir)
    config = transformers.GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, eos_token_id=tok.eos_token_id
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")
    with caplog.at_level("WARNING"):
        llm = TransformersLLM(
            tmp_path / "gpt2", 16, "cpu", engine="continuous", precision="float32"
        )
    assert llm.engine == "static"
    assert "does not support model type 'gpt2'" in caplog.text
    [answer] = llm.generate(_requests(gen_params(3))[:1], progress=False)
    assert answer.finish_reason in ("stop", "length")


def test_seeded_sampling_is_reproducible(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir, 4, "cpu", **DEFAULTS)
    params = gen_params(6, temperature=1.0, seed=7)
    a = llm.generate(_requests(params), progress=False)
    b = llm.generate(_requests(params), progress=False)
    assert [r.text for r in a] == [r.text for r in b]


def test_empty_request_list_needs_no_generation(tiny_model_dir):
    assert TransformersLLM(tiny_model_dir, 16, "cpu", **DEFAULTS).generate([]) == []


def test_local_model_through_the_client_matches_direct_calls_and_is_cached(
    tiny_model_dir, tmp_path
):
    from complexif.llm.accounting import UsageMeter
    from complexif.llm.cache import ResponseCache
    from complexif.llm.client import LLMClient
    from complexif.llm.ledger import FailureLedger

    llm = TransformersLLM(tiny_model_dir, 2, "cpu", **DEFAULTS)
    reqs = _requests(gen_params(5))
    direct = llm.generate(reqs, progress=False)

    def client() -> LLMClient:
        cache = ResponseCache(tmp_path / "c.sqlite")
        meter = UsageMeter({}, budget_usd=None)
        return LLMClient(llm, "student", meter, FailureLedger("t"), cache, 2, progress=False)

    first = client().generate(reqs, progress=False)
    assert [r.text for r in first] == [r.text for r in direct]
    assert [r.request_id for r in first] == [r.id for r in reqs]
    second_client = client()
    second = second_client.generate(reqs, progress=False)
    assert all(r.cached for r in second) and [r.text for r in second] == [r.text for r in direct]
    assert second_client.meter.role("student").requests == 0
    # The weights' fingerprint is part of every key: retrained weights miss the old answers.
    assert llm.fingerprint and client().model_id == f"{llm.name}@{llm.fingerprint}"


def test_fingerprint_changes_with_the_weights(tiny_model_dir, tmp_path):
    import shutil

    from complexif.llm.transformers_backend import model_fingerprint

    copy = tmp_path / "retrained"
    shutil.copytree(tiny_model_dir, copy)
    assert model_fingerprint(copy) == model_fingerprint(tiny_model_dir)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_fingerprint(copy) != model_fingerprint(tiny_model_dir)


def test_a_kill_mid_chunk_keeps_every_answer_already_finished(
    tiny_model_dir, tmp_path, monkeypatch
):
    """The client caches each answer the moment the continuous engine finishes it, so a run
    killed halfway through a chunk only redoes the answers that were not finished."""
    from complexif.engine.scheduler import ContinuousBatcher
    from complexif.llm.accounting import UsageMeter
    from complexif.llm.cache import ResponseCache
    from complexif.llm.client import LLMClient
    from complexif.llm.ledger import FailureLedger

    def client(cache):
        llm = TransformersLLM(tiny_model_dir, 5, "cpu", name="tiny", **DEFAULTS)
        return LLMClient(
            llm,
            role="student",
            meter=UsageMeter({}, budget_usd=None),
            ledger=FailureLedger("t"),
            cache=cache,
            chunk_size=5,
            progress=False,
        )

    # Two short answers finish within a few steps; three long ones are still running.
    requests = [
        ChatRequest(
            f"q{i}",
            ({"role": "user", "content": f"Count to {i}."},),
            gen_params(2 if i < 2 else 40),
        )
        for i in range(5)
    ]
    real_step = ContinuousBatcher.step
    steps = []

    def step_then_die(self):
        steps.append(1)
        if len(steps) == 10:
            raise KeyboardInterrupt("killed")
        return real_step(self)

    path = tmp_path / "cache.sqlite"
    monkeypatch.setattr(ContinuousBatcher, "step", step_then_die)
    with ResponseCache(path) as cache, pytest.raises(KeyboardInterrupt):
        client(cache).generate(requests)
    monkeypatch.setattr(ContinuousBatcher, "step", real_step)
    with ResponseCache(path) as cache:
        c = client(cache)
        assert len(c.generate(requests)) == 5
        assert c.meter.role("student").cache_hits == 2  # the two finished before the kill
