"""Review commands in separate processes against a real Postgres: one decision wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def cli_env(home: Path, pg_url: str) -> dict[str, str]:
    return {**os.environ, "SUPPORTGRAPH_HOME": str(home), "DATABASE_URL": pg_url}


def test_concurrent_review_processes_on_postgres_apply_once(demo_home: Path, pg_url: str) -> None:
    env = cli_env(demo_home, pg_url)
    run = subprocess.run([sys.executable, "-m", "supportgraph", "run", "--json", "--id", "pg-1",
                          "--text", "What's the best pizza place in Naples?"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "awaiting_review"

    listed = subprocess.run([sys.executable, "-m", "supportgraph", "review", "list", "--json"],
                            env=env, capture_output=True, text=True, timeout=600)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["ticket_id"] for r in rows] == ["pg-1"] and rows[0]["sla"] == "ok"

    deciders = [
        subprocess.Popen([sys.executable, "-m", "supportgraph", "review", "edit", "pg-1",
                          "--reply", f"Reply from reviewer {n}", "--reviewer", f"r{n}"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in deciders]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1, 1], results
    assert all("already decided" in err for code, err in results if code == 1)

    with psycopg.connect(pg_url) as conn:
        sent = conn.execute("SELECT approved_by FROM sg_outbox").fetchall()
        review = conn.execute("SELECT status, decided_by FROM sg_reviews").fetchone()
    assert len(sent) == 1
    winner = sent[0][0]
    assert review == ("closed", winner)
