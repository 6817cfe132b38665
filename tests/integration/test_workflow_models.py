"""The workflow with real SDKs against a local OpenAI/Anthropic-speaking server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from graph.context import Context
from supportgraph.app.runner import Runner
from supportgraph.app.settings import Settings
from supportgraph.models.prices import load_prices
from tests.support.fake_llm import FakeLLMServer, Reply, Status

OPENAI_KEY = "sk-test-0penAiSecretValue12345"
ANTHROPIC_KEY = "sk-ant-test-AnthropicSecret67890"
TICKET = {"id": "m-1", "channel": "chat",
          "body": "Where can I download the PDF of my invoice for last month?"}
DRAFT = ("Hi there,\n\nThank you for reaching out. Sign in and go to Dashboard > Billing > "
         "Invoices, then download the invoice PDF you need [1].\n\nIf anything is unclear, "
         "just reply and we will help.\n\nBest regards,\nSupport\n\nSources:\n[1] Invoices")


@pytest.fixture
def remote_env(fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_llm.anthropic_base_url)
    return fake_llm


def runner(home: Path, **settings) -> Runner:
    return Runner(Context(model_max_retries=1, model_timeout_s=5,
                          answer_models="openai:gpt-4.1-mini,anthropic:claude-haiku-4-5",
                          **settings).with_settings(Settings(home=str(home))))


def stored_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file()
                    and not p.name.endswith((".npz", ".safetensors")))


def test_openai_down_anthropic_answers_costed_and_keys_never_stored(
    demo_home: Path, remote_env: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    remote_env.script("openai", Status(500), Status(503))
    remote_env.script("anthropic", Reply(DRAFT, input_tokens=812, output_tokens=64))
    run = runner(demo_home)
    summary = run.run(TICKET).summary
    assert summary["status"] == "sent", summary
    assert summary["models_used"] == ["anthropic:claude-haiku-4-5"]
    assert summary["retries"] == 2
    assert any("openai:gpt-4.1-mini http_5xx" in f for f in summary["failures"])
    expected = load_prices().cost("anthropic", "claude-haiku-4-5", 812, 64)
    assert expected > 0
    assert summary["cost_total"] == pytest.approx(expected, abs=1e-8)
    assert len(remote_env.requests_for("openai")) == 2
    assert len(remote_env.requests_for("anthropic")) == 1
    sent = run.db.fetchone("SELECT reply FROM sg_outbox")["reply"]
    assert "Dashboard > Billing > Invoices" in sent

    run.db.close()
    raw = stored_bytes(demo_home)
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        assert key.encode() not in raw
        assert key not in caplog.text


def test_identical_request_is_served_from_the_cache(
    demo_home: Path, remote_env: FakeLLMServer
) -> None:
    remote_env.script("openai", Reply(DRAFT))
    # Not learning keeps the second prompt identical (a learned case would be quoted in it).
    run = runner(demo_home, learn_enabled=False)
    first = run.run(TICKET).summary
    assert first["status"] == "sent" and first["cache_hits"] == 0
    second = run.run({**TICKET, "id": "m-2"}).summary
    assert second["status"] == "sent"
    assert second["cache_hits"] == 1 and second["cost_total"] == 0
    assert len(remote_env.requests_for("openai")) == 1


def test_every_provider_down_goes_to_human_with_reason(
    demo_home: Path, remote_env: FakeLLMServer
) -> None:
    remote_env.script("openai", *[Status(500)] * 2)
    remote_env.script("anthropic", *[Status(529)] * 2)
    summary = runner(demo_home).run(TICKET).summary
    assert summary["status"] == "awaiting_review"
    assert summary["review_reason"] == "models_unavailable"
    assert len(summary["failures"]) >= 4
