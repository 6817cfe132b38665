"""Token prices per provider and model, so every model call has a cost to the cent.

The shipped table (`models/data/prices.toml`) has an `as_of` date; vendors change prices, so a user
file named by `SUPPORTGRAPH_PRICES` is merged over it. Prices are parsed as `Decimal` so that
`cost()` is exact for the usage counts a provider reports. A model missing from the table gets a
deliberately expensive default price (budget checks stay conservative) and a logged warning,
never an exception: an unknown model must not crash a ticket.
"""

from __future__ import annotations

import functools
import logging
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRICES_ENV = "SUPPORTGRAPH_PRICES"
_MILLION = Decimal(1_000_000)
FREE_PROVIDERS = frozenset({"offline"})


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input: Decimal
    output: Decimal


class PriceTable:
    """Looks up prices and turns token counts into USD."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.as_of: str = str(data.get("as_of", "unknown"))
        default = data.get("default", {})
        self.default = Price(
            Decimal(str(default.get("input", "15"))), Decimal(str(default.get("output", "75")))
        )
        self._prices: dict[tuple[str, str], Price] = {}
        for provider, models in dict(data.get("providers", {})).items():
            for model, entry in dict(models).items():
                self._prices[(provider, model)] = Price(
                    Decimal(str(entry["input"])), Decimal(str(entry["output"]))
                )
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def price(self, provider: str, model: str) -> Price:
        """Price of `provider:model`; offline is free; unknown models get the default price."""
        if provider in FREE_PROVIDERS:
            return Price(Decimal(0), Decimal(0))
        found = self._prices.get((provider, model))
        if found is not None:
            return found
        with self._lock:
            first = (provider, model) not in self._warned
            self._warned.add((provider, model))
        if first:
            log.warning(
                "no price for %s:%s in the price table (as of %s); using the conservative "
                "default of %s/%s USD per million input/output tokens; set %s to override",
                provider, model, self.as_of, self.default.input, self.default.output, PRICES_ENV,
            )
        return self.default

    def known(self, provider: str, model: str) -> bool:
        """Whether the table has an explicit price for `provider:model`."""
        return provider in FREE_PROVIDERS or (provider, model) in self._prices

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> float:
        """Exact USD cost of one call from its reported token usage."""
        price = self.price(provider, model)
        total = (price.input * input_tokens + price.output * output_tokens) / _MILLION
        return float(total)

    def worst_case(
        self, provider: str, model: str, input_tokens_estimate: int, max_tokens: int
    ) -> float:
        """Upper bound of a call's cost (all `max_tokens` generated), for budget checks."""
        return self.cost(provider, model, input_tokens_estimate, max_tokens)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def shipped_prices() -> dict[str, Any]:
    """Return the raw price data shipped with the package."""
    data = resources.files("supportgraph.models").joinpath("data/prices.toml")
    text = data.read_text(encoding="utf-8")
    return tomllib.loads(text, parse_float=Decimal)


@functools.lru_cache(maxsize=16)
def _load(override: str | None, stamp: tuple[int, int] | None) -> PriceTable:
    """Parse and merge once per override file version (`stamp` = mtime, size)."""
    data = shipped_prices()
    if override:
        path = Path(override)
        try:
            user = tomllib.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read price file {path} ({PRICES_ENV}): {exc}") from exc
        data = _merge(data, user)
        log.info("price table: shipped merged with %s (as of %s)", path, data.get("as_of"))
    return PriceTable(data)


def load_prices(override: Path | str | None = None) -> PriceTable:
    """Return the shipped price table, with the TOML file `override` (if any) merged over it.

    Tables are cached per process (parsing costs about a millisecond, and chains are built per
    call); an edited override file is picked up because its mtime and size are in the key.
    """
    if not override:
        return _load(None, None)
    try:
        info = Path(override).stat()
    except OSError as exc:
        raise ValueError(f"cannot read price file {override} ({PRICES_ENV}): {exc}") from exc
    return _load(str(override), (info.st_mtime_ns, info.st_size))


def prices_from_env(environ: Mapping[str, str]) -> PriceTable:
    """Edge helper: the price table, honouring `SUPPORTGRAPH_PRICES` if set."""
    return load_prices(environ.get(PRICES_ENV) or None)
