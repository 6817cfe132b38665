"""Builds the model chain for a role from `Context` and the providers configured at the edge."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from supportgraph.models.chain import ModelChain, build_chain, default_chain_spec
from supportgraph.models.offline import OfflineProvider

ROLE_FIELDS = {"router": "router_models", "answer": "answer_models", "planner": "planner_models"}


def chain_spec(role: str, ctx: Any, keys: Collection[str]) -> str:
    """The role's chain: the Context field, else the providers whose API keys are present."""
    spec = getattr(ctx, ROLE_FIELDS[role])
    if spec:
        return spec
    return default_chain_spec(role, have_openai="openai" in keys,
                              have_anthropic="anthropic" in keys)


def chain_for(role: str, ctx: Any, db: Any, *, offline: OfflineProvider,
              remote: Mapping[str, Any], keys: Collection[str], prices: Any,
              breaker: Any = None,
              budget_check: Callable[[float], bool] | None = None) -> ModelChain:
    """A fallback chain for one call site; cheap to build, the expensive parts are shared.

    The providers, prices and breakers come from the composition root
    (`supportgraph.app.services`), which reads their configuration at the edge.
    """
    from supportgraph.models.cache import ResponseCache

    provider: Any = offline
    if ctx.offline_latency_ms:
        provider = DelayedProvider(offline, offline_latencies(ctx.offline_latency_ms)[role])
    providers = {"offline": provider, **remote}
    return build_chain(chain_spec(role, ctx, keys), providers=providers,
                       timeout_s=ctx.model_timeout_s, max_retries=ctx.model_max_retries,
                       prices=prices, breaker=breaker, cache=ResponseCache(db),
                       budget_check=budget_check)


def offline_latencies(spec: str) -> dict[str, float]:
    """Seconds per role from `router=200,answer=1500,planner=500` (ms; unnamed roles: 0)."""
    delays = dict.fromkeys(ROLE_FIELDS, 0.0)
    for part in spec.split(","):
        role, sep, value = part.strip().partition("=")
        if not sep or role.strip() not in ROLE_FIELDS:
            raise ValueError(f"offline_latency_ms: expected role=ms pairs with roles "
                             f"{', '.join(ROLE_FIELDS)}, got {part.strip()[:50]!r}")
        try:
            ms = float(value)
        except ValueError:
            raise ValueError(f"offline_latency_ms: {value.strip()[:50]!r} is not a number of "
                             "milliseconds") from None
        if not 0 <= ms <= 600_000:
            raise ValueError("offline_latency_ms: each latency must be between 0 and 600000 ms")
        delays[role.strip()] = ms / 1000.0
    return delays


class DelayedProvider:
    """The offline provider answering after a fixed delay, like a remote model would.

    Sleeping releases the GIL, as waiting on a socket does, so latency benchmarks see what
    concurrency a real provider allows. Used only when `Context.offline_latency_ms` is set.
    """

    name = "offline"

    def __init__(self, inner: OfflineProvider, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds

    def complete(self, request: Any, model: str, *, timeout: float) -> Any:
        """Wait the configured time, then answer as the offline provider does."""
        time.sleep(self.seconds)
        return self.inner.complete(request, model, timeout=timeout)
