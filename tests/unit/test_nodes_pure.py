"""Pure helpers of the nodes and the graph package: resume parsing, citations, grounding,
the run summary, SQL placeholder translation and the SQLite database facade."""

from __future__ import annotations

from datetime import datetime

import pytest

from graph.persistence import MIGRATIONS, open_database
from graph.persistence.database import _to_psycopg
from graph.summary import WORKFLOW_ID, build_summary
from nodes.confidence import grounding
from nodes.draft import citations_of
from nodes.human_review import MAX_REPLY_CHARS, InvalidResume, parse_resume

# --------------------------------------------------------------------------- parse_resume


def test_accept_with_a_draft():
    decision = parse_resume({"type": "accept", "args": None, "reviewer": "maria"},
                            has_draft=True)
    assert decision["type"] == "accept"
    assert decision["reviewer"] == "maria"
    assert datetime.fromisoformat(decision["decided_at"]).tzinfo is not None


def test_accept_without_a_draft_is_rejected():
    with pytest.raises(InvalidResume, match="no draft to accept"):
        parse_resume({"type": "accept"}, has_draft=False)


def test_reviewer_defaults_to_unknown_and_is_capped():
    assert parse_resume({"type": "accept"}, has_draft=True)["reviewer"] == "unknown"
    long = parse_resume({"type": "accept", "reviewer": "r" * 500}, has_draft=True)
    assert len(long["reviewer"]) == 200


@pytest.mark.parametrize("args", [
    {"reply": "  Thanks! Your refund is on its way.  "},
    "  Thanks! Your refund is on its way.  ",
    # Agent Inbox sends the edited ActionRequest: {"action": ..., "args": {...}}
    {"action": "send_reply", "args": {"reply": "  Thanks! Your refund is on its way.  "}},
])
def test_edit_shapes(args):
    decision = parse_resume({"type": "edit", "args": args}, has_draft=False)
    assert decision["type"] == "edit"
    assert decision["reply"] == "Thanks! Your refund is on its way."


@pytest.mark.parametrize("args", [
    None, {}, {"reply": ""}, {"reply": "   \n "}, "", {"reply": 42},
    {"action": "send_reply", "args": {"reply": ""}}, {"action": "send_reply", "args": {}},
])
def test_empty_edit_is_rejected(args):
    with pytest.raises(InvalidResume, match="edit needs a non-empty reply"):
        parse_resume({"type": "edit", "args": args}, has_draft=True)


def test_oversize_edit_is_rejected_and_the_limit_is_inclusive():
    with pytest.raises(InvalidResume, match=r"10001 chars; the limit is 10000"):
        parse_resume({"type": "edit", "args": {"reply": "x" * (MAX_REPLY_CHARS + 1)}},
                     has_draft=True)
    ok = parse_resume({"type": "edit", "args": {"reply": "x" * MAX_REPLY_CHARS}}, has_draft=True)
    assert len(ok["reply"]) == MAX_REPLY_CHARS


def test_response_needs_a_note():
    assert parse_resume({"type": "response", "args": "asked billing"},
                        has_draft=True)["note"] == "asked billing"
    assert parse_resume({"type": "response", "args": {"note": " checking "}},
                        has_draft=False)["note"] == "checking"
    for args in (None, "", "  ", {}):
        with pytest.raises(InvalidResume, match="response needs a non-empty note"):
            parse_resume({"type": "response", "args": args}, has_draft=True)
    with pytest.raises(InvalidResume, match="response takes a text note"):
        parse_resume({"type": "response", "args": {"note": ["a", "b"]}}, has_draft=True)


def test_ignore_with_and_without_a_reason():
    assert parse_resume({"type": "ignore", "args": None},
                        has_draft=True)["reason"] == "rejected by reviewer"
    assert parse_resume({"type": "ignore", "args": {"reason": "spam "}},
                        has_draft=True)["reason"] == "spam"
    assert parse_resume({"type": "ignore", "args": "duplicate"},
                        has_draft=False)["reason"] == "duplicate"
    with pytest.raises(InvalidResume, match="ignore takes a text note"):
        parse_resume({"type": "ignore", "args": {"reason": 7}}, has_draft=True)


def test_list_wrapped_value_is_unwrapped():
    decision = parse_resume([{"type": "edit", "args": {"reply": "Done."}}], has_draft=True)
    assert decision["reply"] == "Done."


@pytest.mark.parametrize("value", ["accept", None, 3, [], [{"type": "accept"}] * 2, ("x",)])
def test_non_dict_is_rejected(value):
    with pytest.raises(InvalidResume, match="must be an object with 'type' and 'args'"):
        parse_resume(value, has_draft=True)


@pytest.mark.parametrize("kind", ["approve", "ACCEPT", None, "", 1])
def test_unknown_type_is_rejected(kind):
    with pytest.raises(InvalidResume, match="unknown decision type") as info:
        parse_resume({"type": kind, "args": None}, has_draft=True)
    assert "accept" in str(info.value) and "edit" in str(info.value)


def test_invalid_resume_is_a_value_error():
    assert issubclass(InvalidResume, ValueError)


# --------------------------------------------------------------------------- citations_of

PASSAGES = [{"doc_id": f"doc-{i}", "text": "", "title": f"T{i}"} for i in range(1, 4)]


def test_citations_map_numbers_to_doc_ids_in_order():
    text = "See [2] and [1], and again [2].\n\nSources:\n[1] T1 (doc-1)\n[2] T2 (doc-2)"
    assert citations_of(text, PASSAGES) == ["doc-1", "doc-2"]


def test_out_of_range_citations_are_ignored():
    assert citations_of("Wrong [0], [4], [99] and [3].", PASSAGES) == ["doc-3"]
    assert citations_of("Only [7].", PASSAGES) == []
    assert citations_of("Anything [1].", []) == []
    assert citations_of("No citations here, [a], [1.5], [ 1 ].", PASSAGES) == []


# --------------------------------------------------------------------------- grounding

EVIDENCE = [{"doc_id": "d1", "text": "You can download every invoice as a PDF from the Billing "
             "page of the dashboard. Refunds for annual plans are available within 14 days."}]
GROUNDED = (
    "Hi there,\n\nThanks for reaching out and for your patience with this matter.\n\n"
    "You can download every invoice as a PDF from the Billing page [1].\n\n"
    "If anything is still unclear, just reply to this message and we will help.\n\n"
    "Best regards,\nThe Support Team\n\nSources:\n[1] Invoices (d1)"
)


def test_greeting_and_sign_off_without_citations_do_not_count():
    assert grounding(GROUNDED, EVIDENCE) == 1.0


def test_unsupported_cited_sentence_lowers_grounding():
    invented = GROUNDED.replace(
        "Billing page [1].",
        "Billing page [1]. Our quantum teleportation service delivers parcels overnight [1].")
    assert grounding(invented, EVIDENCE) == 0.5


def test_grounding_without_evidence_or_claims_is_zero():
    assert grounding(GROUNDED, []) == 0.0
    no_claims = "Hi there,\n\nThanks for your patience today.\n\nBest regards"
    assert grounding(no_claims, EVIDENCE) == 0.0


def test_sources_list_is_not_part_of_the_answer():
    # A Sources section full of unsupported words must not change the score.
    noisy = GROUNDED + "\n[2] Completely unrelated zebra telescope banana article (x) [2]"
    assert grounding(noisy, EVIDENCE) == 1.0


# --------------------------------------------------------------------------- build_summary

SECTION_8_KEYS = {"workflow_id", "thread_id", "ticket_id", "status", "intent", "route",
                  "confidence", "total_duration_ms", "model_calls", "cache_hits", "retries",
                  "cost_total", "step_breakdown", "failures"}


def usage(step, ms, cost, calls=0, hits=0, retries=0):
    return {"step": step, "duration_ms": ms, "cost": cost, "model_calls": calls,
            "cache_hits": hits, "retries": retries}


def test_summary_has_the_section_8_keys_and_sums_usage():
    state = {
        "normalized": {"id": "t-1", "tenant": "acme"},
        "intent": {"intent": "refund_request", "confidence": 0.93, "route": "billing",
                   "out_of_scope": False, "oos_score": 0.1},
        "route": "billing",
        "confidence": {"score": 0.91, "signals": {}},
        "usage": [usage("intake", 1.5, 0.0), usage("classify", 400.25, 0.0001, 1),
                  usage("draft", 2000.0, 0.0052, 2, 1, 1), usage("rewrite", 100.0, 0.003, 1, 1)],
        "failures": ["draft: no citations"],
    }
    summary = build_summary(state, thread_id="ticket:t-1", status="sent")
    assert SECTION_8_KEYS <= set(summary)
    assert summary["workflow_id"] == WORKFLOW_ID
    assert (summary["thread_id"], summary["ticket_id"], summary["status"]) == \
        ("ticket:t-1", "t-1", "sent")
    assert (summary["intent"], summary["route"], summary["confidence"]) == \
        ("refund_request", "billing", 0.91)
    assert summary["total_duration_ms"] == pytest.approx(2501.75)
    assert summary["model_calls"] == 4
    assert summary["cache_hits"] == 2
    assert summary["retries"] == 1
    assert summary["cost_total"] == pytest.approx(0.0083)
    assert [s["step"] for s in summary["step_breakdown"]] == \
        ["intake", "classify", "draft", "rewrite"]
    assert summary["step_breakdown"][1] == {"step": "classify", "duration_ms": 400.25,
                                            "cost": 0.0001, "model_calls": 1}
    assert summary["failures"] == ["draft: no citations"]


def test_summary_lists_steps_that_ran_side_by_side_by_their_start():
    def usage(step: str, started_at: str | None = None) -> dict:
        entry = {"step": step, "duration_ms": 1.0, "cost": 0.0, "model_calls": 0,
                 "cache_hits": 0, "retries": 0, "models": []}
        return {**entry, "started_at": started_at} if started_at else entry

    # send and learn share a superstep: LangGraph applies learn's writes first, but send began
    # first, and `audit show` (ordered by start) says so; the summary must agree.
    state = {"usage": [usage("confidence", "2026-12-01T10:00:00.000001+00:00"),
                       usage("learn", "2026-12-01T10:00:00.000300+00:00"),
                       usage("send", "2026-12-01T10:00:00.000200+00:00"),
                       usage("audit", "2026-12-01T10:00:00.000900+00:00")]}
    summary = build_summary(state, thread_id="th", status="sent")
    assert [s["step"] for s in summary["step_breakdown"]] == ["confidence", "send", "learn",
                                                              "audit"]
    # Entries from before start times were recorded keep their order, ahead of newer ones.
    old = {"usage": [usage("intake"), usage("classify"), usage("audit", "2026-12-01T10:00:01")]}
    assert [s["step"] for s in build_summary(old, thread_id="th", status="sent")[
        "step_breakdown"]] == ["intake", "classify", "audit"]


def test_summary_of_an_empty_failed_run():
    summary = build_summary({"ticket": {"id": "raw-1"}, "error": "bad_input: empty"},
                            thread_id="th", status="failed")
    assert SECTION_8_KEYS <= set(summary)
    assert summary["ticket_id"] == "raw-1"
    assert (summary["intent"], summary["route"], summary["confidence"]) == (None, None, None)
    assert summary["total_duration_ms"] == 0 and summary["cost_total"] == 0
    assert (summary["model_calls"], summary["cache_hits"], summary["retries"]) == (0, 0, 0)
    assert summary["step_breakdown"] == [] and summary["failures"] == []
    assert summary["error"] == "bad_input: empty"


# --------------------------------------------------------------------------- _to_psycopg


def test_named_placeholders_become_pyformat():
    sql = "INSERT INTO t (a, b_2) VALUES (:a, :b_2) ON CONFLICT (a) DO UPDATE SET b_2 = :b_2"
    assert _to_psycopg(sql) == ("INSERT INTO t (a, b_2) VALUES (%(a)s, %(b_2)s) ON CONFLICT (a) "
                                "DO UPDATE SET b_2 = %(b_2)s")


def test_casts_and_literal_percent_are_kept_safe():
    sql = "SELECT :value::text, x::jsonb FROM t WHERE name LIKE 'a%' AND k = :key"
    assert _to_psycopg(sql) == ("SELECT %(value)s::text, x::jsonb FROM t WHERE name LIKE 'a%%' "
                                "AND k = %(key)s")
    assert _to_psycopg("SELECT '12:30', 100 % 7") == "SELECT '12:30', 100 %% 7"
    assert _to_psycopg("SELECT 1") == "SELECT 1"


# --------------------------------------------------------------------------- open_database


@pytest.fixture
def db(tmp_path):
    database = open_database(None, tmp_path / "home")
    yield database
    database.close()


def test_sqlite_database_is_created_and_migrated(db, tmp_path):
    assert db.dialect == "sqlite"
    assert (tmp_path / "home" / "state.db").exists()
    tables = {r["name"] for r in db.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sg_audit", "sg_runs", "sg_outbox", "sg_reviews", "sg_model_cache"} <= tables


def test_migrate_twice_is_fine(db):
    db.migrate()
    db._migrated = False  # as a new process would: the recorded versions are not re-applied
    db.migrate()
    assert db.applied_migrations() == [m.version for m in MIGRATIONS]
    for statement in MIGRATIONS[0].steps:  # the base tables' statements stay idempotent
        db.execute(statement)


def test_one_root_per_home_shares_one_database(tmp_path):
    from supportgraph.app.services import close_services, services_for
    from supportgraph.app.settings import Settings

    try:
        root = services_for(Settings(home=str(tmp_path / "home")))
        assert root.db is root.db
        assert services_for(Settings(home=str(tmp_path / "home" / ".." / "home"))) is root
        other = open_database(None, tmp_path / "home")  # a caller's own handle, its to close
        assert other is not root.db and other.target == root.db.target
        other.close()
    finally:
        close_services()
    assert root.closed
    assert services_for(Settings(home=str(tmp_path / "home"))) is not root  # opened anew
    close_services()


def test_upsert_and_fetch_dicts(db):
    upsert = """INSERT INTO sg_runs (thread_id, ticket_id, tenant, status, summary, created_at,
                   updated_at)
               VALUES (:thread_id, :ticket_id, :tenant, :status, :summary, :now, :now)
               ON CONFLICT (thread_id) DO UPDATE SET status = excluded.status,
                   summary = excluded.summary, updated_at = excluded.updated_at"""
    row = {"thread_id": "th-1", "ticket_id": "t-1", "tenant": None, "status": "processing",
           "summary": "{}", "now": "2025-01-01T00:00:00+00:00"}
    assert db.execute(upsert, row) == 1
    db.execute(upsert, {**row, "status": "sent", "summary": '{"ok": 1}',
                        "now": "2025-01-02T00:00:00+00:00"})
    rows = db.fetchall("SELECT * FROM sg_runs WHERE ticket_id = :t", {"t": "t-1"})
    assert len(rows) == 1
    (got,) = rows
    assert isinstance(got, dict)
    assert got["status"] == "sent" and got["summary"] == '{"ok": 1}'
    assert got["created_at"] == "2025-01-01T00:00:00+00:00"
    assert got["updated_at"] == "2025-01-02T00:00:00+00:00"
    assert db.fetchone("SELECT status FROM sg_runs WHERE thread_id = :t", {"t": "th-1"}) == \
        {"status": "sent"}
    assert db.fetchone("SELECT status FROM sg_runs WHERE thread_id = :t", {"t": "nope"}) is None
    assert db.fetchall("SELECT * FROM sg_runs WHERE thread_id = 'nope'") == []


def test_failed_statement_rolls_back(db):
    with pytest.raises(Exception, match="NOT NULL"):
        db.execute("INSERT INTO sg_runs (thread_id, ticket_id, status, summary, created_at, "
                   "updated_at) VALUES ('x', NULL, 's', '{}', 'a', 'b')")
    assert db.fetchall("SELECT * FROM sg_runs") == []


def test_non_postgres_url_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="postgresql://"):
        open_database("mysql://localhost/db", tmp_path)


# --------------------------------------------------------------------------- learn


def test_learn_trusts_what_is_being_delivered_beside_send():
    from nodes.learn import trusted

    # Beside `send`, the status is still `processing`: a confident draft is learned...
    assert trusted({"status": "processing", "confidence": {"score": 0.9}}, 0.8) == "auto"
    assert trusted({"status": "processing", "confidence": {"score": 0.7},
                    "review": {"type": "edit", "reply": "x"}}, 0.8) == "human"
    assert trusted({"status": "processing", "review": {"type": "accept"}}, 0.8) == "human"
    # ...but never a reply below the threshold, nor a closed, failed or erroring ticket.
    assert trusted({"status": "processing", "confidence": {"score": 0.79}}, 0.8) is None
    for status in ("rejected", "stalled", "failed"):
        assert trusted({"status": status, "confidence": {"score": 0.99},
                        "review": {"type": "accept"}}, 0.8) is None
    assert trusted({"status": "processing", "error": "draft: boom",
                    "confidence": {"score": 0.99}}, 0.8) is None


def test_learn_and_send_deliver_the_same_reply():
    from nodes.send import reply_of

    drafts = [{"text": "first"}, {"text": "latest [1]"}]
    assert reply_of({"drafts": drafts}) == "latest [1]"
    assert reply_of({"drafts": drafts, "final_reply": "edited by a human"}) == "edited by a human"
