"""Shared fixtures: an isolated environment for every test and a throwaway PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrieval.files import copy_tree
from tests.support.pg import PgServer, PgUnavailable, pg_bindir, running_server

_PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "DATABASE_URL",
    "QDRANT_URL",
    "QDRANT_API_KEY",
)
# Port 9 is "discard": nothing listens there, so an accidental real provider call fails at once.
_DEAD_BASE_URL = "http://127.0.0.1:9/"


@pytest.fixture(scope="session")
def encoders() -> object:
    """MiniLM encoders over the process's shared weights, as a composition root has them."""
    from supportgraph.app.services import shared_weights
    from supportgraph.models.encoders import Encoders

    return Encoders(shared_weights())


@pytest.fixture
def embedder(encoders: object) -> object:
    """The sentence embedder of `encoders`."""
    return encoders.embedder  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Give every test its own SUPPORTGRAPH_HOME and no credentials or service URLs."""
    for name in list(os.environ):
        if name.startswith("SUPPORTGRAPH_"):
            monkeypatch.delenv(name, raising=False)
    for name in _PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "sg_home"
    home.mkdir()
    monkeypatch.setenv("SUPPORTGRAPH_HOME", str(home))
    monkeypatch.setenv("OPENAI_BASE_URL", _DEAD_BASE_URL)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", _DEAD_BASE_URL)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    return home


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path:
    try:
        return pg_bindir()
    except PgUnavailable as exc:
        pytest.fail(f"{exc}; install them to run the integration tests", pytrace=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server for the whole session, removed afterwards."""
    with running_server("sg-pg-", bindir=_pg_bindir(), max_connections=200) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session server; dropped after the test."""
    import psycopg

    dbname = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    yield pg_server.dsn(dbname)
    if pg_server.is_running():
        with psycopg.connect(pg_server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


# --------------------------------------------------------------------------- workflow homes


@pytest.fixture(scope="session")
def template_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the demo intent model trained and the demo KB ingested, built once.

    Built by `supportgraph init` in a subprocess, so this process never holds the local Qdrant
    lock on it; tests copy it (Qdrant local mode allows one process per folder).
    """
    import sys

    home = tmp_path_factory.mktemp("template_home")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SUPPORTGRAPH_") and k not in _PROVIDER_ENV}
    env.update(SUPPORTGRAPH_HOME=str(home), LANGSMITH_TRACING="false")
    result = subprocess.run([sys.executable, "-m", "supportgraph", "init"], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return home


@pytest.fixture
def demo_home(
    template_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A private copy of the template home, set as SUPPORTGRAPH_HOME; handles closed after."""
    from supportgraph.app.services import close_services

    home = tmp_path / "demo_home"
    copy_tree(template_home, home)
    monkeypatch.setenv("SUPPORTGRAPH_HOME", str(home))
    yield home
    close_services()


# --------------------------------------------------------------------------- what is stored


def inflated(rows: list[tuple]) -> bytes:
    """The decompressed bytes of every compressed checkpoint value among `rows`.

    Checkpoint values are zlib-compressed at rest (`graph.persistence.COMPRESSED`), so a scan
    of raw bytes alone would miss a leaked string inside one. Encrypted values (type
    `msgpack.z+aes`) stay opaque, as they should.
    """
    from graph.persistence import COMPRESSED, inflate

    out = []
    for row in rows:
        if COMPRESSED in row:
            out.extend(inflate(bytes(v)) for v in row if isinstance(v, (bytes, memoryview)))
    return b"\n".join(out)


@pytest.fixture
def pg_stored() -> object:
    """`read(url, tables) -> bytes`: every value of those Postgres tables, inflated too."""
    import json

    import psycopg

    def read(url: str, tables: list[str]) -> bytes:
        chunks = []
        with psycopg.connect(url) as conn:
            for table in tables:
                rows = list(conn.execute(f'SELECT * FROM "{table}"'))
                chunks.append(inflated(rows))
                for row in rows:
                    for value in row:
                        if isinstance(value, (bytes, memoryview)):
                            chunks.append(bytes(value))
                        elif value is not None:
                            chunks.append(json.dumps(value, default=str, ensure_ascii=False)
                                          .encode())
        return b"\n".join(chunks)

    return read


@pytest.fixture
def sqlite_stored() -> object:
    """`read(home) -> bytes`: the SQLite file and WAL, plus every compressed value inflated."""
    import sqlite3
    from contextlib import closing

    def read(home: Path) -> bytes:
        raw = b"".join(p.read_bytes() for p in sorted(Path(home).glob("state.db*")))
        with closing(sqlite3.connect(Path(home) / "state.db")) as conn:
            rows = [*conn.execute("SELECT type, checkpoint FROM checkpoints"),
                    *conn.execute("SELECT type, value FROM writes")]
        return raw + b"\n" + inflated(rows)

    return read
