"""The pool pings a connection only when it may have sat idle, and then catches a dead one."""

from __future__ import annotations

import time

import psycopg
import pytest

from graph import persistence

pytestmark = pytest.mark.postgres


def test_recently_used_connection_is_not_pinged_but_an_idle_one_is(pg_url: str) -> None:
    conn = psycopg.connect(pg_url, autocommit=True)
    killer = psycopg.connect(pg_url, autocommit=True)
    try:
        persistence.pool._check_if_idle(conn)  # first checkout: pinged, and the time recorded
        pid = conn.info.backend_pid
        killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # Just handed out: trusted without a round trip (its next query fails instead, and
        # the step is retried; tests/chaos/test_postgres_restart.py).
        persistence.pool._check_if_idle(conn)
        # Not handed out for longer than IDLE_CHECK_S: pinged, and the dead connection is
        # refused, so the pool discards it and hands out another.
        persistence.pool._checked_out_at[conn] = time.monotonic() - persistence.IDLE_CHECK_S - 0.1
        with pytest.raises(psycopg.OperationalError):
            persistence.pool._check_if_idle(conn)
    finally:
        conn.close()
        killer.close()


def test_pool_hands_out_a_working_connection_after_its_backend_died(pg_url: str) -> None:
    db = persistence.Database(dialect="postgres", target=pg_url,
                              handle=persistence.pool._postgres_pool(pg_url))
    try:
        with db.handle.connection() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(pg_url, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for conn in list(persistence.pool._checked_out_at):
            persistence.pool._checked_out_at[conn] = 0.0  # as if idle for long
        assert db.fetchone("SELECT 1 AS one") == {"one": 1}
    finally:
        db.close()
