"""The LangGraph server's auth handlers (app/auth.py), called as the server calls them.

The end-to-end behaviour (401/403/404 through `langgraph dev`) is in
tests/e2e/test_langgraph_dev.py; here: empty, huge, malformed and hostile requests, fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from langgraph_sdk import Auth

from graph.persistence import open_database
from supportgraph.app import auth
from supportgraph.app.keys import add_key

REPO_ROOT = Path(__file__).resolve().parents[2]
CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"


def run(coro):
    return asyncio.run(coro)


def ctx(role: str = "service", tenant: str = "acme", action: str = "create_run",
        resource: str = "threads") -> Auth.types.AuthContext:
    user = {"identity": f"{tenant}:k", "tenant": tenant, "role": role, "name": f"{tenant}-k"}
    return Auth.types.AuthContext(permissions=[role], user=user, resource=resource,
                                  action=action)


def refused(coro) -> int:
    with pytest.raises(Auth.exceptions.HTTPException) as info:
        run(coro)
    return info.value.status_code


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SUPPORTGRAPH_HOME", str(tmp_path))
    monkeypatch.delenv("SUPPORTGRAPH_AUTH", raising=False)
    return tmp_path


def test_authenticate_maps_a_key_to_its_identity(home: Path) -> None:
    db = open_database(None, home)
    key = add_key(db, "acme", "reviewer", "acme-rev")["key"]
    db.close()
    user = run(auth.authenticate({b"x-api-key": key.encode()}))
    assert (user["tenant"], user["role"], user["name"]) == ("acme", "reviewer", "acme-rev")
    assert user["identity"] == "acme:acme-rev"


@pytest.mark.parametrize("headers", [
    {}, {b"x-api-key": b""}, {b"x-api-key": b"   "}, {b"x-api-key": b"sg_unknown"},
    {b"x-api-key": b"x" * 1_000_000}, {b"x-api-key": b"\xff\xfe"},
    {b"authorization": b"Bearer sg_whatever"}, {b"x-auth-scheme": b"langsmith"},
])
def test_authenticate_refuses_missing_unknown_and_hostile_keys(home: Path, headers) -> None:
    assert refused(auth.authenticate(headers)) == 401


def test_auth_off_is_the_default_tenants_admin_and_warns_at_start(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPPORTGRAPH_AUTH", "off")
    user = run(auth.authenticate({}))
    assert (user["tenant"], user["role"]) == ("default", "admin")
    env = {**os.environ, "SUPPORTGRAPH_AUTH": "off", "PYTHONPATH": str(REPO_ROOT)}
    started = subprocess.run(
        [sys.executable, "-c",
         "import logging; logging.basicConfig(); import supportgraph.app.auth"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert "SUPPORTGRAPH_AUTH=off: API keys are NOT checked" in started.stderr
    quiet = subprocess.run(
        [sys.executable, "-c",
         "import logging; logging.basicConfig(); import supportgraph.app.auth"],
        env={**env, "SUPPORTGRAPH_AUTH": "on"}, cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=120)
    assert "NOT checked" not in quiet.stderr


def test_a_run_is_stamped_redacted_and_given_the_callers_tenant(home: Path) -> None:
    graph_input = {"ticket": {"id": "2001", "channel": "chat", "tenant": "globex",
                              "body": f"My card {CARD}, mail {EMAIL}", "subject": EMAIL}}
    value = {"kwargs": {"input": graph_input}, "metadata": {"tenant": "globex"}}
    assert run(auth.on_run_create(ctx(), value)) == {"tenant": "acme"}
    assert value["metadata"]["tenant"] == "acme"
    stored = value["kwargs"]["input"]
    assert stored is graph_input  # changed in place: the server keeps this very dict
    assert stored["ticket"]["tenant"] == "acme"
    text = json.dumps(stored)
    assert CARD not in text and EMAIL not in text and "[CARD:" in text and "[EMAIL:" in text


def test_an_email_input_is_parsed_and_only_its_redacted_ticket_kept(home: Path) -> None:
    eml = (f"From: Jane <{EMAIL}>\r\nTo: support@example.com\r\nSubject: card {CARD}\r\n"
           f"Message-ID: <m1@example.com>\r\n\r\nPlease refund card {CARD}.\r\n")
    graph_input = {"eml": eml}
    run(auth.on_run_create(ctx(tenant="default"), {"kwargs": {"input": graph_input}}))
    assert graph_input["eml"] == ""
    assert graph_input["ticket"]["channel"] == "email"
    assert graph_input["ticket"]["tenant"] is None  # the default tenant
    assert CARD not in json.dumps(graph_input) and EMAIL not in json.dumps(graph_input)


@pytest.mark.parametrize("graph_input", [
    {"ticket": {"id": "", "body": f"card {CARD}"}},
    {"ticket": {"id": "x", "channel": "fax", "body": f"card {CARD}"}},
    {"ticket": {"id": "x", "channel": "chat", "body": f"{EMAIL} " * 20_000}},
    {"ticket": "not an object", "other": [f"{EMAIL}"]},
    {"eml": ["not", "text", CARD]},
    {},
    f"card {CARD}",
    [CARD],
])
def test_malformed_input_is_refused_before_anything_is_stored(home: Path, graph_input) -> None:
    assert refused(auth.on_run_create(ctx(), {"kwargs": {"input": graph_input}})) == 422


def test_only_reviewers_and_admins_resume_and_the_resume_is_redacted(home: Path) -> None:
    command = {"resume": {"type": "edit", "args": {"reply": f"Call {EMAIL}"}}}
    assert refused(auth.on_run_create(ctx("service"), {"kwargs": {"command": command}})) == 403
    for role in ("reviewer", "admin"):
        value = {"kwargs": {"command": dict(command)}}
        assert run(auth.on_run_create(ctx(role), value)) == {"tenant": "acme"}
        assert EMAIL not in json.dumps(value)


@pytest.mark.parametrize(("context", "role", "status"), [
    ({"home": "/tmp/evil"}, "admin", 422),
    ({"database_url": "postgresql://evil/db"}, "admin", 422),
    ({"qdrant_url": "http://evil:6333"}, "admin", 422),
    ({"pii_salt": "known"}, "admin", 422),
    ({"x" * 10_000: 1}, "service", 422),
    ("home=/tmp/evil", "service", 422),
    ({"intent_model_dir": "/tmp/evil-model"}, "reviewer", 403),
])
def test_a_run_context_cannot_choose_what_a_run_may_not(home: Path, context, role: str,
                                                         status: int) -> None:
    value = {"kwargs": {"input": {}, "context": context}}
    assert refused(auth.on_run_create(ctx(role), value)) == status
    assert refused(auth.on_assistant_create(ctx(role, action="create", resource="assistants"),
                                            {"context": context})) == status


def test_per_run_settings_and_admin_model_dir_pass(home: Path) -> None:
    ticket = {"ticket": {"id": "1", "channel": "chat", "body": "Where is my invoice?"}}
    value = {"kwargs": {"input": ticket, "context": {"confidence_threshold": 0.9}}}
    assert run(auth.on_run_create(ctx("service"), value)) == {"tenant": "acme"}
    value = {"kwargs": {"input": ticket, "context": {"intent_model_dir": "/srv/model"}}}
    assert run(auth.on_run_create(ctx("admin"), value)) == {"tenant": "acme"}


def test_threads_are_filtered_and_state_writes_need_a_reviewer(home: Path) -> None:
    value = {"metadata": {"tenant": "globex", "x": 1}}
    assert run(auth.on_thread_create(ctx(action="create"), value)) == {"tenant": "acme"}
    assert value["metadata"] == {"tenant": "acme", "x": 1, "created_by_key": "acme-k"}
    for handler in (auth.on_thread_read, auth.on_thread_search, auth.on_thread_delete):
        assert run(handler(ctx(), {})) == {"tenant": "acme"}
    assert refused(auth.on_thread_update(ctx("service"), {"thread_id": "t"})) == 403
    assert run(auth.on_thread_update(ctx("reviewer"), {"thread_id": "t"})) == {"tenant": "acme"}
    patch = {"thread_id": "t", "metadata": {"tenant": "globex"}}
    assert run(auth.on_thread_update(ctx("service"), patch)) == {"tenant": "acme"}
    assert patch["metadata"]["tenant"] == "acme"  # a thread never moves to another tenant


def test_crons_and_the_store_are_not_part_of_the_app(home: Path) -> None:
    assert refused(auth.deny_everything_else(ctx(resource="crons", action="create"), {})) == 403
