"""Process-wide, lazily built resources the nodes share: database, stores, models.

Nodes stay stateless between steps (everything that matters is in the checkpoint or the
database); what is cached here is only what is expensive to rebuild: a connection pool, the
Qdrant client, the loaded models. Keyed by the deployment `Settings` a context carries (and its
intent model), so two contexts pointing at different databases never share a handle.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from app.settings import Settings, apply_library_defaults
from graph.context import Context

_lock = threading.Lock()
_resources: dict[tuple[str, str, str, str], Resources] = {}


@dataclass
class Resources:
    """Handles for one (home, database, qdrant, intent model) combination."""

    ctx: Context
    settings: Settings
    _cache: dict[str, Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def _get(self, name: str, build: Any) -> Any:
        value = self._cache.get(name)
        if value is None:
            with self._lock:
                value = self._cache.get(name)
                if value is None:
                    value = build()
                    self._cache[name] = value
        return value

    @property
    def db(self) -> Any:
        """Our tables and the checkpoints' database (migrated on first use)."""
        from graph.persistence import open_database

        return self._get("db", lambda: open_database(self.settings.database_url or None,
                                                       self.settings.home_path))

    @property
    def pii_salt(self) -> str:
        """The home's salt file (made if missing); a Settings salt in the context wins over it."""
        from graph.salt import home_salt

        return self._get("pii_salt", lambda: home_salt(self.settings.home_path))

    def with_salt(self, ctx: Context) -> Context:
        """`ctx` with its salt filled in: every redaction needs one, and empty is refused."""
        return (ctx if ctx.pii_salt else
                ctx.with_settings(dataclasses.replace(ctx.settings, pii_salt=self.pii_salt)))

    @property
    def store(self) -> Any:
        """The Qdrant knowledge store (local folder or server)."""
        from retrieval import sentence_cache
        from retrieval.store import open_store

        def build() -> Any:
            store = open_store(home=self.settings.home_path, url=self.settings.qdrant_url or None,
                               api_key=_qdrant_api_key())
            sentence_cache.load(self.settings.home_path)
            return store

        return self._get("store", build)

    @property
    def intent_model(self) -> Any:
        """The trained intent classifier (the demo model unless one is configured)."""
        from pathlib import Path

        from models.intent import IntentModel, ensure_default_model

        def build() -> Any:
            directory = (Path(self.ctx.intent_model_dir) if self.ctx.intent_model_dir
                         else ensure_default_model(self.settings.home_path))
            return IntentModel.load(directory)

        return self._get("intent_model", build)

    @property
    def injection_head(self) -> Any:
        """The learned injection detector's head (models/data/injection_head.json)."""
        from models.injection import InjectionHead

        return self._get("injection_head", InjectionHead.load)

    @property
    def tone_scorer(self) -> Any:
        """The offline tone scorer."""
        from models.tone import ToneScorer

        return self._get("tone", ToneScorer)

    def demo_kb_ready(self) -> None:
        """Make sure the shipped demo knowledge base is ingested (idempotent, fast when done)."""
        from retrieval.ingest import ensure_demo_kb

        self._get("demo_kb",
                  lambda: ensure_demo_kb(self.store, home=self.settings.home_path) or True)


def _qdrant_api_key() -> str | None:
    from app.settings import qdrant_api_key

    return qdrant_api_key()


_by_setting: dict[tuple[str, ...], Resources] = {}


def get_resources(ctx: Context) -> Resources:
    """The shared resources for this context's locations.

    Every step asks, so the answer is remembered by the settings as written (and the working
    directory a relative home depends on): resolving the home's path is a syscall per folder
    level, and it showed up in every step's profile.
    """
    settings = ctx.settings
    setting = (os.getcwd(), settings.home, settings.database_url, settings.qdrant_url,
               ctx.intent_model_dir)
    res = _by_setting.get(setting)
    if res is not None:
        return res
    key = (str(settings.home_path.resolve()), settings.database_url, settings.qdrant_url,
           ctx.intent_model_dir)
    with _lock:
        res = _resources.get(key)
        if res is None:
            apply_library_defaults()  # before these resources load the first model
            res = Resources(ctx=ctx, settings=settings)
            _resources[key] = res
        _by_setting[setting] = res
        return res


def reset_resources() -> None:
    """Forget every cached resource (tests that switch homes or databases)."""
    with _lock:
        _resources.clear()
        _by_setting.clear()
