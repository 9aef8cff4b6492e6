"""Hand-made Conifer rows and a scripted in-process backend for the answers and packing tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from complexif.config import LLMRoleConfig
from complexif.llm.accounting import UsageMeter
from complexif.llm.base import ChatRequest, ChatResponse
from complexif.llm.client import LLMClient
from complexif.llm.ledger import FailureLedger


def instruction(
    query: str, level: int, text: str, format_numerical: Sequence[str] = (), **more: Any
) -> dict[str, Any]:
    """A row of paths.conifer_instructions (the schema in the design contract)."""
    return {
        "id": f"cin-{query}{level}",
        "query_id": f"cq-{query}",
        "seed_id": f"seed-{query}",
        "query": f"the query {query}",
        "level": level,
        "instruction": text,
        "constraints": {"Style": [f"constraint {i}" for i in range(level)]},
        "format_numerical": list(format_numerical),
        "prompt_versions": {"recombine": "v0"},
        **more,
    }


# A few queries at several levels, some with format/numerical requirements.
INSTRUCTIONS = [
    instruction("a", 1, "Describe a lighthouse."),
    instruction("a", 2, "Describe a lighthouse in 3 sentences.", ["Use exactly 3 sentences."]),
    instruction("a", 3, "Describe a lighthouse in 3 sentences, in French.", ["Use 3 sentences."]),
    instruction("b", 1, "Name a river."),
    instruction("b", 2, "Name a river and its length, in a table.", ["Use a table."]),
    instruction("c", 1, "Write a haiku about rain, in lower case.", ["Use lower case only."]),
]


Reply = str | tuple[str, str]  # text, or (text, finish_reason)


class ScriptedBackend:
    """A batch backend whose answer to each request is ``script(request)``; every request it
    was asked is kept, so tests can check prompts and generation settings."""

    fingerprint = "fp-scripted"

    def __init__(self, name: str, script: Callable[[ChatRequest], Reply]) -> None:
        self.name = name
        self.script = script
        self.requests: list[ChatRequest] = []

    def generate(
        self, requests: Sequence[ChatRequest], progress: bool = True
    ) -> list[ChatResponse]:
        out = []
        for r in requests:
            self.requests.append(r)
            reply = self.script(r)
            text, finish = (reply, "stop") if isinstance(reply, str) else reply
            out.append(ChatResponse(r.id, text, self.name, finish, 1, len(text.split())))
        return out


class ScriptedSession:
    """What the Conifer steps ask of an LLM session: one client per role, one shared ledger."""

    def __init__(self, **backends: ScriptedBackend) -> None:
        self.backends = backends
        self.ledger = FailureLedger("test")
        self.meter = UsageMeter({}, budget_usd=None)
        self.clients: dict[str, LLMClient] = {}

    def client(self, role: str, cfg: LLMRoleConfig) -> LLMClient:
        if role not in self.clients:
            self.clients[role] = LLMClient(
                self.backends[role], role, self.meter, self.ledger, None, 64, progress=False
            )
        return self.clients[role]


REPAIR_OPENINGS = (
    "Your previous reply could not be used",
    "Your previous answer could not be used",
)


def user_text(request: ChatRequest) -> str:
    """The request's own user turn: the last one, after any worked demonstrations in the
    template, or the one before the model's bad answer when this is a repair re-ask."""
    last = request.messages[-1]["content"]
    if last.startswith(REPAIR_OPENINGS) and len(request.messages) >= 3:
        return request.messages[-3]["content"]
    return last


@pytest.fixture
def params():
    """The repository's params, its prompts and expectations found from any working directory."""
    from tests.conftest import REPO_ROOT, repo_params, updated

    root = {k: str(REPO_ROOT / k) for k in ("prompts", "expectations")}
    return updated(
        repo_params(),
        paths={"prompts_dir": root["prompts"], "expectations_dir": root["expectations"]},
    )
