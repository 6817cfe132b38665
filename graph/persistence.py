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
import time
import weakref
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat()


DEFAULT_TENANT = "default"
"""The tenant of tickets that name none (and of every row written before tenants were keys)."""


def tenant_key(tenant: str | None) -> str:
    """The tenant as stored in our tables: a ticket without one belongs to `default`."""
    return tenant or DEFAULT_TENANT


# --------------------------------------------------------------------------- migrations
# Our tables (sg_*) are versioned: `sg_schema_migrations` records each numbered migration
# applied, and a database is brought up to date by applying the missing ones in order, once,
# each in one transaction. To change the schema, append a migration to MIGRATIONS; never edit
# one that has shipped (databases that applied it would not see the change).
#
# Databases made before this table existed (every `CREATE TABLE IF NOT EXISTS` release) have
# no rows in it; migrations 1-3 are written so that they apply cleanly on top of any of those
# schemas (missing tables created, missing columns added, old rows backfilled).

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS sg_schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
)"""

_V1_TABLES = [
    """CREATE TABLE IF NOT EXISTS sg_audit (
        event_key TEXT PRIMARY KEY,
        tenant TEXT,
        ticket_id TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        step TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        duration_ms DOUBLE PRECISION NOT NULL,
        outcome TEXT NOT NULL,
        model_calls INTEGER NOT NULL DEFAULT 0,
        cache_hits INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        failure TEXT,
        detail TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS sg_audit_ticket ON sg_audit (ticket_id, started_at)",
    "CREATE INDEX IF NOT EXISTS sg_audit_thread ON sg_audit (thread_id, started_at)",
    """CREATE TABLE IF NOT EXISTS sg_runs (
        thread_id TEXT PRIMARY KEY,
        ticket_id TEXT NOT NULL,
        tenant TEXT,
        status TEXT NOT NULL,
        summary TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sg_runs_ticket ON sg_runs (ticket_id)",
    "CREATE INDEX IF NOT EXISTS sg_runs_updated ON sg_runs (updated_at)",
    """CREATE TABLE IF NOT EXISTS sg_outbox (
        delivery_key TEXT PRIMARY KEY,
        tenant TEXT,
        ticket_id TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        customer_id TEXT,
        reply TEXT NOT NULL,
        approved_by TEXT,
        created_at TEXT NOT NULL,
        delivered_at TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS sg_reviews (
        thread_id TEXT PRIMARY KEY,
        ticket_id TEXT NOT NULL,
        tenant TEXT,
        reason TEXT NOT NULL,
        queue TEXT NOT NULL,
        status TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        deadline_at TEXT NOT NULL,
        decision TEXT,
        decided_by TEXT,
        decided_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS sg_reviews_status ON sg_reviews (status, requested_at)",
    """CREATE TABLE IF NOT EXISTS sg_model_cache (
        key TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        response TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    # Delivery of outbox rows (app/delivery.py): state pending|sending|delivered|dead.
    """CREATE TABLE IF NOT EXISTS sg_deliveries (
        delivery_key TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        ticket_id TEXT NOT NULL,
        thread_id TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        claimed_by TEXT,
        claimed_until DOUBLE PRECISION,
        transport TEXT,
        last_error TEXT,
        delivered_at TEXT,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sg_deliveries_due ON sg_deliveries (state, next_attempt_at)",
    # The deliverable (unredacted) parts of a pending reply, AES-sealed; erased once it is
    # delivered or dead-lettered (app/delivery.py).
    """CREATE TABLE IF NOT EXISTS sg_vault (
        delivery_key TEXT PRIMARY KEY,
        sealed TEXT NOT NULL,
        created_at TEXT NOT NULL
    )""",
    # One row per thread being run right now (app/leases.py); expires_at is epoch seconds.
    """CREATE TABLE IF NOT EXISTS sg_leases (
        thread_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        token TEXT NOT NULL,
        acquired_at TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    # API keys of the LangGraph server (app/keys.py): only a hash of each key is kept.
    """CREATE TABLE IF NOT EXISTS sg_api_keys (
        name TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        role TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    )""",
]

# Tables created before tenants were part of every key get the column, then every old row
# gets the tenant it was created with: its run's (or review's) tenant, the tenant prefix of its
# delivery key, else `default`.
_TENANT_COLUMNS = ("sg_audit", "sg_outbox", "sg_runs", "sg_reviews")
_TENANT_BACKFILL = [
    "UPDATE sg_runs SET tenant = 'default' WHERE tenant IS NULL OR tenant = ''",
    "UPDATE sg_reviews SET tenant = 'default' WHERE tenant IS NULL OR tenant = ''",
    """UPDATE sg_outbox SET tenant = CASE
           WHEN delivery_key LIKE ':%' THEN 'default'
           ELSE substr(delivery_key, 1, {find}(delivery_key, ':') - 1) END
       WHERE tenant IS NULL""",
    """UPDATE sg_audit SET tenant = COALESCE(
           (SELECT r.tenant FROM sg_runs r WHERE r.thread_id = sg_audit.thread_id),
           (SELECT v.tenant FROM sg_reviews v WHERE v.thread_id = sg_audit.thread_id),
           'default')
       WHERE tenant IS NULL""",
    "CREATE INDEX IF NOT EXISTS sg_audit_tenant_ticket ON sg_audit (tenant, ticket_id, started_at)",
    "CREATE INDEX IF NOT EXISTS sg_runs_tenant_ticket ON sg_runs (tenant, ticket_id)",
    "CREATE INDEX IF NOT EXISTS sg_reviews_tenant ON sg_reviews (tenant, status, requested_at)",
    "CREATE INDEX IF NOT EXISTS sg_outbox_tenant_ticket ON sg_outbox (tenant, ticket_id)",
]


@dataclass(frozen=True)
class AddColumn:
    """A migration step: add `column` to `table` unless a schema made earlier already has it."""

    table: str
    column: str
    kind: str


@dataclass(frozen=True)
class Migration:
    """One numbered schema change: SQL statements and `AddColumn` steps, applied in order."""

    version: int
    name: str
    steps: tuple[str | AddColumn, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "our tables", tuple(_V1_TABLES)),
    Migration(2, "tenant in every key", (
        *(AddColumn(table, "tenant", "TEXT") for table in _TENANT_COLUMNS), *_TENANT_BACKFILL)),
    Migration(3, "review route and the open-reviews index", (
        AddColumn("sg_reviews", "route", "TEXT"),  # the ticket's route when it stopped
        # The review inbox: a tenant's open reviews by SLA deadline then age, covering the
        # counts and the route/reason filters (a 10,000-review queue pages without a scan).
        "CREATE INDEX IF NOT EXISTS sg_reviews_open ON sg_reviews "
        "(tenant, deadline_at, requested_at, route, reason) "
        "WHERE status IN ('waiting', 'escalated')",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
"""The version of our tables this code writes and reads."""
_MIGRATION_LOCK = 0x73675F6D  # Postgres advisory lock key ("sg_m"): one migrating process

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


IDLE_CHECK_S = 2.0
"""A pooled connection not checked out for at least this long is pinged before it is used."""
_checked_out_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _check_if_idle(conn: Any) -> None:
    """Ping a connection only if it may have sat idle; one in constant use is known to work.

    Pinging on every checkout cost a round trip per query: 13% of throughput at 32 tickets in
    flight. Idle connections are where a restarted server, an idle timeout or a dropped
    network bites. A busy connection broken by a restart fails its next query instead; the
    pool discards it and the worker retries the step (tests/chaos/test_postgres_restart.py).

    The time of the last checkout bounds the idle time from above (a connection cannot have
    been idle for longer than since it was last handed out), so no `reset` callback is needed:
    with one, psycopg_pool hands every returned connection to a worker thread, a thread
    switch per query that cost 8% of the process's time at 32 in flight.
    """
    from psycopg_pool import ConnectionPool

    now = time.monotonic()
    last = _checked_out_at.get(conn)
    if last is None or now - last >= IDLE_CHECK_S:
        ConnectionPool.check_connection(conn)
    _checked_out_at[conn] = now


def _postgres_pool(url: str) -> Any:
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=20,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=_check_if_idle,
        open=False,
        name="supportgraph",
    )
    pool.open(wait=True, timeout=15)
    return pool


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


COMPRESSED = "msgpack.z"
"""Type tag of a zlib-compressed msgpack value (below the AES layer when a key is set)."""
COMPRESS_MIN_BYTES = 512
MAX_INFLATED_BYTES = 256 * 1024 * 1024
"""A stored value never inflates beyond this (a tampered row cannot exhaust memory)."""


def inflate(data: bytes) -> bytes:
    """Decompress a `COMPRESSED` value, refusing anything that would inflate past the cap."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_INFLATED_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"a checkpoint value inflates past {MAX_INFLATED_BYTES} bytes")
    return out


class CheckpointKeyError(RuntimeError):
    """Checkpoints that cannot be read with the configured AES key (missing or wrong)."""


def checkpoint_serde(aes_key: str | None) -> Any:
    """The checkpoint serializer: msgpack limited to LangGraph's safe types, AES if keyed.

    Values of 512 bytes or more are zlib-compressed (level 1, type `msgpack.z`): SQLite's
    saver stores the whole state in every checkpoint, and compression took a resolved
    ticket's checkpoints from 99 to about 40 KB. Older uncompressed rows still load.

    `allowed_msgpack_modules=None` is LangGraph's strict mode: only its built-in allow-list
    of plain types is revived from a checkpoint, so a tampered row cannot build arbitrary
    objects. With a key (16, 24 or 32 bytes) every blob is AES-EAX encrypted and
    authenticated by LangGraph's `EncryptedSerializer`. A missing or wrong key on encrypted
    checkpoints raises `CheckpointKeyError` instead of returning garbage.
    """
    from langgraph.checkpoint.serde.base import CipherProtocol
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    class PlainSerde(JsonPlusSerializer):
        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            typ, data = super().dumps_typed(obj)
            if typ == "msgpack" and len(data) >= COMPRESS_MIN_BYTES:
                return COMPRESSED, zlib.compress(data, 1)
            return typ, data

        def loads_typed(self, data: tuple[str, bytes]) -> Any:
            if "+" in data[0]:
                raise CheckpointKeyError(
                    "the checkpoints in this database are encrypted: set LANGGRAPH_AES_KEY")
            if data[0] == COMPRESSED:
                return super().loads_typed(("msgpack", inflate(data[1])))
            return super().loads_typed(data)

    class CheckedCipher(CipherProtocol):
        def __init__(self, cipher: CipherProtocol) -> None:
            self.cipher = cipher

        def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
            return self.cipher.encrypt(plaintext)

        def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
            try:
                return self.cipher.decrypt(ciphername, ciphertext)
            except (ValueError, AssertionError) as exc:  # "MAC check failed", other cipher
                raise CheckpointKeyError(
                    "LANGGRAPH_AES_KEY does not decrypt the checkpoints in this database "
                    "(wrong key)") from exc

    if not aes_key:
        return PlainSerde(allowed_msgpack_modules=None)
    key = aes_key.encode()
    if len(key) not in (16, 24, 32):
        raise CheckpointKeyError(
            f"LANGGRAPH_AES_KEY must be 16, 24 or 32 bytes long (got {len(key)})")
    strict = PlainSerde(allowed_msgpack_modules=None)  # compresses before encrypting
    aes = EncryptedSerializer.from_pycryptodome_aes(strict, key=key)
    return EncryptedSerializer(CheckedCipher(aes.cipher), strict)


class _Sealed:
    """A plain channel value routed to the (encrypted) blobs table instead of inline JSONB."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _sealed_postgres_saver() -> type:
    """`PostgresSaver` that stores no channel value in clear.

    PostgresSaver keeps str/int/float/bool/None channel values inline in the `checkpoints`
    JSONB column, outside the serializer, so with encryption on the ticket text (`query`,
    `final_reply`) would still sit there in clear. Here every such value goes through the
    serializer into `checkpoint_blobs`, the path non-primitive values already take. Unchanged
    channels are re-offered at their current version (an existing blob row is kept), so a
    thread begun before the key was set keeps its values.
    """
    from langgraph.checkpoint.postgres import PostgresSaver

    def plain(value: Any) -> bool:
        return value is None or isinstance(value, (str, int, float, bool))

    class SealedPostgresSaver(PostgresSaver):
        def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            values = checkpoint["channel_values"]
            known = checkpoint.get("channel_versions") or {}
            sealed = {k for k, v in values.items() if plain(v) and k in known}
            if sealed:
                checkpoint = {**checkpoint, "channel_values": {
                    k: _Sealed(v) if k in sealed else v for k, v in values.items()}}
                new_versions = {**{k: known[k] for k in sealed}, **new_versions}
            return super().put(config, checkpoint, metadata, new_versions)

        def _dump_blobs(self, thread_id: str, checkpoint_ns: str, values: dict[str, Any],
                        versions: Any) -> list:
            values = {k: v.value if isinstance(v, _Sealed) else v for k, v in values.items()}
            return super()._dump_blobs(thread_id, checkpoint_ns, values, versions)

    return SealedPostgresSaver


def open_checkpointer(db: Database, serde: Any) -> Any:
    """A LangGraph checkpointer on the same database as our tables (tables set up once).

    `serde`: `checkpoint_serde` of the deployment's AES key (read at the edge by
    `supportgraph.app.settings.checkpoint_aes_key`; nodes never see it).
    """
    if db.dialect == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

        cls = _sealed_postgres_saver() if isinstance(serde, EncryptedSerializer) else PostgresSaver
        saver = cls(db.handle, serde=serde)
        # PostgresSaver holds one instance-wide lock around every cursor, even when each
        # cursor checks out its own pooled connection, so all tickets' checkpoint writes in a
        # process queued behind one another (langgraph#7259; the fix for the async saver is
        # langgraph#7269). With a pool the lock only has to stop more threads than there are
        # connections from waiting inside the pool.
        saver.lock = threading.BoundedSemaphore(db.handle.max_size)
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        saver = SqliteSaver(_sqlite_connect(db.handle), serde=serde)
    saver.setup()
    return saver
