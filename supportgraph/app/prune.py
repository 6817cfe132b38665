"""Prune closed tickets' checkpoint history down to one compact final checkpoint.

Every step of a run writes a checkpoint; once a ticket is closed only the last one is ever read
again (the run summary, "already processed", `audit show`, `audit export` and review history
come from it and from our own tables). A thread is pruned only when both say it is over: its
`sg_runs` status is terminal and not waiting (`sent`, `rejected`, `stalled`, `failed`), no
review on it is open, and its latest checkpoint has nothing left to run and no interrupt. A
ticket waiting for review, or still processing, or whose worker died between its last steps,
is never touched.

Pruning a thread holds its lease (app/leases.py) and checks again under it, so it never races a
run, resume or review decision of the same thread (one that holds it is skipped as `busy`).
It first compacts the final state (`graph.state.compact_closed`: passage, case and superseded
draft texts emptied) with `graph.update_state`, which writes one new checkpoint through the
checkpointer (encrypted when LANGGRAPH_AES_KEY is set); then only rows strictly older than the
thread's latest checkpoint are deleted, statement by statement, so a prune that dies halfway
leaves a readable thread and a second prune finishes the job. A thread with one compact
checkpoint and nothing else is left as it is: pruning twice changes nothing.
Checkpoint tables: Postgres `checkpoints`, `checkpoint_writes`, `checkpoint_blobs`; SQLite
`checkpoints`, `writes` (the whole state sits in each checkpoint row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from graph.state import compact_closed
from supportgraph.app.leases import ThreadBusy

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
    compacted: int = 0
    """Final checkpoints rewritten with their heavy texts emptied (`compact_closed`)."""

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)

    def skip(self, why: str) -> None:
        """Count a thread left alone, by reason."""
        self.skipped[why] = self.skipped.get(why, 0) + 1


def checkpoint_usage(db: Any, *, closed_only: bool = False,
                     thread_ids: Sequence[str] | None = None) -> dict[str, int]:
    """Rows and stored bytes of the checkpoint tables, per table and in total.

    All threads, only those of closed tickets (`closed_only`, for per-ticket figures), or only
    the given threads (`thread_ids`).
    """
    if db.dialect == "postgres":
        tables: tuple[str, ...] = ("checkpoints", "checkpoint_writes", "checkpoint_blobs")
        size = "coalesce(sum(pg_column_size(t.*)), 0)"
    else:
        tables = ("checkpoints", "writes")
        size = None
    conditions, params = [], {}
    if closed_only:
        conditions.append("t.thread_id IN (SELECT thread_id FROM sg_runs WHERE status IN "
                          f"({', '.join(repr(s) for s in CLOSED_STATUSES)}))")
    if thread_ids is not None:
        params = {f"t{i}": t for i, t in enumerate(thread_ids)}
        conditions.append(f"t.thread_id IN ({', '.join(':' + k for k in params) or 'NULL'})")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    usage: dict[str, int] = {"rows": 0, "bytes": 0}
    for table in tables:
        if size is None:
            columns = _sqlite_columns(db, table)
            size_sql = "coalesce(sum(" + " + ".join(
                f"coalesce(length({c}), 0)" for c in columns) + "), 0)"
        else:
            size_sql = size
        row = db.fetchone(f"SELECT count(*) AS n, {size_sql} AS b FROM {table} t{where}",
                          params)
        usage[f"{table}_rows"], usage[f"{table}_bytes"] = int(row["n"]), int(row["b"])
        usage["rows"] += int(row["n"])
        usage["bytes"] += int(row["b"])
    return usage


def _sqlite_columns(db: Any, table: str) -> list[str]:
    return [r["name"] for r in db.fetchall(f"PRAGMA table_info({table})")]


def _prunable(runner: Any, thread_id: str, report: PruneReport) -> Any | None:
    """The thread's final snapshot when pruning has work to do; else counts why not."""
    why_not, snapshot = _final_state(runner, thread_id)
    if why_not:
        report.skip(why_not)
        return None
    if not _work_left(runner.db, thread_id, snapshot):
        report.already_minimal += 1
        return None
    return snapshot


def prune_closed(runner: Any, *, before: datetime | None = None,
                 dry_run: bool = False) -> PruneReport:
    """Cut each closed thread (ended before `before`, if given) to one compact checkpoint."""
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
        # A cheap look first (no lease): most threads need nothing, or are plainly open.
        if _prunable(runner, thread_id, report) is None:
            continue
        if dry_run:
            report.pruned += 1
            freed = _older_usage(db, thread_id)
            report.rows_after -= freed["rows"]
            report.bytes_after -= freed["bytes"]
            continue
        try:
            with runner.leases.hold(thread_id):
                # Again under the lease: a resume or review may have moved the thread since.
                snapshot = _prunable(runner, thread_id, report)
                if snapshot is None:
                    continue
                report.compacted += _compact(runner, snapshot)
                report.deleted_rows += _prune_thread(db, thread_id)
        except ThreadBusy:
            report.skip("busy")
            continue
        report.pruned += 1
    if dry_run:  # a projection: what deleting the older rows frees (compaction frees more)
        report.rows_after += report.rows_before
        report.bytes_after += report.bytes_before
        return report
    usage = checkpoint_usage(db)
    report.rows_after, report.bytes_after = usage["rows"], usage["bytes"]
    return report


def _older_usage(db: Any, thread_id: str) -> dict[str, int]:
    """Rows and bytes a prune of this thread deletes (the dry run's projection).

    Everything older than its latest checkpoint, plus, on Postgres, unreferenced blobs.
    """
    if db.dialect == "postgres":
        parts = [("checkpoints", f"t.checkpoint_id < {_LATEST.format(t='t')}"),
                 ("checkpoint_writes", f"t.checkpoint_id < {_LATEST.format(t='t')}"),
                 ("checkpoint_blobs", _UNUSED_BLOB.replace("b.", "t."))]
    else:
        parts = [(table, f"t.checkpoint_id < {_LATEST.format(t='t')}")
                 for table in ("checkpoints", "writes")]
    freed = {"rows": 0, "bytes": 0}
    for table, condition in parts:
        if db.dialect == "postgres":
            size = "coalesce(sum(pg_column_size(t.*)), 0)"
        else:
            size = "coalesce(sum(" + " + ".join(
                f"coalesce(length({c}), 0)" for c in _sqlite_columns(db, table)) + "), 0)"
        row = db.fetchone(f"SELECT count(*) AS n, {size} AS b FROM {table} t "
                          f"WHERE t.thread_id = :t AND {condition}", {"t": thread_id})
        freed["rows"] += int(row["n"])
        freed["bytes"] += int(row["b"])
    return freed


def _final_state(runner: Any, thread_id: str) -> tuple[str | None, Any]:
    """The thread's latest state, and why it must not be pruned (None: closed for good)."""
    review = runner.db.fetchone("SELECT status FROM sg_reviews WHERE thread_id = :t",
                                {"t": thread_id})
    if review and review["status"] in ("waiting", "escalated"):
        return "awaiting_review", None
    snapshot = runner.graph.get_state({"configurable": {"thread_id": thread_id}})
    if not snapshot.values:
        return "no_checkpoint", snapshot
    if snapshot.interrupts:
        return "awaiting_review", snapshot
    if snapshot.next or snapshot.tasks:
        return "processing", snapshot
    return None, snapshot


def _work_left(db: Any, thread_id: str, snapshot: Any) -> bool:
    """Whether the thread has older checkpoints, a final state to compact or stray blobs."""
    if compact_closed(snapshot.values) or _older_checkpoints(db, thread_id):
        return True
    return db.dialect == "postgres" and _unused_blobs(db, thread_id) > 0


def _compact(runner: Any, snapshot: Any) -> int:
    """Write the compacted final state as a new latest checkpoint; 1 if one was written.

    `update_state` as the last node (`audit`, whose only edge goes to END) leaves nothing to
    run; it forks from exactly the checkpoint that was checked (`snapshot.config`). The
    checkpoint it replaces becomes an older one, deleted next.
    """
    update = compact_closed(snapshot.values)
    if not update:
        return 0
    runner.graph.update_state(snapshot.config, update, as_node="audit")
    return 1


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
        # Channel values live in blobs keyed by version; keep those the kept checkpoint uses
        # (the values a compaction replaced are at older versions: they go too).
        deleted += db.execute(f"DELETE FROM checkpoint_blobs b WHERE {_UNUSED_BLOB}",
                              {"t": thread_id})
    return deleted


_UNUSED_BLOB = """b.thread_id = :t AND NOT EXISTS (
    SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id
    AND c.checkpoint_ns = b.checkpoint_ns
    AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)"""


def _unused_blobs(db: Any, thread_id: str) -> int:
    row = db.fetchone(f"SELECT count(*) AS n FROM checkpoint_blobs b WHERE {_UNUSED_BLOB}",
                      {"t": thread_id})
    return int(row["n"])
