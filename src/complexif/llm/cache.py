"""A content-addressed SQLite cache of chat responses: a re-run pays for nothing it already has.

The key is a hash of everything that determines an answer: the model (name and weights
fingerprint), the messages, every generation parameter (so ``n`` and ``seed`` give distinct keys)
and the prompt template's version. Each answer is committed as soon as it arrives, so a run killed
with ``kill -9`` resumes with every finished call cached.

Several processes may share one cache: SQLite in WAL mode lets readers run beside one writer,
and ``busy_timeout`` makes a second writer wait instead of failing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from complexif.llm.base import ChatRequest, ChatResponse

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
)
"""


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
    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
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

    def get_many(self, keys: Iterable[str]) -> dict[str, ChatResponse]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, ChatResponse] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite caps bound variables per statement
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, blob in rows:
                    found[key] = _decode(blob)
        return found

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
                "INSERT OR IGNORE INTO responses (key, model, response, created) VALUES (?,?,?,?)",
                (key, response.model, blob, time.time()),
            )

    def stats(self) -> dict[str, object]:
        """Entries per model, file size and the time span covered (for ``complexif cache``)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT model, COUNT(*), MIN(created), MAX(created) FROM responses GROUP BY model"
            ).fetchall()
        files = [self.path, Path(f"{self.path}-wal")]
        return {
            "path": str(self.path),
            "entries": sum(r[1] for r in rows),
            "bytes": sum(f.stat().st_size for f in files if f.exists()),
            "models": {
                model: {"entries": n, "oldest": first, "newest": last}
                for model, n, first, last in sorted(rows)
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
