"""One stage's LLM calls: shared cache, one meter and one ledger across its roles.

::

    with llm_session("respond", params, run) as llm:
        student = llm.client("student", params.respond.student)
        results = student.generate(requests)

On exit the session logs tokens and cost per role to the stage's MLflow run, writes the
failure ledger, fails the stage if too large a share of its requests failed, and raises
:class:`BudgetExceeded` if the budget cap stopped it (after everything done is saved).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from complexif.config import LLMRoleConfig, Params
from complexif.llm.accounting import BudgetExceeded, UsageMeter
from complexif.llm.cache import ResponseCache
from complexif.llm.client import LLMClient
from complexif.llm.factory import make_backend
from complexif.llm.ledger import FailureLedger

log = logging.getLogger(__name__)


def run_label(stage: str, run: Any | None) -> str:
    """How the cache names this stage run in the answers it writes (the MLflow run when tracked)."""
    run_id = getattr(run, "run_id", None)
    if run_id:
        return f"{stage} (MLflow run {run_id})"
    return f"{stage} (untracked run {uuid.uuid4().hex[:8]})"


class TooManyFailures(RuntimeError):
    """More than ``llm.max_failure_fraction`` of a stage's requests failed."""


class LLMSession:
    def __init__(
        self,
        stage: str,
        params: Params,
        run: Any | None = None,
        failure_limit: tuple[str, float] | None = None,
    ) -> None:
        self.stage = stage
        self.params = params
        # (the params key that set it, the share): named in the error a user reads.
        self.failure_limit = failure_limit or (
            "llm.max_failure_fraction",
            params.llm.max_failure_fraction,
        )
        cfg = params.llm
        self.cache = (
            ResponseCache(cfg.cache.path, run=run_label(stage, run)) if cfg.cache.enabled else None
        )
        self.meter = UsageMeter(cfg.prices, cfg.budget_usd)
        self.ledger = FailureLedger(stage)
        self._clients: dict[str, LLMClient] = {}

    @property
    def ledger_path(self) -> Path:
        return Path(self.params.paths.ledger_dir) / f"{self.stage}.jsonl"

    def client(self, role: str, cfg: LLMRoleConfig) -> LLMClient:
        """The role's client; its backend (maybe a model to load) is built on first use."""
        if role not in self._clients:
            self._clients[role] = LLMClient(
                make_backend(cfg, self.params),
                role=role,
                meter=self.meter,
                ledger=self.ledger,
                cache=self.cache,
                chunk_size=cfg.generation.resolved_chunk_size,
                progress=self.params.llm.progress,
            )
        return self._clients[role]

    def save(self, run: Any | None = None) -> None:
        """Write the ledger and log usage; done whether the stage succeeds or not."""
        metrics = self.meter.metrics()
        counts = self.ledger.counts()
        metrics.update({f"ledger.{kind}": float(n) for kind, n in counts.items()})
        metrics["ledger.total"] = float(len(self.ledger.entries))
        for role, client in self._clients.items():
            metrics[f"llm.{role}.cache_hits_earlier_runs"] = float(
                sum(client.earlier_hits.values())
            )
        self.ledger.write(self.ledger_path)
        if run is not None:
            run.log_metrics(metrics)
            # Evidence either way: an empty ledger records that no request failed.
            run.log_artifact(self.ledger_path)
        for role, usage in sorted(self.meter.by_role.items()):
            log.info(
                "%s/%s: %d calls, %d cached, %d retries, %d failed, %d+%d tokens, $%.4f",
                self.stage,
                role,
                usage.requests,
                usage.cache_hits,
                usage.retries,
                usage.failures,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cost_usd,
            )
        for role, client in sorted(self._clients.items()):
            if (note := client.cache_note()) is not None:
                log.info("%s/%s: %s", self.stage, role, note)

    def check_failures(self, n_outputs: int | None = None) -> None:
        """Stop before writing outputs that would be mostly holes.

        Raises :class:`TooManyFailures` when more than the session's failure limit (by default
        ``llm.max_failure_fraction``) of the requests failed for good, and :class:`BudgetExceeded` when the budget ran out before
        a single output (``n_outputs == 0``): there is nothing worth keeping.
        """
        counts = self.ledger.counts()
        failed = counts.get("request_failed", 0) + counts.get("parse_failed", 0)
        # Every row's request got a result (an answer, called or cached, or a failure); a
        # repair re-ask is a second request for a row already counted. Rows, not calls: two
        # rows asking the same thing in one batch are sent once but are two rows.
        usages = self.meter.by_role.values()
        rows = sum(client.answers for client in self._clients.values())
        attempted = rows - sum(u.repairs for u in usages)
        key, limit = self.failure_limit
        if attempted and failed / attempted > limit:
            raise TooManyFailures(
                f"{failed} of {attempted} requests failed (more than "
                f"{key}={limit}); reasons are in {self.ledger_path}"
            )
        if self.meter.exhausted and n_outputs == 0:
            raise self._budget_error()

    def _budget_error(self) -> BudgetExceeded:
        skipped = self.ledger.counts().get("budget_exhausted", 0)
        return BudgetExceeded(
            f"budget cap of ${self.meter.budget_usd:.2f} reached after ${self.meter.cost_usd:.4f}"
            f"; {skipped} requests not started (see {self.ledger_path}). Everything answered "
            "is cached: raise llm.budget_usd and re-run to continue without paying for it again."
        )

    def finish(self, run: Any | None = None) -> None:
        """Save, then stop the stage if too much failed or the budget ran out."""
        self.save(run)
        self.check_failures()
        if self.meter.exhausted:
            raise self._budget_error()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        if self.cache is not None:
            self.cache.close()


@contextmanager
def llm_session(
    stage: str,
    params: Params,
    run: Any | None = None,
    failure_limit: tuple[str, float] | None = None,
) -> Iterator[LLMSession]:
    """``failure_limit`` replaces ``llm.max_failure_fraction`` as (its params key, the share)."""
    session = LLMSession(stage, params, run, failure_limit)
    try:
        yield session
    except BaseException:
        # Keep the ledger and the usage of a failed stage too: they say what was spent.
        session.save(run)
        raise
    else:
        session.finish(run)
    finally:
        session.close()
