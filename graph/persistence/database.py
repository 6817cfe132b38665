"""The workflow's database: LangGraph checkpoints plus our own tables, in one place.

SQLite (`$SUPPORTGRAPH_HOME/state.db`) is the zero-setup default; `DATABASE_URL=postgresql://...`
switches both the checkpointer and our tables to Postgres. Our SQL is written once with `:name`
placeholders and translated for psycopg, so every query runs unchanged on both.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from graph.persistence.migrations import (
    _MIGRATION_LOCK,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    AddColumn,
    Migration,
)
from graph.persistence.pool import _postgres_pool

log = logging.getLogger(__name__)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat()


DEFAULT_TENANT = "default"
"""The tenant of tickets that name none (and of every row written before tenants were keys)."""


def tenant_key(tenant: str | None) -> str:
    """The tenant as stored in our tables: a ticket without one belongs to `default`."""
    return tenant or DEFAULT_TENANT


_PARAM = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")


@functools.lru_cache(maxsize=512)
def _to_psycopg(sql: str) -> str:
    """Translate `:name` placeholders to psycopg's `%(name)s` (and escape literal `%`)."""
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


class Database:
    """A small, thread-safe facade over SQLite or a Postgres connection pool."""

    def __init__(self, *, dialect: Literal["sqlite", "postgres"], target: str, handle: Any):
        self.dialect = dialect
        self.target = target
        self._handle = handle
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._migrated = False

    @property
    def handle(self) -> Any:
        """The sqlite3 path or the psycopg pool, for the checkpointer to share."""
        return self._handle

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        if self.dialect == "sqlite":
            with self._lock:
                if self._conn is None:
                    # One long-lived connection: closing the last one checkpoints the WAL
                    # (about 20 ms a write); the lock serialises this process's threads.
                    self._conn = _sqlite_connect(self._handle)
                cur = self._conn.cursor()
                try:
                    yield cur
                    self._conn.commit()
                except BaseException:
                    self._conn.rollback()
                    raise
                finally:
                    cur.close()
        else:
            with self._handle.connection() as conn, conn.cursor() as cur:
                yield cur

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run one statement in its own committed transaction; returns the row count."""
        with self._cursor() as cur:
            cur.execute(self._sql(sql), dict(params or {}))
            return cur.rowcount

    def fetchone(self, sql: str, params: Mapping[str, Any] | None = None) -> dict | None:
        """Run a query and return its first row as a dict (or None)."""
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict]:
        """Run a query and return every row as a dict."""
        with self._cursor() as cur:
            cur.execute(self._sql(sql), dict(params or {}))
            if cur.description is None:
                return []
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) if not isinstance(row, dict) else row
                    for row in cur.fetchall()]

    def applied_migrations(self) -> list[int]:
        """The versions recorded in `sg_schema_migrations`, in order ([] before the first)."""
        exists = ("SELECT to_regclass('sg_schema_migrations') AS present"
                  if self.dialect == "postgres" else
                  "SELECT name AS present FROM sqlite_master WHERE type = 'table' "
                  "AND name = 'sg_schema_migrations'")
        if not (self.fetchone(exists) or {}).get("present"):
            return []
        rows = self.fetchall("SELECT version FROM sg_schema_migrations ORDER BY version")
        return [int(row["version"]) for row in rows]

    def migrate(self, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        """Apply the migrations this database lacks, in order, each once; safe from many processes.

        Every process calls this when it opens the database: when nothing is pending it costs
        two small queries and takes no lock. Otherwise one process at a time migrates
        (Postgres: an advisory lock; SQLite: an immediate transaction), and each migration
        commits together with its row in `sg_schema_migrations`, so a failed one leaves nothing
        half-applied.
        """
        if self._migrated:
            return
        done = set(self.applied_migrations())
        for migration in migrations:
            if migration.version in done:
                continue
            with self._migration_cursor() as cur:
                # Made under the lock: concurrent CREATE TABLEs can collide on Postgres.
                cur.execute(MIGRATIONS_TABLE)
                cur.execute(self._sql("SELECT 1 FROM sg_schema_migrations WHERE version = :v"),
                            {"v": migration.version})
                if cur.fetchone() is not None:
                    continue  # another process applied it while this one waited
                for step in migration.steps:
                    if isinstance(step, AddColumn):
                        self._add_column(cur, step)
                    else:
                        find = "strpos" if self.dialect == "postgres" else "instr"
                        cur.execute(self._sql(step.replace("{find}", find)), {})
                cur.execute(self._sql(
                    "INSERT INTO sg_schema_migrations (version, name, applied_at) "
                    "VALUES (:v, :n, :at)"),
                    {"v": migration.version, "n": migration.name, "at": _utc_now()})
            log.info("database %s: applied migration %d (%s)", self.dialect, migration.version,
                     migration.name)
        self._migrated = True

    @contextmanager
    def _migration_cursor(self) -> Iterator[Any]:
        """A cursor in one transaction that no other process migrates during."""
        if self.dialect == "sqlite":
            with self._cursor() as cur:
                cur.execute("BEGIN IMMEDIATE")  # the write lock now, not at the first write
                yield cur
            return
        with self._handle.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%(k)s)", {"k": _MIGRATION_LOCK})
            yield cur

    def _add_column(self, cur: Any, step: AddColumn) -> None:
        """Add a column to a table made by an older version (no-op when it is there)."""
        if self.dialect == "postgres":
            cur.execute(f"ALTER TABLE {step.table} ADD COLUMN IF NOT EXISTS {step.column} "
                        f"{step.kind}")
            return
        cur.execute(f"PRAGMA table_info({step.table})")
        if not any(row[1] == step.column for row in cur.fetchall()):
            cur.execute(f"ALTER TABLE {step.table} ADD COLUMN {step.column} {step.kind}")

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else _to_psycopg(sql)

    def close(self) -> None:
        """Close the pool (Postgres) or the connection (SQLite)."""
        if self.dialect == "postgres":
            self._handle.close()
        elif self._conn is not None:
            with self._lock:
                self._conn.close()
                self._conn = None


def _sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def open_database(url: str | None, home: Path) -> Database:
    """Open (and migrate) the database at `url` (Postgres) or `home/state.db` (SQLite).

    Each call opens a new pool or connection, owned by the caller, who closes it: the
    composition root (`supportgraph.app.services`) keeps one per process.
    """
    if url:
        if not url.startswith(("postgres://", "postgresql://")):
            raise ValueError("DATABASE_URL must start with postgresql:// (or be unset)")
        db = Database(dialect="postgres", target=url, handle=_postgres_pool(url))
    else:
        key = str(Path(home).resolve() / "state.db")
        Path(home).mkdir(parents=True, exist_ok=True)
        conn = _sqlite_connect(key)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.close()
        db = Database(dialect="sqlite", target=key, handle=key)
    try:
        db.migrate()
    except BaseException:
        db.close()
        raise
    return db
