"""The throwaway PostgreSQL server works, gives isolated databases, and survives a restart."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.postgres


def test_pg_url_roundtrip(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO notes (body) VALUES (%s), (%s)", ("héllo", "'; DROP TABLE notes"))
        rows = conn.execute("SELECT body FROM notes ORDER BY id").fetchall()
        assert rows == [("héllo",), ("'; DROP TABLE notes",)]
        dbname = conn.execute("SELECT current_database()").fetchone()[0]
    assert pg_url.endswith("/" + dbname)
    assert dbname.startswith("t_")


def test_each_test_gets_a_fresh_database(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
    assert tables == 0


def test_restart_and_reconnect(pg_server, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kv (k text PRIMARY KEY, v text)")
        conn.execute("INSERT INTO kv VALUES ('a', '1')")
    stale = psycopg.connect(pg_url, autocommit=True)
    try:
        pg_server.restart()
        # The old connection was terminated by the restart...
        with pytest.raises(psycopg.OperationalError):
            stale.execute("SELECT 1")
    finally:
        stale.close()
    # ...and a new one sees the committed data.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT v FROM kv WHERE k = 'a'").fetchone() == ("1",)
    assert pg_server.is_running()
    assert pg_server.dsn("x") == f"postgresql://postgres@127.0.0.1:{pg_server.port}/x"
    assert (pg_server.data_dir / "PG_VERSION").exists()


def test_isolated_env_guard(isolated_env, monkeypatch) -> None:
    import os

    assert os.environ["SUPPORTGRAPH_HOME"] == str(isolated_env)
    assert isolated_env.is_dir()
    assert "OPENAI_API_KEY" not in os.environ and "DATABASE_URL" not in os.environ
    assert os.environ["OPENAI_BASE_URL"] == "http://127.0.0.1:9/"
    assert os.environ["LANGSMITH_TRACING"] == "false"
