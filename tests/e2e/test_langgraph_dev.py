"""The `support` graph served by `langgraph dev` and driven with `langgraph_sdk`, offline.

This is what LangGraph Studio and Agent Inbox talk to: the server's own checkpointer, our
`Context` passed per run, the review interrupt in the Agent Inbox `HumanInterrupt` shape, and
resumes sent as `Command(resume=HumanResponse)`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

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

INBOX_KEY = "dev-inbox-key"
OUT_OF_SCOPE = "What is the weather like in Paris tomorrow?"
ANSWERABLE = "Where can I download my invoice PDF?"


@dataclass
class DevServer:
    """A running `langgraph dev` process and where its output goes."""

    process: subprocess.Popen
    url: str
    log_path: Path
    home: Path

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
        SUPPORTGRAPH_INBOX_DEV_KEY=INBOX_KEY,
        SUPPORTGRAPH_INBOX_DEV_NAME="dana",
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


@pytest.fixture(scope="module")
def dev_server(template_home: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[DevServer]:
    """`langgraph dev` on a free port with a private copy of the prepared home."""
    root = tmp_path_factory.mktemp("langgraph_dev")
    home = root / "home"
    shutil.copytree(template_home, home)
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
                       home=home)
    try:
        _wait_ready(server, time.monotonic() + READY_TIMEOUT_S)
        yield server
    finally:
        _stop(process)


@pytest.fixture
def client(dev_server: DevServer) -> SyncLangGraphClient:
    """An SDK client for the module's server (no API key: the dev server has no auth)."""
    return get_sync_client(url=dev_server.url, api_key=None)


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


# --------------------------------------------------------------------------- Agent Inbox and
# the review inbox against the same server: every decision lands in our review tables.


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

    env = {**_server_env(dev_server.home), "PYTHONPATH": str(REPO_ROOT)}
    swept = subprocess.run([sys.executable, "-m", "app.cli", "review", "sweep", "--server",
                            dev_server.url, "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert swept.returncode == 0, swept.stderr
    assert thread_id in json.loads(swept.stdout)["resolved_outside"]
    row = review_row(dev_server, thread_id)
    assert row["status"] == "rejected" and row["decided_by"]
    assert json.loads(row["decision"])["args"] == "resolved outside the workflow"


def test_review_inbox_is_served_beside_the_api(
    client: SyncLangGraphClient, dev_server: DevServer
) -> None:
    import httpx

    thread_id, _ = waiting_thread(client, "ai-5")
    with httpx.Client(base_url=dev_server.url, timeout=120) as web:
        assert web.get("/inbox").status_code == 303  # to the sign-in page
        assert web.get("/inbox", headers={"x-api-key": "wrong"}).status_code == 401
        key = {"x-api-key": INBOX_KEY}
        queue = web.get("/inbox", headers=key).json()
        assert thread_id in [r["thread_id"] for r in queue["rows"]]
        page = web.get(f"/inbox/tickets/{thread_id}", headers={**key, "accept": "text/html"})
        assert page.json()["waiting"] is True
        done = web.post(f"/inbox/tickets/{thread_id}/decide", headers=key,
                        data={"action": "edit", "reply": "Sent from the review inbox."})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "sent"
        again = web.post(f"/inbox/tickets/{thread_id}/decide", headers=key,
                         data={"action": "accept"})
        assert again.status_code == 409 and again.json()["error"] == "Already decided by dana."
    # Resumed through the server's own API: Studio and Agent Inbox see the same thread.
    state = client.threads.get_state(thread_id)
    values = assert_sent(client, thread_id, state)
    assert values["final_reply"] == "Sent from the review inbox."
    assert values["review"]["reviewer"] == "dana"
    row = review_row(dev_server, thread_id)
    assert row["decided_by"] == "dana" and row["approved_by"] == "dana"
