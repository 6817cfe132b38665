"""The batch worker behind `supportgraph run --input FILE.jsonl --concurrency N`.

Tickets run on N threads around `Runner.run`; every step is checkpointed, so stopping is cheap.
On SIGTERM or SIGINT the worker takes no new ticket, gives the ones in flight `drain_seconds`
to finish their run, reports what it finished and what it left, and exits with `EXIT_STOPPED`.
A run still going when the bound is reached is abandoned at its last completed step (the
process exits without waiting for it), exactly as if the worker had been killed. Running the
same file again completes the rest: finished tickets are reported, not run again.

A run that raises (the database went away mid-step) is retried with backoff; the retry resumes
the ticket's thread from its last checkpoint, and every side effect is idempotent.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from supportgraph.app.leases import ThreadBusy
from supportgraph.text.tickets import TicketError

log = logging.getLogger(__name__)

EXIT_STOPPED = 3
"""Exit status of a batch stopped by a signal before its end (run it again to finish)."""
MAX_CONCURRENCY = 256
_POLL_S = 0.2  # how soon the main thread notices a signal while it waits for runs


@dataclass
class BatchReport:
    """What one pass over a ticket file did."""

    finished: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    stopped_by: str | None = None

    def line(self) -> str:
        """One line for the operator: counts, and the ids left for the next run."""
        parts = [f"{len(self.finished)} finished"]
        if self.busy:
            parts.append(f"{len(self.busy)} busy in another worker")
        if self.errors:
            parts.append(f"{len(self.errors)} could not run")
        if self.bad_lines:
            parts.append(f"{len(self.bad_lines)} bad lines skipped")
        text = "batch: " + ", ".join(parts)
        if self.stopped_by:
            left = self.abandoned + self.left
            shown = ", ".join(left[:10]) + (", ..." if len(left) > 10 else "")
            text += (f"; stopped by {self.stopped_by}: {len(left)} left"
                     f" ({len(self.abandoned)} abandoned mid-run at their last checkpoint)"
                     + (f": {shown}" if left else "")
                     + "; run the same command again to finish them")
        return text

    def exit_status(self) -> int:
        """3 stopped early, 2 bad lines, 1 tickets busy elsewhere or failing to run, else 0."""
        if self.stopped_by:
            return EXIT_STOPPED
        if self.bad_lines:
            return 2
        return 1 if self.busy or self.errors else 0


class Worker:
    """Runs tickets concurrently with a bounded, signal-triggered drain."""

    def __init__(self, runner: Any, *, concurrency: int = 1, drain_seconds: float = 30.0,
                 retries: int = 5, on_outcome: Callable[[Any], None] | None = None) -> None:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
        if not 0 <= drain_seconds <= 86400:
            raise ValueError("drain seconds must be between 0 and 86400")
        self.runner = runner
        self.concurrency = concurrency
        self.drain_seconds = drain_seconds
        self.retries = retries
        self.on_outcome = on_outcome or (lambda outcome: None)
        # Set from a signal handler: plain attributes only (taking a lock there can deadlock).
        self._stop_reason: str | None = None
        self._stop_at = 0.0
        self._stopping = threading.Event()  # set by the main thread; wakes retry backoffs

    def stop(self, reason: str = "request") -> None:
        """Take no new tickets and start the drain (safe to call from a signal handler)."""
        if self._stop_reason is None:
            self._stop_at = time.monotonic()
            self._stop_reason = reason

    @contextmanager
    def signals(self) -> Iterator[None]:
        """Stop on SIGTERM and SIGINT while the block runs (main thread only)."""
        def handler(signum: int, frame: Any) -> None:
            self.stop(signal.Signals(signum).name)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def run(self, items: Iterable[tuple[int, dict | TicketError]]) -> BatchReport:
        """Run `(line number, ticket or parse error)` items; returns what happened."""
        report = BatchReport()
        pending: dict[Future, str] = {}
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sg-worker")
        source = iter(items)
        try:
            for line_no, item in source:
                if isinstance(item, TicketError):
                    report.bad_lines.append((line_no, str(item)))
                    continue
                while len(pending) >= self.concurrency and not self._noticed_stop():
                    self._collect(pending, report)
                if self._noticed_stop():
                    report.left.append(str(item.get("id")))
                    report.left.extend(str(i.get("id")) for _, i in source
                                       if not isinstance(i, TicketError))
                    break
                pending[pool.submit(self._run_one, line_no, item)] = str(item.get("id"))
            while pending:
                if self._noticed_stop() and time.monotonic() >= self._deadline():
                    break
                self._collect(pending, report)
        finally:
            report.stopped_by = self._stop_reason
            report.abandoned = sorted(pending.values())
            pool.shutdown(wait=not pending, cancel_futures=True)
        return report

    def _deadline(self) -> float:
        return self._stop_at + self.drain_seconds

    def _noticed_stop(self) -> bool:
        if self._stop_reason is not None and not self._stopping.is_set():
            self._stopping.set()
        return self._stopping.is_set()

    def _collect(self, pending: dict[Future, str], report: BatchReport) -> None:
        timeout = _POLL_S
        if self._stopping.is_set():
            timeout = max(0.0, min(timeout, self._deadline() - time.monotonic()))
        done, _ = wait(list(pending), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            ticket_id = pending.pop(future)
            kind, value = future.result()
            if kind == "done":
                report.finished.append(ticket_id)
                self.on_outcome(value)
            elif kind == "busy":
                report.busy.append(ticket_id)
                log.warning("ticket %s skipped: %s", ticket_id, value)
            elif kind == "bad":
                report.bad_lines.append(value)
            else:
                report.errors.append((ticket_id, value))
                log.error("ticket %s could not run: %s", ticket_id, value)

    def _run_one(self, line_no: int, ticket: dict) -> tuple[str, Any]:
        """One ticket, retried with backoff on errors from outside the graph's own handling."""
        delay = 0.5
        for attempt in range(1, self.retries + 2):
            try:
                return "done", self.runner.run(ticket)
            except TicketError as exc:
                return "bad", (line_no, str(exc))
            except ThreadBusy as exc:
                return "busy", str(exc)
            except Exception as exc:  # noqa: BLE001 - retried, then reported with its reason
                reason = f"{type(exc).__name__}: {str(exc)[:300]}"
                if attempt > self.retries or self._stopping.is_set():
                    return "error", reason
                log.warning("ticket %s: attempt %d failed (%s); resuming in %.1f s",
                            ticket.get("id"), attempt, reason, delay)
                if self._stopping.wait(delay):
                    return "error", reason
                delay = min(delay * 2, 8.0)
        return "error", "retries exhausted"
