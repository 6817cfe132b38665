"""The composition root: every long-lived handle of one deployment, built from `Settings`.

`Services` opens the database, the Qdrant store, the MiniLM encoders (the embedder and the
intent features, with their caches), the models (intent, injection head, tone, answerability,
the offline and remote providers) and the lease keeper, each on first use, hands them to the
code that uses them, and closes them all with one `close()`. `prepare()` does the start-up work
(the demo intent model and the demo knowledge base), so no node ever trains or ingests
anything. `bind(ctx)` completes a run's Context with the deployment's Settings and defaults.

How nodes reach it (LangGraph's runtime; see docs/architecture.md):
- the CLI, the runner, tests and benchmarks attach it to the run's `Context`
  (`ctx.with_services(services)`, outside the context schema), which LangGraph hands to every
  node as `runtime.context`;
- the LangGraph server builds each run's `Context` from the request, so it cannot carry a
  handle: `server_graph` (the factory `langgraph.json` names) binds the process's `Services` to
  the graph's config instead.
Either way `graph.instrument.node` finds it and gives each step `step.res`, a per-run view.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from graph.context import Context
from graph.instrument import SERVICES_KEY
from supportgraph.app import settings as app_settings
from supportgraph.app.settings import Settings

if TYPE_CHECKING:
    from retrieval.store import StoreRegistry
    from supportgraph.models.encoders import Encoders, MiniLMWeights

NO_DEMO_MARKER = "no-demo"
"""File in a home made by `init --no-demo`: no demo KB or demo intent model there."""

T = TypeVar("T")
log = logging.getLogger(__name__)


class ServiceMissing(RuntimeError):
    """A service the run needs was not set up (e.g. no intent model: run `supportgraph init`)."""


class Services:
    """The handles of one deployment (home, database, Qdrant), shared by every run of a process.

    Cheap to create; each handle is built on first use under a lock. Not tied to a run: what
    depends on per-run `Context` values (routing, an explicit intent model) is in `for_run`.
    """

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None, *,
                 weights: MiniLMWeights | None = None, stores: StoreRegistry | None = None
                 ) -> None:
        """`weights` and `stores` default to the process's (see `shared_weights`)."""
        self.settings = settings
        self._environ = environ
        self._weights = weights if weights is not None else shared_weights()
        self._stores = stores if stores is not None else shared_stores()
        self._cache: dict[str, Any] = {}
        self._run_defaults: dict[str, Any] | None = None
        self._lock = threading.RLock()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database, give the store back, drop the encoders' caches; idempotent.

        The store's last user frees the embedded home's lock.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            store, db = self._cache.pop("store", None), self._cache.pop("db", None)
            encoders = self._cache.pop("encoders", None)
            self._cache.clear()
        if store is not None:
            self._stores.release(store)
        if db is not None:
            db.close()
        if encoders is not None:
            encoders.clear_cache()

    @property
    def closed(self) -> bool:
        """Whether `close()` ran (a closed root is never reused by `services_for`)."""
        return self._closed

    def _get(self, name: str, build: Callable[[], T]) -> T:
        value = self._cache.get(name)
        if value is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("these services are closed")
                value = self._cache.get(name)
                if value is None:
                    value = build()
                    self._cache[name] = value
        return value

    def prepare(self, ctx: Context) -> None:
        """Start-up work, once per root: the demo intent model and the demo KB when in use.

        A home made by `init --no-demo` (or a run with `demo_kb` off) gets neither; a run that
        then needs them reports the missing service instead of building it inside a node. When
        Qdrant cannot be opened (a server down, an embedded home another process holds), the
        KB is checked again on the next call and `retrieve` reports the outage per ticket.
        """
        flag = f"prepared:{ctx.demo_kb}"
        if self._cache.get(flag):
            return
        from retrieval.store import RetrievalUnavailable

        with self._lock:
            if self._cache.get(flag):
                return
            if self._demo_enabled(ctx.demo_kb):
                if not ctx.intent_model_dir:
                    from supportgraph.models.intent import ensure_default_model

                    ensure_default_model(self.settings.home_path, encoders=self.encoders)
                try:
                    self.demo_kb_ready(ctx.demo_kb)
                except RetrievalUnavailable as exc:
                    log.warning("the demo knowledge base was not checked: %s", exc)
                    return
            self._cache[flag] = True

    def bind(self, ctx: Context) -> Context:
        """`ctx` completed for this deployment: its Settings, and its per-run defaults.

        Every run passes here (the runner, and the node wrapper for runs the LangGraph server
        built from a request, whose Context is the caller's JSON): fields the caller left at
        their default take the deployment's `SUPPORTGRAPH_*` values (read once per root), and
        a context without Settings gets this root's. A complete context costs two lookups.
        """
        if ctx.complete:
            return ctx
        if not ctx.has_settings:
            ctx = ctx.with_settings(self.settings)
        if self._run_defaults is None:  # read once; a dict, not a handle: nothing to close
            self._run_defaults = app_settings.run_defaults(self._environ)
        return ctx.with_defaults(self._run_defaults)

    def for_run(self, ctx: Context) -> RunServices:
        """What a run with `ctx` sees (its intent model and routing depend on `ctx`)."""
        return RunServices(self, ctx)

    # ------------------------------------------------------------------ handles

    @property
    def db(self) -> Any:
        """Our tables and the checkpoints' database (migrated when opened)."""
        from graph.persistence import open_database

        return self._get("db", lambda: open_database(self.settings.database_url or None,
                                                       self.settings.home_path))

    @property
    def home_salt(self) -> str:
        """The home's salt file (made if missing); a Settings salt wins over it per run."""
        from graph.salt import home_salt

        return self._get("home_salt", lambda: home_salt(self.settings.home_path))

    @property
    def store(self) -> Any:
        """The Qdrant knowledge store (local folder or server)."""
        def build() -> Any:
            from retrieval import sentence_cache

            store = self._stores.open(home=self.settings.home_path,
                                      url=self.settings.qdrant_url or None,
                                      api_key=app_settings.qdrant_api_key(self._environ),
                                      embedder=self.embedder)
            sentence_cache.load(self.settings.home_path, self.embedder)
            return store

        return self._get("store", build)

    @property
    def encoders(self) -> Encoders:
        """The MiniLM encoders of this root: its caches and batchers over the shared weights."""
        from supportgraph.models.encoders import Encoders

        return self._get("encoders", lambda: Encoders(self._weights))

    @property
    def embedder(self) -> Any:
        """The sentence embedder (the store, the offline provider and the nodes use it)."""
        return self.encoders.embedder

    def intent_model(self, directory: Path) -> Any:
        """The intent classifier stored in `directory` (loaded once)."""
        from supportgraph.models.intent import IntentModel
        from supportgraph.models.intent_model import META_FILE

        def build() -> Any:
            if not (directory / META_FILE).is_file():
                raise ServiceMissing(f"no intent model in {directory}: run `supportgraph init` "
                                     "(or train one with `supportgraph train-intents`)")
            return IntentModel.load(directory, encoders=self.encoders)

        return self._get(f"intent_model:{directory}", build)

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
    def leases(self) -> Any:
        """The process's lease keeper on the database (one per database, so one here)."""
        from supportgraph.app.leases import Leases

        return self._get("leases", lambda: Leases(self.db))

    @property
    def breakers(self) -> Any:
        """The circuit breakers every model chain of this root shares."""
        from supportgraph.models.breaker import CircuitBreakers

        return self._get("breakers", CircuitBreakers)

    @property
    def offline(self) -> Any:
        """The offline provider (no network, no key)."""
        from supportgraph.models.offline import OfflineProvider

        return self._get("offline", lambda: OfflineProvider(embedder=self.embedder))

    def remote_providers(self) -> dict[str, Any]:
        """The OpenAI/Anthropic providers the environment configures, rebuilt when it changes."""
        key = app_settings.remote_provider_key(self._environ)
        cached = self._cache.get("remote")
        if cached is None or cached[0] != key:
            with self._lock:
                cached = (key, app_settings.remote_providers(self._environ))
                self._cache["remote"] = cached
        return cached[1]

    @property
    def prices(self) -> Any:
        """The price table (shipped, merged with `SUPPORTGRAPH_PRICES`)."""
        return self._get("prices", lambda: app_settings.price_table(self._environ))

    def chain(self, role: str, ctx: Context, *,
              budget_check: Callable[[float], bool] | None = None) -> Any:
        """A model fallback chain for one call site (cheap; the providers are shared)."""
        from supportgraph.models.factory import chain_for

        return chain_for(role, ctx, self.db, offline=self.offline,
                         remote=self.remote_providers(),
                         keys=app_settings.api_keys(self._environ).keys(), prices=self.prices,
                         breaker=self.breakers, budget_check=budget_check)

    def graph(self, aes_key: str | None) -> Any:
        """The workflow compiled with this database's checkpointer (one per checkpoint key)."""
        def build() -> Any:
            from graph.builder import builder
            from graph.persistence import checkpoint_serde, open_checkpointer

            compiled = builder.compile(checkpointer=open_checkpointer(
                self.db, checkpoint_serde(aes_key)))
            compiled.name = "supportgraph"
            return compiled

        return self._get(f"graph:{hash(aes_key)}", build)

    def server_graph(self) -> Any:
        """The server's graph (no checkpointer: the server brings one), bound to this root."""
        def build() -> Any:
            from graph.builder import graph

            return graph.with_config(configurable={SERVICES_KEY: self})

        return self._get("server_graph", build)

    # ------------------------------------------------------------------ knowledge base

    def _demo_enabled(self, demo_kb: bool) -> bool:
        return demo_kb and not (self.settings.home_path / NO_DEMO_MARKER).is_file()

    def kb_collections(self) -> list[str]:
        """The `kb_*` collections holding passages (listed again after each refit)."""
        from supportgraph.models.answerability import kb_collections

        return list(self._get("kb_collections", lambda: kb_collections(self.store)))

    @property
    def answerability(self) -> Any:
        """The answerability model of this home's KB (None when the KB is empty).

        Stored at `init` and after `ingest`; a home that has none yet (made before this
        model existed, or with an older format or fit) gets it stored once, on first use.
        """
        from supportgraph.models.answerability import AnswerabilityModel, shipped_fit

        def build() -> Any:
            model = AnswerabilityModel.load(self.settings.home_path)  # None: none, or older
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

    def demo_kb_ready(self, demo_kb: bool = True) -> None:
        """Make sure the shipped demo knowledge base is ingested (idempotent, fast when done)."""
        from retrieval.ingest import ensure_demo_kb

        def build() -> bool:
            if not self._demo_enabled(demo_kb):
                return True
            summary = ensure_demo_kb(self.store, home=self.settings.home_path)
            if any(v.get("status") == "ingested" for v in summary.values()):
                self.refit_answerability()
            return True

        self._get(f"demo_kb:{demo_kb}", build)

    def routing(self, ctx: Context) -> str:
        """`intent` (a trained intent model) or `retrieval` (evidence across `kb_*`)."""
        from supportgraph.models.intent import default_model_dir
        from supportgraph.models.intent_model import META_FILE

        def build() -> str:
            if ctx.routing in ("intent", "retrieval"):
                return ctx.routing
            if ctx.intent_model_dir or self._demo_enabled(ctx.demo_kb):
                return "intent"
            trained = (default_model_dir(self.settings.home_path) / META_FILE).is_file()
            return "intent" if trained else "retrieval"

        return self._get(f"routing:{ctx.routing}:{bool(ctx.intent_model_dir)}:{ctx.demo_kb}",
                         build)


class RunServices:
    """A run's view of `Services`: what `step.res` offers a node (cheap, made per step)."""

    __slots__ = ("ctx", "services")

    def __init__(self, services: Services, ctx: Context) -> None:
        self.services = services
        self.ctx = ctx

    @property
    def settings(self) -> Settings:
        """The deployment settings of the root."""
        return self.services.settings

    @property
    def db(self) -> Any:
        """The database of our tables and the checkpoints."""
        return self.services.db

    @property
    def store(self) -> Any:
        """The Qdrant knowledge store."""
        return self.services.store

    @property
    def embedder(self) -> Any:
        """The sentence embedder."""
        return self.services.embedder

    @property
    def pii_salt(self) -> str:
        """The home's salt (made if missing)."""
        return self.services.home_salt

    def with_salt(self, ctx: Context) -> Context:
        """`ctx` with its salt filled in: every redaction needs one, and empty is refused."""
        return (ctx if ctx.pii_salt else ctx.with_settings(
            dataclasses.replace(ctx.settings, pii_salt=self.services.home_salt)))

    @property
    def intent_model(self) -> Any:
        """The run's intent classifier: `ctx.intent_model_dir`, else the home's trained one."""
        from supportgraph.models.intent import default_model_dir

        directory = (Path(self.ctx.intent_model_dir) if self.ctx.intent_model_dir
                     else default_model_dir(self.services.settings.home_path))
        return self.services.intent_model(directory)

    @property
    def injection_head(self) -> Any:
        """The learned injection detector's head."""
        return self.services.injection_head

    @property
    def tone_scorer(self) -> Any:
        """The offline tone scorer."""
        return self.services.tone_scorer

    @property
    def demo_enabled(self) -> bool:
        """The demo KB and intent model are in use (off in a home made by `init --no-demo`)."""
        return self.services._demo_enabled(self.ctx.demo_kb)

    @property
    def routing(self) -> str:
        """`intent` or `retrieval` for this run."""
        return self.services.routing(self.ctx)

    def kb_collections(self) -> list[str]:
        """The `kb_*` collections holding passages."""
        return self.services.kb_collections()

    def route(self, texts: list[str]) -> list[Any]:
        """Classify texts as the `classify` step does: intent model or retrieval evidence."""
        if self.routing == "intent":
            return self.intent_model.predict(texts)
        from supportgraph.models.kb_router import route_texts

        return route_texts(self.store, texts, self.kb_collections())

    @property
    def answerability(self) -> Any:
        """The answerability model of the home's KB (None when the KB is empty)."""
        return self.services.answerability

    def refit_answerability(self) -> Any:
        """Store the answerability fit with the home KB's term profile, and use it."""
        return self.services.refit_answerability()

    def demo_kb_ready(self) -> None:
        """Make sure the demo KB is ingested (start-up work: `init`, `prepare`, evals)."""
        self.services.demo_kb_ready(self.ctx.demo_kb)

    def chain(self, role: str, *, budget_check: Callable[[float], bool] | None = None) -> Any:
        """A model fallback chain for `role` with this run's settings."""
        return self.services.chain(role, self.ctx, budget_check=budget_check)


# --------------------------------------------------------------------------- one per process

# The process registry. It is the composition root's own bookkeeping, the one module-level
# state the product keeps, and each part is here because the process, not a deployment, is
# its unit: the roots by storage location, the engines an embedded home allows once per
# process, and the model weights a process should load once.

_open: dict[tuple[str, str, str], Services] = {}
"""The process's roots, one per storage location (home, database, Qdrant): an embedded Qdrant
home and a SQLite file admit one holder per process, so two contexts naming the same place must
share one root. Emptied (and everything closed) by `close_services()`, also at exit."""
_open_lock = threading.RLock()  # services_for builds a root, which asks for the shared parts
_atexit_registered = False
_weights: MiniLMWeights | None = None
"""The MiniLM weights every root of this process reads. Read-only once loaded and the same for
every deployment (nothing in them depends on a home, a tenant or a run), so sharing them hands
no root anything of another's; what does depend on use (the LRU caches, the pinned KB
sentences, the batchers) is each root's own `Encoders`. One copy, because a second costs
~0.3 GB and seconds to load, and tests and the CLI open and close roots many times per process:
kept until the process ends (`close_services()` closes roots, not weights)."""
_stores: StoreRegistry | None = None
"""The Qdrant engines the roots have open, by location: an embedded home admits one engine per
process, so two roots on the same home (different databases) share it; counted, so closing
one root never closes it under another."""


def shared_weights() -> MiniLMWeights:
    """The MiniLM weights of this process (loaded when a root first encodes a text)."""
    global _weights
    from supportgraph.models.encoders import MiniLMWeights

    with _open_lock:
        if _weights is None:
            _weights = MiniLMWeights()
        return _weights


def shared_stores() -> StoreRegistry:
    """The registry of the Qdrant engines this process has open."""
    global _stores
    from retrieval.store import StoreRegistry

    with _open_lock:
        if _stores is None:
            _stores = StoreRegistry()
            _register_exit()
        return _stores


def _register_exit() -> None:
    """Close what is open before interpreter teardown breaks the engines (under `_open_lock`)."""
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_at_exit)
        _atexit_registered = True


def services_for(settings: Settings) -> Services:
    """The process's root for these settings' storage (opened on first use)."""
    key = (str(settings.home_path.resolve()), settings.database_url, settings.qdrant_url)
    with _open_lock:
        services = _open.get(key)
        if services is None or services.closed:
            app_settings.apply_library_defaults()  # before the root loads its first model
            services = _open[key] = Services(settings)
            _register_exit()
        return services


def run_services(ctx: Context) -> RunServices:
    """The view a run with `ctx` gets of its process root (the environment's if it has none)."""
    services = services_for(ctx.settings if ctx.has_settings else app_settings.read_settings())
    return services.for_run(services.bind(ctx))


@contextmanager
def closing_new_services() -> Iterator[None]:
    """Close, on leaving, the roots opened inside the block.

    A CLI command run in-process (tests) so leaves the roots its caller opened alone.
    """
    with _open_lock:
        before = {id(s) for s in _open.values()}
    try:
        yield
    finally:
        with _open_lock:
            new = {k: s for k, s in _open.items() if id(s) not in before}
            for key in new:
                del _open[key]
        for services in new.values():
            services.close()


def close_services() -> None:
    """Close every root of this process (CLI exit, server shutdown, tests between homes)."""
    with _open_lock:
        roots = list(_open.values())
        _open.clear()
    for services in roots:
        services.close()


def _at_exit() -> None:
    """Close the roots, then any engine a root built outside `services_for` left open."""
    close_services()
    if _stores is not None:
        _stores.close_all()


async def server_graph() -> Any:
    """`langgraph.json`'s graph factory: the workflow bound to this server process's root.

    LangGraph's server calls a factory for every run, state read and schema fetch (checked in
    langgraph-api 0.16: `get_graph` invokes it each time), so this only looks the root up; it is
    opened, and its start-up work done, on the first call of the process. In a worker thread:
    opening files and databases would block the server's event loop.
    """
    return await asyncio.to_thread(_process_graph)


def _process_graph() -> Any:
    services = services_for(app_settings.read_settings())
    services.prepare(services.bind(Context()))
    return services.server_graph()
