"""The chat-model vocabulary: one request type, its results, and the errors providers raise.

Nodes build a `ChatRequest` and call `ModelChain.complete` (`supportgraph.models.chain`), which
tries its `provider:model` entries in order and checks every output
(`supportgraph.models.validation`). Every try is recorded as an `Attempt`, so a run summary can
say exactly what happened. When every entry fails the chain raises `ModelsUnavailable` and the
caller routes the ticket to a human; it never crashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class ChatRequest:
    """One model call, independent of the provider that will serve it."""

    task: str  # "draft" | "rewrite" | "plan": the offline provider dispatches on it
    system: str  # system prompt (a module constant of the calling node)
    user: str  # rendered user prompt; ticket text and documents already delimited
    # Structured inputs for the offline provider; never sent to remote providers and not part
    # of the cache key (remote answers depend only on system/user).
    data: Mapping[str, Any] = field(default_factory=dict)
    max_tokens: int = 600
    temperature: float = 0.0
    json_schema: dict | None = None  # when set, the output must be JSON matching it
    language: str | None = "en"  # expected reply language; None disables the check


@dataclass(frozen=True)
class Completion:
    """What one provider returned for one successful HTTP call."""

    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool = False  # stopped at max_tokens
    refusal: str | None = None  # the provider flagged the answer as a refusal


@dataclass(frozen=True)
class Attempt:
    """One try at one chain entry, successful or not (the run summary lists them)."""

    provider: str
    model: str
    # "ok" | "timeout" | "connection_error" | "http_429" | "http_5xx" | "http_4xx" |
    # "invalid_output:<why>" | "circuit_open" | "budget_denied" | "error:<ExceptionType>"
    outcome: str
    duration_ms: float
    retry_after_s: float | None = None
    cost_usd: float = 0.0  # billed attempts (an answer that failed validation still costs)


@dataclass(frozen=True)
class ChatResult:
    """The validated answer and everything it cost."""

    text: str
    provider: str
    model: str
    input_tokens: int  # summed over every billed attempt of this call
    output_tokens: int
    cost_usd: float  # summed over every billed attempt (0 for a cache hit)
    cached: bool
    attempts: tuple[Attempt, ...]

    @property
    def retries(self) -> int:
        """Attempts that failed before the answer."""
        return sum(1 for a in self.attempts if a.outcome != "ok")


class Provider(Protocol):
    """A chat backend; raises `ProviderError` subclasses on failure."""

    name: str

    def complete(self, request: ChatRequest, model: str, *, timeout: float) -> Completion:
        """Make one call (no retries: the chain retries)."""
        ...


# --------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """A provider call failed; `outcome` is the label recorded in the attempt."""

    outcome = "error"
    retryable = False  # worth retrying the same entry after a backoff
    provider_fault = True  # counts towards the provider's circuit breaker


class Timeout(ProviderError):
    """No answer within the per-call timeout."""

    outcome = "timeout"
    retryable = True


class ConnectionFailed(ProviderError):
    """Connection refused, reset or dropped."""

    outcome = "connection_error"
    retryable = True


class RateLimited(ProviderError):
    """HTTP 429; `retry_after` is the server's Retry-After in seconds, if it sent one."""

    outcome = "http_429"
    retryable = True

    def __init__(self, retry_after: float | None = None, message: str = "rate limited") -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(ProviderError):
    """HTTP 5xx (including Anthropic's 529 overloaded)."""

    outcome = "http_5xx"
    retryable = True

    def __init__(self, status: int, message: str = "server error") -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status


class ClientError(ProviderError):
    """HTTP 4xx other than 429: our request or our credentials are wrong; never retried."""

    outcome = "http_4xx"

    def __init__(self, status: int, message: str = "client error") -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        # A bad key or unknown model fails every call; a bad request fails only this one.
        self.provider_fault = status in (401, 403, 404)


class InvalidOutput(ProviderError):
    """The provider answered, but the answer is unusable (`why` says how)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why
        self.outcome = f"invalid_output:{why}"
        self.provider_fault = why == "malformed_response"


class ModelsUnavailable(RuntimeError):
    """Every entry of the chain failed; the ticket should go to a human."""

    def __init__(self, attempts: tuple[Attempt, ...]) -> None:
        self.attempts = attempts
        summary = "; ".join(f"{a.provider}:{a.model} {a.outcome}" for a in attempts) or "no entries"
        super().__init__(f"every model in the chain failed: {summary}")

    @property
    def reason(self) -> Literal["budget_exhausted", "models_unavailable"]:
        """`budget_exhausted` if the budget alone stopped every entry, else `models_unavailable`."""
        if self.attempts and all(a.outcome == "budget_denied" for a in self.attempts):
            return "budget_exhausted"
        return "models_unavailable"

