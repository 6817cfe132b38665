"""No byte at rest or in any output holds the PII corpus.

Stored: SQLite file and WAL, Postgres tables, Qdrant payloads. Output: `audit export`, `review
show`, the logs at DEBUG. Every corpus string (names, addresses, national ids, passwords, cloud
keys, dates of birth, cards, IBANs, phones, emails) goes through the whole workflow (intake,
draft, review with edited replies that quote PII too, send, learn into `resolved_cases`);
look-alikes that are not PII (numbers failing Luhn, an IBAN with wrong check digits) must still
be there afterwards. The redaction salt lives in the home, outside the database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graph.context import Context
from supportgraph.app.runner import Runner
from supportgraph.app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CORPUS = json.loads((ROOT / "tests" / "data" / "pii_corpus.json").read_text(encoding="utf-8"))
SECRETS = sorted({v for entry in CORPUS for v in entry["secret_values"]})
# Not PII: they fail Luhn / mod-97 and must survive redaction, readable by a human reviewer.
SURVIVORS = ["4111 1111 1111 1112", "1234567812345678", "ES91 2100 0418 4502 0005 1333"]
QUESTION = "How do I rotate my live API key without downtime?"
KB_TEXT = "\n".join(p.read_text(encoding="utf-8")
                    for p in (ROOT / "retrieval" / "kb").rglob("*.md"))


def tickets(prefix: str) -> list[dict]:
    out = []
    for i, entry in enumerate(CORPUS):
        body = f"{QUESTION} {entry['text']}" if i % 2 else entry["text"]
        if i < len(SURVIVORS):
            body += f"\nAlso, reference {SURVIVORS[i]} for your records."
        out.append({"id": f"{prefix}-{i:02d}", "channel": "email" if i % 3 == 0 else "chat",
                    "subject": "help" if i % 3 else entry["text"][:60], "body": body,
                    "tenant": "acme" if i % 4 == 0 else None})
    return [{k: v for k, v in t.items() if v is not None} for t in out]


def test_survivors_are_not_pii_and_overlap_no_secret() -> None:
    from supportgraph.text.pii import redact

    for survivor in SURVIVORS:
        assert redact(survivor, salt="test-salt-0123456789") == survivor
        assert not [s for s in SECRETS if s in survivor]


def run_everything(runner: Runner, prefix: str) -> dict[str, int]:
    counts = {"sent": 0, "reviewed": 0, "learned": 0}
    for i, ticket in enumerate(tickets(prefix)):
        outcome = runner.run(ticket)
        if outcome.summary["status"] == "awaiting_review":
            counts["reviewed"] += 1
            payload = runner.pending_review(outcome.thread_id)
            if payload["config"]["allow_accept"] and i % 2:
                decision = {"type": "accept", "reviewer": "rev"}
            else:
                # The reviewer quotes PII back; none of it may be stored either.
                quoted = CORPUS[i]["text"]
                decision = {"type": "edit", "reviewer": "rev",
                            "args": {"reply": f"Thanks for the details ({quoted}). Done."}}
            outcome = runner.decide(outcome.thread_id, decision)
        assert outcome.summary["status"] == "sent", outcome.summary
        counts["sent"] += 1
    from retrieval.cases import COLLECTION

    counts["learned"] = sum(1 for _, p in runner.res.store.scroll_payloads(COLLECTION)
                            if str(p.get("doc_id", "")).startswith(prefix)
                            or str(p.get("ticket_id", "")).startswith(prefix))
    return counts


def assert_clean(blob: bytes, where: str) -> None:
    leaked = [s for s in SECRETS if s.encode() in blob]
    assert not leaked, f"PII at rest in {where}: {leaked}"


def assert_qdrant_clean(runner: Runner) -> None:
    names = runner.res.store.collections()
    assert "resolved_cases" in names
    for name in names:
        payloads = runner.res.store.scroll_payloads(name)
        text = json.dumps([p for _, p in payloads], ensure_ascii=False)
        # Strings that the shipped knowledge base itself contains are not customer data.
        leaked = [s for s in SECRETS if s in text and s not in KB_TEXT]
        assert not leaked, f"PII in Qdrant collection {name}: {leaked}"


def pg_dump_text(url: str, pg_stored) -> bytes:
    """Every value of every table we or LangGraph created."""
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert {"sg_audit", "sg_runs", "sg_outbox", "sg_reviews", "checkpoints",
            "checkpoint_blobs", "checkpoint_writes"} <= set(tables)
    return pg_stored(url, tables)


def test_init_keeps_a_private_salt_in_the_home(template_home: Path) -> None:
    import stat

    from graph.salt import salt_path

    path = salt_path(template_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64


def outputs_are_clean(runner: Runner, tmp_path: Path, capsys, caplog) -> None:
    """What a person or another program reads: export, review show, logs."""
    from datetime import UTC, datetime

    from supportgraph.app.cli import main

    out = tmp_path / "export.jsonl"
    today = datetime.now(UTC).date().isoformat()
    assert main(["audit", "export", "--since", today, "--out", str(out)]) == 0
    assert_clean(out.read_bytes(), "audit export")
    for row in runner.db.fetchall("SELECT thread_id FROM sg_reviews"):
        main(["review", "show", row["thread_id"]])
    printed = capsys.readouterr()
    assert_clean((printed.out + printed.err).encode(), "CLI output")
    assert_clean(caplog.text.encode(), "the logs")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_no_pii_at_rest_anywhere(backend: str, demo_home: Path, request, sqlite_stored,
                                 pg_stored, tmp_path: Path, capsys, caplog,
                                 monkeypatch) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    url = request.getfixturevalue("pg_url") if backend == "postgres" else ""
    if url:
        monkeypatch.setenv("DATABASE_URL", url)
    runner = Runner(Context().with_settings(Settings(home=str(demo_home), database_url=url)))
    counts = run_everything(runner, f"pii{backend[:2]}")
    assert counts["sent"] == len(CORPUS)
    assert counts["reviewed"] >= 5 and counts["learned"] >= len(CORPUS) // 2, counts

    if backend == "sqlite":
        runner.db.fetchall("SELECT 1")  # the WAL is part of the stored bytes too
        stored = sqlite_stored(demo_home)
        where = "the SQLite file and WAL"
    else:
        stored = pg_dump_text(url, pg_stored)
        where = "the Postgres tables"
    assert len(stored) > 10_000
    assert_clean(stored, where)
    salt = (demo_home / "pii_salt").read_bytes().strip()
    assert salt not in stored  # the HMAC key never sits beside the tokens
    for survivor in SURVIVORS:
        assert survivor.encode() in stored, f"{survivor} was redacted but is not PII"
    assert_qdrant_clean(runner)
    outputs_are_clean(runner, tmp_path, capsys, caplog)


def test_outbox_deliverables_are_sealed_at_rest_and_erased_after_delivery(
        demo_home: Path, monkeypatch: pytest.MonkeyPatch, sqlite_stored) -> None:
    """The customer receives the real reply and address; the database never holds them plain."""
    from supportgraph.app.delivery import deliver_due
    from supportgraph.app.settings import DeliverySettings
    from tests.integration.test_delivery import Receiver

    monkeypatch.setenv("LANGGRAPH_AES_KEY", "s" * 32)
    runner = Runner(Context().with_settings(Settings(home=str(demo_home))))
    quoted = {}
    for i, entry in enumerate(CORPUS[:4]):
        outcome = runner.run({"id": f"sealed-{i}", "channel": "email", "subject": "help",
                              "body": f"Can you recommend a good banana bread recipe? "
                                      f"{entry['text']}"}, recipient=f"customer{i}@example.org")
        assert outcome.summary["status"] == "awaiting_review"
        reply = f"Thanks for the details ({entry['text']}). Done."
        runner.decide(outcome.thread_id, {"type": "edit", "reviewer": "rev",
                                          "args": {"reply": reply}})
        quoted[f"sealed-{i}"] = reply
    runner.db.fetchall("SELECT 1")
    assert_clean(sqlite_stored(demo_home), "the SQLite file with deliveries pending")
    assert b"customer0@example.org" not in sqlite_stored(demo_home)

    receiver = Receiver()
    try:
        report = deliver_due(runner.db, DeliverySettings({
            "SUPPORTGRAPH_WEBHOOK_URL": receiver.url,
            "SUPPORTGRAPH_WEBHOOK_SECRET": "x" * 20, "LANGGRAPH_AES_KEY": "s" * 32}))
    finally:
        receiver.close()
    assert report.delivered == 4, report.errors
    got = {p["ticket_id"]: p for p in receiver.acted.values()}
    for i in range(4):
        assert got[f"sealed-{i}"]["reply"] == quoted[f"sealed-{i}"]  # the real text
        assert got[f"sealed-{i}"]["recipient"] == f"customer{i}@example.org"
    assert runner.db.fetchone("SELECT count(*) AS n FROM sg_vault")["n"] == 0
    runner.db.fetchall("SELECT 1")
    assert_clean(sqlite_stored(demo_home), "the SQLite file after delivery")
