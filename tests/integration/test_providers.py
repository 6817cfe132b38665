"""The real `openai` and `anthropic` SDKs against a local server that fails on demand.

Each test scripts the fake server (`tests.support.fake_llm`), runs a `ModelChain` built from the
real
providers, and checks what the chain did (attempts, waits, cost) and what the server saw. Sleeps
and clocks are injected; only the timeout tests spend real time (0.2 s timeouts).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from graph.persistence import open_database
from supportgraph.models.breaker import CircuitBreakers
from supportgraph.models.cache import ResponseCache, cache_key
from supportgraph.models.chain import ModelChain, build_chain, parse_chain
from supportgraph.models.chat import ChatRequest, ModelsUnavailable
from supportgraph.models.prices import load_prices
from supportgraph.models.providers_remote import (
    AnthropicProvider,
    OpenAIProvider,
    parse_retry_after,
    providers_from_env,
)
from tests.support.fake_llm import Drop, FakeLLMServer, Malformed, Reply, Slow, Status, free_port

OPENAI_KEY = "sk-test-OPENAI-5ecret-7f3a9c"
ANTHROPIC_KEY = "sk-ant-test-ANTHROPIC-5ecret-b81e2d"
ANSWER = "You can download every invoice as a PDF in Dashboard > Billing > Invoices."
PLAN_SCHEMA = {
    "type": "object",
    "required": ["action"],
    "properties": {"action": {"type": "string", "enum": ["retrieve_again", "handoff"]}},
}
REQ = ChatRequest(task="draft", system="You are Relaypoint support.", user="Where are invoices?")
PLAN_REQ = ChatRequest(
    task="plan", system="Choose an action.", user="ticket", json_schema=PLAN_SCHEMA
)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def providers(server: FakeLLMServer) -> dict:
    return {
        "openai": OpenAIProvider(api_key=OPENAI_KEY, base_url=server.openai_base_url),
        "anthropic": AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.anthropic_base_url),
    }


def chain_for(server, spec, *, sleeps=None, breaker=None, cache=None, max_retries=1,
              timeout_s=5.0, clock=None, provs=None):
    return build_chain(
        spec,
        providers=provs or providers(server),
        timeout_s=timeout_s,
        max_retries=max_retries,
        backoff_base_s=0.5,
        backoff_max_s=5.0,
        breaker=breaker or CircuitBreakers(failure_threshold=5, cooldown_s=60),
        prices=load_prices(),
        cache=cache,
        sleep=sleeps if sleeps is not None else Sleeps(),
        clock=clock or FakeClock(),
        rng=lambda: 0.0,
    )


def outcomes(result_or_error) -> list[tuple[str, str]]:
    return [(a.provider, a.outcome) for a in result_or_error.attempts]


# --------------------------------------------------------------------------- happy paths


def test_openai_wire_format_usage_and_exact_cost(fake_llm: FakeLLMServer) -> None:
    fake_llm.script("openai", Reply(ANSWER, input_tokens=1234, output_tokens=567))
    result = chain_for(fake_llm, "openai:gpt-4.1-mini").complete(REQ)
    assert (result.text, result.provider, result.cached) == (ANSWER, "openai", False)
    assert (result.input_tokens, result.output_tokens) == (1234, 567)
    assert result.cost_usd == 0.0014008  # 1234 x $0.40/M + 567 x $1.60/M
    [seen] = fake_llm.requests_for("openai")
    assert seen.path == "/v1/chat/completions" and seen.had_credentials
    assert seen.body["model"] == "gpt-4.1-mini"
    assert seen.body["messages"] == [
        {"role": "system", "content": REQ.system},
        {"role": "user", "content": REQ.user},
    ]
    assert seen.body["max_completion_tokens"] == 600 and seen.body["temperature"] == 0.0
    assert "response_format" not in seen.body
    assert seen.headers["x-stainless-retry-count"] == "0"  # the SDK does not retry on its own


def test_anthropic_wire_format_usage_and_exact_cost(fake_llm: FakeLLMServer) -> None:
    fake_llm.script("anthropic", Reply(ANSWER, input_tokens=2000, output_tokens=300))
    result = chain_for(fake_llm, "anthropic:claude-haiku-4-5").complete(REQ)
    assert (result.text, result.provider, result.model) == (ANSWER, "anthropic", "claude-haiku-4-5")
    assert result.cost_usd == 0.0035  # 2000 x $1/M + 300 x $5/M
    [seen] = fake_llm.requests_for("anthropic")
    assert seen.path == "/v1/messages" and seen.had_credentials
    assert seen.body["system"] == REQ.system
    assert seen.body["messages"] == [{"role": "user", "content": REQ.user}]
    assert seen.body["max_tokens"] == 600


def test_json_mode_on_both_providers(fake_llm: FakeLLMServer) -> None:
    fake_llm.script("openai", Reply('{"action": "handoff"}'))
    fake_llm.script("anthropic", Reply('```json\n{"action": "retrieve_again"}\n```'))
    assert chain_for(fake_llm, "openai:gpt-4.1").complete(PLAN_REQ).text == '{"action": "handoff"}'
    result = chain_for(fake_llm, "anthropic:claude-sonnet-4-5").complete(PLAN_REQ)
    assert json.loads(result.text) == {"action": "retrieve_again"}
    openai_body = fake_llm.requests_for("openai")[0].body
    assert openai_body["response_format"]["type"] == "json_schema"
    assert openai_body["response_format"]["json_schema"]["schema"] == PLAN_SCHEMA
    assert openai_body["response_format"]["json_schema"]["name"] == "response"
    titled = ChatRequest("plan", "s", "u",
                         json_schema={**PLAN_SCHEMA, "title": "Planner step (v2)"})
    fake_llm.script("openai", Reply('{"action": "handoff"}'))
    chain_for(fake_llm, "openai:gpt-4.1").complete(titled)
    assert fake_llm.requests_for("openai")[1].body["response_format"]["json_schema"]["name"] == (
        "Planner_step_v2"
    )
    anthropic_body = fake_llm.requests_for("anthropic")[0].body
    assert json.dumps(PLAN_SCHEMA) in anthropic_body["system"]


def test_reasoning_models_get_no_temperature(fake_llm: FakeLLMServer) -> None:
    chain_for(fake_llm, "openai:gpt-5-mini").complete(REQ)
    assert "temperature" not in fake_llm.requests_for("openai")[0].body


# --------------------------------------------------------------------------- failure kinds


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("action", "outcome"),
    [
        (Status(500), "http_5xx"),
        (Status(503), "http_5xx"),
        (Status(529), "http_5xx"),
        (Drop(), "connection_error"),
        (Status(429), "http_429"),
    ],
)
def test_transient_failures_are_retried_then_answered(fake_llm, api, action, outcome) -> None:
    sleeps = Sleeps()
    fake_llm.script(api, action, Reply(ANSWER))
    model = "gpt-4.1-mini" if api == "openai" else "claude-haiku-4-5"
    result = chain_for(fake_llm, f"{api}:{model}", sleeps=sleeps).complete(REQ)
    assert outcomes(result) == [(api, outcome), (api, "ok")]
    assert result.text == ANSWER
    assert len(fake_llm.requests_for(api)) == 2
    assert sleeps.waits == [0.25]  # 0.5 s base, equal jitter with rng=0 -> half


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_retry_after_is_honoured(fake_llm, api) -> None:
    sleeps = Sleeps()
    fake_llm.script(api, Status(429, retry_after=3), Status(429, retry_after=1.5), Reply(ANSWER))
    model = "gpt-4.1-mini" if api == "openai" else "claude-haiku-4-5"
    result = chain_for(fake_llm, f"{api}:{model}", sleeps=sleeps, max_retries=2).complete(REQ)
    assert sleeps.waits == [3.0, 1.5]
    assert [(a.outcome, a.retry_after_s) for a in result.attempts] == [
        ("http_429", 3.0), ("http_429", 1.5), ("ok", None),
    ]


def test_retry_after_longer_than_the_cap_falls_back_at_once(fake_llm) -> None:
    sleeps = Sleeps()
    fake_llm.script("openai", Status(429, retry_after=3600))
    chain = chain_for(fake_llm, "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5", sleeps=sleeps)
    result = chain.complete(REQ)
    assert outcomes(result) == [("openai", "http_429"), ("anthropic", "ok")]
    assert sleeps.waits == []


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_slow_response_times_out_then_falls_back(fake_llm, api) -> None:
    other = "anthropic" if api == "openai" else "openai"
    models = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5"}
    fake_llm.script(api, Slow(2.0), Slow(2.0))
    chain = chain_for(fake_llm, f"{api}:{models[api]},{other}:{models[other]}", timeout_s=0.2)
    result = chain.complete(REQ)
    assert outcomes(result) == [(api, "timeout"), (api, "timeout"), (other, "ok")]
    assert result.provider == other


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_connection_refused_falls_back(fake_llm, api) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    provs = providers(fake_llm)
    if api == "openai":
        provs["openai"] = OpenAIProvider(api_key=OPENAI_KEY, base_url=dead + "/v1")
        spec = "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5"
    else:
        provs["anthropic"] = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=dead)
        spec = "anthropic:claude-haiku-4-5,openai:gpt-4.1-mini"
    result = chain_for(fake_llm, spec, provs=provs).complete(REQ)
    assert outcomes(result)[:2] == [(api, "connection_error")] * 2
    assert outcomes(result)[2][1] == "ok"


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("action", "request_", "outcome"),
    [
        (Malformed(), REQ, "invalid_output:malformed_response"),
        (Reply(""), REQ, "invalid_output:empty"),
        (Reply("   "), REQ, "invalid_output:empty"),
        (Reply("I'm sorry, but I can't help with that."), REQ, "invalid_output:refusal"),
        (Reply("x", refusal="I can't help with that."), REQ, "invalid_output:refusal"),
        (Reply("Thanks for", finish="length"), REQ, "invalid_output:truncated"),
        (Reply('{"action": "dance"}'), PLAN_REQ, "invalid_output:schema_mismatch"),
        (Reply("I would hand it off."), PLAN_REQ, "invalid_output:not_json"),
    ],
)
def test_invalid_output_falls_back_to_the_next_entry(fake_llm, api, action, request_, outcome):
    other = "anthropic" if api == "openai" else "openai"
    models = {"openai": "gpt-4.1-mini", "anthropic": "claude-haiku-4-5"}
    fake_llm.script(api, action)
    good = '{"action": "handoff"}' if request_.json_schema else ANSWER
    fake_llm.script(other, Reply(good))
    chain = chain_for(fake_llm, f"{api}:{models[api]},{other}:{models[other]}")
    result = chain.complete(request_)
    assert outcomes(result) == [(api, outcome), (other, "ok")]
    assert result.text == good
    assert len(fake_llm.requests_for(api)) == 1


def test_client_error_is_not_retried(fake_llm) -> None:
    fake_llm.script("openai", Status(400, message="bad request"))
    result = chain_for(fake_llm, "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5").complete(REQ)
    assert outcomes(result) == [("openai", "http_4xx"), ("anthropic", "ok")]


# --------------------------------------------------------------------------- fallback


def test_openai_down_anthropic_answers(fake_llm) -> None:
    fake_llm.script("openai", Status(503), Status(503))
    result = chain_for(fake_llm, "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5").complete(REQ)
    assert outcomes(result) == [("openai", "http_5xx")] * 2 + [("anthropic", "ok")]
    assert result.provider == "anthropic" and result.retries == 2


def test_anthropic_down_openai_answers(fake_llm) -> None:
    fake_llm.script("anthropic", Status(529), Drop())
    result = chain_for(fake_llm, "anthropic:claude-haiku-4-5,openai:gpt-4.1-mini").complete(REQ)
    assert outcomes(result) == [
        ("anthropic", "http_5xx"), ("anthropic", "connection_error"), ("openai", "ok"),
    ]


def test_both_down_raises_models_unavailable_with_every_attempt(fake_llm) -> None:
    fake_llm.script("openai", Status(500), Status(429, retry_after=1))
    fake_llm.script("anthropic", Drop(), Malformed())
    chain = chain_for(fake_llm, "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5")
    with pytest.raises(ModelsUnavailable) as info:
        chain.complete(REQ)
    assert outcomes(info.value) == [
        ("openai", "http_5xx"),
        ("openai", "http_429"),
        ("anthropic", "connection_error"),
        ("anthropic", "invalid_output:malformed_response"),
    ]
    assert info.value.reason == "models_unavailable"


# --------------------------------------------------------------------------- circuit breaker


def test_breaker_opens_after_repeated_failures_and_closes_after_cooldown(fake_llm) -> None:
    clock = FakeClock()
    breakers = CircuitBreakers(failure_threshold=4, cooldown_s=30, clock=clock)
    chain = chain_for(fake_llm, "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5",
                      breaker=breakers, clock=clock)
    fake_llm.script("openai", *[Status(500)] * 4)
    chain.complete(REQ)
    assert breakers.state("openai") == "closed"  # 2 failures so far
    chain.complete(REQ)
    assert breakers.state("openai") == "open"
    openai_calls = len(fake_llm.requests_for("openai"))
    assert openai_calls == 4

    result = chain.complete(REQ)
    assert outcomes(result) == [("openai", "circuit_open"), ("anthropic", "ok")]
    assert len(fake_llm.requests_for("openai")) == openai_calls  # skipped: no HTTP

    clock.now += 30
    assert breakers.state("openai") == "half_open"
    result = chain.complete(REQ)  # trial call: the server answers again
    assert outcomes(result) == [("openai", "ok")]
    assert breakers.state("openai") == "closed"


# --------------------------------------------------------------------------- cache


@pytest.fixture
def sqlite_cache(tmp_path: Path) -> ResponseCache:
    return ResponseCache(open_database(None, tmp_path / "home"), ttl_s=3600)


def _check_cache(fake_llm: FakeLLMServer, cache: ResponseCache, clock: FakeClock) -> None:
    fake_llm.script("openai", Reply(ANSWER, input_tokens=800, output_tokens=120))
    chain = chain_for(fake_llm, "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5", cache=cache)
    first = chain.complete(REQ)
    assert not first.cached and first.cost_usd == 0.000512
    assert len(fake_llm.requests) == 1

    second = chain.complete(REQ)
    assert len(fake_llm.requests) == 1  # no HTTP request
    assert second.cached and second.cost_usd == 0.0 and second.text == ANSWER
    assert (second.provider, second.model) == ("openai", "gpt-4.1-mini")
    assert outcomes(second) == [("openai", "ok")]
    assert cache.stats.hits == 1 and cache.stats.stores == 1

    # any change to what the provider would see is a different request
    chain.complete(ChatRequest(task="draft", system=REQ.system, user=REQ.user, max_tokens=601))
    assert len(fake_llm.requests) == 2
    # data is for the offline provider only: not part of the key
    chain.complete(ChatRequest(task="draft", system=REQ.system, user=REQ.user, data={"x": 1}))
    assert len(fake_llm.requests) == 2

    clock.now += 3601  # expired
    third = chain.complete(REQ)
    assert not third.cached and len(fake_llm.requests) == 3


def test_cache_hit_makes_no_request_and_costs_nothing_sqlite(fake_llm, tmp_path) -> None:
    clock = FakeClock()
    clock.now = 1_000_000.0
    db = open_database(None, tmp_path / "home")
    cache = ResponseCache(db, ttl_s=3600, clock=clock)
    _check_cache(fake_llm, cache, clock)
    rows = db.fetchall("SELECT provider, model, response FROM sg_model_cache")
    assert {(r["provider"], r["model"]) for r in rows} == {("openai", "gpt-4.1-mini")}
    assert OPENAI_KEY not in json.dumps(rows)


@pytest.mark.postgres
def test_cache_hit_makes_no_request_and_costs_nothing_postgres(fake_llm, pg_url) -> None:
    clock = FakeClock()
    clock.now = 1_000_000.0
    db = open_database(pg_url, Path("."))
    try:
        cache = ResponseCache(db, ttl_s=3600, clock=clock)
        _check_cache(fake_llm, cache, clock)
        assert cache.purge_expired() == 1  # the max_tokens=601 entry, stored an hour ago
        clock.now += 10**6
        assert cache.purge_expired() == 1
        assert db.fetchall("SELECT key FROM sg_model_cache") == []
    finally:
        db.close()


def test_cache_key_covers_the_request_not_the_offline_data() -> None:
    base = cache_key(REQ, "openai", "gpt-4.1-mini")
    assert len(base) == 64
    assert cache_key(REQ, "anthropic", "gpt-4.1-mini") != base
    assert cache_key(REQ, "openai", "gpt-4.1") != base
    for changed in [
        ChatRequest("draft", REQ.system + " ", REQ.user),
        ChatRequest("draft", REQ.system, REQ.user + "?"),
        ChatRequest("draft", REQ.system, REQ.user, temperature=0.2),
        ChatRequest("draft", REQ.system, REQ.user, json_schema={"type": "object"}),
        ChatRequest("draft", REQ.system, REQ.user, language="de"),
    ]:
        assert cache_key(changed, "openai", "gpt-4.1-mini") != base
    assert cache_key(ChatRequest("rewrite", REQ.system, REQ.user, data={"a": 1}), "openai",
                     "gpt-4.1-mini") == base


def test_offline_is_never_cached(sqlite_cache: ResponseCache) -> None:
    class Offline:
        name = "offline"

        def __init__(self) -> None:
            self.calls = 0

        def complete(self, request, model, *, timeout):
            from supportgraph.models.chat import Completion

            self.calls += 1
            return Completion(ANSWER, 0, 0)

    offline = Offline()
    chain = build_chain("offline", providers={"offline": offline}, cache=sqlite_cache,
                        breaker=CircuitBreakers(), prices=load_prices())
    chain.complete(REQ)
    assert not chain.complete(REQ).cached
    assert offline.calls == 2 and sqlite_cache.stats.stores == 0


def test_broken_cache_is_a_miss_not_a_failure(fake_llm, tmp_path, caplog) -> None:
    db = open_database(None, tmp_path / "home")
    db.execute("DROP TABLE sg_model_cache")
    cache = ResponseCache(db)
    fake_llm.script("openai", Reply(ANSWER))
    with caplog.at_level(logging.WARNING, logger="supportgraph.models.cache"):
        result = chain_for(fake_llm, "openai:gpt-4.1-mini", cache=cache).complete(REQ)
    assert result.text == ANSWER and cache.stats.errors == 2
    assert "model cache read failed" in caplog.text


# --------------------------------------------------------------------------- keys


def test_api_keys_never_appear_in_logs_reprs_or_errors(fake_llm, caplog) -> None:
    fake_llm.script("openai", Status(500), Status(429, retry_after=1))
    fake_llm.script("anthropic", Status(401))
    provs = providers_from_env({
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": fake_llm.anthropic_base_url,
    })
    assert sorted(provs) == ["anthropic", "openai"]
    chain = chain_for(fake_llm, "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5", provs=provs)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ModelsUnavailable) as info:
            chain.complete(REQ)
        fake_llm.script("openai", Reply(ANSWER))
        chain_for(fake_llm, "openai:gpt-4.1-mini", provs=provs).complete(REQ)
    assert all(r.had_credentials for r in fake_llm.requests)  # the keys were sent...
    sdk_debug = [r for r in caplog.records if r.name.split(".")[0] in ("openai", "anthropic")]
    assert any(r.levelno == logging.DEBUG for r in sdk_debug)  # the SDKs' own debug logs too
    texts = [caplog.text, repr(provs), repr(chain), str(info.value), repr(info.value.attempts)]
    texts += [r.getMessage() for r in caplog.records] + [repr(p._client) for p in provs.values()]
    texts += [repr(a) for a in info.value.attempts]
    for text in texts:  # ...and appear nowhere we can see
        assert OPENAI_KEY not in text and ANTHROPIC_KEY not in text
        assert "5ecret" not in text
    assert "api_key=<set>" in repr(provs["openai"])
    assert "openai" in caplog.text  # the log did record the failures


def test_providers_from_env() -> None:
    assert providers_from_env({}) == {}
    local = providers_from_env({"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert list(local) == ["openai"] and "api_key=<none>" in repr(local["openai"])
    only_anthropic = providers_from_env({"ANTHROPIC_API_KEY": ANTHROPIC_KEY})
    assert list(only_anthropic) == ["anthropic"]
    assert only_anthropic["anthropic"].base_url == "https://api.anthropic.com"


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 25 Nov 2026 12:00:10 GMT"},
                             now=1795608000.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_chain_spec_round_trip(fake_llm) -> None:
    spec = "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5"
    chain = chain_for(fake_llm, spec)
    assert isinstance(chain, ModelChain) and chain.spec == spec
    assert parse_chain(chain.spec) == [
        ("openai", "gpt-4.1-mini"), ("anthropic", "claude-haiku-4-5"),
    ]


def test_a_bug_in_request_building_surfaces_instead_of_being_retried(fake_llm, caplog) -> None:
    provs = providers(fake_llm)
    provs["openai"] = OpenAIProvider(api_key=OPENAI_KEY, base_url=fake_llm.openai_base_url,
                                     max_tokens_param="max_tokenz")  # the SDK rejects the kwarg
    sleeps = Sleeps()
    chain = chain_for(fake_llm, "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5", provs=provs,
                      sleeps=sleeps)
    with caplog.at_level(logging.ERROR, logger="supportgraph.models.chain"):
        result = chain.complete(REQ)
    assert outcomes(result) == [("openai", "error:TypeError"), ("anthropic", "ok")]
    assert sleeps.waits == [] and fake_llm.requests_for("openai") == []
    assert "max_tokenz" in caplog.text


@pytest.mark.parametrize("mode", ["json_object", "prompt"])
def test_json_modes_for_openai_compatible_servers(fake_llm, mode) -> None:
    provs = {"openai": OpenAIProvider(base_url=fake_llm.openai_base_url, json_mode=mode,
                                      max_tokens_param="max_tokens")}
    fake_llm.script("openai", Reply('{"action": "handoff"}'))
    result = chain_for(fake_llm, "openai:llama3:8b", provs=provs).complete(PLAN_REQ)
    assert result.text == '{"action": "handoff"}'
    body = fake_llm.requests_for("openai")[0].body
    assert body["max_tokens"] == 600 and body["model"] == "llama3:8b"
    assert json.dumps(PLAN_SCHEMA) in body["messages"][0]["content"]
    assert ("response_format" in body) == (mode == "json_object")
    with pytest.raises(ValueError, match="json_mode"):
        OpenAIProvider(json_mode="xml")


def test_one_chain_serves_concurrent_calls(fake_llm) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fake_llm.script("openai", *[Status(500)] * 3)  # a few failures spread over the threads
    breakers = CircuitBreakers(failure_threshold=50)
    chain = chain_for(fake_llm, "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5",
                      breaker=breakers, max_retries=2)
    requests = [ChatRequest("draft", REQ.system, f"{REQ.user} #{i}") for i in range(48)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(chain.complete, requests))
    assert all(r.text == fake_llm.default_text and r.provider == "openai" for r in results)
    assert sum(r.retries for r in results) == 3
    assert len(fake_llm.requests_for("openai")) == 48 + 3
    assert breakers.state("openai") == "closed"


def test_missing_usage_is_estimated_not_billed_as_zero(fake_llm) -> None:
    fake_llm.script("openai", Reply(ANSWER, omit_usage=True))
    result = chain_for(fake_llm, "openai:gpt-4.1-mini").complete(REQ)
    expected_in = (len(REQ.system) + len(REQ.user)) // 4 + 1
    expected_out = len(ANSWER) // 4 + 1
    assert (result.input_tokens, result.output_tokens) == (expected_in, expected_out)
    assert result.cost_usd == load_prices().cost("openai", "gpt-4.1-mini", expected_in,
                                                 expected_out) > 0
