"""`supportgraph serve`: the review inbox on its own (no LangGraph server), as a real process.

It works on the same database as the CLI: a ticket run by `supportgraph run` waits in its queue
and a decision taken there is the CLI's decision. Sessions are signed with the home's inbox
secret (derived from its PII salt), so a restart keeps reviewers signed in.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from graph.persistence import open_database
from supportgraph.app.keys import add_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
OOS = "Can you recommend a good recipe for banana bread?"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "SUPPORTGRAPH_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}


def serve(home: Path, port: int, log: Path) -> subprocess.Popen:
    """`supportgraph serve` on that port; returns once /inbox/login answers."""
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "supportgraph", "serve", "--host",
                                 "127.0.0.1", "--port", str(port)], env=_env(home),
                                cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/inbox/login", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    stop(proc)
    pytest.fail(f"serve did not answer in 180 s: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_serve_decides_on_the_cli_database_and_sessions_survive_a_restart(
    e2e_home: Path, tmp_path: Path
) -> None:
    ran = subprocess.run([sys.executable, "-m", "supportgraph", "run", "--text", OOS,
                          "--id", "sv-1"],
                         env=_env(e2e_home), cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode == 0, ran.stderr
    db = open_database(None, e2e_home)
    key = add_key(db, "default", "reviewer", "default-sam")["key"]
    db.close()
    port, log = _free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    proc = serve(e2e_home, port, log)
    try:
        with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as web:
            signed = web.post("/inbox/login", data={"key": key})
            assert signed.status_code == 303 and key not in signed.headers["set-cookie"]
            assert ">sv-1</a>" in web.get("/inbox").text
            cookie = signed.cookies["sg_inbox"]
        stop(proc)
        proc = serve(e2e_home, port, log)
        with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as web:
            assert web.get("/inbox").status_code == 303  # no cookie: to the sign-in page
            web.cookies.set("sg_inbox", cookie, domain="127.0.0.1", path="/inbox")
            # The cookie from before the restart still works: the secret is the home's.
            queue = web.get("/inbox")
            assert queue.status_code == 200 and ">sv-1</a>" in queue.text
            done = web.post("/inbox/tickets/ticket:default:sv-1/decide",
                            headers={"x-api-key": key},
                            data={"action": "edit", "reply": "A colleague will follow up."})
            assert done.status_code == 200, done.text
            assert done.json() == {"thread_id": "ticket:default:sv-1", "status": "sent",
                                   "decided_by": "default-sam"}
    finally:
        stop(proc)
    with sqlite3.connect(e2e_home / "state.db") as conn:
        assert conn.execute("SELECT reply, approved_by FROM sg_outbox WHERE ticket_id = 'sv-1'"
                            ).fetchall() == [("A colleague will follow up.", "default-sam")]
