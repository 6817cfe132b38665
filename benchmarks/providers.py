"""What does our chat layer add to a model call? Same calls, through `ModelChain` and bare SDK.

Both paths call the local fake server (`tests.support.fake_llm`) with the official SDK; ours adds
the breaker, budget check, output validation (refusal, language) and pricing. Calls are
interleaved so that server and machine noise hit both sides alike. Also measured: the layer with
an in-process provider (pure overhead, no HTTP) and a SQLite cache hit.

Run: `python -m benchmarks.providers [--quick]`. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from graph.persistence import open_database
from supportgraph.models.breaker import CircuitBreakers
from supportgraph.models.cache import ResponseCache
from supportgraph.models.chain import ModelChain, build_chain
from supportgraph.models.chat import ChatRequest, Completion
from supportgraph.models.prices import load_prices
from supportgraph.models.providers_remote import AnthropicProvider, OpenAIProvider
from tests.support.fake_llm import FakeLLMServer

KEY = "sk-bench-not-a-real-key"
ANSWER = (
    "Thanks for reaching out, and sorry for the trouble with your invoice. You can download every "
    "invoice as a PDF in Dashboard > Billing > Invoices. If you need your VAT ID or a PO number on "
    "it, add them in Billing > Details: they appear on invoices issued after the change, and we "
    "can re-issue a past invoice once on request within 90 days [1]. Let us know if there is "
    "anything else we can help with."
)
REQUEST = ChatRequest(
    task="draft",
    system="You are Relaypoint's support agent. Answer only from the passages; cite them.",
    user="<ticket>Where can I find my invoice for October? I need it with our VAT ID.</ticket>\n"
    "<passages>[1] Invoices are issued on the 1st of each month ...</passages>",
    max_tokens=400,
)


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def make_chain(provider, model: str, cache: ResponseCache | None = None) -> ModelChain:
    return ModelChain(
        [(provider, model)],
        timeout_s=10.0,
        max_retries=2,
        backoff_base_s=0.5,
        backoff_max_s=8.0,
        breaker=CircuitBreakers(),
        prices=load_prices(),
        cache=cache,
        budget_check=lambda worst: worst < 1.0,
    )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def bench_http(api: str, server: FakeLLMServer, n: int) -> dict:
    """Interleave bare-SDK and our-layer calls to the same server; return ms figures."""
    if api == "openai":
        import openai

        model = "gpt-4.1-mini"
        client = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)
        provider = OpenAIProvider(api_key=KEY, base_url=server.openai_base_url)

        def bare() -> None:
            response = client.chat.completions.create(
                model=model,
                messages=[
                    {"role": "system", "content": REQUEST.system},
                    {"role": "user", "content": REQUEST.user},
                ],
                max_completion_tokens=REQUEST.max_tokens,
                temperature=REQUEST.temperature,
                timeout=10.0,
            )
            assert response.choices[0].message.content and response.usage.prompt_tokens
    else:
        import anthropic

        model = "claude-haiku-4-5"
        client = anthropic.Anthropic(api_key=KEY, base_url=server.anthropic_base_url,
                                     max_retries=0)
        provider = AnthropicProvider(api_key=KEY, base_url=server.anthropic_base_url)

        def bare() -> None:
            response = client.messages.create(
                model=model,
                system=REQUEST.system,
                messages=[{"role": "user", "content": REQUEST.user}],
                max_tokens=REQUEST.max_tokens,
                timeout=10.0,
            )
            assert response.content[0].text and response.usage.input_tokens

    chain = make_chain(provider, model)

    def ours() -> None:
        result = chain.complete(REQUEST)
        assert result.text and result.cost_usd > 0

    for _ in range(max(20, n // 10)):  # warm up connections and lazy imports
        bare()
        ours()
    bare_ms: list[float] = []
    ours_ms: list[float] = []
    for i in range(n):
        if i % 2:
            bare_ms.append(timed(bare))
            ours_ms.append(timed(ours))
        else:
            ours_ms.append(timed(ours))
            bare_ms.append(timed(bare))
    diffs = [o - b for o, b in zip(ours_ms, bare_ms, strict=True)]
    return {
        "bare_p50_ms": p50(bare_ms),
        "bare_p95_ms": p95(bare_ms),
        "ours_p50_ms": p50(ours_ms),
        "ours_p95_ms": p95(ours_ms),
        "overhead_p50_ms": p50(ours_ms) - p50(bare_ms),
        "paired_overhead_p50_ms": p50(diffs),
        "ratio_p50": p50(ours_ms) / p50(bare_ms),
    }


class InstantProvider:
    """Answers at once, so that only our layer's work is timed."""

    name = "openai"
    cacheable = True

    def complete(self, request: ChatRequest, model: str, *, timeout: float) -> Completion:
        """Return a fixed answer with plausible usage."""
        return Completion(ANSWER, 180, 95)


def bench_in_process(n: int) -> dict:
    """Time the layer around a provider that costs nothing: the pure added overhead."""
    provider = InstantProvider()
    chain = make_chain(provider, "gpt-4.1-mini")
    for _ in range(200):
        chain.complete(REQUEST)
    direct = [timed(lambda: provider.complete(REQUEST, "gpt-4.1-mini", timeout=10.0))
              for _ in range(n)]
    layered = [timed(lambda: chain.complete(REQUEST)) for _ in range(n)]
    return {
        "direct_p50_ms": p50(direct),
        "layer_p50_ms": p50(layered),
        "layer_overhead_p50_ms": p50(layered) - p50(direct),
        "layer_p95_ms": p95(layered),
    }


def bench_cache(n: int, home: Path) -> dict:
    """Time a cache hit on SQLite, and a miss that stores (the price of caching a new call)."""
    cache = ResponseCache(open_database(None, home))
    chain = make_chain(InstantProvider(), "gpt-4.1-mini", cache=cache)
    chain.complete(REQUEST)
    hits = [timed(lambda: chain.complete(REQUEST)) for _ in range(n)]
    assert cache.stats.hits == n
    fresh = [
        ChatRequest(task="draft", system=REQUEST.system, user=f"{REQUEST.user} #{i}")
        for i in range(n)
    ]
    misses = [timed(lambda r=r: chain.complete(r)) for r in fresh]
    assert cache.stats.stores == n + 1
    return {
        "cache_hit_p50_ms": p50(hits),
        "cache_hit_p95_ms": p95(hits),
        "cache_miss_store_p50_ms": p50(misses),
        "cache_miss_store_p95_ms": p95(misses),
    }


def bench_build_per_call(n: int) -> dict:
    """Time building the chain from its spec for every call, as the workflow's nodes do."""
    providers = {"openai": InstantProvider()}
    for _ in range(200):
        build_chain("openai:gpt-4.1-mini", providers=providers).complete(REQUEST)
    timings = [
        timed(lambda: build_chain("openai:gpt-4.1-mini", providers=providers).complete(REQUEST))
        for _ in range(n)
    ]
    return {"build_and_call_p50_ms": p50(timings)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (about 10 s)")
    args = parser.parse_args(argv)
    n_http = 200 if args.quick else 1000
    n_local = 2000 if args.quick else 20000

    figures: dict = {"benchmark": "providers", "quick": args.quick, "http_calls_per_side": n_http}
    with FakeLLMServer() as server:
        server.default_text = ANSWER
        for api in ("openai", "anthropic"):
            for key, value in bench_http(api, server, n_http).items():
                figures[f"{api}_{key}"] = round(value, 4)
    for key, value in bench_in_process(n_local).items():
        figures[key] = round(value, 4)
    for key, value in bench_build_per_call(n_local).items():
        figures[key] = round(value, 4)
    with tempfile.TemporaryDirectory() as tmp:
        for key, value in bench_cache(max(200, n_local // 10), Path(tmp)).items():
            figures[key] = round(value, 4)
    target = 1.0
    figures["target_overhead_p50_ms"] = target
    figures["meets_target"] = all(
        figures[f"{api}_paired_overhead_p50_ms"] <= target for api in ("openai", "anthropic")
    )

    print(f"chat layer overhead ({n_http} interleaved calls per side, local fake server)")
    for api in ("openai", "anthropic"):
        print(
            f"  {api:9s} bare SDK p50 {figures[f'{api}_bare_p50_ms']:.3f} ms, "
            f"ours p50 {figures[f'{api}_ours_p50_ms']:.3f} ms, "
            f"added p50 {figures[f'{api}_overhead_p50_ms']:+.3f} ms "
            f"(paired {figures[f'{api}_paired_overhead_p50_ms']:+.3f} ms), "
            f"ratio {figures[f'{api}_ratio_p50']:.3f}"
        )
    print(
        f"  layer alone (no HTTP): p50 {figures['layer_p50_ms']:.4f} ms, "
        f"added {figures['layer_overhead_p50_ms']:.4f} ms; chain built per call "
        f"{figures['build_and_call_p50_ms']:.4f} ms"
    )
    print(
        f"  SQLite cache: hit p50 {figures['cache_hit_p50_ms']:.3f} ms, "
        f"miss + store p50 {figures['cache_miss_store_p50_ms']:.3f} ms"
    )
    print(f"  target <= {target} ms added at p50: {'met' if figures['meets_target'] else 'MISSED'}")
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
