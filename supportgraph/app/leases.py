"""Per-thread leases: at most one process (and one thread in it) runs a ticket's thread at once.

LangGraph does not stop two invocations of one thread from interleaving their checkpoints, so
every run, resume and review decision first claims the thread in table `sg_leases` with one
conditional statement (the same SQL on SQLite and Postgres). A claim that is already held is
refused with `ThreadBusy`; the caller reports it, nothing waits.

A lease names its owner (host, process id, a random token per process) and expires
`LEASE_SECONDS` after its last renewal; one background thread per process renews all of the
process's leases with a single UPDATE while it holds any. A worker that dies (SIGKILL) leaves
its lease behind: another process takes it over at once when the owner was a process on the
same host that no longer exists, and anyone takes it over once it has expired. Clocks of
machines sharing a database must agree to well within `LEASE_SECONDS`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
"""A lease not renewed for this long is free for anyone to take."""

_ACQUIRE = """
INSERT INTO sg_leases (thread_id, owner, token, acquired_at, expires_at)
VALUES (:thread_id, :owner, :token, :now_iso, :expires)
ON CONFLICT (thread_id) DO UPDATE SET owner = excluded.owner, token = excluded.token,
    acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
WHERE sg_leases.expires_at < :now
"""
_TAKE_OVER = """
UPDATE sg_leases SET owner = :owner, token = :token, acquired_at = :now_iso,
    expires_at = :expires
WHERE thread_id = :thread_id AND token = :stale_token
"""


class ThreadBusy(RuntimeError):
    """Another worker (or another thread of this one) is running this ticket's thread now."""

    def __init__(self, thread_id: str, owner: str) -> None:
        super().__init__(f"thread {thread_id} is being run by another worker ({owner})")
        self.thread_id = thread_id
        self.owner = owner


def _host_id() -> str:
    """The host and PID namespace of this process: pids are comparable only within it."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class Leases:
    """The leases this process holds on one database."""

    def __init__(self, db: Any, lease_seconds: float = LEASE_SECONDS) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.host = _host_id()
        self.owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: dict[str, str] = {}  # thread id -> token
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._wake = threading.Event()

    @contextmanager
    def hold(self, thread_id: str) -> Iterator[None]:
        """Hold the thread's lease for the duration of the block; ThreadBusy if it is taken."""
        token = self.acquire(thread_id)
        try:
            yield
        finally:
            self.release(thread_id, token)

    def acquire(self, thread_id: str) -> str:
        """Claim the lease; returns its token. Raises ThreadBusy when someone else holds it."""
        token = uuid.uuid4().hex
        with self._lock:
            if thread_id in self._held:
                raise ThreadBusy(thread_id, f"{self.owner}, another thread")
            self._held[thread_id] = token  # reserve first: the stale check below relies on it
        try:
            if not self._claim(thread_id, token):
                self._take_over_stale(thread_id, token)
        except BaseException:
            with self._lock:
                self._held.pop(thread_id, None)
            raise
        self._start_renewer()
        return token

    def release(self, thread_id: str, token: str) -> None:
        """Give the lease back (a failed release only delays others until it expires)."""
        with self._lock:
            if self._held.get(thread_id) == token:
                del self._held[thread_id]
        try:
            self.db.execute("DELETE FROM sg_leases WHERE thread_id = :t AND token = :token",
                            {"t": thread_id, "token": token})
        except Exception:  # noqa: BLE001 - the lease expires; this process may take it back
            log.warning("could not release the lease of %s; it expires in %.0f s",
                        thread_id, self.lease_seconds, exc_info=True)

    def holder(self, thread_id: str) -> dict[str, Any] | None:
        """The lease row of a thread, if any (expired or not)."""
        return self.db.fetchone("SELECT owner, token, acquired_at, expires_at FROM sg_leases "
                                "WHERE thread_id = :t", {"t": thread_id})

    def _params(self, thread_id: str, token: str) -> dict[str, Any]:
        now = time.time()
        return {"thread_id": thread_id, "owner": self.owner, "token": token, "now": now,
                "now_iso": datetime.now(UTC).isoformat(timespec="microseconds"),
                "expires": now + self.lease_seconds}

    def _claim(self, thread_id: str, token: str) -> bool:
        return self.db.execute(_ACQUIRE, self._params(thread_id, token)) == 1

    def _take_over_stale(self, thread_id: str, token: str) -> None:
        """Take a lease whose owner is known dead; otherwise raise ThreadBusy."""
        row = self.holder(thread_id)
        if row is None:  # released between our claim and this read: claim again
            if self._claim(thread_id, token):
                return
            row = self.holder(thread_id) or {"owner": "unknown", "token": ""}
        if not self._is_stale(row["owner"]):
            raise ThreadBusy(thread_id, row["owner"])
        params = {**self._params(thread_id, token), "stale_token": row["token"]}
        if self.db.execute(_TAKE_OVER, params) != 1:
            raise ThreadBusy(thread_id, "a worker that took it over first")
        log.warning("took over the lease of %s from %s (no longer running)",
                    thread_id, row["owner"])

    def _is_stale(self, owner: str) -> bool:
        """Whether a lease's owner is certainly gone (a dead process on this host)."""
        if owner == self.owner:
            return True  # ours, yet not held by any thread here: a release that failed
        host, _, rest = owner.rpartition(":")[0].rpartition(":")
        if host != self.host:
            return False
        try:
            return not _pid_alive(int(rest))
        except ValueError:
            return False

    def renew(self) -> int:
        """Extend every lease of this process by `lease_seconds`; returns how many."""
        return self.db.execute("UPDATE sg_leases SET expires_at = :expires WHERE owner = :owner",
                               {"expires": time.time() + self.lease_seconds, "owner": self.owner})

    def _start_renewer(self) -> None:
        with self._lock:
            if self._renewer is not None and self._renewer.is_alive():
                return
            self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                             name="supportgraph-leases")
            self._renewer.start()

    def _renew_loop(self) -> None:
        """Extend every lease of this process while it holds any; exit when it holds none."""
        while True:
            self._wake.wait(self.lease_seconds / 3)
            with self._lock:
                if not self._held:
                    self._renewer = None
                    return
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - retried next round; logged, not hidden
                log.warning("lease renewal failed; retrying in %.0f s",
                            self.lease_seconds / 3, exc_info=True)
