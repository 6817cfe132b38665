"""A response cache for chat calls, stored in the project's database with a time-to-live.

The key is the SHA-256 of the canonical JSON of everything that determines a remote answer:
provider, model, system and user prompts, max_tokens, temperature, JSON schema and expected
language (`ChatRequest.data` only feeds the offline provider, which is never cached). A hit
costs nothing and makes no HTTP call. A cache that fails (database down, bad row) is logged and
treated as a miss: the cache may save money, it must never fail a ticket.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from supportgraph.models.chat import ChatRequest, Completion


class Database(Protocol):
    """What the cache needs of the workflow's database (graph.persistence.Database has it)."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run one statement; returns the row count."""
        ...

    def fetchone(self, sql: str, params: Mapping[str, Any] | None = None) -> dict | None:
        """Run a query and return its first row as a dict (or None)."""
        ...

log = logging.getLogger(__name__)

_KEY_VERSION = 1

_SELECT = "SELECT response, expires_at FROM sg_model_cache WHERE key = :key"
_DELETE = "DELETE FROM sg_model_cache WHERE key = :key"
_UPSERT = (
    "INSERT INTO sg_model_cache (key, provider, model, response, created_at, expires_at) "
    "VALUES (:key, :provider, :model, :response, :created_at, :expires_at) "
    "ON CONFLICT (key) DO UPDATE SET response = excluded.response, "
    "created_at = excluded.created_at, expires_at = excluded.expires_at"
)
_PURGE = "DELETE FROM sg_model_cache WHERE expires_at <= :now"


def cache_key(request: ChatRequest, provider: str, model: str) -> str:
    """SHA-256 hex digest of the canonical JSON of the request as a provider would see it."""
    material = {
        "v": _KEY_VERSION,
        "provider": provider,
        "model": model,
        "system": request.system,
        "user": request.user,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "json_schema": request.json_schema,
        "language": request.language,
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    """Counters since the cache object was created (per process)."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    errors: int = 0


class ResponseCache:
    """Validated chat answers in table `sg_model_cache`, expiring after `ttl_s` seconds."""

    def __init__(
        self, db: Database, ttl_s: float = 86400.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._clock = clock
        self.stats = CacheStats()
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def get(self, request: ChatRequest, provider: str, model: str) -> Completion | None:
        """Return the cached answer for this exact request, or None (miss or expired)."""
        key = cache_key(request, provider, model)
        try:
            row = self.db.fetchone(_SELECT, {"key": key})
            if row is not None and float(row["expires_at"]) <= self._clock():
                self.db.execute(_DELETE, {"key": key})
                row = None
            if row is None:
                self._count("misses")
                return None
            stored = json.loads(row["response"])
            completion = Completion(
                str(stored["text"]), int(stored["input_tokens"]), int(stored["output_tokens"])
            )
        except Exception:  # a broken cache must never fail the call
            self._count("errors")
            log.warning("model cache read failed; treating as a miss", exc_info=True)
            return None
        self._count("hits")
        return completion

    def put(self, request: ChatRequest, provider: str, model: str, completion: Completion) -> None:
        """Store a validated answer for this exact request."""
        now = self._clock()
        response = json.dumps(
            {
                "text": completion.text,
                "input_tokens": completion.input_tokens,
                "output_tokens": completion.output_tokens,
            },
            ensure_ascii=False,
        )
        params = {
            "key": cache_key(request, provider, model),
            "provider": provider,
            "model": model,
            "response": response,
            "created_at": now,
            "expires_at": now + self.ttl_s,
        }
        try:
            self.db.execute(_UPSERT, params)
        except Exception:  # a broken cache must never fail the call
            self._count("errors")
            log.warning("model cache write failed; answer not cached", exc_info=True)
            return
        self._count("stores")

    def purge_expired(self) -> int:
        """Delete expired entries; returns how many were removed."""
        return self.db.execute(_PURGE, {"now": self._clock()})
