"""The InFoBench fixture, and a judge client over a scripted backend (answers by a function)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from complexif.llm.accounting import UsageMeter
from complexif.llm.base import ChatRequest
from complexif.llm.client import LLMClient
from complexif.llm.ledger import FailureLedger
from tests.conftest import REPO_ROOT
from tests.conifer.conftest import Reply, ScriptedBackend

# Eight items written for these tests (not taken from InFoBench): four per subset, four of them
# with an empty input.
SAMPLE = REPO_ROOT / "tests/fixtures/infobench/infobench_sample.jsonl"


@pytest.fixture
def sample_path() -> Path:
    return SAMPLE


def judge_client(script: Callable[[ChatRequest], Reply]) -> LLMClient:
    """A judge-role client (no cache) whose backend answers by ``script``; the backend is
    ``client.backend`` (its ``requests`` in order) and the ledger ``client.ledger``."""
    backend = ScriptedBackend("scripted-judge", script)
    return LLMClient(
        backend, "judge", UsageMeter({}, budget_usd=None), FailureLedger("test"), None, 64, False
    )
