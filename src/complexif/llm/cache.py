"""A content-addressed SQLite cache of chat responses: a re-run pays for nothing it already has.

The key is a hash of everything that determines an answer: the model (its name, and for a local
model a hash of its weights, for an API its normalised endpoint URL; see ``LLMClient.model_id``),
the messages, every generation parameter (so ``n`` and ``seed`` give distinct keys) and the prompt
template's version. Each answer is committed as soon as it arrives, so a run killed with
``kill -9`` resumes with every finished call cached.

Each row also records which run wrote it (``run``), so a stage can say how many of its answers
an earlier run paid for. Caches from before that column get it added on open; their rows say
nothing about their run. Entries written before the endpoint entered API keys are never hit
again (their keys lack it): they only take space until ``complexif cache clear``.

Several processes may share one cache: SQLite in WAL mode lets readers run beside one writer,
and ``busy_timeout`` makes a second writer wait instead of failing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from complexif.llm.base import ChatRequest, ChatResponse

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL,
    run TEXT
)
"""


@dataclass(frozen=True)
class Origin:
    """Who wrote a cached answer, and when (``run`` is None for rows older than the column)."""

    run: str | None
    created: float


def request_key(model_id: str, request: ChatRequest) -> str:
    payload = {
        "model": model_id,
        "messages": list(request.messages),
        "params": asdict(request.params),
        "prompt_version": request.prompt_version,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """``run`` names this writer in the rows it adds (unique per open when not given)."""

    def __init__(
        self, path: str | Path, busy_timeout_s: float = 60.0, run: str | None = None
    ) -> None:
        self.path = Path(path)
        self.run = run or f"process {os.getpid()} ({uuid.uuid4().hex[:8]})"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit (isolation_level=None): every put is its own durable transaction.
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (only a power loss can undo a commit).
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(responses)")}
        if "run" not in columns:
            try:
                self._conn.execute("ALTER TABLE responses ADD COLUMN run TEXT")
            except sqlite3.OperationalError as exc:
                # Another process opening the same old cache added it first.
                if "duplicate column" not in str(exc):
                    raise

    def get_many_with_origin(self, keys: Iterable[str]) -> dict[str, tuple[ChatResponse, Origin]]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, tuple[ChatResponse, Origin]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite caps bound variables per statement
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, response, run, created FROM responses WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
                for key, blob, run, created in rows:
                    found[key] = (_decode(blob), Origin(run, created))
        return found

    def get_many(self, keys: Iterable[str]) -> dict[str, ChatResponse]:
        return {k: resp for k, (resp, _) in self.get_many_with_origin(keys).items()}

    def get(self, key: str) -> ChatResponse | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, response: ChatResponse) -> None:
        blob = json.dumps(
            {k: v for k, v in asdict(response).items() if k not in ("request_id", "cached")},
            ensure_ascii=False,
        )
        with self._lock:
            # Two writers racing on one key computed the same request: keep the first answer.
            self._conn.execute(
                "INSERT OR IGNORE INTO responses (key, model, response, created, run) "
                "VALUES (?,?,?,?,?)",
                (key, response.model, blob, time.time(), self.run),
            )

    def stats(self) -> dict[str, object]:
        """Entries per model, file size, the time span covered and how many runs wrote them."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT model, COUNT(*), MIN(created), MAX(created), COUNT(DISTINCT run) "
                "FROM responses GROUP BY model"
            ).fetchall()
        files = [self.path, Path(f"{self.path}-wal")]
        return {
            "path": str(self.path),
            "entries": sum(r[1] for r in rows),
            "bytes": sum(f.stat().st_size for f in files if f.exists()),
            "models": {
                # runs: distinct writers on record (rows older than the run column count none).
                model: {"entries": n, "oldest": first, "newest": last, "runs": runs}
                for model, n, first, last, runs in sorted(rows)
            },
        }

    def clear(self, model: str | None = None) -> int:
        """Delete every entry (or one model's); returns how many went."""
        with self._lock:
            if model is None:
                n = self._conn.execute("DELETE FROM responses").rowcount
            else:
                n = self._conn.execute("DELETE FROM responses WHERE model = ?", (model,)).rowcount
            self._conn.execute("VACUUM")
        return n

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode(blob: str) -> ChatResponse:
    data = json.loads(blob)
    data["choices"] = tuple(data.get("choices") or ())
    return ChatResponse(request_id="", cached=True, **data)
