"""`supportgraph deliver` SIGKILLed between sending and marking: the next run sends again with
the same idempotency key, so a receiver that honours it acts exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SECRET = "webhook-secret-0123456789"
KEY = "0123456789abcdef0123456789abcdef"


def env_for(home: Path, url: str) -> dict[str, str]:
    return {**os.environ, "SUPPORTGRAPH_HOME": str(home), "PYTHONIOENCODING": "utf-8",
            "LANGGRAPH_AES_KEY": KEY, "SUPPORTGRAPH_WEBHOOK_URL": url,
            "SUPPORTGRAPH_WEBHOOK_SECRET": SECRET, "SUPPORTGRAPH_DELIVERY_BACKOFF_SECONDS": "0"}


def test_sigkill_between_send_and_mark_never_acts_twice(e2e_home: Path) -> None:
    requests: list[str] = []
    acted: dict[str, dict] = {}
    victim: list[subprocess.Popen] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            key = self.headers["Idempotency-Key"]
            requests.append(key)
            acted.setdefault(key, body)  # the receiver acts once per key
            if victim:  # the first deliverer dies after the receiver acted, before it marks
                os.kill(victim.pop().pid, signal.SIGKILL)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = env_for(e2e_home, f"http://127.0.0.1:{server.server_port}/hook")
    try:
        run = subprocess.run([sys.executable, "-m", "supportgraph", "run", "--id", "kill-1",
                              "--customer-id", "cust-1", "--quiet", "--text",
                              "Where can I download the PDF of last month's invoice?"],
                             env={**env, "SUPPORTGRAPH_WEBHOOK_URL": ""}, cwd=e2e_home.parent,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0 and ": sent" in run.stdout, run.stderr[-2000:]

        first = subprocess.Popen([sys.executable, "-m", "supportgraph", "deliver", "--once"],
                                 env=env, cwd=e2e_home.parent, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        victim.append(first)
        first.communicate(timeout=300)
        assert first.returncode == -signal.SIGKILL
        assert len(requests) == 1

        second = subprocess.run([sys.executable, "-m", "supportgraph", "deliver", "--once"],
                                env=env, cwd=e2e_home.parent, capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 0, second.stderr
        assert "Traceback" not in second.stderr
        assert "delivered 1" in second.stdout
        assert len(requests) == 2 and requests[0] == requests[1]
        assert len(acted) == 1 and acted[requests[0]]["recipient"] == "cust-1"

        third = subprocess.run([sys.executable, "-m", "supportgraph", "deliver", "--once"],
                               env=env, cwd=e2e_home.parent, capture_output=True, text=True,
                               timeout=300)
        assert third.returncode == 0 and len(requests) == 2  # nothing left to send

        show = subprocess.run([sys.executable, "-m", "supportgraph", "show", "kill-1", "--json"],
                              env=env, cwd=e2e_home.parent, capture_output=True, text=True,
                              timeout=300)
        view = json.loads(show.stdout)
        assert view["delivery"]["state"] == "delivered" and view["delivery"]["attempts"] == 2
        assert view["recipient"] == "cust-1"
    finally:
        server.shutdown()
        server.server_close()
