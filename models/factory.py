"""Builds the model chain for a role from `Context` and the providers configured at the edge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models.chat import ModelChain, build_chain, default_chain_spec
from models.offline import OfflineProvider

ROLE_FIELDS = {"router": "router_models", "answer": "answer_models", "planner": "planner_models"}


def chain_spec(role: str, ctx: Any) -> str:
    """The role's chain: the Context field, else the providers whose keys are present."""
    from app.settings import api_keys

    spec = getattr(ctx, ROLE_FIELDS[role])
    if spec:
        return spec
    keys = api_keys()
    return default_chain_spec(role, have_openai="openai" in keys,
                              have_anthropic="anthropic" in keys)


def chain_for(role: str, ctx: Any, db: Any, *,
              budget_check: Callable[[float], bool] | None = None) -> ModelChain:
    """A fallback chain for one call site; cheap to build, the expensive parts are shared."""
    from app.settings import price_table, remote_providers
    from models.cache import ResponseCache

    providers = {"offline": _offline(), **remote_providers()}
    return build_chain(chain_spec(role, ctx), providers=providers, timeout_s=ctx.model_timeout_s,
                       max_retries=ctx.model_max_retries, prices=price_table(),
                       cache=ResponseCache(db), budget_check=budget_check)


_OFFLINE: OfflineProvider | None = None


def _offline() -> OfflineProvider:
    global _OFFLINE
    if _OFFLINE is None:
        _OFFLINE = OfflineProvider()
    return _OFFLINE
