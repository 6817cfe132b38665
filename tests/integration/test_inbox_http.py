"""The review inbox over HTTP (Starlette's test client) on the Runner backend.

Identities come only through `supportgraph.app.inbox.identity.identity_for_key`: the `key_for`
fixture makes
a key for a (tenant, role, name), and every request signs in with it or sends it as
`x-api-key`. Tickets are real runs of the workflow on the demo home.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from graph.context import Context
from supportgraph.app.inbox.backend import RunnerBackend
from supportgraph.app.inbox.identity import Identity, KeyStore
from supportgraph.app.inbox.web import (
    MAX_FORM_BYTES,
    PAGE_SIZE,
    InboxSettings,
    cite_links,
    create_app,
)
from supportgraph.app.runner import Runner
from supportgraph.app.settings import Settings

ANSWERABLE = "How do I rotate my live API key without downtime?"
HOSTILE = "<script>alert('x')</script> Please help, my invoice is wrong."


@pytest.fixture
def runner(demo_home: Path) -> Runner:
    # A threshold above 1 sends every answerable ticket to review with a draft.
    return Runner(Context(confidence_threshold=1.01, planner_enabled=False)
                  .with_settings(Settings(home=str(demo_home))))


@pytest.fixture
def keys() -> KeyStore:
    return KeyStore({})


@pytest.fixture
def key_for(keys: KeyStore) -> Callable[..., str]:
    """Create an identity and return its key (the one door tests use into the key store)."""
    def make(tenant: str = "acme", role: str = "reviewer", name: str = "maria") -> str:
        key = f"key-{tenant}-{role}-{name}"
        keys.add(key, Identity(tenant=tenant, role=role, name=name))
        return key

    return make


@pytest.fixture
def app(runner: Runner, keys: KeyStore):
    return create_app(lambda: RunnerBackend(runner), InboxSettings(keys=keys, secret="s" * 32))


@pytest.fixture
def browser(app) -> Iterator[Callable[[str], TestClient]]:
    """Signed-in browser-like clients (cookie session), one per call."""
    clients = []

    def sign_in(key: str) -> TestClient:
        client = TestClient(app, base_url="http://testserver", follow_redirects=False)
        clients.append(client)
        response = client.post("/inbox/login", data={"key": key, "next": "/inbox"})
        assert response.status_code == 303, response.text
        return client

    yield sign_in
    for client in clients:
        client.close()


def run(runner: Runner, ticket_id: str, tenant: str = "acme", body: str = ANSWERABLE) -> str:
    outcome = runner.run({"id": ticket_id, "channel": "chat", "body": body, "tenant": tenant,
                          "subject": f"Subject of {ticket_id}"})
    assert outcome.summary["status"] == "awaiting_review"
    return outcome.thread_id


def url(thread_id: str, suffix: str = "") -> str:
    return f"/inbox/tickets/{quote(thread_id, safe='')}{suffix}"


def form_fields(html: str, form_id: str | None = None) -> dict[str, str]:
    """The hidden fields (csrf, version) of the page's decision forms."""
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    assert "csrf" in fields and "version" in fields, html[:2000]
    return fields


def test_sign_in_and_tenant_scoped_queue(runner: Runner, key_for, browser, app) -> None:
    mine = run(runner, "h-1", "acme")
    theirs = run(runner, "h-2", "globex")
    anonymous = TestClient(app, follow_redirects=False)

    assert anonymous.get("/inbox").status_code == 303
    assert anonymous.get("/inbox").headers["location"].startswith("/inbox/login")
    bad = anonymous.post("/inbox/login", data={"key": "nope"})
    assert bad.status_code == 401 and "not a reviewer key" in bad.text
    service = anonymous.post("/inbox/login", data={"key": key_for(role="service")})
    assert service.status_code == 401
    assert anonymous.get("/inbox", headers={"x-api-key": "nope"}).status_code == 401
    # The page to go to after sign-in stays inside the inbox.
    away = anonymous.post("/inbox/login", data={"key": key_for(), "next": "//evil.example/x"})
    assert away.headers["location"] == "/inbox"

    page = browser(key_for()).get("/inbox")
    assert page.status_code == 200
    assert ">h-1</a>" in page.text and "low_confidence" in page.text
    # No ticket text in the queue: it comes from our tables, which hold none (checkpoints may
    # be encrypted at rest; the ticket page reads the text from the thread).
    assert "Subject of h-1" not in page.text
    assert "h-2" not in page.text and "globex" not in page.text
    # Tools: the same queue as JSON with the header, and only their tenant's rows.
    tool = anonymous.get("/inbox", headers={"x-api-key": key_for(tenant="globex", name="g")})
    assert [r["thread_id"] for r in tool.json()["rows"]] == [theirs]
    admin = anonymous.get("/inbox", headers={"x-api-key": key_for(role="admin", name="root")})
    assert {r["thread_id"] for r in admin.json()["rows"]} == {mine, theirs}
    only = anonymous.get("/inbox?tenant=globex",
                         headers={"x-api-key": key_for(role="admin", name="root")})
    assert [r["thread_id"] for r in only.json()["rows"]] == [theirs]


def test_session_cookie_is_http_only_and_strict(app, key_for) -> None:
    with TestClient(app, follow_redirects=False) as client:
        response = client.post("/inbox/login", data={"key": key_for()})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/inbox" in cookie
    assert key_for() not in response.headers["set-cookie"]  # the key is never in the cookie
    with TestClient(app, follow_redirects=False) as client:
        client.cookies.set("sg_inbox", "forged.value.here")
        assert client.get("/inbox").status_code == 303  # a forged cookie is no session


def test_queue_order_filters_overdue_pagination_and_empty(runner: Runner, key_for) -> None:
    now = datetime.now(UTC)
    rows = []
    for i in range(PAGE_SIZE + 5):
        deadline = now + timedelta(hours=i - 2, minutes=30)  # the first two are overdue
        rows.append({"t": f"ticket:acme:q-{i}", "id": f"q-{i}", "reason": "low_confidence"
                     if i % 2 else "out_of_scope", "route": "billing" if i % 3 else "human",
                     "req": (now - timedelta(hours=i)).isoformat(),
                     "dl": deadline.isoformat()})
    for r in rows:
        runner.db.execute(
            "INSERT INTO sg_reviews (thread_id, ticket_id, tenant, reason, route, queue, "
            "status, requested_at, deadline_at) VALUES (:t, :id, 'acme', :reason, :route, "
            "'agent', 'waiting', :req, :dl)", r)
    client = TestClient(create_app(lambda: RunnerBackend(runner),
                                   InboxSettings(keys=KeyStore({}), secret="x")))
    assert client.get("/inbox", headers={"x-api-key": "k"}).status_code == 401
    from supportgraph.app.inbox import web

    data = web.queue_page(runner.db, {"tenant": "acme"}, 1)
    assert data["total"] == PAGE_SIZE + 5 and data["overdue"] == 2 and data["pages"] == 2
    assert [r["ticket_id"] for r in data["rows"][:3]] == ["q-0", "q-1", "q-2"]
    assert data["rows"][0]["overdue"] and not data["rows"][2]["overdue"]
    assert len(web.queue_page(runner.db, {"tenant": "acme"}, 2)["rows"]) == 5
    assert web.queue_page(runner.db, {"tenant": "acme"}, 99)["page"] == 2  # clamped
    only = web.queue_page(runner.db, {"tenant": "acme", "reason": "out_of_scope",
                                      "route": "human"}, 1)
    assert {r["ticket_id"] for r in only["rows"]} == {f"q-{i}" for i in range(0, 55, 6)}
    assert web.queue_page(runner.db, {"tenant": "other"}, 1)["total"] == 0


def test_queue_pages_render_and_the_empty_state(runner: Runner, key_for, browser) -> None:
    client = browser(key_for())
    empty = client.get("/inbox")
    assert "Nothing is waiting." in empty.text
    run(runner, "e-1")
    page = client.get("/inbox?route=nope")
    assert "No ticket matches these filters." in page.text
    page = client.get("/inbox?page=3&reason=" + "x" * 60_000)
    assert page.status_code == 200 and "No ticket matches these filters." in page.text
    assert client.get("/inbox?page=abc").status_code == 400
    assert client.get("/inbox?page=-5").status_code == 200
    full = client.get("/inbox")
    assert "e-1" in full.text and "0 overdue" in full.text


def test_ticket_page_shows_what_the_reviewer_needs(runner: Runner, key_for, browser) -> None:
    thread = run(runner, "p-1")
    html = browser(key_for()).get(url(thread)).text
    values = runner.graph.get_state({"configurable": {"thread_id": thread}}).values
    passages = values["passages"]
    assert passages and values["drafts"][-1]["citations"]
    assert "Subject of p-1" in html and ANSWERABLE in html
    for n, passage in enumerate(passages, 1):
        assert f'id="source-{n}"' in html and str(escape(passage["title"])) in html
    assert re.search(r'<a class="cite" href="#source-1">\[1\]</a>', html)
    assert "Confidence <b>" in html and "low_confidence" in html
    assert "Flags:" in html
    for step in ("intake", "classify", "retrieve", "draft", "confidence", "human_review"):
        assert f"<td>{step}</td>" in html
    assert 'name="csrf"' in html and "Accept and send" in html
    assert str(cite_links(values["drafts"][-1]["text"], len(passages))) in html


def test_hostile_ticket_text_is_escaped(runner: Runner, key_for, browser) -> None:
    thread = run(runner, "x-1", body=HOSTILE)
    html = browser(key_for()).get(url(thread)).text
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html


def test_accept_records_the_reviewer_and_opens_the_next_ticket(
    runner: Runner, key_for, browser
) -> None:
    first = run(runner, "a-1")
    second = run(runner, "a-2")
    client = browser(key_for(name="maria"))
    fields = form_fields(client.get(url(first)).text)
    done = client.post(url(first, "/decide"), data={**fields, "action": "accept"})
    assert done.status_code == 303
    assert done.headers["location"].startswith(url(second))
    assert runner.summary(first)["status"] == "sent"
    review = runner.db.fetchone("SELECT status, decided_by, decided_at, decision FROM sg_reviews"
                                " WHERE thread_id = :t", {"t": first})
    assert review["status"] == "closed" and review["decided_by"] == "maria"
    assert review["decided_at"] and json.loads(review["decision"])["type"] == "accept"
    out = runner.db.fetchone("SELECT approved_by FROM sg_outbox WHERE thread_id = :t",
                             {"t": first})
    assert out["approved_by"] == "maria"
    nxt = client.get(done.headers["location"])
    assert "Done: a-1: accept (sent)" in nxt.text


def test_edit_respond_reject(runner: Runner, key_for, browser) -> None:
    edit_t, note_t, reject_t = run(runner, "d-1"), run(runner, "d-2"), run(runner, "d-3")
    client = browser(key_for())

    fields = form_fields(client.get(url(edit_t)).text)
    client.post(url(edit_t, "/decide"), data={**fields, "action": "edit",
                                               "reply": "Rotate it under Settings > Keys."})
    values = runner.graph.get_state({"configurable": {"thread_id": edit_t}}).values
    assert values["status"] == "sent" and values["final_reply"] == \
        "Rotate it under Settings > Keys."

    fields = form_fields(client.get(url(note_t)).text)
    noted = client.post(url(note_t, "/decide"), data={**fields, "action": "respond",
                                                       "note": "asked the API team"})
    assert noted.status_code == 303 and noted.headers["location"].startswith(url(note_t))
    assert "keeps waiting" in client.get(noted.headers["location"]).text
    assert runner.pending_review(note_t)  # still waiting
    assert runner.db.fetchone("SELECT status FROM sg_reviews WHERE thread_id = :t",
                              {"t": note_t})["status"] == "waiting"

    fields = form_fields(client.get(url(reject_t)).text)
    client.post(url(reject_t, "/decide"), data={**fields, "action": "reject",
                                                 "reason": "spam"})
    values = runner.graph.get_state({"configurable": {"thread_id": reject_t}}).values
    assert values["status"] == "rejected" and values["review"]["reason"] == "spam"

    # An edit with an empty reply is refused with the reason; nothing changes.
    fields = form_fields(client.get(url(note_t)).text)
    empty = client.post(url(note_t, "/decide"), data={**fields, "action": "edit", "reply": " "})
    assert empty.status_code == 422 and "non-empty reply" in empty.text
    unknown = client.post(url(note_t, "/decide"), data={**fields, "action": "launch"})
    assert unknown.status_code == 400
    assert runner.pending_review(note_t)


def test_second_reviewer_is_told_who_decided(runner: Runner, key_for, browser) -> None:
    thread = run(runner, "r-1")
    maria, omar = browser(key_for(name="maria")), browser(key_for(name="omar"))
    maria_fields = form_fields(maria.get(url(thread)).text)
    omar_fields = form_fields(omar.get(url(thread)).text)
    maria.post(url(thread, "/decide"), data={**maria_fields, "action": "accept"})
    late = omar.post(url(thread, "/decide"), data={**omar_fields, "action": "edit",
                                                    "reply": "My version."})
    assert late.status_code == 409
    assert "Already decided by maria." in late.text
    assert runner.graph.get_state({"configurable": {"thread_id": thread}}).values[
        "final_reply"] != "My version."
    assert "Already decided by maria." in omar.get(url(thread)).text


def test_stale_page_is_refused_with_a_warning(runner: Runner, key_for, browser) -> None:
    thread = run(runner, "s-1")
    client = browser(key_for())
    old = form_fields(client.get(url(thread)).text)
    before = client.get(url(thread, "/version")).json()["version"]
    assert before == old["version"]
    tool = key_for(name="bot")
    noted = TestClient(client.app).post(url(thread, "/decide"), data={
        "action": "respond", "note": "a colleague looked"}, headers={"x-api-key": tool})
    assert noted.status_code == 200, noted.text
    assert client.get(url(thread, "/version")).json()["version"] != before
    stale = client.post(url(thread, "/decide"), data={**old, "action": "accept"})
    assert stale.status_code == 409 and "changed since you opened it" in stale.text
    assert runner.pending_review(thread)  # not applied


def test_csrf_bad_ids_other_tenant_and_huge_bodies(runner: Runner, key_for, browser) -> None:
    mine = run(runner, "c-1", "acme")
    theirs = run(runner, "c-2", "globex")
    client = browser(key_for())
    fields = form_fields(client.get(url(mine)).text)

    missing = client.post(url(mine, "/decide"), data={"version": fields["version"],
                                                       "action": "accept"})
    assert missing.status_code == 403 and "CSRF" in missing.text
    wrong = client.post(url(mine, "/decide"), data={**fields, "csrf": "forged",
                                                     "action": "accept"})
    assert wrong.status_code == 403
    assert client.post("/inbox/logout").status_code == 403  # logout needs the token too
    assert runner.pending_review(mine)

    for bad in ("nope", "ticket:acme:" + "x" * 5000, "%00", "..%2F..%2Fetc"):
        assert client.get(f"/inbox/tickets/{bad}").status_code == 404
        assert client.post(f"/inbox/tickets/{bad}/decide",
                           data={**fields, "action": "accept"}).status_code == 404
        assert client.get(f"/inbox/tickets/{bad}/version").status_code == 404
    # Another tenant's ticket looks exactly like one that does not exist, and stays untouched.
    other = client.get(url(theirs))
    assert other.status_code == 404 and "c-2" not in other.text
    assert client.post(url(theirs, "/decide"), data={**fields, "action": "accept"}
                       ).status_code == 404
    assert client.get(url(theirs, "/version")).status_code == 404
    assert runner.pending_review(theirs)

    huge = client.post(url(mine, "/decide"), data={**fields, "action": "edit",
                                                    "reply": "x" * (MAX_FORM_BYTES + 1)})
    assert huge.status_code == 413
    too_long_login = client.post("/inbox/login", content=b"key=" + b"k" * (MAX_FORM_BYTES * 4),
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert too_long_login.status_code == 413
    long_reply = client.post(url(mine, "/decide"), data={**fields, "action": "edit",
                                                          "reply": "y" * 20_000})
    assert long_reply.status_code == 422 and "limit is 10000" in long_reply.text
    garbage = client.post(url(mine, "/decide"), content=b"\xff\xfe%%%&&&==",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert garbage.status_code == 403
    assert runner.pending_review(mine)

    # Tools with a key need no CSRF token (no ambient cookie), and are tenant-scoped too.
    tool = TestClient(client.app)
    assert tool.post(url(theirs, "/decide"), data={"action": "accept"},
                     headers={"x-api-key": key_for(name="bot")}).status_code == 404
    done = tool.post(url(mine, "/decide"), data={"action": "accept"},
                     headers={"x-api-key": key_for(name="bot")})
    assert done.json() == {"thread_id": mine, "status": "sent", "decided_by": "bot"}


def test_mark_as_resolved_outside_is_recorded_by_the_sweep(runner: Runner) -> None:
    thread = run(runner, "m-1")
    # What Agent Inbox's "Mark as Resolved" does: write the state as __end__, no resume.
    runner.graph.update_state({"configurable": {"thread_id": thread}}, None, as_node="__end__")
    result = runner.sweep()
    assert result["resolved_outside"] == [thread]
    row = runner.db.fetchone("SELECT status, decided_by, decision FROM sg_reviews "
                             "WHERE thread_id = :t", {"t": thread})
    assert row["status"] == "rejected" and row["decided_by"] == "unknown"
    assert json.loads(row["decision"])["args"] == "resolved outside the workflow"
    assert runner.sweep()["resolved_outside"] == []  # recorded once


def test_server_identity_wins_and_bookkeeping_happens_in_the_graph(runner: Runner) -> None:
    thread = run(runner, "g-1")
    # A resume the way the LangGraph server applies it: no claim by us beforehand, the
    # authenticated user in the run's configurable, and a `reviewer` the client made up.
    from langgraph.types import Command

    config = {"configurable": {"thread_id": thread, "langgraph_auth_user": {
        "identity": "alice@acme", "is_authenticated": True}}}
    runner.graph.invoke(Command(resume=[{"type": "accept", "args": None,
                                         "reviewer": "mallory"}]), config,
                        context=runner.ctx, durability="sync")
    row = runner.db.fetchone("SELECT status, decided_by, decided_at, decision FROM sg_reviews "
                             "WHERE thread_id = :t", {"t": thread})
    # Recorded as `api:<identity>`: a decision that came through the server, by that user.
    assert (row["status"] == "closed" and row["decided_by"] == "api:alice@acme"
            and row["decided_at"])
    assert json.loads(row["decision"]) == {"type": "accept", "args": None,
                                           "reviewer": "api:alice@acme"}
    assert runner.db.fetchone("SELECT approved_by FROM sg_outbox WHERE thread_id = :t",
                              {"t": thread})["approved_by"] == "api:alice@acme"

    # An unauthenticated server user does not count; the reviewer named by the client does.
    other = run(runner, "g-2")
    runner.graph.invoke(Command(resume={"type": "ignore", "args": "spam", "reviewer": "bob"}),
                        {"configurable": {"thread_id": other, "langgraph_auth_user": {
                            "identity": "", "is_authenticated": False}}},
                        context=runner.ctx, durability="sync")
    row = runner.db.fetchone("SELECT status, decided_by FROM sg_reviews WHERE thread_id = :t",
                             {"t": other})
    assert row == {"status": "rejected", "decided_by": "bob"}


@pytest.mark.postgres
def test_queue_benchmark_runs_on_postgres(pg_url: str, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    from benchmarks import inbox as bench

    bench.main(["--quick", "--database-url", pg_url])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["database"] == "postgres" and figures["reviews"] == 1000
    assert {"first_p95_ms", "last_p95_ms", "filtered_p95_ms", "meets_target"} <= set(figures)


def test_sessions_name_their_key_and_end_when_it_is_revoked(runner: Runner) -> None:
    from supportgraph.app.inbox.identity import DatabaseKeys
    from supportgraph.app.keys import add_key, revoke_key

    thread_id = run(runner, "h-revoke", "acme")
    key = add_key(runner.db, "acme", "reviewer", "acme-dora")["key"]
    app = create_app(lambda: RunnerBackend(runner),
                     InboxSettings(keys=DatabaseKeys(runner.db), secret="d" * 32))
    with TestClient(app, follow_redirects=False) as web:
        signed = web.post("/inbox/login", data={"key": key})
        assert signed.status_code == 303 and key not in signed.headers["set-cookie"]
        page = web.get(url(thread_id))
        assert page.status_code == 200
        fields = form_fields(page.text)
        assert revoke_key(runner.db, "acme-dora")
        # The very next request: the session's key is looked up by name and is gone.
        assert web.get("/inbox").headers["location"].startswith("/inbox/login")
        refused = web.post(url(thread_id, "/decide"), data={**fields, "action": "accept"})
        assert refused.status_code == 303 and refused.headers["location"].startswith(
            "/inbox/login")
    assert runner.db.fetchone("SELECT status FROM sg_reviews WHERE thread_id = :t",
                              {"t": thread_id})["status"] == "waiting"
