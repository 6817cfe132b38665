"""Per-run settings: one `Context` dataclass, LangGraph's `context_schema`.

A plain dataclass: it reads nothing. The edge completes it (`supportgraph.app.settings.run_context`
for what we start; the composition root's `Services.bind` for every run, including the ones the
LangGraph server builds from a request): it attaches the deployment `Settings` and fills the
fields the caller left at their default from the deployment's `SUPPORTGRAPH_<FIELD>` values
(`with_defaults`), so an explicit per-run setting always wins.

Where data lives and how it is hashed (home, database URL, Qdrant URL, PII salt) is deployment
`Settings` (graph/settings.py), not a field here: a run's context comes from whoever starts the
run (under `langgraph dev`, any API caller), and a run must never move storage or change the
salt. A Context carries the Settings the edge attached, outside the schema.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from graph.settings import Settings


@dataclass(kw_only=True)
class Context:
    """Run-time settings for one ticket run; never checkpointed."""

    intent_model_dir: str = field(
        default="",
        metadata={"description": "Trained intent model directory; empty: the demo model."},
    )
    intent_threshold: float = field(
        default=0.85, metadata={"description": "Below this intent confidence: planner/human."}
    )
    tone_threshold: float = field(
        default=0.7, metadata={"description": "Below this tone score the draft is rewritten."}
    )
    confidence_threshold: float = field(
        default=0.8957,
        metadata={"description": "Below this answer confidence (a calibrated probability that "
                                 "the reply is right; 0.8957: the CV-chosen 0.77 of the fit, "
                                 "mapped through its recalibration so no decision changed): "
                                 "planner or human."},
    )
    max_rewrites: int = field(default=2, metadata={"description": "Tone rewrites before human."})
    retrieval_k: int = field(default=4, metadata={"description": "Passages given to the draft."})
    case_k: int = field(default=3, metadata={"description": "Resolved cases compared against."})
    router_models: str = field(
        default="", metadata={"description": "Fallback chain for routing-type calls."}
    )
    answer_models: str = field(
        default="", metadata={"description": "Fallback chain for drafts and rewrites."}
    )
    planner_models: str = field(
        default="", metadata={"description": "Fallback chain for the planner."}
    )
    model_timeout_s: float = field(default=20.0, metadata={"description": "Per model call."})
    model_max_retries: int = field(default=2, metadata={"description": "Retries per entry."})
    offline_latency_ms: str = field(
        default="",
        metadata={"description": "Simulated latency of the offline provider per role, e.g. "
                                 "'router=200,answer=1500,planner=500' (benchmarks; empty: none)."},
    )
    planner_enabled: bool = field(
        default=True, metadata={"description": "Let the bounded planner try fallback paths."}
    )
    max_planner_steps: int = field(default=3, metadata={"description": "Planner step budget."})
    max_cost_usd: float = field(default=0.05, metadata={"description": "Dollar budget/ticket."})
    max_seconds: float = field(default=120.0, metadata={"description": "Wall-clock budget/ticket."})
    review_sla_hours: float = field(default=24.0, metadata={"description": "First review SLA."})
    supervisor_sla_hours: float = field(
        default=24.0, metadata={"description": "Supervisor review SLA before `stalled`."}
    )
    demo_kb: bool = field(
        default=True,
        metadata={"description": "Ingest the shipped demo knowledge base on first use."},
    )
    routing: str = field(
        default="auto",
        metadata={"description": "intent (trained model), retrieval (evidence across kb_* "
                                 "collections) or auto (intent when the home has a model)."},
    )
    min_relevance: float = field(
        default=0.3, metadata={"description": "Dense similarity below which a passage is noise."}
    )
    learned_injection_flags: bool = field(
        default=False,
        metadata={"description": "Let the learned injection head flag tickets (else it is "
                                 "only recorded in the audit detail)."},
    )
    learn_enabled: bool = field(
        default=True, metadata={"description": "Add resolved cases to `resolved_cases`."}
    )

    def with_defaults(self, defaults: Mapping[str, Any]) -> Context:
        """A copy whose fields left at their default (and not set explicitly) take `defaults`.

        `defaults`: the deployment's per-run defaults by field name (read at the edge). Applied
        once: a context that has them is returned as it is.
        """
        if self.__dict__.get("_defaults_applied"):
            return self
        clone = copy.copy(self)
        explicit: frozenset[str] = self.__dict__.get("_explicit", frozenset())
        for f in fields(self):
            value = defaults.get(f.name)
            if value is not None and f.name not in explicit and getattr(self, f.name) == f.default:
                setattr(clone, f.name, value)
        object.__setattr__(clone, "_defaults_applied", True)
        return clone

    @property
    def complete(self) -> bool:
        """Whether the edge attached the deployment settings and applied its defaults."""
        return "_settings" in self.__dict__ and bool(self.__dict__.get("_defaults_applied"))

    @property
    def has_settings(self) -> bool:
        """Whether deployment settings are attached (`with_settings`)."""
        return "_settings" in self.__dict__

    @property
    def settings(self) -> Settings:
        """The deployment settings this run uses (never from the run's own input)."""
        try:
            return self.__dict__["_settings"]
        except KeyError:
            raise RuntimeError(
                "no deployment settings on this Context: the edge attaches them "
                "(supportgraph.app.settings.run_context, Services.bind, or with_settings)"
            ) from None

    @property
    def home_path(self) -> Path:
        """The local-state folder as a Path."""
        return self.settings.home_path

    @property
    def pii_salt(self) -> str:
        """The salt of redaction hashes (a deployment setting)."""
        return self.settings.pii_salt

    @property
    def services(self) -> Any:
        """The composition root (`supportgraph.app.services.Services`) a caller attached.

        Never part of the schema, so no API caller can supply it.
        """
        return self.__dict__.get("_services")

    def with_services(self, services: Any) -> Context:
        """A copy of this context whose nodes use `services` (opened for its settings)."""
        clone = copy.copy(self)
        object.__setattr__(clone, "_services", services)
        return clone

    def with_settings(self, settings: Settings) -> Context:
        """A copy of this context that runs against `settings` (the edge decides, not the run)."""
        clone = copy.copy(self)
        object.__setattr__(clone, "_settings", settings)
        return clone

    def replace(self, **changes: Any) -> Context:
        """A copy with `changes` applied (explicit values, never overridden by env)."""
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise TypeError(f"unknown Context fields: {', '.join(sorted(unknown))}")
        clone = copy.copy(self)
        for name, value in changes.items():
            setattr(clone, name, value)
        # explicit: deployment defaults applied later never override these
        object.__setattr__(clone, "_explicit",
                           self.__dict__.get("_explicit", frozenset()) | frozenset(changes))
        return clone


_dataclass_init = Context.__init__


def _remember_explicit(self: Context, **values: Any) -> None:
    """Record which fields the caller set, so the environment never overrides them."""
    object.__setattr__(self, "_explicit", frozenset(values))
    _dataclass_init(self, **values)


Context.__init__ = _remember_explicit  # type: ignore[method-assign]
