"""The wrapper every node runs in: timing, usage, the audit row, and failure capture.

One audit row per step execution, keyed by LangGraph's task id, which is the same when a step
re-runs after a crash or a resume; the row is upserted, so re-execution never duplicates it.
A node that raises does not crash the run: the failure is recorded and the node returns
`error`, which the routers send to a human (or to `failed` when nothing can be done).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp
from langgraph.runtime import Runtime

from graph.context import Context
from graph.persistence import DEFAULT_TENANT, tenant_key
from graph.reasons import step_failure_text
from graph.state import State, StepUsage
from supportgraph.text.pii import redact_obj

log = logging.getLogger("supportgraph.steps")

SERVICES_KEY = "__supportgraph_services"
"""Config key under which the server's graph carries its process's services (double underscore:
LangGraph never copies it into checkpoint metadata)."""

try:  # optional dependency group `otel`; without a configured provider spans are no-ops
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - depends on the installed extras
    _otel_trace = None  # type: ignore[assignment]


def now_iso() -> str:
    """Current UTC time as ISO 8601 with microseconds (sortable as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class Step:
    """What a node gets besides the state: settings, shared resources, and a usage meter."""

    name: str
    ctx: Context
    res: Any
    """The run's view of the composition root (`supportgraph.app.services.RunServices`)."""
    ticket_id: str
    thread_id: str
    tenant: str = DEFAULT_TENANT
    identity: dict[str, str] | None = None
    """The caller the LangGraph server authenticated ({tenant, role, name}); None on the CLI."""
    model_calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    cost: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    def record_model(self, result: Any) -> None:
        """Count one chat result (`supportgraph.models.chat.ChatResult`) in this step's usage."""
        failed = [a for a in result.attempts if a.outcome != "ok"]
        self.failures.extend(f"{self.name}: {a.provider}:{a.model} {a.outcome}" for a in failed)
        self.models.append(f"{result.provider}:{result.model}")
        self.model_calls += 0 if result.cached else 1
        self.cache_hits += 1 if result.cached else 0
        self.retries += len(failed)
        self.cost += result.cost_usd
        self.detail.setdefault("models", []).append(
            {"provider": result.provider, "model": result.model, "cached": result.cached,
             "cost": result.cost_usd, "attempts": [a.outcome for a in result.attempts]})


    def complete(self, role: str, request: Any, state: State) -> Any:
        """Call the `role` model chain inside the ticket's budget and count the usage.

        Raises `supportgraph.models.chat.ModelsUnavailable` when every entry of the chain fails or
        the
        budget cannot cover any of them.
        """
        from graph.budget import Budget

        budget = Budget.of(state, self.ctx)
        spent_here = self.cost

        def budget_check(worst_case_usd: float) -> bool:
            return budget.allows_cost(worst_case_usd + (self.cost - spent_here))

        chain = self.res.chain(role, budget_check=budget_check)
        try:
            result = chain.complete(request)
        except Exception as exc:
            attempts = getattr(exc, "attempts", ())
            self.retries += len(attempts)
            self.failures.extend(f"{self.name}: {a.provider}:{a.model} {a.outcome}"
                                 for a in attempts)
            self.detail.setdefault("models", []).append(
                {"role": role, "error": str(exc)[:300],
                 "attempts": [f"{a.provider}:{a.model}:{a.outcome}" for a in attempts]})
            raise
        self.record_model(result)
        return result


def _database_outage(exc: BaseException) -> bool:
    """A lost or refused Postgres connection (a restart, a failover), not a bad ticket."""
    import psycopg

    return isinstance(exc, psycopg.OperationalError)


def ticket_id_of(state: State) -> str:
    """The ticket id once intake has run, else whatever the input carries."""
    normalized = state.get("normalized")
    if normalized:
        return normalized["id"]
    raw = state.get("ticket") or {}
    return str(raw.get("id") or "unknown")[:200]


def authenticated_identity(config: Any) -> dict[str, str] | None:
    """The identity the server's auth handler returned for this run (app/auth.py), if any.

    LangGraph puts it in `config["configurable"]["langgraph_auth_user"]`; a caller cannot
    forge it (the server overwrites the key), and the CLI never sets it.
    """
    user = ((config or {}).get("configurable") or {}).get("langgraph_auth_user")
    if user is None:
        return None
    found = {}
    for key in ("tenant", "role", "name"):
        try:
            value = user[key]
        except (KeyError, TypeError):
            value = getattr(user, key, None)
        found[key] = str(value) if value else ""
    return found if found["tenant"] else None


def services_of(ctx: Context, config: Any) -> Any:
    """The composition root of this run: attached to its Context, else bound to the graph.

    The CLI, the runner and tests attach it to the Context they pass (`ctx.with_services`);
    the LangGraph server builds the Context from the request, so its graph carries the root
    in its config instead (`supportgraph.app.services.server_graph`).
    """
    services = ctx.services or ((config or {}).get("configurable") or {}).get(SERVICES_KEY)
    if services is None:
        raise RuntimeError("no services for this run: run the graph through "
                           "supportgraph.app.runner.Runner or attach them with "
                           "Context.with_services")
    return services


def run_context(runtime: Runtime[Context]) -> Context:
    """The run's Context, completed by its root (Settings, per-run defaults) if it is not yet.

    A runner's context is complete already; the LangGraph server's is the caller's JSON, so the
    routers read their thresholds through here, as the node wrapper does.
    """
    ctx = runtime.context if isinstance(runtime.context, Context) else Context()
    if ctx.complete:
        return ctx
    return services_of(ctx, _current_config()).bind(ctx)


def _current_config() -> Any:
    """The running graph's config; None when a node is called directly (benchmarks, tests)."""
    try:
        return get_config()
    except RuntimeError:
        return None


def tenant_of(state: State, identity: dict[str, str] | None) -> str:
    """The tenant whose rows this step writes: the authenticated caller's, else the ticket's."""
    if identity:
        return identity["tenant"]
    ticket = state.get("normalized") or state.get("ticket") or {}
    return tenant_key(ticket.get("tenant") if isinstance(ticket, dict) else None)


def node(
    name: str, *, on_interrupt: Callable[[State, Step], None] | None = None
) -> Callable[[Callable[[State, Step], dict]], Callable[..., dict]]:
    """Turn `fn(state, step) -> update` into an instrumented LangGraph node.

    `on_interrupt` runs when the node pauses for a human (bookkeeping of the wait); it must be
    idempotent, since a paused node runs again from its start when resumed.
    """

    def decorate(fn: Callable[[State, Step], dict]) -> Callable[..., dict]:
        def run(state: State, runtime: Runtime[Context]) -> dict:
            ctx = runtime.context if isinstance(runtime.context, Context) else Context()
            info = runtime.execution_info
            ticket_id = ticket_id_of(state)
            thread_id = (info.thread_id if info and info.thread_id else f"ticket:{ticket_id}")
            config = _current_config()
            services = services_of(ctx, config)
            # the server's context is the caller's JSON: the root adds the deployment's
            # Settings and per-run defaults (a runner's context has them: two lookups)
            ctx = services.bind(ctx)
            res = services.for_run(ctx)
            ctx = res.with_salt(ctx)
            identity = authenticated_identity(config)
            step = Step(name=name, ctx=ctx, res=res, ticket_id=ticket_id,
                        thread_id=thread_id, tenant=tenant_of(state, identity),
                        identity=identity)
            started = now_iso()
            t0 = time.perf_counter()
            outcome, failure = "ok", None
            try:
                update = fn(state, step)
            except GraphBubbleUp:
                _write_audit(step, info, started, t0, "interrupted", None, state)
                if on_interrupt is not None:
                    on_interrupt(state, step)
                raise
            except Exception as exc:  # noqa: BLE001 - recorded and routed, never swallowed
                if _database_outage(exc):
                    raise  # not the ticket's fault: the step is retried or resumed, not failed
                failure = step_failure_text(name, exc)
                # Exception text may quote the ticket: redacted, traceback only at DEBUG.
                log.error("step failed: %s", redact_obj(failure, salt=ctx.pii_salt),
                          exc_info=log.isEnabledFor(logging.DEBUG))
                outcome = "error"
                update = {"error": failure}
            if update.get("error") and outcome == "ok":
                outcome, failure = "error", update["error"]
            if update.get("failures"):
                failure = failure or "; ".join(update["failures"])
            ticket_id = ticket_id_of({**state, **update})
            step.ticket_id = ticket_id
            usage = StepUsage(step=name, duration_ms=round((time.perf_counter() - t0) * 1000, 3),
                              cost=round(step.cost, 8), model_calls=step.model_calls,
                              cache_hits=step.cache_hits, retries=step.retries,
                              models=step.models, started_at=started)
            update = {**update, "usage": [usage]}
            if step.failures:
                update["failures"] = [*update.get("failures", []), *step.failures]
            if failure and failure not in update.get("failures", []):
                update["failures"] = [*update.get("failures", []), failure]
            _write_audit(step, info, started, t0, outcome, failure, {**state, **update})
            return update

        # Not functools.wraps: LangGraph reads the signature to inject `runtime`.
        run.__name__, run.__qualname__, run.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        return run

    return decorate


def _write_audit(step: Step, info: Any, started: str, t0: float, outcome: str,
                 failure: str | None, state: Mapping[str, Any]) -> None:
    """Upsert this step execution's audit row (keyed by task id, so re-runs overwrite)."""
    key = info.task_id if info else f"{step.thread_id}:{step.name}:{started}"
    detail = redact_obj(step.detail, salt=step.ctx.pii_salt) if step.detail else None
    row = {
        "event_key": key, "tenant": step.tenant, "ticket_id": step.ticket_id,
        "thread_id": step.thread_id,
        "step": step.name, "attempt": info.node_attempt if info else 1, "started_at": started,
        "duration_ms": round((time.perf_counter() - t0) * 1000, 3), "outcome": outcome,
        "model_calls": step.model_calls, "cache_hits": step.cache_hits, "retries": step.retries,
        "cost_usd": step.cost,
        "failure": redact_obj(failure, salt=step.ctx.pii_salt) if failure else None,
        "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True) if detail else None,
    }
    step.res.db.execute(
        """INSERT INTO sg_audit (event_key, tenant, ticket_id, thread_id, step, attempt,
               started_at, duration_ms, outcome, model_calls, cache_hits, retries, cost_usd,
               failure, detail)
           VALUES (:event_key, :tenant, :ticket_id, :thread_id, :step, :attempt, :started_at,
               :duration_ms, :outcome, :model_calls, :cache_hits, :retries, :cost_usd,
               :failure, :detail)
           ON CONFLICT (event_key) DO UPDATE SET ticket_id = excluded.ticket_id,
               attempt = excluded.attempt, duration_ms = excluded.duration_ms,
               outcome = excluded.outcome, model_calls = excluded.model_calls,
               cache_hits = excluded.cache_hits, retries = excluded.retries,
               cost_usd = excluded.cost_usd, failure = excluded.failure,
               detail = excluded.detail""",
        row,
    )
    _report(row, step.ctx.pii_salt)


def _report(row: dict[str, Any], salt: str) -> None:
    """One JSON log line and one OpenTelemetry span per step: ids and figures, never text.

    Quiet unless the `supportgraph.steps` logger is at INFO (`supportgraph -v`); no span
    unless the application installed a tracer provider (`supportgraph.app.observability`). Neither
    costs
    anything when off: this runs after every step.
    """
    logging_on = log.isEnabledFor(logging.INFO)
    tracing_on = _tracing_enabled()
    if not (logging_on or tracing_on):
        return
    fields = {"ticket_id": redact_obj(row["ticket_id"], salt=salt),
              "thread_id": redact_obj(row["thread_id"], salt=salt), "step": row["step"],
              "attempt": row["attempt"], "duration_ms": row["duration_ms"],
              "outcome": row["outcome"], "cost": row["cost_usd"],
              "model_calls": row["model_calls"]}
    if logging_on:
        log.info(json.dumps({"event": "step", **fields}, ensure_ascii=False))
    if tracing_on:
        end = time.time_ns()
        span = _otel_trace.get_tracer("supportgraph").start_span(
            f"step {row['step']}", start_time=end - int(row["duration_ms"] * 1e6),
            attributes={f"supportgraph.{k}": v for k, v in fields.items()})
        span.end(end_time=end)


def _tracing_enabled() -> bool:
    """Whether a tracer provider was installed (before that, OpenTelemetry's is a proxy)."""
    if _otel_trace is None:
        return False
    provider = _otel_trace.get_tracer_provider()
    return not isinstance(provider, (_otel_trace.ProxyTracerProvider,
                                     _otel_trace.NoOpTracerProvider))
