"""Checkpoints at rest: with LANGGRAPH_AES_KEY set, no ticket text in the database files."""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graph.persistence import CheckpointKeyError, checkpoint_serde

pytestmark = pytest.mark.e2e

KEY = "0123456789abcdef0123456789abcdef"
# Distinctive, PII-free sentences: found in a file only if stored in clear.
SECRET_SENTENCE = "Could you recommend a recipe for cardamom marmalade with bergamot zest?"
CONTROL_SENTENCE = "Could you recommend a recipe for saffron shortbread with lavender sugar?"
# Everything to review, so the text waits in checkpoints across processes.
FORCE_REVIEW = {"SUPPORTGRAPH_CONFIDENCE_THRESHOLD": "0.9999",
                "SUPPORTGRAPH_PLANNER_ENABLED": "false"}


class Colour(enum.Enum):
    RED = 1


def cli(home: Path, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SUPPORTGRAPH_HOME": str(home), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "supportgraph", *args], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_encrypted_sqlite_run_hides_ticket_text_and_resumes_elsewhere(
        e2e_home: Path, sqlite_stored) -> None:
    keyed = {**FORCE_REVIEW, "LANGGRAPH_AES_KEY": KEY}
    first = cli(e2e_home, "run", "--text", SECRET_SENTENCE, "--id", "enc-1", "--json",
                extra_env=keyed)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "awaiting_review"
    control = cli(e2e_home, "run", "--text", CONTROL_SENTENCE, "--id", "plain-1", "--json",
                  extra_env=FORCE_REVIEW)
    assert control.returncode == 0, control.stderr

    raw = sqlite_stored(e2e_home)
    assert CONTROL_SENTENCE.encode() in raw  # the control run is stored in clear
    assert SECRET_SENTENCE.encode() not in raw
    assert b"bergamot" not in raw and b"cardamom" not in raw

    # No key, or a wrong one: one clear line and exit status 2, never garbage.
    no_key = cli(e2e_home, "review", "show", "enc-1")
    assert no_key.returncode == 2
    assert no_key.stderr.strip() == ("supportgraph: the checkpoints in this database are "
                                     "encrypted: set LANGGRAPH_AES_KEY")
    wrong = cli(e2e_home, "review", "show", "enc-1",
                extra_env={"LANGGRAPH_AES_KEY": "f" * 32})
    assert wrong.returncode == 2 and "wrong key" in wrong.stderr
    assert wrong.stderr.count("\n") == 1
    short = cli(e2e_home, "review", "show", "enc-1", extra_env={"LANGGRAPH_AES_KEY": "short"})
    assert short.returncode == 2 and "16, 24 or 32 bytes" in short.stderr

    shown = cli(e2e_home, "review", "show", "enc-1", "--json", extra_env=keyed)
    assert shown.returncode == 0, shown.stderr
    payload = json.loads(shown.stdout)
    assert f"> {SECRET_SENTENCE}" in payload["description"]
    done = cli(e2e_home, "review", "edit", "enc-1", "--reply", "We only answer API questions.",
               "--reviewer", "maria", "--json", extra_env=keyed)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "sent"
    assert SECRET_SENTENCE.encode() not in sqlite_stored(e2e_home)


CHECKPOINT_TABLES = ["checkpoints", "checkpoint_blobs", "checkpoint_writes"]


@pytest.mark.postgres
def test_encrypted_postgres_checkpoints(
    demo_home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, pg_stored
) -> None:
    from graph.context import Context
    from supportgraph.app.runner import Runner
    from supportgraph.app.settings import Settings

    monkeypatch.setenv("LANGGRAPH_AES_KEY", KEY)
    ctx = Context(confidence_threshold=0.9999,
                  planner_enabled=False).with_settings(
        Settings(home=str(demo_home), database_url=pg_url))
    runner = Runner(ctx)
    waiting = runner.run({"id": "enc-pg", "channel": "chat", "body": SECRET_SENTENCE})
    assert waiting.summary["status"] == "awaiting_review"
    dumped = pg_stored(pg_url, CHECKPOINT_TABLES)
    assert len(dumped) > 1000
    assert SECRET_SENTENCE.encode() not in dumped and b"bergamot" not in dumped

    monkeypatch.delenv("LANGGRAPH_AES_KEY")
    with pytest.raises(CheckpointKeyError, match="encrypted: set LANGGRAPH_AES_KEY"):
        Runner(ctx).pending_review(waiting.thread_id)
    monkeypatch.setenv("LANGGRAPH_AES_KEY", "k" * 32)
    with pytest.raises(CheckpointKeyError, match="wrong key"):
        Runner(ctx).pending_review(waiting.thread_id)
    monkeypatch.setenv("LANGGRAPH_AES_KEY", KEY)
    keyed = Runner(ctx)
    assert f"> {SECRET_SENTENCE}" in keyed.pending_review(waiting.thread_id)["description"]
    done = keyed.decide(waiting.thread_id, {"type": "ignore", "args": "not our product"})
    assert done.summary["status"] == "rejected"
    assert SECRET_SENTENCE.encode() not in pg_stored(pg_url, CHECKPOINT_TABLES)


def test_serializer_round_trip_and_allow_list() -> None:
    from langgraph.types import Interrupt

    keyed, plain = checkpoint_serde(KEY), checkpoint_serde(None)
    value = {"ticket": {"body": SECRET_SENTENCE}, "n": [1, 2.5, None]}
    kind, blob = keyed.dumps_typed(value)
    assert kind.endswith("+aes") and SECRET_SENTENCE.encode() not in blob
    assert keyed.loads_typed((kind, blob)) == value
    assert plain.loads_typed(plain.dumps_typed(value)) == value
    interrupt = Interrupt(value={"x": 1}, id="i-1")
    assert keyed.loads_typed(keyed.dumps_typed(interrupt)) == interrupt
    with pytest.raises(CheckpointKeyError):
        plain.loads_typed((kind, blob))
    with pytest.raises(CheckpointKeyError):
        checkpoint_serde("z" * 16).loads_typed((kind, blob))
    # Types outside LangGraph's safe list are not revived from a checkpoint (strict mode).
    assert plain.loads_typed(plain.dumps_typed({"c": Colour.RED})) == {"c": 1}
    assert keyed.loads_typed(keyed.dumps_typed({"c": Colour.RED})) == {"c": 1}
