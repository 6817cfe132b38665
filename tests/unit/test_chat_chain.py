"""Pure logic of the chat layer: chain parsing, retries, fallback, validation, breaker, prices.

The only fake is a scripted `Provider` (the seam below which HTTP happens); the chain, breaker,
price table and validators are the real ones. Time is injected: nothing sleeps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from evals.builders import shared_data
from supportgraph.models.breaker import CircuitBreakers
from supportgraph.models.chain import (
    OFFLINE_SPEC,
    ModelChain,
    build_chain,
    default_chain_spec,
    parse_chain,
)
from supportgraph.models.chat import (
    ChatRequest,
    ClientError,
    Completion,
    ConnectionFailed,
    InvalidOutput,
    ModelsUnavailable,
    RateLimited,
    ServerError,
    Timeout,
)
from supportgraph.models.prices import PriceTable, load_prices, prices_from_env, shipped_prices
from supportgraph.models.validation import schema_error, validate_output
from supportgraph.text.language import detect_wrong_language, looks_non_english

ANSWER = "Your invoice is in Dashboard > Billing > Invoices, and you can download the PDF there."


class ScriptedProvider:
    """Plays a list of results: a `Completion` is returned, an exception is raised."""

    def __init__(self, name: str, *script: object) -> None:
        self.name = name
        self.script = list(script)
        self.calls: list[tuple[str, float]] = []

    def complete(self, request: ChatRequest, model: str, *, timeout: float) -> Completion:
        self.calls.append((model, timeout))
        item = self.script.pop(0) if self.script else Completion(ANSWER, 10, 5)
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, Completion)
        return item


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_chain(*entries, max_retries=2, breaker=None, clock=None, sleeps=None, **kw) -> ModelChain:
    clock = clock or FakeClock()
    return ModelChain(
        list(entries),
        timeout_s=5.0,
        max_retries=max_retries,
        backoff_base_s=0.5,
        backoff_max_s=4.0,
        breaker=breaker or CircuitBreakers(failure_threshold=5, cooldown_s=60, clock=clock),
        prices=load_prices(),
        cache=None,
        clock=clock,
        sleep=sleeps if sleeps is not None else Sleeps(),
        rng=lambda: 0.5,
        **kw,
    )


REQ = ChatRequest(task="draft", system="You are a support agent.", user="Where is my invoice?")


# --------------------------------------------------------------------------- chain config


def test_parse_chain_accepts_entries_and_rejects_bad_ones() -> None:
    assert parse_chain("openai:gpt-4.1-mini, anthropic:claude-haiku-4-5") == [
        ("openai", "gpt-4.1-mini"),
        ("anthropic", "claude-haiku-4-5"),
    ]
    assert parse_chain("ollama:llama3:8b,offline") == [
        ("ollama", "llama3:8b"),
        ("offline", "offline-v1"),
    ]
    for bad in ["", "  ", "openai", "openai:", ":gpt-4.1", "openai:gpt-4.1,,offline", "Open AI:x"]:
        with pytest.raises(ValueError, match="model chain"):
            parse_chain(bad)


def test_default_chain_spec_follows_keys_and_roles() -> None:
    assert default_chain_spec("router", have_openai=False, have_anthropic=False) == OFFLINE_SPEC
    assert (
        default_chain_spec("router", have_openai=True, have_anthropic=True)
        == "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5"
    )
    assert default_chain_spec("answer", have_openai=False, have_anthropic=True) == (
        "anthropic:claude-sonnet-4-5"
    )
    assert default_chain_spec("planner", have_openai=True, have_anthropic=False) == "openai:gpt-4.1"
    with pytest.raises(ValueError, match="unknown model role"):
        default_chain_spec("drafter", have_openai=True, have_anthropic=True)


def test_build_chain_names_the_missing_provider() -> None:
    offline = ScriptedProvider("offline")
    chain = build_chain("offline", providers={"offline": offline}, prices=load_prices())
    assert chain.spec == OFFLINE_SPEC
    # Without breakers given, a chain keeps its own: no state is shared through the process.
    again = build_chain("offline", providers={"offline": offline}, prices=load_prices())
    assert isinstance(chain.breaker, CircuitBreakers) and again.breaker is not chain.breaker
    with pytest.raises(ValueError, match="'anthropic'.*ANTHROPIC_API_KEY"):
        build_chain("anthropic:claude-haiku-4-5,offline", providers={"offline": offline})


# --------------------------------------------------------------------------- retries


def test_success_reports_tokens_cost_and_one_attempt() -> None:
    provider = ScriptedProvider("openai", Completion(ANSWER, 1234, 567))
    result = make_chain((provider, "gpt-4.1-mini")).complete(REQ)
    assert (result.text, result.provider, result.model, result.cached) == (
        ANSWER, "openai", "gpt-4.1-mini", False,
    )
    assert (result.input_tokens, result.output_tokens) == (1234, 567)
    assert result.cost_usd == 0.0014008  # 1234 * 0.40/1e6 + 567 * 1.60/1e6, exactly
    assert [a.outcome for a in result.attempts] == ["ok"]
    assert result.retries == 0
    assert provider.calls == [("gpt-4.1-mini", 5.0)]


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (Timeout("slow"), "timeout"),
        (ConnectionFailed("refused"), "connection_error"),
        (ServerError(503), "http_5xx"),
        (RateLimited(None), "http_429"),
    ],
)
def test_transient_failures_are_retried_with_exponential_backoff(error, outcome) -> None:
    sleeps = Sleeps()
    provider = ScriptedProvider("openai", error, error, Completion(ANSWER, 10, 5))
    result = make_chain((provider, "gpt-4.1-mini"), sleeps=sleeps).complete(REQ)
    assert [a.outcome for a in result.attempts] == [outcome, outcome, "ok"]
    assert result.retries == 2
    # base 0.5 s doubling, equal jitter with rng=0.5 -> 75 % of the delay
    assert sleeps.waits == [0.375, 0.75]


def test_backoff_is_capped() -> None:
    sleeps = Sleeps()
    errors = [ServerError(500)] * 6
    provider = ScriptedProvider("openai", *errors)
    chain = make_chain((provider, "m"), max_retries=5, sleeps=sleeps,
                       breaker=CircuitBreakers(failure_threshold=100))
    with pytest.raises(ModelsUnavailable):
        chain.complete(REQ)
    assert sleeps.waits == [0.375, 0.75, 1.5, 3.0, 3.0]  # 0.5, 1, 2, 4, 4(cap) x 0.75


def test_retry_after_is_honoured_exactly() -> None:
    sleeps = Sleeps()
    provider = ScriptedProvider("openai", RateLimited(2.5), Completion(ANSWER, 10, 5))
    result = make_chain((provider, "gpt-4.1-mini"), sleeps=sleeps).complete(REQ)
    assert sleeps.waits == [2.5]
    assert result.attempts[0].outcome == "http_429"
    assert result.attempts[0].retry_after_s == 2.5


def test_retry_after_beyond_the_cap_falls_back_instead_of_waiting() -> None:
    sleeps = Sleeps()
    first = ScriptedProvider("openai", RateLimited(120.0))
    second = ScriptedProvider("anthropic", Completion(ANSWER, 10, 5))
    result = make_chain((first, "gpt-4.1-mini"), (second, "claude-haiku-4-5"),
                        sleeps=sleeps).complete(REQ)
    assert sleeps.waits == []
    assert [(a.provider, a.outcome) for a in result.attempts] == [
        ("openai", "http_429"), ("anthropic", "ok"),
    ]


def test_client_errors_fall_back_without_retry() -> None:
    sleeps = Sleeps()
    first = ScriptedProvider("openai", ClientError(400))
    second = ScriptedProvider("anthropic")
    result = make_chain((first, "a"), (second, "b"), sleeps=sleeps).complete(REQ)
    assert [a.outcome for a in result.attempts] == ["http_4xx", "ok"]
    assert sleeps.waits == [] and len(first.calls) == 1


def test_all_entries_failing_raises_models_unavailable_with_every_attempt() -> None:
    first = ScriptedProvider("openai", *[ServerError(500)] * 3)
    second = ScriptedProvider("anthropic", *[Timeout("t")] * 3)
    with pytest.raises(ModelsUnavailable) as info:
        make_chain((first, "a"), (second, "b")).complete(REQ)
    assert [(a.provider, a.outcome) for a in info.value.attempts] == (
        [("openai", "http_5xx")] * 3 + [("anthropic", "timeout")] * 3
    )
    assert info.value.reason == "models_unavailable"
    assert "openai:a http_5xx" in str(info.value)


def test_unexpected_provider_exception_is_recorded_and_falls_back(caplog) -> None:
    first = ScriptedProvider("openai", RuntimeError("bug in a provider"))
    second = ScriptedProvider("anthropic")
    with caplog.at_level(logging.ERROR):
        result = make_chain((first, "a"), (second, "b")).complete(REQ)
    assert [a.outcome for a in result.attempts] == ["error:RuntimeError", "ok"]
    assert "unexpected error" in caplog.text


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("completion", "request_", "why"),
    [
        (Completion("", 5, 0), REQ, "empty"),
        (Completion("   \n\t", 5, 3), REQ, "empty"),
        (Completion("I'm sorry, but I can't help with that request.", 5, 9), REQ, "refusal"),
        (Completion("I cannot assist with that.", 5, 6), REQ, "refusal"),
        (Completion("Hello! I'm sorry, but I can't share other customers' data.", 5, 9), REQ,
         "refusal"),
        (Completion("Sure", 5, 1, refusal="policy"), REQ, "refusal"),
        (Completion(ANSWER[:20], 5, 600, truncated=True), REQ, "truncated"),
        (
            Completion("Hola, gracias por su mensaje. Puede descargar su factura desde el "
                       "panel, en la sección de facturación, cuando quiera.", 5, 30),
            REQ,
            "wrong_language_es",
        ),
        (
            Completion("Here is the plan: retrieve again", 5, 6),
            ChatRequest("plan", "s", "u", json_schema={"type": "object"}),
            "not_json",
        ),
        (
            Completion('{"action": "dance"}', 5, 6),
            ChatRequest("plan", "s", "u", json_schema={
                "type": "object", "required": ["action"],
                "properties": {"action": {"enum": ["retrieve_again", "handoff"]}},
            }),
            "schema_mismatch",
        ),
    ],
)
def test_invalid_output_falls_back_and_is_still_billed(completion, request_, why) -> None:
    first = ScriptedProvider("openai", completion)
    second = ScriptedProvider("anthropic", Completion('{"action": "handoff"}' if
                                                      request_.json_schema else ANSWER, 10, 5))
    result = make_chain((first, "gpt-4.1-mini"), (second, "claude-haiku-4-5")).complete(request_)
    assert [a.outcome for a in result.attempts] == [f"invalid_output:{why}", "ok"]
    assert len(first.calls) == 1  # invalid output is not retried on the same entry
    billed = load_prices().cost("openai", "gpt-4.1-mini", 5, completion.output_tokens)
    assert result.attempts[0].cost_usd == billed
    assert result.cost_usd == pytest.approx(
        billed + load_prices().cost("anthropic", "claude-haiku-4-5", 10, 5)
    )


def test_valid_outputs_are_not_rejected() -> None:
    sorry = ChatRequest("draft", "s", "u")
    ok = Completion("I'm sorry to hear that the payment failed. Update your card in Billing > "
                    "Payment methods, then click Retry payment.", 1, 1)
    assert validate_output(sorry, ok) == (ok.text, None)
    schema = {
        "type": "object", "required": ["action"], "properties": {"action": {"type": "string"}},
    }
    fenced = Completion('```json\n{"action": "handoff"}\n```', 1, 1)
    assert validate_output(ChatRequest("plan", "s", "u", json_schema=schema), fenced) == (
        '{"action": "handoff"}', None,
    )
    spanish = Completion("Hola, gracias por su mensaje. Puede descargar su factura desde el "
                         "panel, en la sección de facturación, cuando quiera.", 1, 1)
    assert validate_output(ChatRequest("draft", "s", "u", language="es"), spanish)[1] is None
    assert validate_output(ChatRequest("draft", "s", "u", language=None), spanish)[1] is None


def test_language_heuristic_needs_clear_evidence() -> None:
    assert detect_wrong_language("Merci!", "en") is None  # too short to judge
    mixed = ("Thanks for reaching out. The French invoice says 'montant dû pour la période' and "
             "that is the amount due for the period you were billed for.")
    assert detect_wrong_language(mixed, "en") is None
    german = ("Vielen Dank für Ihre Nachricht. Sie können die Rechnung im Dashboard finden, und "
              "wir helfen Ihnen auch gerne bei weiteren Fragen, bitte melden Sie sich.")
    assert detect_wrong_language(german, "en") == "de"
    assert detect_wrong_language(german, "xx") is None


def test_schema_validator_subset() -> None:
    schema = {
        "type": "object",
        "required": ["action", "steps"],
        "additionalProperties": False,
        "properties": {
            "action": {"type": "string", "enum": ["a", "b"]},
            "steps": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 2},
            "note": {"type": ["string", "null"], "maxLength": 5},
        },
    }
    assert schema_error({"action": "a", "steps": [1, 2], "note": None}, schema) is None
    assert schema_error([], schema) == "$: expected object"
    assert schema_error({"action": "a"}, schema) == "$: missing 'steps'"
    assert schema_error({"action": "c", "steps": []}, schema) == "$.action: not one of ['a', 'b']"
    assert schema_error({"action": "a", "steps": [1, -1]}, schema) == "$.steps[1]: below 0"
    assert schema_error({"action": "a", "steps": [True]}, schema) == "$.steps[0]: expected integer"
    assert schema_error({"action": "a", "steps": [1, 2, 3]}, schema) == (
        "$.steps: more than 2 items"
    )
    assert schema_error({"action": "a", "steps": [], "x": 1}, schema) == "$: unexpected 'x'"
    assert schema_error({"action": "a", "steps": [], "note": "toolong"}, schema) == (
        "$.note: longer than 5"
    )


# --------------------------------------------------------------------------- breaker, budget


def test_circuit_breaker_opens_skips_and_closes_after_cooldown() -> None:
    clock = FakeClock()
    breakers = CircuitBreakers(failure_threshold=3, cooldown_s=60, clock=clock)
    openai = ScriptedProvider("openai", *[ServerError(500)] * 3)
    anthropic = ScriptedProvider("anthropic")
    chain = make_chain((openai, "a"), (anthropic, "b"), breaker=breakers, clock=clock)

    first = chain.complete(REQ)
    assert [a.outcome for a in first.attempts] == ["http_5xx"] * 3 + ["ok"]
    assert breakers.state("openai") == "open" and breakers.is_open("openai")

    second = chain.complete(REQ)
    assert [(a.provider, a.outcome) for a in second.attempts] == [
        ("openai", "circuit_open"), ("anthropic", "ok"),
    ]
    assert len(openai.calls) == 3  # no call while open

    clock.now += 59.9
    assert breakers.state("openai") == "open"
    clock.now += 0.2
    assert breakers.state("openai") == "half_open"
    third = chain.complete(REQ)  # the trial call succeeds (script exhausted -> answer)
    assert [(a.provider, a.outcome) for a in third.attempts] == [("openai", "ok")]
    assert breakers.state("openai") == "closed"


def test_half_open_allows_one_trial_and_reopens_on_failure() -> None:
    clock = FakeClock()
    breakers = CircuitBreakers(failure_threshold=2, cooldown_s=10, clock=clock)
    breakers.record_failure("openai")
    breakers.record_failure("openai")
    assert breakers.is_open("openai")
    clock.now += 10
    assert breakers.allow("openai") is True
    assert breakers.allow("openai") is False  # trial in flight
    breakers.record_failure("openai")
    assert breakers.state("openai") == "open"
    clock.now += 10
    assert breakers.allow("openai")
    breakers.record_success("openai")
    assert breakers.state("openai") == "closed"
    with pytest.raises(ValueError):
        CircuitBreakers(failure_threshold=0)


def test_half_open_trial_failure_stops_retries_on_that_provider() -> None:
    clock = FakeClock()
    breakers = CircuitBreakers(failure_threshold=1, cooldown_s=10, clock=clock)
    breakers.record_failure("openai")
    clock.now += 10
    openai = ScriptedProvider("openai", ServerError(502))
    chain = make_chain((openai, "a"), (ScriptedProvider("anthropic"), "b"), breaker=breakers,
                       clock=clock)
    result = chain.complete(REQ)
    assert [a.outcome for a in result.attempts] == ["http_5xx", "circuit_open", "ok"]


def test_client_error_on_one_request_does_not_trip_the_breaker() -> None:
    breakers = CircuitBreakers(failure_threshold=1)
    chain = make_chain((ScriptedProvider("openai", ClientError(400)), "a"),
                       (ScriptedProvider("anthropic"), "b"), breaker=breakers)
    chain.complete(REQ)
    assert breakers.state("openai") == "closed"
    chain = make_chain((ScriptedProvider("openai", ClientError(401)), "a"),
                       (ScriptedProvider("anthropic"), "b"), breaker=breakers)
    chain.complete(REQ)
    assert breakers.state("openai") == "open"  # a bad key fails every call


def test_budget_check_gets_worst_case_and_can_skip_an_entry() -> None:
    asked: list[float] = []

    def budget(worst: float) -> bool:
        asked.append(worst)
        return worst < 0.005

    expensive = ScriptedProvider("anthropic")
    cheap = ScriptedProvider("openai")
    chain = make_chain((expensive, "claude-opus-4-1"), (cheap, "gpt-4.1-mini"),
                       budget_check=budget)
    result = chain.complete(REQ)
    assert [(a.provider, a.outcome) for a in result.attempts] == [
        ("anthropic", "budget_denied"), ("openai", "ok"),
    ]
    assert expensive.calls == []
    assert asked[0] > 600 * 75 / 1e6  # at least max_tokens at the opus output price
    assert asked[1] == pytest.approx(load_prices().worst_case(
        "openai", "gpt-4.1-mini", (len(REQ.system) + len(REQ.user)) // 3 + 16, 600))


def test_rejected_arguments() -> None:
    with pytest.raises(ValueError):
        make_chain()
    with pytest.raises(ValueError):
        make_chain((ScriptedProvider("openai"), "a"), max_retries=-1)
    assert InvalidOutput("malformed_response").provider_fault
    assert not InvalidOutput("empty").provider_fault
    assert ClientError(404).provider_fault and not ClientError(422).provider_fault


# --------------------------------------------------------------------------- prices


def test_price_table_is_exact_dated_and_free_offline() -> None:
    prices = load_prices()
    assert prices.as_of == "2026-11-01"
    assert prices.cost("anthropic", "claude-haiku-4-5", 1_000_000, 1_000_000) == 6.0
    assert prices.cost("openai", "gpt-4.1", 3, 7) == 0.000062
    assert prices.cost("offline", "anything", 10**6, 10**6) == 0.0
    assert prices.worst_case("openai", "gpt-4.1", 1000, 600) == prices.cost("openai", "gpt-4.1",
                                                                           1000, 600)


def test_unknown_model_gets_conservative_default_and_one_warning(caplog) -> None:
    prices = PriceTable(shipped_prices())  # a fresh table: load_prices() is cached per process
    with caplog.at_level(logging.WARNING, logger="supportgraph.models.prices"):
        first = prices.cost("openai", "gpt-99-ultra", 1000, 1000)
        second = prices.cost("openai", "gpt-99-ultra", 1000, 1000)
    assert first == second == (1000 * 15 + 1000 * 75) / 1e6
    assert caplog.text.count("gpt-99-ultra") == 1
    assert not prices.known("openai", "gpt-99-ultra") and prices.known("offline", "x")


def test_user_price_file_is_merged_over_the_shipped_one(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(
        'as_of = "2027-01-15"\n[providers.openai]\n"gpt-4.1-mini" = { input = 0.2, output = 0.8 }\n'
        '[providers.local]\n"llama3:8b" = { input = 0, output = 0 }\n'
    )
    prices = prices_from_env({"SUPPORTGRAPH_PRICES": str(override)})
    assert prices.as_of == "2027-01-15"
    assert prices.cost("openai", "gpt-4.1-mini", 1_000_000, 0) == 0.2
    assert prices.cost("openai", "gpt-4.1", 1_000_000, 0) == 2.0  # kept from the shipped file
    assert prices.cost("local", "llama3:8b", 5000, 5000) == 0.0
    assert prices_from_env({}).cost("openai", "gpt-4.1-mini", 1_000_000, 0) == 0.4
    assert load_prices(override) is prices  # parsed once...
    override.write_text('[providers.openai]\n"gpt-4.1-mini" = { input = 0.3, output = 0.9 }\n')
    edited = load_prices(override)  # ...until the file changes
    assert edited.cost("openai", "gpt-4.1-mini", 1_000_000, 0) == 0.3
    with pytest.raises(ValueError, match="SUPPORTGRAPH_PRICES"):
        load_prices(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("this is = = not toml")
    with pytest.raises(ValueError, match="SUPPORTGRAPH_PRICES"):
        load_prices(tmp_path / "bad.toml")


def test_language_and_refusal_checks_accept_real_english_support_text() -> None:
    """21k real customer messages (Bitext) are English: none may be judged otherwise."""
    import csv

    path = shared_data() / "bitext" / "bitext_customer_support_20k.csv"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        texts = [row["utterance"] for row in csv.DictReader(handle)]
    assert len(texts) > 20000
    request = ChatRequest("draft", "s", "u")
    rejected = [t for t in texts if validate_output(request, Completion(t, 1, 1))[1] is not None]
    assert rejected == []


def test_one_detector_serves_intake_and_reply_checks() -> None:
    # The same word table answers both questions: a Spanish ticket is not English (intake sends
    # it to a human) and a Spanish reply where English was asked for is a failed try.
    spanish = ("Hola, ¿dónde puedo descargar la factura del mes pasado? La necesito en PDF para "
               "la contabilidad.")
    assert looks_non_english(spanish) is True
    assert detect_wrong_language(spanish, "en") == "es"
    assert validate_output(ChatRequest("draft", "s", "u"), Completion(spanish, 1, 1))[1] == (
        "wrong_language_es")
    english = ("Your invoice is in Dashboard > Billing > Invoices, and you can download the PDF "
               "there whenever you need it.")
    assert looks_non_english(english) is False and detect_wrong_language(english, "en") is None
    russian = "Здравствуйте, где я могу скачать счёт за прошлый месяц в формате PDF?"
    assert looks_non_english(russian) is True
    for empty in ("", "   ", "123 456 !!!", "x" * 200_000):
        assert looks_non_english(empty) is False and detect_wrong_language(empty, "en") is None
