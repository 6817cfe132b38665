"""Prune closed tickets' checkpoint history down to their final checkpoint.

Every step of a run writes a checkpoint; once a ticket is closed only the last one is ever read
again (the run summary, "already processed", `audit show` and review history come from it and
from our own tables). A thread is pruned only when both say it is over: its `sg_runs` status is
terminal and not waiting (`sent`, `rejected`, `stalled`, `failed`), no review on it is open, and
its latest checkpoint has nothing left to run and no interrupt. A ticket waiting for review, or
still processing, or whose worker died between its last steps, is never touched.

Only rows strictly older than the thread's latest checkpoint are deleted, statement by statement,
so a prune that dies halfway leaves a readable thread and a second prune finishes the job.
Checkpoint tables: Postgres `checkpoints`, `checkpoint_writes`, `checkpoint_blobs`; SQLite
`checkpoints`, `writes` (the whole state sits in each checkpoint row).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

CLOSED_STATUSES = ("sent", "rejected", "stalled", "failed")


class PruneError(ValueError):
    """Bad input to prune (for example an unreadable date)."""


def parse_before(text: str) -> datetime:
    """An ISO date or date-time; a date means midnight UTC, a naive time is taken as UTC."""
    value = (text or "").strip()
    if not value or len(value) > 64:
        raise PruneError(f"--before: expected an ISO date like 2026-01-31, got {text!r}")
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise PruneError(f"--before: expected an ISO date like 2026-01-31, got {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class PruneReport:
    """What a prune found and did (rows and bytes of the checkpoint tables, all threads)."""

    dry_run: bool
    before: str | None
    candidates: int = 0
    pruned: int = 0
    already_minimal: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    rows_before: int = 0
    bytes_before: int = 0
    rows_after: int = 0
    bytes_after: int = 0
    deleted_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)


def checkpoint_usage(db: Any, *, closed_only: bool = False) -> dict[str, int]:
    """Rows and stored bytes of the checkpoint tables, per table and in total.

    All threads, or only those of closed tickets (`closed_only`, for per-ticket figures).
    """
    if db.dialect == "postgres":
        tables = ("checkpoints", "checkpoint_writes", "checkpoint_blobs")
        size = "coalesce(sum(pg_column_size(t.*)), 0)"
    else:
        tables = ("checkpoints", "writes")
        size = None
    usage: dict[str, int] = {"rows": 0, "bytes": 0}
    for table in tables:
        if size is None:
            columns = _sqlite_columns(db, table)
            size_sql = "coalesce(sum(" + " + ".join(
                f"coalesce(length({c}), 0)" for c in columns) + "), 0)"
        else:
            size_sql = size
        where = (" WHERE t.thread_id IN (SELECT thread_id FROM sg_runs WHERE status IN "
                 f"({', '.join(repr(s) for s in CLOSED_STATUSES)}))") if closed_only else ""
        row = db.fetchone(f"SELECT count(*) AS n, {size_sql} AS b FROM {table} t{where}")
        usage[f"{table}_rows"], usage[f"{table}_bytes"] = int(row["n"]), int(row["b"])
        usage["rows"] += int(row["n"])
        usage["bytes"] += int(row["b"])
    return usage


def _sqlite_columns(db: Any, table: str) -> list[str]:
    return [r["name"] for r in db.fetchall(f"PRAGMA table_info({table})")]


def prune_closed(runner: Any, *, before: datetime | None = None,
                 dry_run: bool = False) -> PruneReport:
    """Reduce every closed ticket's thread (ended before `before`, if given) to one checkpoint."""
    db = runner.db
    report = PruneReport(dry_run=dry_run,
                         before=before.isoformat(timespec="seconds") if before else None)
    usage = checkpoint_usage(db)
    report.rows_before, report.bytes_before = usage["rows"], usage["bytes"]
    sql = ("SELECT thread_id FROM sg_runs WHERE status IN ('sent', 'rejected', 'stalled', "
           "'failed')")
    params: dict[str, Any] = {}
    if before is not None:
        sql += " AND updated_at < :before"
        params["before"] = before.astimezone(UTC).isoformat(timespec="microseconds")
    for row in db.fetchall(sql + " ORDER BY updated_at", params):
        thread_id = row["thread_id"]
        report.candidates += 1
        why_not = _still_open(runner, thread_id)
        if why_not:
            report.skipped[why_not] = report.skipped.get(why_not, 0) + 1
            continue
        older = _older_checkpoints(db, thread_id)
        if older == 0:
            report.already_minimal += 1
            continue
        report.pruned += 1
        if not dry_run:
            report.deleted_rows += _prune_thread(db, thread_id)
    usage = checkpoint_usage(db)
    report.rows_after, report.bytes_after = usage["rows"], usage["bytes"]
    return report


def _still_open(runner: Any, thread_id: str) -> str | None:
    """Why this thread must not be pruned (None when it is closed for good)."""
    review = runner.db.fetchone("SELECT status FROM sg_reviews WHERE thread_id = :t",
                                {"t": thread_id})
    if review and review["status"] in ("waiting", "escalated"):
        return "awaiting_review"
    snapshot = runner.graph.get_state({"configurable": {"thread_id": thread_id}})
    if not snapshot.values:
        return "no_checkpoint"
    if snapshot.interrupts:
        return "awaiting_review"
    if snapshot.next:
        return "processing"
    return None


_LATEST = ("(SELECT max(k.checkpoint_id) FROM checkpoints k WHERE k.thread_id = {t}.thread_id "
           "AND k.checkpoint_ns = {t}.checkpoint_ns)")


def _older_checkpoints(db: Any, thread_id: str) -> int:
    row = db.fetchone("SELECT count(*) AS n FROM checkpoints c WHERE c.thread_id = :t AND "
                      f"c.checkpoint_id < {_LATEST.format(t='c')}", {"t": thread_id})
    return int(row["n"])


def _prune_thread(db: Any, thread_id: str) -> int:
    """Delete a thread's writes and checkpoints older than its latest; unreferenced blobs."""
    writes = "checkpoint_writes" if db.dialect == "postgres" else "writes"
    deleted = db.execute(f"DELETE FROM {writes} WHERE thread_id = :t AND checkpoint_id < "
                         f"{_LATEST.format(t=writes)}", {"t": thread_id})
    deleted += db.execute("DELETE FROM checkpoints WHERE thread_id = :t AND checkpoint_id < "
                          f"{_LATEST.format(t='checkpoints')}", {"t": thread_id})
    # The kept checkpoint's parent is gone: say so rather than point at nothing.
    db.execute("UPDATE checkpoints SET parent_checkpoint_id = NULL WHERE thread_id = :t "
               "AND parent_checkpoint_id IS NOT NULL", {"t": thread_id})
    if db.dialect == "postgres":
        # Channel values live in blobs keyed by version; keep those the kept checkpoint uses.
        deleted += db.execute(
            """DELETE FROM checkpoint_blobs b WHERE b.thread_id = :t AND NOT EXISTS (
                   SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id
                   AND c.checkpoint_ns = b.checkpoint_ns
                   AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)""",
            {"t": thread_id})
    return deleted
