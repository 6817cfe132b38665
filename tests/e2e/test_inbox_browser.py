"""The review inbox in a real headless browser (Debian's chromium driven by Playwright).

A reviewer signs in, opens the queue and a ticket, edits the draft with the keyboard and sends
it; the thread ends `sent` with the edited reply, the next ticket opens, and a second tab that
had the same ticket open is told who decided it. A screenshot of every page is saved under the
test's tmp dir, or under `$TEST_ARTEFACTS_DIR/inbox-screenshots` when that is set (CI keeps it).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from graph.context import Context
from supportgraph.app.inbox.backend import RunnerBackend
from supportgraph.app.inbox.identity import Identity, KeyStore
from supportgraph.app.inbox.web import InboxSettings, create_app
from supportgraph.app.runner import Runner
from supportgraph.app.settings import Settings

pytestmark = [pytest.mark.e2e]

KEY = "maria-reviewer-key"
EDITED = "Hello! Create the new key first, switch your integration to it, then revoke the old one."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(demo_home: Path) -> Iterator[tuple[str, Runner]]:
    """`supportgraph serve`'s app on a free port, in this process (uvicorn in a thread)."""
    runner = Runner(Context(confidence_threshold=1.01, planner_enabled=False)
                    .with_settings(Settings(home=str(demo_home))))
    keys = KeyStore({})
    keys.add(KEY, Identity(tenant="acme", role="reviewer", name="maria"))
    app = create_app(lambda: RunnerBackend(runner), InboxSettings(keys=keys, secret="b" * 32))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the inbox server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", runner
    server.should_exit = True
    thread.join(timeout=10)


def test_sign_in_edit_send_and_second_tab_sees_already_decided(
    served: tuple[str, Runner], chromium, tmp_path: Path
) -> None:
    base, runner = served
    shots = Path(os.environ.get("TEST_ARTEFACTS_DIR") or tmp_path) / "inbox-screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    threads = [runner.run({"id": f"b-{i}", "channel": "chat", "tenant": "acme",
                           "subject": subject, "body": body}).thread_id
               for i, (subject, body) in enumerate([
                   ("Rotating a live key", "How do I rotate my live API key without downtime?"),
                   ("Invoice PDF", "Where can I download the PDF of my invoice?")])]
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()

    page.goto(f"{base}/inbox")
    assert page.url.startswith(f"{base}/inbox/login")
    page.screenshot(path=shots / "1-sign-in.png", full_page=True)
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/inbox")
    assert page.locator("table.queue tbody tr").count() == 2
    assert "b-0" in page.inner_text("table.queue") and "technical" in page.inner_text(
        "table.queue")
    page.screenshot(path=shots / "2-queue.png", full_page=True)

    page.click("text=b-0")
    page.wait_for_selector("#actions")
    assert "How do I rotate my live API key" in page.inner_text("pre.message")
    assert page.inner_text("h1") == "Rotating a live key"
    draft = runner.graph.get_state({"configurable": {"thread_id": threads[0]}}).values[
        "drafts"][-1]["text"]
    first_source = page.locator("a.cite").first
    assert first_source.get_attribute("href") == "#source-1"
    page.screenshot(path=shots / "3-ticket.png", full_page=True)

    # A second tab has the same ticket open before the decision.
    other = context.new_page()
    other.goto(page.url)
    other.wait_for_selector("#actions")

    editor = page.locator("#reply")
    assert not editor.is_visible() and not page.locator("#reason").is_visible()
    page.keyboard.press("e")  # opens the inline editor, prefilled with the draft
    assert editor.is_visible() and editor.input_value() == draft
    assert not page.locator("#note").is_visible()
    editor.fill(EDITED)
    page.screenshot(path=shots / "4-editing.png", full_page=True)
    editor.press("Control+Enter")
    page.wait_for_url(f"**/inbox/tickets/*{threads[1].split(':')[-1]}*")
    assert "Done: b-0: edit (sent)" in page.inner_text("main")
    page.screenshot(path=shots / "5-next-ticket.png", full_page=True)

    values = runner.graph.get_state({"configurable": {"thread_id": threads[0]}}).values
    assert values["status"] == "sent" and values["final_reply"] == EDITED
    assert runner.db.fetchone("SELECT decided_by FROM sg_reviews WHERE thread_id = :t",
                              {"t": threads[0]})["decided_by"] == "maria"

    other.bring_to_front()
    other.click("#form-accept button")
    other.wait_for_selector("#decided")
    assert other.inner_text("#decided") == "Already decided by maria."
    other.screenshot(path=shots / "6-already-decided.png", full_page=True)
    assert runner.graph.get_state({"configurable": {"thread_id": threads[0]}}).values[
        "final_reply"] == EDITED
    context.close()
    assert sorted(p.name for p in shots.iterdir()) == [
        "1-sign-in.png", "2-queue.png", "3-ticket.png", "4-editing.png", "5-next-ticket.png",
        "6-already-decided.png"]
    print(f"screenshots: {shots}")
