"""One JSON log line and one OpenTelemetry span per step, with ids and figures but no text."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from supportgraph.app.observability import log_level
from supportgraph.app.settings import SettingsError

pytestmark = pytest.mark.e2e

BODY = "What does a 429 response mean and how long should I wait before retrying?"
TEXT_MARKERS = (b"how long should I wait", b"response mean")
LOG_KEYS = {"event", "ticket_id", "thread_id", "step", "attempt", "duration_ms", "outcome",
            "cost", "model_calls"}


class OTLPCollector:
    """A local OTLP/HTTP endpoint that keeps every trace export request it receives."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.got = threading.Event()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    collector.requests.append(body)
                    collector.got.set()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OTLPCollector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def cli(home: Path, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SUPPORTGRAPH_HOME": str(home), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "supportgraph", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def spans_of(requests: list[bytes]) -> list:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    spans = []
    for raw in requests:
        message = ExportTraceServiceRequest()
        message.ParseFromString(raw)
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    return spans


def attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


@pytest.mark.slow
def test_step_logs_and_otel_spans(e2e_home: Path) -> None:
    with OTLPCollector() as collector:
        run = cli(e2e_home, "-v", "run", "--text", BODY, "--id", "obs-1", "--json",
                  extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint})
        assert run.returncode == 0, run.stderr[-3000:]
        assert collector.got.is_set()  # the provider flushes at exit, before the process ends
    events = json.loads(cli(e2e_home, "audit", "show", "obs-1", "--json").stdout)["events"]
    steps = sorted(e["step"] for e in events)
    assert {"intake", "classify", "retrieve", "draft", "send", "audit"} <= set(steps)

    lines = [json.loads(line) for line in run.stderr.splitlines()
             if line.startswith("{") and '"event": "step"' in line]
    assert sorted(line["step"] for line in lines) == steps
    for line in lines:
        assert set(line) == LOG_KEYS
        assert (line["ticket_id"], line["thread_id"]) == ("obs-1", "ticket:default:obs-1")
        assert line["outcome"] == "ok" and line["attempt"] >= 1 and line["duration_ms"] >= 0
    for marker in TEXT_MARKERS:
        assert marker.decode() not in run.stderr

    spans = spans_of(collector.requests)
    assert sorted(s.name for s in spans) == sorted(f"step {s}" for s in steps)
    for span in spans:
        a = attrs(span)
        assert a["supportgraph.ticket_id"] == "obs-1"
        assert a["supportgraph.thread_id"] == "ticket:default:obs-1"
        assert a["supportgraph.step"] == span.name.removeprefix("step ")
        assert span.end_time_unix_nano >= span.start_time_unix_nano
    assert len({s.trace_id for s in spans}) >= 1
    raw = b"".join(collector.requests)
    for marker in TEXT_MARKERS:
        assert marker not in raw

    quiet = cli(e2e_home, "run", "--text", "How do I rotate my live API key?", "--id", "obs-2")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert '"event": "step"' not in quiet.stderr


def test_log_level_setting(tmp_path: Path) -> None:
    assert log_level(False, {}) == logging.WARNING
    assert log_level(True, {"SUPPORTGRAPH_LOG_LEVEL": "ERROR"}) == logging.INFO
    assert log_level(False, {"SUPPORTGRAPH_LOG_LEVEL": "info"}) == logging.INFO
    with pytest.raises(SettingsError):
        log_level(False, {"SUPPORTGRAPH_LOG_LEVEL": "chatty"})
    bad = cli(tmp_path, "stats", extra_env={"SUPPORTGRAPH_LOG_LEVEL": "chatty"})
    assert bad.returncode == 2 and bad.stderr.startswith("supportgraph: SUPPORTGRAPH_LOG_LEVEL")
