"""The Postgres connection pool, and the check that a connection handed out is still alive."""

from __future__ import annotations

import time
import weakref
from typing import Any

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
