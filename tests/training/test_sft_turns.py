"""SFT puts the loss on every assistant turn of a conversation (Conifer's easy-to-hard packing
holds five levels' answers in one sample), and on the answer alone for single-turn records."""

import logging
from pathlib import Path

import pytest
import torch

from complexif.training.common import load_policy
from complexif.training.data import sft_dataset
from complexif.training.sft import sft_trainer, train_sft
from tests.training.test_training import _sft_cfg, _sft_records

SYSTEM = "You answer in one word."
TURNS = [
    ("Name a colour.", "Blue"),
    ("Now one that is warmer.", "Orange"),
    ("And the colour of grass?", "Green"),
]


def _conversation(rid="conv", system=True, turns=TURNS):
    messages = [{"role": "system", "content": SYSTEM}] if system else []
    for question, answer in turns:
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    return {"id": rid, "messages": messages}


def _runs(ids, labels):
    """The labelled stretches of a row, as lists of token ids."""
    runs, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label == -100:
            if current:
                runs.append(current)
            current = []
        else:
            assert label == token
            current.append(token)
    return runs + ([current] if current else [])


def _trainer_rows(records, model_dir, work: Path, **cfg_changes):
    """The (input_ids, labels) rows TRL's SFTTrainer would train on, as train_sft builds it."""
    cfg = _sft_cfg(precision="float32", **cfg_changes)
    model, tok = load_policy(model_dir, "cpu", cfg.precision)
    dataset = sft_dataset(records, tok, cfg.max_length)
    trainer = sft_trainer(model, tok, dataset, cfg, device="cpu", work=work, curriculum=True)
    data = trainer.train_dataset
    return tok, list(zip(data["input_ids"], data["labels"], strict=True))


def test_every_assistant_turn_and_only_those_are_labelled(tiny_model_dir, tmp_path):
    record = _conversation()
    tok, [(ids, labels)] = _trainer_rows([record], tiny_model_dir, tmp_path, max_length=512)
    assert (
        ids
        == tok.apply_chat_template(record["messages"], tokenize=True, return_dict=True)["input_ids"]
    )
    # Each assistant turn's content and its end-of-turn scaffolding, as TRL's prompt-completion
    # split labels a last turn; nothing of the system or user turns nor of the turn headers.
    assert [tok.decode(run) for run in _runs(ids, labels)] == [
        f"{answer}<|im_end|>\n" for _, answer in TURNS
    ]
    unlabelled = tok.decode([t for t, label in zip(ids, labels, strict=True) if label == -100])
    assert SYSTEM in unlabelled and all(q in unlabelled for q, _ in TURNS)
    assert unlabelled.count("<|im_start|>assistant\n") == 3


def test_a_weight_0_turn_is_context_not_a_target(tiny_model_dir, tmp_path):
    # Conifer's external feedback: [question, weak answer (weight 0), critique, revised answer].
    record = _conversation(system=False, turns=TURNS[:2])
    record["messages"][1]["weight"] = 0
    tok, [(ids, labels)] = _trainer_rows([record], tiny_model_dir, tmp_path, max_length=512)
    assert [tok.decode(run) for run in _runs(ids, labels)] == ["Orange<|im_end|>\n"]
    record["messages"][3]["weight"] = 0
    with pytest.raises(ValueError, match="'conv': the last assistant turn has weight 0"):
        _trainer_rows([record], tiny_model_dir, tmp_path / "again", max_length=512)


@pytest.mark.parametrize("padding_free", [False, True])
def test_single_turn_records_get_the_rows_trl_gave_them(tiny_model_dir, tmp_path, padding_free):
    """Single-turn records train as before: the rows TRL builds from prompt-completion data,
    truncation to max_length and the dropping of a record whose prompt fills it included."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    records = _sft_records()
    records[1]["messages"][1]["content"] = "RIVER " * 60
    records[2]["messages"][0]["content"] = "Please, " * 60 + "write the word stone in capitals."
    tok, ours = _trainer_rows(
        records, tiny_model_dir, tmp_path / "ours", max_length=48, padding_free=padding_free
    )
    model, _ = load_policy(tiny_model_dir, "cpu", "float32")
    trl = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(tmp_path / "trl"),
            max_length=48,
            completion_only_loss=True,
            use_cpu=True,
            bf16=False,
            report_to=[],
        ),
        train_dataset=Dataset.from_list(
            [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in records]
        ),
        processing_class=tok,
    ).train_dataset
    assert len(ours) == 3  # the record with the long prompt has no answer token left
    assert ours == list(zip(trl["input_ids"], trl["labels"], strict=True))


def _tokenizer(embedded_tokenizer_dir, chat_template=None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_tokenizer_dir)
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


def _masked_runs(row):
    ids = row["input_ids"]
    return _runs(
        ids, [t if bit else -100 for t, bit in zip(ids, row["assistant_masks"], strict=True)]
    )


def test_truncation_keeps_the_first_tokens_and_drops_records_left_without_loss(
    embedded_tokenizer_dir, caplog
):
    tok = _tokenizer(embedded_tokenizer_dir)
    record = _conversation()
    [whole] = sft_dataset([record], tok, 512)
    ids, mask = whole["input_ids"], whole["assistant_masks"]
    first_answer = len(_masked_runs(whole)[0])
    starts = [i for i, bit in enumerate(mask) if bit and i > 0 and not mask[i - 1]]
    cut = starts[1] + 1  # the first token of the second answer is the last one kept
    long_prompt = _conversation("long", turns=[("word " * 200, "Yes"), ("Again?", "No")])
    with caplog.at_level(logging.WARNING, logger="complexif.training.data"):
        [row] = sft_dataset([record, long_prompt], tok, cut)
    assert row["input_ids"] == ids[:cut] and row["assistant_masks"] == mask[:cut]
    assert sum(row["assistant_masks"]) == first_answer + 1
    assert "'long'" in caplog.text and "max_length" in caplog.text
    with pytest.raises(ValueError, match="no SFT record has an assistant token within"):
        sft_dataset([long_prompt], tok, cut)


def test_the_mask_follows_any_prefix_stable_chat_template(embedded_tokenizer_dir):
    plain = (
        "{% for m in messages %}{{ m.role | upper }}:\n{{ m.content }}<|endoftext|>{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:\n{% endif %}"
    )
    tok = _tokenizer(embedded_tokenizer_dir, plain)
    [row] = sft_dataset([_conversation(system=False)], tok, 512)
    assert [tok.decode(run) for run in _masked_runs(row)] == [
        f"{answer}<|endoftext|>" for _, answer in TURNS
    ]


def test_a_template_that_renders_earlier_turns_differently_is_an_error(embedded_tokenizer_dir):
    # Like templates that strip earlier turns' reasoning: the last message renders differently.
    marks_last = (
        "{% for m in messages %}{{ m.role }}: {{ m.content }}{% if loop.last %} (last)"
        "{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    )
    tok = _tokenizer(embedded_tokenizer_dir, marks_last)
    with pytest.raises(
        ValueError, match=r"SFT record 'conv': messages\[1\]: the chat template"
    ) as e:
        sft_dataset([_conversation(system=False)], tok, 512)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="'bad': the last message must be the assistant's"):
        sft_dataset([{"id": "bad", "messages": [{"role": "user", "content": "hi"}]}], tok, 512)


def test_multi_turn_records_train_with_the_loss_on_every_answer(tiny_model_dir, tmp_path):
    """A real (one-step) run: its first logged loss is the mean NLL of the untrained model over
    every assistant turn's tokens, not over the last turn's only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    records = [_conversation(), *_sft_records(2), _conversation("c2", system=False)]
    cfg = _sft_cfg(
        max_steps=1,
        per_device_train_batch_size=len(records),
        learning_rate=1e-9,
        precision="float32",
        max_length=512,
    )
    result = train_sft(records, tiny_model_dir, tmp_path / "m", cfg, device="cpu", curriculum=True)
    assert result.metrics["n_examples"] == 4

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()

    def mean_nll(last_turn_only: bool) -> float:
        total, count = 0.0, 0
        for row in sft_dataset(records, tok, cfg.max_length):
            ids, mask = torch.tensor(row["input_ids"]), torch.tensor(row["assistant_masks"])
            if last_turn_only:
                starts = (mask[1:] > mask[:-1]).nonzero().flatten()
                mask[: int(starts[-1]) + 1] = 0
            with torch.no_grad():
                logits = model(ids[None]).logits[0, :-1]
            nll = torch.nn.functional.cross_entropy(logits, ids[1:], reduction="none")
            total += float(nll[mask[1:] == 1].sum())
            count += int(mask[1:].sum())
        return total / count

    every_turn, last_turn = mean_nll(False), mean_nll(True)
    assert result.history[0]["loss"] == pytest.approx(every_turn, rel=1e-4)
    assert every_turn != pytest.approx(last_turn, rel=1e-3)
