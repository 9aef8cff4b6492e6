"""Check columns computed from an artifact's own fields right before a gate runs.

The gate re-derives facts (constraint counts, "chosen satisfies every constraint", ...) from the
raw fields instead of trusting flags the producing stage may have written: a bug in that stage
must not be able to certify its own output. Producer outputs overwrite same-named input columns.

Each producer turns the DataFrame into one or more new columns; suites list the columns they need
(``"derived"`` in the suite JSON) and producers they depend on run first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from complexif.quality.suites import SuiteSpec

logger = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class _Producer:
    outputs: tuple[str, ...]
    requires: tuple[str, ...]
    fn: Callable[[pd.DataFrame], dict[str, list[Any]]]


def _column(df: pd.DataFrame, name: str) -> list[Any]:
    # A missing input column yields None per row: the suite's column-existence / not-null checks
    # then report it, instead of a KeyError hiding every other finding.
    return df[name].tolist() if name in df.columns else [None] * len(df)


def _as_list(value: Any) -> list[Any] | None:
    """Lists and tuples as-is; numpy arrays (what ``datasets``/Arrow gives for lists) converted."""
    if isinstance(value, (list, tuple)):
        return list(value)
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and getattr(value, "ndim", 0) == 1:
        return list(tolist())
    return None


def _turn_text(value: Any, role: str) -> str | None:
    """A plain string, or the content of the last ``role`` turn of a chat-message list."""
    if isinstance(value, str):
        return value
    messages = _as_list(value)
    if messages is None:
        return None
    for msg in reversed(messages):
        if isinstance(msg, Mapping) and msg.get("role") == role:
            content = msg.get("content")
            return content if isinstance(content, str) else None
    return None


def _clean_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    # Arrow unifies dict columns into one struct, so kwargs read through `datasets` carry every
    # key of every instruction with None; IFEval's reference drops None-valued kwargs the same way.
    return {k: v for k, v in kwargs.items() if v is not None}


def _constraint_lists(
    row_ids: Any, row_kwargs: Any
) -> tuple[list[str], list[dict[str, Any]]] | None:
    """The (ids, kwargs) pair if well-formed: same-length lists of strings and of dicts."""
    ids = _as_list(row_ids)
    kwargs = _as_list(row_kwargs)
    if ids is None or kwargs is None or len(ids) != len(kwargs):
        return None
    if not all(isinstance(i, str) and i for i in ids):
        return None
    if not all(isinstance(k, Mapping) for k in kwargs):
        return None
    return ids, [_clean_kwargs(k) for k in kwargs]


def _n_constraints(df: pd.DataFrame) -> dict[str, list[Any]]:
    counts = []
    for value in _column(df, "instruction_id_list"):
        ids = _as_list(value)
        counts.append(len(ids) if ids is not None else None)
    # Nullable Int64 keeps integers readable in messages ("7", not "7.0") while allowing None.
    return {"n_constraints": pd.array(counts, dtype="Int64")}  # type: ignore[dict-item]


def _constraint_lists_valid(df: pd.DataFrame) -> dict[str, list[Any]]:
    pairs = zip(_column(df, "instruction_id_list"), _column(df, "kwargs"), strict=True)
    return {"constraint_lists_valid": [_constraint_lists(i, k) is not None for i, k in pairs]}


def _prompt_text(df: pd.DataFrame) -> dict[str, list[Any]]:
    # `prompt` is the user text (or a message list); SFT records without it fall back to the last
    # user turn of `messages`.
    out = []
    for prompt, messages in zip(_column(df, "prompt"), _column(df, "messages"), strict=True):
        text = _turn_text(prompt, "user")
        out.append(text if text is not None else _turn_text(messages, "user"))
    return {"prompt_text": out}


def _prompt_len_words(df: pd.DataFrame) -> dict[str, list[Any]]:
    counts = [len(t.split()) if isinstance(t, str) else None for t in df["prompt_text"]]
    return {"prompt_len_words": pd.array(counts, dtype="Int64")}  # type: ignore[dict-item]


_CHAT_ROLES = frozenset({"system", "user", "assistant"})


def messages_ok(value: Any) -> bool:
    messages = _as_list(value)
    if not messages:
        return False
    for msg in messages:
        if not isinstance(msg, Mapping) or msg.get("role") not in _CHAT_ROLES:
            return False
        if not isinstance(msg.get("content"), str):
            return False
    roles = [m["role"] for m in messages]
    # SFT trains on every assistant turn; the conversation ends in one and has a user turn.
    return roles[-1] == "assistant" and "user" in roles


def _sft_messages(df: pd.DataFrame) -> dict[str, list[Any]]:
    messages = _column(df, "messages")
    return {
        "messages_valid": [messages_ok(m) for m in messages],
        "response_text": [_turn_text(m, "assistant") for m in messages],
    }


def _response_is_str(df: pd.DataFrame) -> dict[str, list[Any]]:
    # Not GX's type expectations: they compare column dtypes, and pandas 3 gives all-string
    # columns the `str` extension dtype, which GX 1.x does not match against "str".
    return {"response_is_str": [isinstance(v, str) for v in _column(df, "response")]}


def _pair_texts(df: pd.DataFrame) -> dict[str, list[Any]]:
    return {
        "chosen_text": [_turn_text(v, "assistant") for v in _column(df, "chosen")],
        "rejected_text": [_turn_text(v, "assistant") for v in _column(df, "rejected")],
    }


def _chosen_equals_rejected(df: pd.DataFrame) -> dict[str, list[Any]]:
    # Pairs that differ only in surrounding whitespace carry no preference signal.
    out = []
    for chosen, rejected in zip(df["chosen_text"], df["rejected_text"], strict=True):
        both = isinstance(chosen, str) and isinstance(rejected, str)
        out.append(bool(both and chosen.strip() == rejected.strip()))
    return {"chosen_equals_rejected": out}


def _verify(df: pd.DataFrame, role: str) -> dict[str, list[Any]]:
    """Strict IFEval verification of ``<role>_text``.

    ``<role>_passes_all``: every constraint holds; ``<role>_failed_ids``: the ids that do not
    (``""`` when all pass); ``<role>_verify_error``: why the row could not be verified, or None.
    """
    # Lazy: the verifiers pull in nltk/langdetect, which suites without verification never need.
    from complexif.constraints.verify import check_all

    passes: list[bool] = []
    errors: list[str | None] = []
    failed: list[str | None] = []
    rows = zip(
        _column(df, "instruction_id_list"),
        _column(df, "kwargs"),
        df[f"{role}_text"],
        df["prompt_text"],
        strict=True,
    )
    for ids, kwargs, text, prompt in rows:
        lists = _constraint_lists(ids, kwargs)
        if lists is None:
            passes.append(False)
            errors.append("instruction_id_list/kwargs are not same-length lists of ids and dicts")
            failed.append(None)
            continue
        if not isinstance(text, str):
            passes.append(False)
            errors.append(f"no {role} text to verify")
            failed.append(None)
            continue
        try:
            results = check_all(
                lists[0], lists[1], text, prompt=prompt if isinstance(prompt, str) else ""
            )
        except Exception as exc:  # an unknown id or bad kwargs is a data error to report per row
            passes.append(False)
            errors.append(f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS])
            failed.append(None)
            continue
        if len(results) != len(lists[0]):
            passes.append(False)
            errors.append(f"check_all returned {len(results)} results for {len(lists[0])} ids")
            failed.append(None)
            continue
        # all([]) is True; an empty constraint list is caught by the n_constraints range check.
        passes.append(all(bool(r) for r in results))
        errors.append(None)
        # Comma-joined (not a list) so it reads well in gate messages and GX's result JSON.
        failed.append(", ".join(i for i, ok in zip(lists[0], results, strict=True) if not ok))
    return {
        f"{role}_passes_all": passes,
        f"{role}_verify_error": errors,
        f"{role}_failed_ids": failed,
    }


def _artifacts(df: pd.DataFrame, role: str, finish_column: str) -> dict[str, list[Any]]:
    """``<role>_artifacts``: comma-joined artifact kinds of the text ("" when clean)."""
    from complexif.quality.artifacts import find_artifacts

    out = []
    for text, finish in zip(df[f"{role}_text"], _column(df, finish_column), strict=True):
        out.append(", ".join(find_artifacts(text, finish)) if isinstance(text, str) else None)
    return {f"{role}_artifacts": out}


def turns_ok(value: Any) -> bool:
    """A conversation whose every assistant turn may be a target: after an optional system
    turn, user and assistant alternate from a user turn to an assistant turn, no turn is blank,
    and ``weight`` (0: context only, never a target), where given, is 0 or 1 on an assistant
    turn, never 0 on the last one."""
    if not messages_ok(value):
        return False
    messages = _as_list(value) or []
    if messages[0]["role"] == "system":
        messages = messages[1:]
    for i, msg in enumerate(messages):
        if msg["role"] != ("user", "assistant")[i % 2] or not msg["content"].strip():
            return False
        if "weight" in msg and (msg["role"] != "assistant" or msg["weight"] not in (0, 1)):
            return False
    return messages[-1].get("weight", 1) != 0


def _chat_turns(df: pd.DataFrame) -> dict[str, list[Any]]:
    """``turns_valid`` (:func:`turns_ok`) and ``turn_artifacts``: the artifacts of every
    assistant turn that is a target, as ``turn <i>: <kinds>`` ("" when clean)."""
    from complexif.quality.artifacts import find_artifacts

    valid, artifacts = [], []
    for value in _column(df, "messages"):
        ok = turns_ok(value)
        valid.append(ok)
        if not ok:
            artifacts.append(None)
            continue
        found = [
            f"turn {i}: {', '.join(kinds)}"
            for i, msg in enumerate(_as_list(value) or [])
            if msg["role"] == "assistant"
            and msg.get("weight", 1) != 0
            and (kinds := find_artifacts(msg["content"]))
        ]
        artifacts.append("; ".join(found))
    return {"turns_valid": valid, "turn_artifacts": artifacts}


def _conifer_feedback(df: pd.DataFrame) -> dict[str, list[Any]]:
    """Conifer answers' feedback, where present: ``internal_feedback_valid`` (non-blank text,
    only for an instruction with format or numerical constraints) and
    ``external_feedback_valid`` (a non-blank weak answer, a boolean verdict, a critique that is
    not blank when the verdict is a failure)."""
    internal = []
    for text, constraints in zip(
        _column(df, "internal_feedback"), _column(df, "format_numerical"), strict=True
    ):
        listed = _as_list(constraints)
        internal.append(
            _is_null(text) or (isinstance(text, str) and bool(text.strip()) and bool(listed))
        )
    external = []
    for fb in _column(df, "external_feedback"):
        if _is_null(fb):
            external.append(True)
            continue
        ok = (
            isinstance(fb, Mapping)
            and isinstance(fb.get("weak_answer"), str)
            and bool(fb["weak_answer"].strip())
            and isinstance(fb.get("follows"), bool)
            and isinstance(fb.get("critique"), str)
            and (fb["follows"] or bool(fb["critique"].strip()))
        )
        external.append(ok)
    return {"internal_feedback_valid": internal, "external_feedback_valid": external}


def _is_null(value: Any) -> bool:
    # pandas reads a JSON null in an object column as None, in a float column as NaN.
    return value is None or (isinstance(value, float) and value != value)


_PRODUCERS: tuple[_Producer, ...] = (
    # Order matters: a producer may only require outputs of producers listed before it.
    _Producer(("n_constraints",), (), _n_constraints),
    _Producer(("constraint_lists_valid",), (), _constraint_lists_valid),
    _Producer(("messages_valid", "response_text"), (), _sft_messages),
    _Producer(("prompt_text",), (), _prompt_text),
    _Producer(("prompt_len_words",), ("prompt_text",), _prompt_len_words),
    _Producer(("response_is_str",), (), _response_is_str),
    _Producer(("chosen_text", "rejected_text"), (), _pair_texts),
    _Producer(
        ("chosen_equals_rejected",), ("chosen_text", "rejected_text"), _chosen_equals_rejected
    ),
    _Producer(
        ("response_passes_all", "response_verify_error", "response_failed_ids"),
        ("response_text", "prompt_text"),
        lambda df: _verify(df, "response"),
    ),
    _Producer(
        ("chosen_passes_all", "chosen_verify_error", "chosen_failed_ids"),
        ("chosen_text", "prompt_text"),
        lambda df: _verify(df, "chosen"),
    ),
    _Producer(
        ("rejected_passes_all", "rejected_verify_error", "rejected_failed_ids"),
        ("rejected_text", "prompt_text"),
        lambda df: _verify(df, "rejected"),
    ),
    _Producer(
        ("response_artifacts",),
        ("response_text",),
        lambda df: _artifacts(df, "response", "finish_reason"),
    ),
    _Producer(
        ("chosen_artifacts",),
        ("chosen_text",),
        lambda df: _artifacts(df, "chosen", "chosen_finish_reason"),
    ),
    # Conifer: multi-turn SFT records (every assistant turn a target) and answer feedback.
    _Producer(("turns_valid", "turn_artifacts"), (), _chat_turns),
    _Producer(("internal_feedback_valid", "external_feedback_valid"), (), _conifer_feedback),
)

DERIVED_COLUMNS: dict[str, _Producer] = {out: p for p in _PRODUCERS for out in p.outputs}


def _plan(columns: Sequence[str]) -> list[_Producer]:
    needed: set[int] = set()
    stack = list(columns)
    while stack:
        name = stack.pop()
        producer = DERIVED_COLUMNS.get(name)
        if producer is None:
            raise KeyError(f"unknown derived column {name!r}; known: {sorted(DERIVED_COLUMNS)}")
        idx = _PRODUCERS.index(producer)
        if idx not in needed:
            needed.add(idx)
            stack.extend(producer.requires)
    return [_PRODUCERS[i] for i in sorted(needed)]


def add_derived_columns(df: pd.DataFrame, spec: SuiteSpec) -> pd.DataFrame:
    """Return a copy of ``df`` with the suite's derived check columns (and their prerequisites)."""
    out = df.copy()
    for producer in _plan(spec.derived):
        overwritten = [c for c in producer.outputs if c in df.columns]
        if overwritten:
            logger.debug("suite %s: recomputing %s from raw fields", spec.name, overwritten)
        for name, values in producer.fn(out).items():
            out[name] = values
    return out
