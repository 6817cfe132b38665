"""Per-provider circuit breakers, so a vendor that keeps failing is skipped instead of waited on.

A provider's breaker opens after `failure_threshold` consecutive failures; while open, calls to
that provider are refused at once (the chain falls back and records `circuit_open`). After
`cooldown_s` it becomes half-open and lets exactly one trial call through: success closes it,
failure opens it for another cool-down. The clock is injectable so tests need no sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]


@dataclass
class _Breaker:
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    trial_in_flight: bool = False


class CircuitBreakers:
    """Breakers keyed by provider name, safe to share between threads."""

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, _Breaker] = {}

    def _get(self, provider: str) -> _Breaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            breaker = self._breakers[provider] = _Breaker()
        return breaker

    def _refresh(self, provider: str, breaker: _Breaker) -> None:
        if breaker.state == "open" and self._clock() - breaker.opened_at >= self.cooldown_s:
            breaker.state = "half_open"
            breaker.trial_in_flight = False
            log.info("circuit for %s half-open after %.0f s cool-down", provider, self.cooldown_s)

    def state(self, provider: str) -> State:
        """Return the current state of `provider`'s breaker ("closed", "open" or "half_open")."""
        with self._lock:
            breaker = self._get(provider)
            self._refresh(provider, breaker)
            return breaker.state

    def is_open(self, provider: str) -> bool:
        """Whether calls to `provider` are being refused right now."""
        return self.state(provider) == "open"

    def allow(self, provider: str) -> bool:
        """Ask to make one call; in half-open state only one trial call is let through."""
        with self._lock:
            breaker = self._get(provider)
            self._refresh(provider, breaker)
            if breaker.state == "closed":
                return True
            if breaker.state == "half_open" and not breaker.trial_in_flight:
                breaker.trial_in_flight = True
                return True
            return False

    def record_success(self, provider: str) -> None:
        """Record that the provider answered: close its breaker and forget past failures."""
        with self._lock:
            breaker = self._get(provider)
            if breaker.state != "closed":
                log.info("circuit for %s closed after a successful call", provider)
            breaker.state = "closed"
            breaker.failures = 0
            breaker.trial_in_flight = False

    def record_failure(self, provider: str) -> None:
        """Record that the provider failed: count it, and open the breaker at the threshold."""
        with self._lock:
            breaker = self._get(provider)
            breaker.failures += 1
            reopen = breaker.state == "half_open"
            if reopen or (breaker.state == "closed" and breaker.failures >= self.failure_threshold):
                breaker.state = "open"
                breaker.opened_at = self._clock()
                breaker.trial_in_flight = False
                log.warning(
                    "circuit for %s opened after %d consecutive failures; skipping it for %.0f s",
                    provider, breaker.failures, self.cooldown_s,
                )

    def reset(self, provider: str | None = None) -> None:
        """Forget the state of one provider, or of all."""
        with self._lock:
            if provider is None:
                self._breakers.clear()
            else:
                self._breakers.pop(provider, None)

