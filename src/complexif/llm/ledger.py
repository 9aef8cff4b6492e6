"""The failure ledger: every request without a usable answer, with its reason.

A stage writes ``<ledger_dir>/<stage>.jsonl`` (empty when nothing failed) and reconciles its
counts: every input row is either an output row or a ledger entry, so nothing is lost silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from complexif.io import write_jsonl
from complexif.llm.base import ChatFailure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LedgerEntry:
    stage: str
    role: str
    model: str
    request_id: str
    kind: str
    reason: str
    attempts: int


class ReconcileError(RuntimeError):
    """Inputs != outputs + ledgered failures: a row went missing (a bug, never expected)."""


class FailureLedger:
    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.entries: list[LedgerEntry] = []

    def add(self, role: str, model: str, failure: ChatFailure) -> None:
        self.entries.append(
            LedgerEntry(
                self.stage,
                role,
                model,
                failure.request_id,
                failure.kind,
                failure.reason,
                failure.attempts,
            )
        )

    def counts(self) -> dict[str, int]:
        return dict(Counter(e.kind for e in self.entries))

    def write(self, path: str | Path) -> None:
        write_jsonl(path, [asdict(e) for e in self.entries])
        if self.entries:
            log.warning("%d failures ledgered in %s: %s", len(self.entries), path, self.counts())


def reconcile(what: str, n_inputs: int, n_outputs: int, n_failed: int) -> None:
    if n_inputs != n_outputs + n_failed:
        raise ReconcileError(
            f"{what}: {n_inputs} inputs but {n_outputs} outputs + {n_failed} ledgered failures"
        )
