"""Fixtures for integration tests: a local server speaking the OpenAI and Anthropic wire formats."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_llm import FakeLLMServer


@pytest.fixture(scope="session")
def _fake_llm_session() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def fake_llm(_fake_llm_session: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The session's fake LLM server, with an empty script and no recorded requests."""
    _fake_llm_session.reset()
    yield _fake_llm_session
    _fake_llm_session.reset()
