"""A database made before tenants were part of every key keeps working after the upgrade.

The old tables are built here as the previous version created them (no `tenant` on audit and
outbox rows, NULL tenants on runs and reviews, thread `ticket:ID` for a ticket without tenant),
then opened by this version, on SQLite and on Postgres.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from graph.persistence import Database, open_database
from supportgraph.app.lookup import AmbiguousTicket, UnknownTicket, resolve_ticket

OLD_SCHEMA = [
    """CREATE TABLE sg_audit (event_key TEXT PRIMARY KEY, ticket_id TEXT NOT NULL,
        thread_id TEXT NOT NULL, step TEXT NOT NULL, attempt INTEGER NOT NULL,
        started_at TEXT NOT NULL, duration_ms DOUBLE PRECISION NOT NULL, outcome TEXT NOT NULL,
        model_calls INTEGER NOT NULL DEFAULT 0, cache_hits INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0, cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        failure TEXT, detail TEXT)""",
    """CREATE TABLE sg_runs (thread_id TEXT PRIMARY KEY, ticket_id TEXT NOT NULL, tenant TEXT,
        status TEXT NOT NULL, summary TEXT NOT NULL, created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE sg_outbox (delivery_key TEXT PRIMARY KEY, ticket_id TEXT NOT NULL,
        thread_id TEXT NOT NULL, channel TEXT NOT NULL, customer_id TEXT, reply TEXT NOT NULL,
        approved_by TEXT, created_at TEXT NOT NULL, delivered_at TEXT)""",
    """CREATE TABLE sg_reviews (thread_id TEXT PRIMARY KEY, ticket_id TEXT NOT NULL,
        tenant TEXT, reason TEXT NOT NULL, queue TEXT NOT NULL, status TEXT NOT NULL,
        requested_at TEXT NOT NULL, deadline_at TEXT NOT NULL, decision TEXT, decided_by TEXT,
        decided_at TEXT)""",
    """CREATE TABLE sg_leases (thread_id TEXT PRIMARY KEY, owner TEXT NOT NULL,
        token TEXT NOT NULL, acquired_at TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
]
T0 = "2026-11-01T10:00:00.000000+00:00"
OLD_ROWS = [
    # ticket 1001 without tenant (thread ticket:1001), sent
    ("INSERT INTO sg_runs VALUES ('ticket:1001', '1001', NULL, 'sent', '{}', :t, :t)"),
    ("INSERT INTO sg_audit (event_key, ticket_id, thread_id, step, attempt, started_at, "
     "duration_ms, outcome) VALUES ('e1', '1001', 'ticket:1001', 'send', 1, :t, 1, 'ok')"),
    ("INSERT INTO sg_outbox (delivery_key, ticket_id, thread_id, channel, reply, created_at) "
     "VALUES (':1001', '1001', 'ticket:1001', 'chat', 'hello', :t)"),
    # ticket 1002 of acme and of globex, both waiting
    ("INSERT INTO sg_runs VALUES ('ticket:acme:1002', '1002', 'acme', 'awaiting_review', '{}',"
     " :t, :t)"),
    ("INSERT INTO sg_runs VALUES ('ticket:globex:1002', '1002', 'globex', 'awaiting_review', "
     "'{}', :t, :t)"),
    ("INSERT INTO sg_reviews (thread_id, ticket_id, tenant, reason, queue, status, requested_at,"
     " deadline_at) VALUES ('ticket:acme:1002', '1002', 'acme', 'low_confidence', 'agent', "
     "'waiting', :t, :t)"),
    ("INSERT INTO sg_audit (event_key, ticket_id, thread_id, step, attempt, started_at, "
     "duration_ms, outcome) VALUES ('e2', '1002', 'ticket:globex:1002', 'intake', 1, :t, 1, "
     "'ok')"),
    # an outbox row of acme whose run row is gone (pruned): the delivery key names the tenant
    ("INSERT INTO sg_outbox (delivery_key, ticket_id, thread_id, channel, reply, created_at) "
     "VALUES ('acme:1003', '1003', 'ticket:acme:1003', 'chat', 'hi', :t)"),
    # an audit row of a thread with no run row at all: default
    ("INSERT INTO sg_audit (event_key, ticket_id, thread_id, step, attempt, started_at, "
     "duration_ms, outcome) VALUES ('e3', '1004', 'ticket:1004', 'intake', 1, :t, 1, 'ok')"),
]


def check_migrated(db: Database) -> None:
    def tenants(sql: str) -> list[tuple]:
        return [tuple(r.values()) for r in db.fetchall(sql)]

    assert tenants("SELECT thread_id, tenant FROM sg_runs ORDER BY thread_id") == [
        ("ticket:1001", "default"), ("ticket:acme:1002", "acme"),
        ("ticket:globex:1002", "globex")]
    assert tenants("SELECT event_key, tenant FROM sg_audit ORDER BY event_key") == [
        ("e1", "default"), ("e2", "globex"), ("e3", "default")]
    assert tenants("SELECT delivery_key, tenant FROM sg_outbox ORDER BY delivery_key") == [
        (":1001", "default"), ("acme:1003", "acme")]
    assert tenants("SELECT tenant FROM sg_reviews") == [("acme",)]
    # Old tickets are found the new way.
    assert resolve_ticket(db, "1001", None) == ("default", "ticket:1001")
    assert resolve_ticket(db, "1002", "globex") == ("globex", "ticket:globex:1002")
    with pytest.raises(AmbiguousTicket, match="ticket 1002 exists for tenants acme, globex"):
        resolve_ticket(db, "1002", None)
    with pytest.raises(UnknownTicket):
        resolve_ticket(db, "1001", "acme")
    assert db.applied_migrations() == [1, 2, 3]  # recorded: later opens apply nothing
    db.migrate()  # again (another process starting): nothing changes
    assert len(db.fetchall("SELECT tenant FROM sg_audit WHERE tenant IS NULL")) == 0


def test_sqlite_database_of_the_previous_version_is_migrated(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "state.db") as conn:
        for statement in OLD_SCHEMA:
            conn.execute(statement)
        for statement in OLD_ROWS:
            conn.execute(statement, {"t": T0})
    db = open_database(None, home)
    try:
        check_migrated(db)
    finally:
        db.close()


def test_postgres_database_of_the_previous_version_is_migrated(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:  # a fresh, empty database
        for statement in OLD_SCHEMA:
            conn.execute(statement)
        for statement in OLD_ROWS:
            conn.execute(statement.replace(":t", "%(t)s"), {"t": T0})
    db = open_database(pg_url, Path("unused"))
    try:
        check_migrated(db)
    finally:
        db.close()


def test_a_ticket_run_by_the_previous_version_keeps_its_thread(demo_home: Path) -> None:
    """`ticket:ID` (no tenant) from before is found and reported, not run again."""
    from graph.context import Context
    from supportgraph.app.runner import Runner

    runner = Runner(Context())
    old = {"id": "old-1", "channel": "chat",
           "body": "Where can I download the PDF of last month's invoice?"}
    runner.graph.invoke({"ticket": old}, {"configurable": {"thread_id": "ticket:old-1"}},
                        context=runner.ctx, durability="sync")
    again = runner.run(old)
    assert again.thread_id == "ticket:old-1"
    assert again.note == "already processed; not run again"
    assert len(runner.db.fetchall("SELECT delivery_key FROM sg_outbox")) == 1
    fresh = runner.run({**old, "id": "new-1"})
    assert fresh.thread_id == "ticket:default:new-1"
