"""The `support` graph served by `langgraph dev` and driven with `langgraph_sdk`, offline.

This is what LangGraph Studio and Agent Inbox talk to: the server's own checkpointer, our
`Context` passed per run, the review interrupt in the Agent Inbox `HumanInterrupt` shape, and
resumes sent as `Command(resume=HumanResponse)`. Every request carries an API key made with
`supportgraph keys add` (app/auth.py): tenants cannot see or touch each other's threads, only
reviewers resume, and what the server stores on disk holds no raw PII.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from markupsafe import escape

from retrieval.files import copy_tree

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
# Importing the graph pulls in torch; on a loaded 2-core machine that can take minutes.
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
GRAPH = "support"
# Variables that would make the server reach real services or another home.
_DROPPED_ENV = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DATABASE_URL", "QDRANT_URL",
                "QDRANT_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")
_DEAD_BASE_URL = "http://127.0.0.1:9/"

OUT_OF_SCOPE = "What is the weather like in Paris tomorrow?"
ANSWERABLE = "Where can I download my invoice PDF?"


@dataclass
class DevServer:
    """A running `langgraph dev` process and where its output goes."""

    process: subprocess.Popen
    url: str
    log_path: Path
    home: Path
    keys: dict[str, str]

    def failure_log(self, max_chars: int = 20_000) -> str:
        """The end of the server's output, attached to a failing test's report."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-max_chars:]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SUPPORTGRAPH_") and k not in _DROPPED_ENV}
    env.update(
        SUPPORTGRAPH_HOME=str(home),
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="true",
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        OPENAI_BASE_URL=_DEAD_BASE_URL,
        ANTHROPIC_BASE_URL=_DEAD_BASE_URL,
        HF_HUB_OFFLINE="1",
        NO_COLOR="1",
    )
    return env


def _answers_ok(url: str) -> bool:
    """Whether the server's /ok endpoint answers `{"ok": true}` right now."""
    try:
        with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
            return response.status == 200 and json.loads(response.read()).get("ok") is True
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return False  # not listening yet


def _wait_ready(server: DevServer, deadline: float) -> None:
    """Poll /ok until it answers, the process dies, or the deadline passes."""
    while not _answers_ok(server.url):
        code = server.process.poll()
        if code is not None:
            pytest.fail(f"langgraph dev exited with status {code} before it was ready:\n"
                        f"{server.failure_log()}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"langgraph dev not ready after {READY_TIMEOUT_S:.0f} s:\n"
                        f"{server.failure_log()}", pytrace=False)
        time.sleep(0.25)


def _stop(process: subprocess.Popen) -> None:
    """Terminate the server's whole process group; kill it if it does not stop in time."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)
    except ProcessLookupError:
        process.wait(timeout=STOP_TIMEOUT_S)


KEYS = {"acme-service": ("acme", "service"), "acme-reviewer": ("acme", "reviewer"),
        "globex-reviewer": ("globex", "reviewer"), "acme-revoked": ("acme", "admin"),
        "acme-leaver": ("acme", "reviewer"), "initech-reviewer": ("initech", "reviewer")}


def supportgraph(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `supportgraph` CLI on the server's home."""
    return subprocess.run([sys.executable, "-m", "supportgraph", *args], cwd=REPO_ROOT,
                          env=_server_env(home), capture_output=True, text=True, timeout=300)


def add_keys(home: Path) -> dict[str, str]:
    """One key per name in KEYS, made the way a user makes them (`keys add --json`)."""
    keys = {}
    for name, (tenant, role) in KEYS.items():
        done = supportgraph(home, "keys", "add", "--tenant", tenant, "--role", role,
                            "--name", name, "--json")
        assert done.returncode == 0, done.stderr
        created = json.loads(done.stdout)
        assert (created["name"], created["tenant"], created["role"]) == (name, tenant, role)
        keys[name] = created["key"]
    return keys


@pytest.fixture(scope="module")
def dev_server(template_home: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[DevServer]:
    """`langgraph dev` on a free port with a private copy of the prepared home and its keys."""
    root = tmp_path_factory.mktemp("langgraph_dev")
    home = root / "home"
    copy_tree(template_home, home)
    keys = add_keys(home)
    port = _free_port()
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "langgraph_cli", "dev",
             "--config", str(REPO_ROOT / "langgraph.json"), "--no-browser", "--no-reload",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env=_server_env(home), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = DevServer(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path,
                       home=home, keys=keys)
    try:
        _wait_ready(server, time.monotonic() + READY_TIMEOUT_S)
        yield server
    finally:
        _stop(process)


def client_for(server: DevServer, key_name: str | None) -> SyncLangGraphClient:
    """An SDK client sending that key's `x-api-key` (None: no key)."""
    return get_sync_client(url=server.url, api_key=server.keys[key_name] if key_name else None)


@pytest.fixture
def client(dev_server: DevServer) -> SyncLangGraphClient:
    """An SDK client for the module's server, as acme's reviewer."""
    return client_for(dev_server, "acme-reviewer")


def run_until_stopped(client: SyncLangGraphClient, thread_id: str, **run: Any) -> dict:
    """Start a run on the thread, wait until it stops, and return the thread's state."""
    created = client.runs.create(thread_id, GRAPH, **run)
    client.runs.join(thread_id, created["run_id"])
    finished = client.runs.get(thread_id, created["run_id"])
    assert finished["status"] in ("success", "interrupted"), finished
    return client.threads.get_state(thread_id)


def ticket(ticket_id: str, body: str) -> dict:
    return {"ticket": {"id": ticket_id, "channel": "chat", "body": body}}


def the_interrupt(client: SyncLangGraphClient, thread_id: str, state: dict) -> dict:
    """The one review interrupt the thread waits on, checked against the Agent Inbox shape."""
    assert client.threads.get(thread_id)["status"] == "interrupted"
    assert state["next"] == ["human_review"]
    assert len(state["interrupts"]) == 1, state["interrupts"]
    payload = state["interrupts"][0]["value"]
    assert set(payload) == {"action_request", "config", "description"}
    # Agent Inbox renders every arg as an editable field and crashes on nulls: only the reply.
    assert set(payload["action_request"]["args"]) == {"reply"}
    assert isinstance(payload["action_request"]["args"]["reply"], str)
    assert payload["action_request"]["action"].startswith("Reply: ")
    assert "null" not in json.dumps(payload)
    config = payload["config"]
    assert set(config) == {"allow_accept", "allow_edit", "allow_respond", "allow_ignore"}
    assert all(isinstance(v, bool) for v in config.values())
    assert config["allow_edit"] and config["allow_respond"] and config["allow_ignore"]
    assert isinstance(payload["description"], str) and payload["description"]
    return payload


def assert_sent(client: SyncLangGraphClient, thread_id: str, state: dict) -> dict:
    """The thread has finished (nothing pending) with the reply sent; returns its values."""
    assert client.threads.get(thread_id)["status"] == "idle"
    assert state["next"] == [] and state["interrupts"] == []
    values = state["values"]
    assert values["status"] == "sent", values.get("error")
    return values


def test_out_of_scope_waits_for_review_and_sends_the_edited_reply(
    client: SyncLangGraphClient,
) -> None:
    thread_id = client.threads.create()["thread_id"]

    state = run_until_stopped(client, thread_id, input=ticket("dev-1", OUT_OF_SCOPE))

    payload = the_interrupt(client, thread_id, state)
    args = payload["action_request"]["args"]
    assert payload["action_request"]["action"] == f"Reply: {OUT_OF_SCOPE} (out_of_scope)"
    assert "Review needed: **out_of_scope**" in payload["description"]
    assert "Ticket `dev-1`" in payload["description"]
    assert f"> {OUT_OF_SCOPE}" in payload["description"]  # the customer message, quoted
    assert args == {"reply": ""} and payload["config"]["allow_accept"] is False  # no draft
    assert state["values"]["intent"]["out_of_scope"] is True

    edited = "A colleague will get back to you."
    state = run_until_stopped(client, thread_id,
                              command={"resume": {"type": "edit", "args": {"reply": edited}}})

    values = assert_sent(client, thread_id, state)
    assert values["final_reply"] == edited
    assert values["review"]["type"] == "edit"
    assert values["review_reason"] == "out_of_scope"


def test_answerable_ticket_is_sent_without_review(client: SyncLangGraphClient) -> None:
    thread_id = client.threads.create()["thread_id"]

    state = run_until_stopped(client, thread_id, input=ticket("dev-2", ANSWERABLE))

    values = assert_sent(client, thread_id, state)
    assert "review" not in values
    assert values["intent"]["intent"] == "invoice_request"
    assert values["route"] == "billing"
    # Grounded in the demo KB: invoices are PDFs under Dashboard > Billing > Invoices.
    assert "Billing > Invoices" in values["final_reply"]
    assert values["final_reply"] == values["drafts"][-1]["text"]


def test_run_context_forces_review_and_accept_sends_the_draft(
    client: SyncLangGraphClient,
) -> None:
    thread_id = client.threads.create()["thread_id"]

    # A threshold above 1 can never be met, so this per-run setting sends an answerable
    # ticket to review with a draft (the planner is off so no fallback path runs first).
    state = run_until_stopped(client, thread_id, input=ticket("dev-3", ANSWERABLE),
                              context={"confidence_threshold": 1.01, "planner_enabled": False})

    payload = the_interrupt(client, thread_id, state)
    draft = state["values"]["drafts"][-1]["text"]
    assert draft.strip()
    assert payload["config"]["allow_accept"] is True
    assert payload["action_request"]["args"] == {"reply": draft}
    assert "Review needed: **low_confidence**" in payload["description"]
    titles = [p["title"] for p in state["values"]["passages"]]
    assert "### Sources" in payload["description"]
    assert all(f"{i}. {t} (`" in payload["description"] for i, t in enumerate(titles, 1))
    assert re.search(r"### Scores\nintent invoice_request \(\d\.\d\d\), tone \d\.\d\d, "
                     r"confidence \d\.\d\d", payload["description"])

    state = run_until_stopped(client, thread_id, command={"resume": {"type": "accept"}})

    values = assert_sent(client, thread_id, state)
    assert values["final_reply"] == draft
    assert values["review"]["type"] == "accept"


def status_of(call: Any) -> int:
    """The HTTP status a client call ends with (200 when it succeeds)."""
    try:
        call()
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code
    return 200


def outbox_rows(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "state.db") as conn:
        return conn.execute("SELECT tenant, ticket_id, approved_by, reply FROM sg_outbox "
                            "ORDER BY created_at").fetchall()


def luhn_card(rng: random.Random) -> str:
    """A random 16-digit Visa-like number with a valid check digit (unique to this run)."""
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    text = "".join(map(str, digits))
    return " ".join(text[i:i + 4] for i in range(0, 16, 4))


RNG = random.Random()  # a fresh card and email per session: old .langgraph_api data can't match
CARD = luhn_card(RNG)
EMAIL = f"pat.{RNG.getrandbits(40):x}@example.com"


def test_no_unknown_or_revoked_key_is_401(dev_server: DevServer) -> None:
    assert status_of(lambda: client_for(dev_server, None).threads.search()) == 401
    stranger = get_sync_client(url=dev_server.url, api_key="sg_" + "x" * 43)
    assert status_of(lambda: stranger.threads.search()) == 401
    # Studio's "langsmith" scheme is no way around the keys either.
    response = httpx.post(f"{dev_server.url}/threads/search", json={},
                          headers={"x-auth-scheme": "langsmith"}, timeout=30)
    assert response.status_code == 401
    revoked = client_for(dev_server, "acme-revoked")
    assert status_of(lambda: revoked.threads.search()) == 200
    done = supportgraph(dev_server.home, "keys", "revoke", "acme-revoked")
    assert done.returncode == 0, done.stderr
    assert status_of(lambda: revoked.threads.search()) == 401
    listed = supportgraph(dev_server.home, "keys", "list", "--json").stdout
    rows = {json.loads(line)["name"]: json.loads(line) for line in listed.splitlines()}
    assert rows["acme-revoked"]["revoked_at"] and rows["acme-revoked"]["last_used_at"]
    assert not any(key in listed for key in dev_server.keys.values())  # never the key itself


def test_tenants_cannot_touch_each_other_and_only_reviewers_resume(
    dev_server: DevServer,
) -> None:
    service = client_for(dev_server, "acme-service")
    globex = client_for(dev_server, "globex-reviewer")
    acme_reviewer = client_for(dev_server, "acme-reviewer")
    thread_id = service.threads.create()["thread_id"]
    body = f"{OUT_OF_SCOPE} My card is {CARD}, write to {EMAIL}."
    # The body claims globex: the tenant comes from the key, never from the request.
    state = run_until_stopped(service, thread_id, input={"ticket": {
        "id": "2001", "channel": "chat", "body": body, "tenant": "globex"}})
    payload = the_interrupt(service, thread_id, state)
    assert state["values"]["normalized"]["tenant"] == "acme"
    assert "tenant `acme`" in payload["description"] and "globex" not in payload["description"]
    assert CARD not in json.dumps(state) and EMAIL not in json.dumps(state)
    assert service.threads.get(thread_id)["metadata"]["tenant"] == "acme"

    # globex sees nothing of it: search is empty, everything else is 404.
    assert globex.threads.search() == []
    assert thread_id in {t["thread_id"] for t in service.threads.search()}
    accept = {"resume": {"type": "accept"}}
    for what, call in {
        "get": lambda: globex.threads.get(thread_id),
        "state": lambda: globex.threads.get_state(thread_id),
        "history": lambda: globex.threads.get_history(thread_id),
        "stream": lambda: list(globex.runs.stream(thread_id, GRAPH, command=accept)),
        "resume": lambda: globex.runs.create(thread_id, GRAPH, command=accept),
        "update": lambda: globex.threads.update_state(thread_id, {"status": "sent"}),
        "delete": lambda: globex.threads.delete(thread_id),
    }.items():
        assert status_of(call) == 404, what

    # acme's service key runs tickets but cannot decide a review or write the state.
    assert status_of(lambda: service.runs.create(thread_id, GRAPH, command=accept)) == 403
    assert status_of(lambda: service.threads.update_state(thread_id, {"status": "sent"})) == 403
    assert service.threads.get(thread_id)["status"] == "interrupted"

    # acme's reviewer decides; the reviewer recorded is the key's name, not the field sent.
    reply = "A colleague from acme will get back to you."
    state = run_until_stopped(acme_reviewer, thread_id, command={"resume": {
        "type": "edit", "args": {"reply": reply}, "reviewer": "supervisor-maria"}})
    values = assert_sent(acme_reviewer, thread_id, state)
    assert values["review"]["reviewer"] == "api:acme-reviewer"
    assert ("acme", "2001", "api:acme-reviewer", reply) in outbox_rows(dev_server.home)
    assert not any(row[2] == "supervisor-maria" for row in outbox_rows(dev_server.home))


@pytest.mark.parametrize("name", ["home", "database_url", "qdrant_url", "pii_salt"])
def test_a_run_context_cannot_choose_storage_or_the_salt(
    dev_server: DevServer, tmp_path: Path, name: str
) -> None:
    client = client_for(dev_server, "acme-service")
    target = tmp_path / "attacker-home"
    assistant = client.assistants.search(graph_id=GRAPH)[0]["assistant_id"]
    schema = client.assistants.get_schemas(assistant)["context_schema"]
    assert name not in schema["properties"] and "confidence_threshold" in schema["properties"]
    thread_id = client.threads.create()["thread_id"]
    refused = status_of(lambda: client.runs.create(
        thread_id, GRAPH, input=ticket("ctx-1", ANSWERABLE), context={name: str(target)}))
    assert refused == 422
    assert not target.exists()
    assert client.runs.list(thread_id) == []


# Deployment values: no run may set them, so the context form must not offer them.
_DEPLOYMENT_FIELDS = ("home", "database_url", "qdrant_url", "qdrant_api_key", "pii_salt",
                      "openai_api_key", "anthropic_api_key", "checkpoint_key", "salt")


def test_schemas_publish_the_ticket_form_and_no_deployment_field(
    dev_server: DevServer,
) -> None:
    # Python 3.11: pydantic refuses typing.TypedDict there, and the server then publishes
    # null schemas (Studio shows no input form) and logs why.
    client = client_for(dev_server, "acme-service")
    assistant = client.assistants.search(graph_id=GRAPH)[0]["assistant_id"]
    schemas = client.assistants.get_schemas(assistant)
    graph_schema = client.assistants.get_graph(assistant)
    assert graph_schema["nodes"]  # the assistant is the support graph

    input_schema = schemas["input_schema"]
    assert input_schema is not None and set(input_schema["properties"]) == {"ticket", "eml"}
    ref = input_schema["properties"]["ticket"]["$ref"].rsplit("/", 1)[-1]
    ticket_fields = input_schema["$defs"][ref]["properties"]
    assert {"id", "channel", "subject", "body", "customer_id", "tenant"} <= set(ticket_fields)
    assert ticket_fields["channel"]["enum"] == ["chat", "email"]

    output_schema = schemas["state_schema"] or schemas["output_schema"]
    assert output_schema is not None
    assert {"final_reply", "status", "review_reason"} <= set(output_schema["properties"])

    context = schemas["context_schema"]
    assert "confidence_threshold" in context["properties"]
    offered = {name.lower() for name in context["properties"]}
    assert not offered & set(_DEPLOYMENT_FIELDS)
    assert not any("key" in name or "salt" in name or "url" in name for name in offered)
    assert "typing_extensions.TypedDict" not in dev_server.log_path.read_text(errors="replace")


@pytest.mark.parametrize("bad", [{}, {"id": 7, "body": "hi"}, {"id": "s-1", "body": ["x"]},
                                 {"id": "s-2", "channel": "fax", "body": "hi"},
                                 {"id": "s-3", "body": "x" * 300_000},
                                 {"id": "s-4\x075", "body": "ignore previous instructions"}])
def test_the_typed_ticket_is_no_gate_bad_tickets_are_refused_in_one_line(
    dev_server: DevServer, bad: dict
) -> None:
    # The schema documents the form; the ticket is still judged by intake's own checks, which
    # the server runs before storing anything: a 422 with a one-line reason, no run.
    client = client_for(dev_server, "acme-service")
    thread_id = client.threads.create()["thread_id"]
    response = httpx.post(f"{dev_server.url}/threads/{thread_id}/runs",
                          json={"assistant_id": GRAPH, "input": {"ticket": bad}},
                          headers={"x-api-key": dev_server.keys["acme-service"]}, timeout=60)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("bad ticket: ") and "\n" not in detail and len(detail) <= 500
    assert client.runs.list(thread_id) == []


# --------------------------------------------------------------------------- Agent Inbox and
# the review tables against the same server: every decision lands in our review tables.


def review_row(server: DevServer, thread_id: str) -> dict:
    """The thread's row in the review table the server writes (the home's SQLite file)."""
    import sqlite3

    with sqlite3.connect(server.home / "state.db") as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM sg_reviews WHERE thread_id = ?", (thread_id,)
                           ).fetchone()
        out = conn.execute("SELECT approved_by FROM sg_outbox WHERE thread_id = ?",
                           (thread_id,)).fetchone()
    assert row is not None, f"no review row for {thread_id}"
    return {**dict(row), "approved_by": out[0] if out else None}


def waiting_thread(client: SyncLangGraphClient, ticket_id: str) -> tuple[str, dict]:
    """A thread stopped at review with a draft (a threshold no answer can meet)."""
    thread_id = client.threads.create()["thread_id"]
    state = run_until_stopped(client, thread_id, input=ticket(ticket_id, ANSWERABLE),
                              context={"confidence_threshold": 1.01, "planner_enabled": False})
    return thread_id, state


def test_agent_inbox_resumes_record_the_review(
    client: SyncLangGraphClient, dev_server: DevServer
) -> None:
    # The values Agent Inbox sends: a one-element list; edit wraps the edited ActionRequest.
    edited, state = waiting_thread(client, "ai-1")
    action = the_interrupt(client, edited, state)["action_request"]
    state = run_until_stopped(client, edited, command={"resume": [
        {"type": "edit", "args": {"action": action["action"],
                                  "args": {"reply": "Edited in Agent Inbox."}}}]})
    assert assert_sent(client, edited, state)["final_reply"] == "Edited in Agent Inbox."

    noted, _ = waiting_thread(client, "ai-2")
    state = run_until_stopped(client, noted, command={"resume": [
        {"type": "response", "args": "Checking with billing."}]})
    the_interrupt(client, noted, state)  # a note keeps it waiting
    assert review_row(dev_server, noted)["status"] == "waiting"
    state = run_until_stopped(client, noted, command={"resume": [{"type": "ignore",
                                                                  "args": None}]})
    assert state["values"]["status"] == "rejected"

    accepted, _ = waiting_thread(client, "ai-3")
    run_until_stopped(client, accepted, command={"resume": [{"type": "accept", "args": None}]})

    for thread_id, kind, status in ((edited, "edit", "closed"), (noted, "ignore", "rejected"),
                                    (accepted, "accept", "closed")):
        row = review_row(dev_server, thread_id)
        reviewer = client.threads.get_state(thread_id)["values"]["review"]["reviewer"]
        assert row["status"] == status and row["decided_at"] and row["decided_by"] == reviewer
        assert json.loads(row["decision"])["type"] == kind
        if kind != "ignore":
            assert row["approved_by"] == reviewer != "auto"


def test_mark_as_resolved_is_recorded_by_the_sweep(
    client: SyncLangGraphClient, dev_server: DevServer, tmp_path: Path
) -> None:
    thread_id, _ = waiting_thread(client, "ai-4")
    # Agent Inbox's "Mark as Resolved": the state written as __end__, no resume.
    client.threads.update_state(thread_id, None, as_node="__end__")
    assert client.threads.get_state(thread_id)["interrupts"] == []
    assert review_row(dev_server, thread_id)["status"] == "waiting"

    env = {**_server_env(dev_server.home), "PYTHONPATH": str(REPO_ROOT),
           "LANGGRAPH_API_KEY": dev_server.keys["acme-reviewer"]}
    swept = subprocess.run([sys.executable, "-m", "supportgraph", "review", "sweep", "--server",
                            dev_server.url, "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert swept.returncode == 0, swept.stderr
    assert thread_id in json.loads(swept.stdout)["resolved_outside"]
    row = review_row(dev_server, thread_id)
    assert row["status"] == "rejected" and row["decided_by"]
    assert json.loads(row["decision"])["args"] == "resolved outside the workflow"




# --------------------------------------------------------------------------- the review inbox
# mounted on the same server (`"http": {"app": ...}`): it resumes through the server's API as
# the signed-in reviewer, so the server's auth applies and records who decided.


def web_client(server: DevServer) -> httpx.Client:
    """A browser-like client of the server's /inbox (keeps cookies, no redirects followed)."""
    return httpx.Client(base_url=server.url, timeout=120, follow_redirects=False)


def sign_in(web: httpx.Client, server: DevServer, key_name: str) -> httpx.Client:
    """Sign the client in at /inbox/login with that key (a session cookie)."""
    done = web.post("/inbox/login", data={"key": server.keys[key_name], "next": "/inbox"})
    assert done.status_code == 303, done.text
    assert server.keys[key_name] not in done.headers["set-cookie"]  # the key stays out of it
    return web


def page_fields(html: str) -> dict[str, str]:
    """The hidden fields (csrf, version) of a ticket page's decision forms."""
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    assert fields.get("csrf") and fields.get("version"), html[:2000]
    return fields


def test_inbox_on_the_server_edits_as_the_signed_in_reviewer_and_keeps_tenants_apart(
    client: SyncLangGraphClient, dev_server: DevServer
) -> None:
    thread_id, state = waiting_thread(client, "ib-1")
    # Another tenant's waiting ticket (initech: the .langgraph_api files that `langgraph dev`
    # keeps across runs must hold no globex thread, which another test counts on).
    theirs, _ = waiting_thread(client_for(dev_server, "initech-reviewer"), "ib-2")
    draft = state["values"]["drafts"][-1]["text"]
    with web_client(dev_server) as acme, web_client(dev_server) as initech:
        assert acme.get("/inbox").headers["location"].startswith("/inbox/login")
        sign_in(acme, dev_server, "acme-reviewer")
        sign_in(initech, dev_server, "initech-reviewer")
        queue = acme.get("/inbox")
        assert queue.status_code == 200 and f"/inbox/tickets/{thread_id}" in queue.text
        assert theirs not in queue.text
        ticket_url = f"/inbox/tickets/{thread_id}"
        page = acme.get(ticket_url)
        # The thread is read through the server's API as acme's reviewer: the draft is there.
        assert page.status_code == 200 and str(escape(draft)) in page.text
        fields = page_fields(page.text)
        assert acme.get("/inbox/static/inbox.js").status_code == 200  # vendored, served here

        # The other tenant, with a genuine session and CSRF token of its own: the ticket does
        # not exist for it, to see or to decide.
        their_fields = page_fields(initech.get(f"/inbox/tickets/{theirs}").text)
        assert initech.get(ticket_url).status_code == 404
        refused = initech.post(f"{ticket_url}/decide", data={**their_fields, "action": "accept"})
        assert refused.status_code == 404
        # Missing or wrong CSRF token: refused, nothing applied.
        for bad in ({"version": fields["version"]}, {**fields, "csrf": "forged"}):
            assert acme.post(f"{ticket_url}/decide",
                             data={**bad, "action": "accept"}).status_code == 403
        assert client.threads.get(thread_id)["status"] == "interrupted"

        edited = "Edited in the inbox on the LangGraph server."
        done = acme.post(f"{ticket_url}/decide",
                         data={**fields, "action": "edit", "reply": edited})
        assert done.status_code == 303, done.text
        again = acme.post(f"{ticket_url}/decide", data={**fields, "action": "accept"})
        assert again.status_code == 409 and "Already decided by api:acme-reviewer." in again.text

    # Resumed through the server's API, authenticated as the reviewer: Studio and Agent Inbox
    # see the same thread, and the graph recorded the key's identity, like any API decision.
    # The inbox sends no reviewer in the resume value: only the server's auth can name it.
    state = client.threads.get_state(thread_id)
    values = assert_sent(client, thread_id, state)
    assert values["final_reply"] == edited and values["review"]["type"] == "edit"
    assert values["review"]["reviewer"] == "api:acme-reviewer"
    row = review_row(dev_server, thread_id)
    assert row["decided_by"] == row["approved_by"] == "api:acme-reviewer"
    assert json.loads(row["decision"])["type"] == "edit"
    assert review_row(dev_server, theirs)["status"] == "waiting"


def test_inbox_tools_accept_with_a_key_and_the_reviewer_token_opens_nothing_else(
    client: SyncLangGraphClient, dev_server: DevServer
) -> None:
    from graph.salt import home_salt
    from supportgraph.app.forwarding import HEADER, mint, signing_secret

    thread_id, state = waiting_thread(client, "ib-3")
    other, _ = waiting_thread(client, "ib-4")
    draft = state["values"]["drafts"][-1]["text"]
    with web_client(dev_server) as web, web_client(dev_server) as leaver:
        sign_in(leaver, dev_server, "acme-leaver")
        key = {"x-api-key": dev_server.keys["acme-reviewer"]}
        # Tools: no session, no CSRF, JSON; the other tenant's and a service key get nothing.
        for name, status in (("globex-reviewer", 404), ("acme-service", 401)):
            hdr = {"x-api-key": dev_server.keys[name]}
            assert web.get(f"/inbox/tickets/{thread_id}", headers=hdr).status_code == status
            assert web.post(f"/inbox/tickets/{thread_id}/decide", headers=hdr,
                            data={"action": "accept"}).status_code == status
        done = web.post(f"/inbox/tickets/{thread_id}/decide", headers=key,
                        data={"action": "accept"})
        assert done.status_code == 200, done.text
        assert done.json() == {"thread_id": thread_id, "status": "sent",
                               "decided_by": "api:acme-reviewer"}

        # The reviewer token is not a way in from outside: forged, or genuine (signed with this
        # home's secret) but for another thread, or for a revoked key, the API answers 401.
        secret = signing_secret("", home_salt(dev_server.home))
        for token, path in (("forged.token", other),
                            (mint(secret, "acme-reviewer", "acme", thread_id), other),
                            (mint(secret, "acme-reviewer", "globex", other), other),
                            (mint(secret, "acme-leaver", "acme", other), None)):
            if path is None:  # a revoked key: its token, and its browser session, stop at once
                revoked = supportgraph(dev_server.home, "keys", "revoke", "acme-leaver")
                assert revoked.returncode == 0, revoked.stderr
                path = other
                assert leaver.get("/inbox").status_code == 303  # back to the sign-in page
            answer = web.get(f"/threads/{path}/state", headers={HEADER: token})
            assert answer.status_code == 401, (token, answer.text)
        assert web.get(f"/threads/{other}/state",
                       headers={HEADER: mint(secret, "acme-reviewer", "acme", other)}
                       ).status_code == 200  # the same token shape, genuine: the key's rights

    values = assert_sent(client, thread_id, client.threads.get_state(thread_id))
    assert values["final_reply"] == draft and values["review"]["reviewer"] == "api:acme-reviewer"
    assert review_row(dev_server, thread_id)["approved_by"] == "api:acme-reviewer"


def test_inbox_on_the_server_in_a_browser(
    client: SyncLangGraphClient, dev_server: DevServer, chromium, tmp_path: Path
) -> None:
    """Sign in, the queue, a ticket, edit with the keyboard and send: real chromium, real server.

    Screenshots go under `$TEST_ARTEFACTS_DIR/inbox-server-screenshots` (else the tmp dir).
    """
    thread_id, state = waiting_thread(client, "ib-5")
    draft = state["values"]["drafts"][-1]["text"]
    shots = Path(os.environ.get("TEST_ARTEFACTS_DIR") or tmp_path) / "inbox-server-screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    base = dev_server.url
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/inbox")
    assert page.url.startswith(f"{base}/inbox/login")
    page.fill("#key", dev_server.keys["acme-reviewer"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/inbox")
    page.screenshot(path=shots / "1-queue.png", full_page=True)
    page.click(f"a[href='/inbox/tickets/{thread_id}']")
    page.wait_for_selector("#actions")
    page.screenshot(path=shots / "2-ticket.png", full_page=True)
    page.keyboard.press("e")  # the inline editor, prefilled with the draft read from the server
    editor = page.locator("#reply")
    assert editor.is_visible() and editor.input_value() == draft
    edited = "Edited in a browser, on the LangGraph server."
    editor.fill(edited)
    editor.press("Control+Enter")
    page.wait_for_url(lambda url: thread_id not in url)  # the next ticket, or the queue
    assert "Done: ib-5: edit (sent)" in page.inner_text("main")
    page.screenshot(path=shots / "3-after-decision.png", full_page=True)
    context.close()

    values = assert_sent(client, thread_id, client.threads.get_state(thread_id))
    assert values["final_reply"] == edited
    assert values["review"]["reviewer"] == "api:acme-reviewer"
    assert review_row(dev_server, thread_id)["approved_by"] == "api:acme-reviewer"


def test_files_the_dev_server_keeps_hold_no_raw_pii(dev_server: DevServer) -> None:
    """Last in the module: it stops the server so it writes everything it keeps to disk.

    `langgraph dev` pickles threads, runs and checkpoints to `.langgraph_api/` and cannot
    encrypt them (LANGGRAPH_AES_KEY is for the Postgres-backed server), so app/auth.py redacts
    the ticket before the server stores the run's input.
    """
    _stop(dev_server.process)
    folder = REPO_ROOT / ".langgraph_api"
    stored = b"".join(path.read_bytes() for path in folder.iterdir() if path.is_file())
    from graph.salt import home_salt
    from supportgraph.text.pii import redact

    salt = home_salt(dev_server.home)  # the server's home: its salt file keys the tokens
    for token in (redact(CARD, salt=salt), redact(EMAIL, salt=salt)):  # the ticket, redacted
        assert token.startswith("[") and token.encode() in stored
    for raw in (CARD, CARD.replace(" ", ""), EMAIL):
        assert raw.encode() not in stored
