"""The composition root: one close for everything, no setup inside a node, one root per process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import builder
from graph.context import Context
from graph.instrument import SERVICES_KEY
from supportgraph.app.services import (
    NO_DEMO_MARKER,
    Services,
    close_services,
    closing_new_services,
    server_graph,
    services_for,
)
from supportgraph.app.settings import Settings
from supportgraph.models.intent import default_model_dir

TICKET = {"id": "sv-1", "channel": "chat",
          "body": "How do I get a refund for the duplicate charge on my card?"}


def test_close_releases_the_database_and_the_embedded_qdrant_home(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path / "home"))
    with Services(settings) as first:
        first.db.execute("CREATE TABLE probe (x INTEGER)")
        assert first.store.exists("kb_billing") is False
    assert first.closed and not first._cache
    first.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        first.db  # noqa: B018 - a closed root never reopens behind its owner's back
    # The embedded home's lock went with it: a new root opens the same folder at once.
    with Services(settings) as second:
        assert second.store.exists("kb_billing") is False
        assert second.db.fetchall("SELECT count(*) AS n FROM probe") == [{"n": 0}]


def test_a_node_does_no_setup_it_reports_the_missing_intent_model(tmp_path: Path) -> None:
    """An unprepared home: classify neither trains the demo model nor ingests the demo KB."""
    home = tmp_path / "bare"
    with Services(Settings(home=str(home))) as services:
        ctx = Context().with_settings(services.settings).with_services(services)
        graph = builder.compile(checkpointer=InMemorySaver())
        out = graph.invoke({"ticket": TICKET}, {"configurable": {"thread_id": "t:sv-1"}},
                           context=ctx)
        assert out["__interrupt__"]  # waiting for a person, with the reason
        assert out["error"].startswith("classify: ServiceMissing: no intent model")
        assert "supportgraph init" in out["error"]
        assert services.kb_collections() == []  # nothing ingested
    assert not default_model_dir(home).exists()


def test_prepare_does_nothing_in_a_no_demo_home(tmp_path: Path) -> None:
    home = tmp_path / "nodemo"
    home.mkdir()
    (home / NO_DEMO_MARKER).write_text("test\n", encoding="utf-8")
    with Services(Settings(home=str(home))) as services:
        services.prepare(Context())
        assert "store" not in services._cache  # Qdrant not even opened
        assert services.routing(Context()) == "retrieval"


def test_the_process_root_is_one_per_storage_and_reopens_after_close(tmp_path: Path) -> None:
    try:
        root = services_for(Settings(home=str(tmp_path / "h")))
        assert services_for(Settings(home=str(tmp_path / "h"), pii_salt="x" * 20)) is root
        assert services_for(Settings(home=str(tmp_path / "other"))) is not root
        with closing_new_services():
            inner = services_for(Settings(home=str(tmp_path / "cmd")))
            assert services_for(Settings(home=str(tmp_path / "h"))) is root
        assert inner.closed and not root.closed  # the block closed only what it opened
    finally:
        close_services()
    assert root.closed


def test_server_factory_binds_one_root_per_process(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "server"
    home.mkdir()
    (home / NO_DEMO_MARKER).write_text("test\n", encoding="utf-8")
    monkeypatch.setenv("SUPPORTGRAPH_HOME", str(home))
    try:
        first = asyncio.run(server_graph())
        second = asyncio.run(server_graph())  # LangGraph calls it per request
        assert first is second
        bound = first.config["configurable"][SERVICES_KEY]
        assert bound is services_for(Settings(home=str(home)))
        assert "services" not in Context.__dataclass_fields__  # no caller can send one
        assert first.checkpointer is None  # the server brings its own
    finally:
        close_services()


@pytest.mark.parametrize("hostile", ["", "x" * 100_000, "../../etc", "\x00", "postgres://h/db"])
def test_a_run_cannot_supply_its_services_through_the_context(hostile: str) -> None:
    with pytest.raises(TypeError):
        Context(services=hostile)  # type: ignore[call-arg]
    assert Context().services is None


def test_two_roots_on_one_home_share_its_engine_and_the_weights_not_their_caches(
    tmp_path: Path,
) -> None:
    """An embedded home admits one engine per process: a second root (e.g. another database)
    gets the same one, and closing the first does not pull it from under the second."""
    settings = Settings(home=str(tmp_path / "home"))
    first, second = Services(settings), Services(settings)
    try:
        assert first.store is second.store
        assert first.encoders is not second.encoders  # caches and pinned vectors per root
        assert first.encoders.weights is second.encoders.weights  # one model per process
        first.store.ensure_collection("kb_probe")
        first.close()
        assert second.store.exists("kb_probe")  # still open for the root that uses it
    finally:
        first.close()
        second.close()
    with Services(settings) as third:  # the last user closed it: the home is free again
        assert third.store.exists("kb_probe")
