from complexif.llm.base import ChatRequest, GenerationParams
from complexif.llm.transformers_backend import TransformersLLM


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
    llm = TransformersLLM(tiny_model_dir, batch_size=3, device="cpu", name="tiny")
    params = GenerationParams(max_new_tokens=8)
    out = llm.generate(_requests(params), progress=False)
    assert [r.request_id for r in out] == ["r0", "r1", "r2", "r3"]
    assert all(r.model == "tiny" for r in out)
    assert all(0 < r.completion_tokens <= 8 or r.finish_reason == "stop" for r in out)
    assert all(r.finish_reason in ("stop", "length") for r in out)
    assert out[1].prompt_tokens > out[0].prompt_tokens


def test_left_padded_batches_give_the_same_greedy_answers_as_one_by_one(tiny_model_dir):
    params = GenerationParams(max_new_tokens=6)
    batched = TransformersLLM(tiny_model_dir, batch_size=4, device="cpu").generate(
        _requests(params), progress=False
    )
    single = TransformersLLM(tiny_model_dir, batch_size=1, device="cpu").generate(
        _requests(params), progress=False
    )
    assert [r.text for r in batched] == [r.text for r in single]


def test_seeded_sampling_is_reproducible(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir, batch_size=4, device="cpu")
    params = GenerationParams(max_new_tokens=6, temperature=1.0, seed=7)
    a = llm.generate(_requests(params), progress=False)
    b = llm.generate(_requests(params), progress=False)
    assert [r.text for r in a] == [r.text for r in b]


def test_empty_request_list_needs_no_generation(tiny_model_dir):
    assert TransformersLLM(tiny_model_dir, device="cpu").generate([]) == []


def test_local_model_through_the_client_matches_direct_calls_and_is_cached(
    tiny_model_dir, tmp_path
):
    from complexif.llm.accounting import UsageMeter
    from complexif.llm.cache import ResponseCache
    from complexif.llm.client import LLMClient
    from complexif.llm.ledger import FailureLedger

    llm = TransformersLLM(tiny_model_dir, batch_size=2, device="cpu")
    reqs = _requests(GenerationParams(max_new_tokens=5))
    direct = llm.generate(reqs, progress=False)

    def client() -> LLMClient:
        cache = ResponseCache(tmp_path / "c.sqlite")
        return LLMClient(llm, "student", UsageMeter(), FailureLedger("t"), cache, chunk_size=2)

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
