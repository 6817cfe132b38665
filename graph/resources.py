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

from graph.context import Context
from supportgraph.app.settings import Settings, apply_library_defaults

NO_DEMO_MARKER = "no-demo"
"""File in a home made by `init --no-demo`: no demo KB or demo intent model there."""
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

        from supportgraph.models.intent import IntentModel, ensure_default_model

        def build() -> Any:
            directory = (Path(self.ctx.intent_model_dir) if self.ctx.intent_model_dir
                         else ensure_default_model(self.settings.home_path))
            return IntentModel.load(directory)

        return self._get("intent_model", build)

    @property
    def injection_head(self) -> Any:
        """The learned injection detector's head (models/data/injection_head.json)."""
        from supportgraph.models.injection import InjectionHead

        return self._get("injection_head", InjectionHead.load)

    @property
    def tone_scorer(self) -> Any:
        """The offline tone scorer."""
        from supportgraph.models.tone import ToneScorer

        return self._get("tone", ToneScorer)

    @property
    def demo_enabled(self) -> bool:
        """The demo KB and intent model are in use (off in a home made by `init --no-demo`)."""
        return self.ctx.demo_kb and not (self.settings.home_path / NO_DEMO_MARKER).is_file()

    @property
    def routing(self) -> str:
        """`intent` (a trained intent model) or `retrieval` (evidence across `kb_*`)."""
        from supportgraph.models.intent import default_model_dir
        from supportgraph.models.intent_model import META_FILE

        def build() -> str:
            if self.ctx.routing in ("intent", "retrieval"):
                return self.ctx.routing
            if self.ctx.intent_model_dir or self.demo_enabled:
                return "intent"
            trained = (default_model_dir(self.settings.home_path) / META_FILE).is_file()
            return "intent" if trained else "retrieval"

        return self._get("routing", build)

    def kb_collections(self) -> list[str]:
        """The `kb_*` collections holding passages.

        Listed again after each refit: a long-running worker sees routes another process
        ingested when it restarts.
        """
        from supportgraph.models.answerability import kb_collections

        return list(self._get("kb_collections", lambda: kb_collections(self.store)))

    def route(self, texts: list[str]) -> list[Any]:
        """Classify texts as the `classify` step does: intent model or retrieval evidence."""
        if self.routing == "intent":
            return self.intent_model.predict(texts)
        from supportgraph.models.kb_router import route_texts

        return route_texts(self.store, texts, self.kb_collections())

    @property
    def answerability(self) -> Any:
        """The answerability model of this home's KB (None when the KB is empty).

        Stored at `init` and after `ingest`; a home that has none yet (made before this
        model existed, or with an older format or fit) gets it stored once, on first use.
        """
        from supportgraph.models.answerability import AnswerabilityModel, shipped_fit

        def build() -> Any:
            model = AnswerabilityModel.load(self.settings.home_path)  # None: none, or older format
            if model is not None and model.fit == shipped_fit():
                return model
            return self.refit_answerability() or False  # a newer fit shipped: stored again

        return self._get("answerability", build) or None

    def refit_answerability(self) -> Any:
        """Store the answerability fit with this home KB's term profile, and use it."""
        from supportgraph.models.answerability import fit_for_home

        with self._lock:
            self._cache.pop("kb_collections", None)
            model = fit_for_home(self.store, self.settings.home_path)
            self._cache["answerability"] = model or False
        return model

    def demo_kb_ready(self) -> None:
        """Make sure the shipped demo knowledge base is ingested (idempotent, fast when done).

        Nothing is ingested in a home made by `init --no-demo`. When the demo KB changed, the
        answerability model is stored again with the new KB profile.
        """
        from retrieval.ingest import ensure_demo_kb

        def build() -> bool:
            if not self.demo_enabled:
                return True
            summary = ensure_demo_kb(self.store, home=self.settings.home_path)
            if any(v.get("status") == "ingested" for v in summary.values()):
                self.refit_answerability()
            return True

        self._get("demo_kb", build)


def _qdrant_api_key() -> str | None:
    from supportgraph.app.settings import qdrant_api_key

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
