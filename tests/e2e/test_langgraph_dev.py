"""The `support` graph served by `langgraph dev` and driven with `langgraph_sdk`, offline.

This is what LangGraph Studio and Agent Inbox talk to: the server's own checkpointer, our
`Context` passed per run, the review interrupt in the Agent Inbox `HumanInterrupt` shape, and
resumes sent as `Command(resume=HumanResponse)`.
"""

from __future__ import annotations

import json
import os
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

OUT_OF_SCOPE = "What is the weather like in Paris tomorrow?"
ANSWERABLE = "Where can I download my invoice PDF?"


@dataclass
class DevServer:
    """A running `langgraph dev` process and where its output goes."""

    process: subprocess.Popen
    url: str
    log_path: Path

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
    server = DevServer(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
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
    assert payload["action_request"]["action"] == "send_reply"
    assert isinstance(payload["action_request"]["args"], dict)
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
    assert args["reason"] == "out_of_scope"
    assert "out_of_scope" in payload["description"]
    assert args["ticket"]["id"] == "dev-1" and args["ticket"]["body"] == OUT_OF_SCOPE
    assert args["reply"] == "" and payload["config"]["allow_accept"] is False  # nothing drafted
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
    assert payload["action_request"]["args"]["reply"] == draft
    assert payload["action_request"]["args"]["reason"] == "low_confidence"

    state = run_until_stopped(client, thread_id, command={"resume": {"type": "accept"}})

    values = assert_sent(client, thread_id, state)
    assert values["final_reply"] == draft
    assert values["review"]["type"] == "accept"
