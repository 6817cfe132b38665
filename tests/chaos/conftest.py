"""Fixtures for the chaos suite: a private home, worker processes, a Postgres we may restart."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chaos_support import Proc

from retrieval.files import copy_tree
from tests.support.pg import running_server


@pytest.fixture
def chaos_home(template_home: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared home for this test's processes (not set in the env)."""
    home = tmp_path / "chaos_home"
    copy_tree(template_home, home)
    return home


@pytest.fixture
def spawn(chaos_home: Path) -> Iterator[Callable[..., Proc]]:
    """Start `supportgraph ARGS` with the chaos home (and DATABASE_URL if given)."""
    started: list[Proc] = []

    def start(*args: str, database_url: str = "", env: dict | None = None) -> Proc:
        full = {**os.environ, "SUPPORTGRAPH_HOME": str(chaos_home), **(env or {})}
        if database_url:
            full["DATABASE_URL"] = database_url
        proc = Proc(list(args), full)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.popen.poll() is None:
            proc.kill()


@pytest.fixture
def own_pg(pg_server) -> Iterator:
    """A Postgres cluster this test owns (it may stop and restart it); removed afterwards."""
    with running_server("sg-pg-chaos-", bindir=pg_server.bindir) as server:
        yield server
