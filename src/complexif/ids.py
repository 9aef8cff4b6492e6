"""Stable content ids: the same content always gets the same id, so resume and dedup are exact."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def content_id(*parts: Any, prefix: str = "", length: int = 16) -> str:
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]
    return f"{prefix}{digest}" if prefix else digest
