"""Our tables are versioned: numbered migrations, each applied once, in order, on both backends.

`sg_schema_migrations` records what a database has; opening it applies what it lacks. Old homes
(made before the table existed) upgrade the same way (tests/integration/test_tenant_migration.py
has one with old rows).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from graph.persistence import MIGRATIONS, SCHEMA_VERSION, Database, Migration, open_database
from graph.persistence.pool import _postgres_pool

OUR_TABLES = {"sg_audit", "sg_runs", "sg_outbox", "sg_reviews", "sg_model_cache", "sg_deliveries",
              "sg_vault", "sg_leases", "sg_api_keys", "sg_schema_migrations"}


def sqlite_db(tmp_path: Path) -> Callable[[], Database]:
    path = str(tmp_path / "state.db")
    return lambda: Database(dialect="sqlite", target=path, handle=path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Database]]:
    """Opens a new `Database` (as a new process would) on one empty database per test."""
    opened: list[Database] = []
    if request.param == "sqlite":
        make = sqlite_db(tmp_path)
    else:
        url = request.getfixturevalue("pg_url")

        def make() -> Database:
            return Database(dialect="postgres", target=url, handle=_postgres_pool(url))

    def tracked() -> Database:
        db = make()
        opened.append(db)
        return db

    yield tracked
    for db in opened:
        db.close()


def tables(db: Database) -> set[str]:
    if db.dialect == "sqlite":
        rows = db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = db.fetchall("SELECT table_name AS name FROM information_schema.tables "
                           "WHERE table_schema = current_schema()")
    return {r["name"] for r in rows if r["name"].startswith("sg_")}


def test_an_empty_database_gets_every_migration_once_in_order(new_db) -> None:
    db = new_db()
    assert db.applied_migrations() == []
    db.migrate()
    assert db.applied_migrations() == [m.version for m in MIGRATIONS] == [1, 2, 3]
    assert SCHEMA_VERSION == 3
    assert tables(db) == OUR_TABLES
    rows = db.fetchall("SELECT version, name, applied_at FROM sg_schema_migrations "
                       "ORDER BY version")
    assert [r["name"] for r in rows] == [m.name for m in MIGRATIONS]
    assert all(r["applied_at"] for r in rows)
    assert [r["applied_at"] for r in rows] == sorted(r["applied_at"] for r in rows)
    # Our tables take writes with the columns the later migrations added.
    db.execute("INSERT INTO sg_reviews (thread_id, ticket_id, tenant, reason, route, queue, "
               "status, requested_at, deadline_at) VALUES ('t', '1', 'acme', 'out_of_scope', "
               "'human', 'agent', 'waiting', 'a', 'b')")

    again = new_db()  # another process starting on the same database
    again.migrate()
    assert len(again.fetchall("SELECT version FROM sg_schema_migrations")) == 3


def test_a_new_migration_runs_once_even_when_it_could_not_run_twice(new_db) -> None:
    first = new_db()
    first.migrate()
    # Not idempotent: applied a second time it would fail (the table exists, no IF NOT EXISTS).
    extra = (*MIGRATIONS, Migration(4, "a counter", (
        "CREATE TABLE sg_counter (n INTEGER NOT NULL)",
        "INSERT INTO sg_counter (n) VALUES (1)")))
    for _ in range(2):
        db = new_db()
        db.migrate(extra)
        assert db.applied_migrations() == [1, 2, 3, 4]
    assert first.fetchall("SELECT n FROM sg_counter") == [{"n": 1}]


def test_many_processes_migrating_at_once_apply_each_migration_once(new_db) -> None:
    extra = (*MIGRATIONS, Migration(4, "a counter", (
        "CREATE TABLE sg_counter (n INTEGER NOT NULL)",
        "INSERT INTO sg_counter (n) VALUES (1)")))
    dbs = [new_db() for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(dbs))

    def run(db: Database) -> None:
        try:
            start.wait()
            db.migrate(extra)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(db,)) for db in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert dbs[0].applied_migrations() == [1, 2, 3, 4]
    assert dbs[0].fetchall("SELECT n FROM sg_counter") == [{"n": 1}]


def test_a_failing_migration_leaves_nothing_half_done_and_is_retried(new_db) -> None:
    db = new_db()
    db.migrate()
    broken = (*MIGRATIONS, Migration(4, "half", (
        "CREATE TABLE sg_half (n INTEGER)",
        "INSERT INTO sg_half (n) VALUES (1)",
        "INSERT INTO sg_no_such_table (n) VALUES (1)")))
    failing = new_db()
    with pytest.raises(Exception, match="sg_no_such_table"):
        failing.migrate(broken)
    assert db.applied_migrations() == [1, 2, 3]
    assert "sg_half" not in tables(db)  # the table made before the failure was rolled back

    fixed = (*MIGRATIONS, Migration(4, "half", (
        "CREATE TABLE sg_half (n INTEGER)", "INSERT INTO sg_half (n) VALUES (1)")))
    retried = new_db()
    retried.migrate(fixed)
    assert retried.applied_migrations() == [1, 2, 3, 4]
    assert retried.fetchall("SELECT n FROM sg_half") == [{"n": 1}]


def test_a_home_of_a_release_without_the_migrations_table_is_upgraded(tmp_path: Path) -> None:
    # The latest schema before versioning: every table, tenant columns, but no review route.
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "state.db") as conn:
        conn.execute("CREATE TABLE sg_reviews (thread_id TEXT PRIMARY KEY, ticket_id TEXT NOT "
                     "NULL, tenant TEXT, reason TEXT NOT NULL, queue TEXT NOT NULL, status TEXT "
                     "NOT NULL, requested_at TEXT NOT NULL, deadline_at TEXT NOT NULL, "
                     "decision TEXT, decided_by TEXT, decided_at TEXT)")
        conn.execute("INSERT INTO sg_reviews (thread_id, ticket_id, tenant, reason, queue, "
                     "status, requested_at, deadline_at) VALUES ('ticket:acme:7', '7', 'acme', "
                     "'low_confidence', 'agent', 'waiting', 'a', 'b')")
    db = open_database(None, home)
    try:
        assert db.applied_migrations() == [1, 2, 3]
        row = db.fetchone("SELECT tenant, reason, route FROM sg_reviews")
        assert row == {"tenant": "acme", "reason": "low_confidence", "route": None}
        assert tables(db) == OUR_TABLES
    finally:
        db.close()
