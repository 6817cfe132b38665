"""Our own tables, versioned: numbered migrations applied once, in order, on SQLite and Postgres."""

from __future__ import annotations

from dataclasses import dataclass

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
