"""The fallback chain: ordered `provider:model` entries that survive failures.

For each entry the chain looks in the response cache, respects the provider's circuit breaker
and the caller's budget, makes bounded retries with exponential backoff and jitter on transient
failures (honouring Retry-After), and validates the output. Chains are configured by a spec
string (`parse_chain`), per role.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from supportgraph.models.breaker import CircuitBreakers
from supportgraph.models.chat import (
    Attempt,
    ChatRequest,
    ChatResult,
    Completion,
    ModelsUnavailable,
    Provider,
    ProviderError,
)
from supportgraph.models.prices import PriceTable, load_prices
from supportgraph.models.validation import estimate_input_tokens, validate_output

if TYPE_CHECKING:
    from supportgraph.models.cache import ResponseCache

log = logging.getLogger(__name__)

ROLES = ("router", "answer", "planner")
OFFLINE_SPEC = "offline:offline-v1"
# Default models per role: a small, cheap model for routing-type work, a stronger one for the
# customer-facing answer and for planning. Override with SUPPORTGRAPH_<ROLE>_MODELS.
DEFAULT_MODELS: dict[str, dict[str, str]] = {
    "openai": {"router": "gpt-4.1-mini", "answer": "gpt-4.1", "planner": "gpt-4.1"},
    "anthropic": {
        "router": "claude-haiku-4-5",
        "answer": "claude-sonnet-4-5",
        "planner": "claude-sonnet-4-5",
    },
}


# --------------------------------------------------------------------------- the chain


class ModelChain:
    """An ordered fallback chain of (provider, model) entries with retries, breaker and cache."""

    def __init__(
        self,
        entries: list[tuple[Provider, str]],
        *,
        timeout_s: float,
        max_retries: int,
        backoff_base_s: float,
        backoff_max_s: float,
        breaker: CircuitBreakers,
        prices: PriceTable,
        cache: ResponseCache | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        budget_check: Callable[[float], bool] | None = None,
    ) -> None:
        if not entries:
            raise ValueError("a model chain needs at least one entry")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.entries = list(entries)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.breaker = breaker
        self.prices = prices
        self.cache = cache
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self.budget_check = budget_check

    @property
    def spec(self) -> str:
        """The chain as a `provider:model,...` string (for run summaries)."""
        return ",".join(f"{provider.name}:{model}" for provider, model in self.entries)

    def __repr__(self) -> str:
        return f"ModelChain({self.spec!r})"

    def _backoff(self, retry_index: int) -> float:
        """Exponential backoff with equal jitter: between half and all of the capped delay."""
        delay = min(self.backoff_max_s, self.backoff_base_s * (2**retry_index))
        return delay * (0.5 + 0.5 * self._rng())

    def _elapsed_ms(self, start: float) -> float:
        return (self._clock() - start) * 1000.0

    def complete(self, request: ChatRequest) -> ChatResult:
        """Answer `request` with the first entry that gives valid output.

        Raises `ModelsUnavailable` (with every attempt) when no entry does.
        """
        run = _Run()
        for provider, model in self.entries:
            result = self._try_entry(provider, model, request, run)
            if result is not None:
                return result
        error = ModelsUnavailable(tuple(run.attempts))
        log.error("%s", error)
        raise error

    def _try_entry(
        self, provider: Provider, model: str, request: ChatRequest, run: _Run
    ) -> ChatResult | None:
        """Cache, breaker, budget, then calls with retries; None means: fall back."""
        name = provider.name
        cache = self.cache if getattr(provider, "cacheable", name != "offline") else None
        if cache is not None:
            start = self._clock()
            hit = cache.get(request, name, model)
            if hit is not None:
                run.attempts.append(Attempt(name, model, "ok", self._elapsed_ms(start)))
                log.debug("cache hit for %s:%s (%s)", name, model, request.task)
                return run.result(hit.text, name, model, cached=True)
        if self.breaker.is_open(name):
            run.attempts.append(Attempt(name, model, "circuit_open", 0.0))
            log.warning("skipping %s:%s: circuit open", name, model)
            return None
        if self.budget_check is not None:
            worst = self.prices.worst_case(
                name, model, estimate_input_tokens(request), request.max_tokens
            )
            if not self.budget_check(worst):
                run.attempts.append(Attempt(name, model, "budget_denied", 0.0))
                log.warning("skipping %s:%s: worst case $%.4f over budget", name, model, worst)
                return None
        completion, duration = self._call_with_retries(provider, model, request, run)
        if completion is None:
            return None
        cost = self.prices.cost(name, model, completion.input_tokens, completion.output_tokens)
        run.bill(completion, cost)
        text, why = validate_output(request, completion)
        if why is not None:
            run.attempts.append(Attempt(name, model, f"invalid_output:{why}", duration, None, cost))
            log.warning("%s:%s gave invalid output (%s); falling back", name, model, why)
            return None
        run.attempts.append(Attempt(name, model, "ok", duration, None, cost))
        if cache is not None:
            stored = Completion(text, completion.input_tokens, completion.output_tokens)
            cache.put(request, name, model, stored)
        return run.result(text, name, model, cached=False)

    def _call_with_retries(
        self, provider: Provider, model: str, request: ChatRequest, run: _Run
    ) -> tuple[Completion | None, float]:
        """Call one entry, retrying transient failures; (None, 0) when it gave up."""
        name = provider.name
        for retry_index in range(self.max_retries + 1):
            if not self.breaker.allow(name):
                run.attempts.append(Attempt(name, model, "circuit_open", 0.0))
                return None, 0.0
            start = self._clock()
            try:
                completion = provider.complete(request, model, timeout=self.timeout_s)
            except ProviderError as exc:
                retry_after = getattr(exc, "retry_after", None)
                run.attempts.append(
                    Attempt(name, model, exc.outcome, self._elapsed_ms(start), retry_after)
                )
                if exc.provider_fault:
                    self.breaker.record_failure(name)
                else:
                    self.breaker.record_success(name)
                log.warning("%s:%s failed: %s (%s)", name, model, exc.outcome, exc)
                wait = self._retry_wait(exc, retry_index, name)
                if wait is None:
                    return None, 0.0
                self._sleep(wait)
                continue
            except Exception as exc:  # a provider bug must not crash the ticket
                outcome = f"error:{type(exc).__name__}"
                run.attempts.append(Attempt(name, model, outcome, self._elapsed_ms(start)))
                self.breaker.record_failure(name)
                log.exception("%s:%s raised an unexpected error", name, model)
                return None, 0.0
            self.breaker.record_success(name)
            return completion, self._elapsed_ms(start)
        return None, 0.0

    def _retry_wait(self, exc: ProviderError, retry_index: int, name: str) -> float | None:
        """Seconds to wait before retrying after `exc`, or None to stop and fall back."""
        if not exc.retryable or retry_index >= self.max_retries:
            return None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is None:
            return self._backoff(retry_index)
        if retry_after > self.backoff_max_s:
            log.warning(
                "%s asks to retry after %.1f s (cap %.1f s): falling back",
                name, retry_after, self.backoff_max_s,
            )
            return None
        return retry_after


@dataclass
class _Run:
    """What one `ModelChain.complete` call has done so far."""

    attempts: list[Attempt] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def bill(self, completion: Completion, cost: float) -> None:
        self.input_tokens += completion.input_tokens
        self.output_tokens += completion.output_tokens
        self.cost_usd += cost

    def result(self, text: str, provider: str, model: str, *, cached: bool) -> ChatResult:
        return ChatResult(
            text, provider, model, self.input_tokens, self.output_tokens, self.cost_usd,
            cached, tuple(self.attempts),
        )

# --------------------------------------------------------------------------- configuration

_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def parse_chain(spec: str) -> list[tuple[str, str]]:
    """Parse `"openai:gpt-4.1-mini,anthropic:claude-haiku-4-5"` into (provider, model) pairs.

    The model is everything after the first colon (so `ollama:llama3:8b` works); a bare
    `offline` means `offline:offline-v1`.
    """
    if not spec or not spec.strip():
        raise ValueError("empty model chain; expected e.g. 'openai:gpt-4.1-mini,offline'")
    entries: list[tuple[str, str]] = []
    for raw in spec.split(","):
        item = raw.strip()
        if item == "offline":
            entries.append(("offline", "offline-v1"))
            continue
        provider, sep, model = item.partition(":")
        provider, model = provider.strip().lower(), model.strip()
        if not sep or not _PROVIDER_NAME.match(provider) or not model:
            raise ValueError(
                f"bad model chain entry {item!r} in {spec!r}: expected 'provider:model', "
                "e.g. 'openai:gpt-4.1-mini'"
            )
        entries.append((provider, model))
    return entries


def default_chain_spec(role: str, *, have_openai: bool, have_anthropic: bool) -> str:
    """Return the chain used when `SUPPORTGRAPH_<ROLE>_MODELS` is unset.

    Configured vendors in the order openai, anthropic with their default model for the role;
    with none, the offline provider.
    """
    if role not in ROLES:
        raise ValueError(f"unknown model role {role!r}; expected one of {', '.join(ROLES)}")
    parts = []
    if have_openai:
        parts.append(f"openai:{DEFAULT_MODELS['openai'][role]}")
    if have_anthropic:
        parts.append(f"anthropic:{DEFAULT_MODELS['anthropic'][role]}")
    return ",".join(parts) or OFFLINE_SPEC


def build_chain(
    spec: str,
    *,
    providers: Mapping[str, Provider],
    timeout_s: float = 30.0,
    max_retries: int = 2,
    backoff_base_s: float = 0.5,
    backoff_max_s: float = 8.0,
    breaker: CircuitBreakers | None = None,
    prices: PriceTable | None = None,
    cache: ResponseCache | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
    budget_check: Callable[[float], bool] | None = None,
) -> ModelChain:
    """Build a `ModelChain` from a spec string and the configured providers by name.

    `breaker`: the composition root's, shared by its chains; a chain given none keeps its own.
    """
    entries: list[tuple[Provider, str]] = []
    for provider_name, model in parse_chain(spec):
        provider = providers.get(provider_name)
        if provider is None:
            hint = {
                "openai": " (set OPENAI_API_KEY or OPENAI_BASE_URL)",
                "anthropic": " (set ANTHROPIC_API_KEY)",
            }.get(provider_name, "")
            raise ValueError(
                f"model chain {spec!r} names provider {provider_name!r}, which is not "
                f"configured{hint}; configured: {', '.join(sorted(providers)) or 'none'}"
            )
        entries.append((provider, model))
    return ModelChain(
        entries,
        timeout_s=timeout_s,
        max_retries=max_retries,
        backoff_base_s=backoff_base_s,
        backoff_max_s=backoff_max_s,
        breaker=breaker if breaker is not None else CircuitBreakers(),
        prices=prices if prices is not None else load_prices(),
        cache=cache,
        clock=clock,
        sleep=sleep,
        rng=rng,
        budget_check=budget_check,
    )

