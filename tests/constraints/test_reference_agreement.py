"""Every strict and loose verdict on the 541 IFEval prompts equals the reference implementation.

The reference is if-verifiable 0.1.2's copy of google-research's checkers, run through the
official evaluation loop. Responses per prompt: empty, a generic answer, the prompt itself
(plain, lowercased, uppercased), a response synthesized to satisfy the constraints, and variants
of it with a preamble line, a trailing sign-off, markdown asterisks removed, and lowercased.
"""

from __future__ import annotations

import collections
import sys
import types
from typing import Any

import pytest
from ifeval_ref import NON_LETTER_KEYS
from ifeval_synth import synthesize

from complexif.constraints import _util
from complexif.constraints.verify import check_all, loose_variants

GENERIC = "Here is my answer.\nI hope it helps!"

_SYNTH: dict[int, tuple[str, bool]] = {}


def _synth(row: dict) -> tuple[str, bool]:
    if row["key"] not in _SYNTH:
        _SYNTH[row["key"]] = synthesize(row["instruction_id_list"], row["kwargs"], seed=row["key"])
    return _SYNTH[row["key"]]


@pytest.fixture(scope="module")
def fast_reference(reference: Any) -> Any:
    """Route the reference's langdetect calls through our cached, seeded detector.

    Detection dominates the run time and each text would be detected twice; that our detector
    returns exactly what (seeded) ``langdetect.detect`` returns is tested separately below.
    """
    import langdetect

    module = sys.modules["if_verifiable.ifeval.instructions"]

    def detect(text: str) -> str:
        try:
            return _util.detect_language(text)
        except _util.LanguageDetectionError as exc:
            raise langdetect.LangDetectException(0, str(exc)) from exc

    original = module.langdetect
    module.langdetect = types.SimpleNamespace(
        detect=detect, LangDetectException=langdetect.LangDetectException
    )
    yield reference
    module.langdetect = original


def _variants(row: dict) -> list[str]:
    prompt = row["prompt"]
    synth, _ = _synth(row)
    return [
        "",
        GENERIC,
        prompt,
        prompt.lower(),
        prompt.upper(),
        synth,
        "Sure! Here is the response:\n" + synth,
        synth + "\nI hope this helps.",
        synth.replace("*", ""),
        synth.lower(),
    ]


def _letter_verdict(kwargs: dict, response: str, loose: bool) -> bool:
    """Our documented rule for letter_frequency: count the named character, case-insensitively."""
    candidates = loose_variants(response) if loose else [response]
    for candidate in candidates:
        if not candidate.strip():
            continue
        count = collections.Counter(candidate.lower())[kwargs["letter"].lower()]
        if kwargs["let_relation"] == "less than":
            ok = count < kwargs["let_frequency"]
        else:
            ok = count >= kwargs["let_frequency"]
        if ok:
            return True
    return False


def test_all_prompts_agree_with_reference(
    ifeval_rows: list[dict], fast_reference: Any, reference_check_all: Any
) -> None:
    compared = 0
    mismatches = []
    for row in ifeval_rows:
        ids, kws, prompt = row["instruction_id_list"], row["kwargs"], row["prompt"]
        special = row["key"] in NON_LETTER_KEYS
        for response in _variants(row):
            for loose in (False, True):
                ours = check_all(ids, kws, response, prompt=prompt, loose=loose)
                ref = reference_check_all(ids, kws, response, prompt, loose)
                for i, (iid, kw) in enumerate(zip(ids, kws, strict=True)):
                    if special and iid == "keywords:letter_frequency":
                        ref[i] = _letter_verdict(kw, response, loose)
                compared += len(ids)
                if ours != ref:
                    mismatches.append((row["key"], loose, ids, ours, ref, response[:80]))
    assert not mismatches, mismatches[:5]
    assert compared > 541 * 10 * 2


def test_synthesized_responses_pass_where_satisfiable(ifeval_rows: list[dict]) -> None:
    """The synthesized variant really exercises passing verdicts, not just failures."""
    passed = sum(
        _synth(r)[1]
        for r in ifeval_rows
        if "language:response_language" not in r["instruction_id_list"]
    )
    # 510 prompts without a language constraint; 5 of them are unsatisfiable as written
    # (e.g. 1627 asks to repeat a request containing a comma and to use no commas).
    assert passed >= 500


LANGUAGE_SAMPLES = [
    "The committee will publish its final report next week.",
    "Le comité publiera son rapport final la semaine prochaine.",
    "Der Ausschuss wird seinen Abschlussbericht nächste Woche veröffentlichen.",
    "El comité publicará su informe final la próxima semana.",
    "Комитет опубликует свой окончательный доклад на следующей неделе.",
    "委員会は来週最終報告書を公表する。",
    "समिति अगले सप्ताह अपनी अंतिम रिपोर्ट प्रकाशित करेगी।",
    "ok ja nein si oui yes no",
    "12345 !!!",
    "",
]


def test_our_detector_equals_seeded_langdetect(reference: Any) -> None:
    """Private seeded factory == the global ``langdetect.detect`` with DetectorFactory.seed = 0."""
    import langdetect

    for text in LANGUAGE_SAMPLES:
        try:
            expected = langdetect.detect(text)
        except langdetect.LangDetectException:
            expected = None
        try:
            ours = _util.detect_language(text)
        except _util.LanguageDetectionError:
            ours = None
        assert ours == expected, text
