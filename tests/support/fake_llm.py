"""A scriptable local HTTP server that speaks the OpenAI and Anthropic wire formats.

Tests and the provider benchmark point the real `openai` and `anthropic` SDKs at it (through
`base_url`) so that every failure a vendor can produce (slowness, 429 with Retry-After, 5xx, a
dropped connection, a malformed body, empty or off-schema content, a refusal) can be produced on
demand, without network access and without mocking our own code.

Script behaviour per API with `server.script("openai", Reply("hi"), Status(429, retry_after=2))`;
each incoming request consumes the next scripted action of its API, and when the script is empty
the server answers with `server.default_text`. Every request is recorded (path, headers without
credentials, JSON body) in `server.requests`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})


@dataclass(frozen=True)
class Reply:
    """Answer normally with `text` and the given usage counts."""

    text: str
    input_tokens: int = 100
    output_tokens: int = 20
    finish: str = "stop"  # "stop" or "length" (OpenAI names; mapped for Anthropic)
    refusal: str | None = None  # OpenAI `message.refusal` / Anthropic stop_reason "refusal"
    delay_s: float = 0.0
    omit_usage: bool = False  # like some OpenAI-compatible servers


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error status (and an optional Retry-After header in seconds)."""

    status: int
    retry_after: float | None = None
    message: str = "scripted error"


@dataclass(frozen=True)
class Slow:
    """Wait `seconds` before answering with `text` (to exceed the client's timeout)."""

    seconds: float
    text: str = "late answer"


@dataclass(frozen=True)
class Drop:
    """Close the connection without sending any response."""


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with a body that is not JSON."""

    body: str = '{"id": "broken", "choices": [ {"message": '


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (credentials removed)."""

    api: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    had_credentials: bool


@dataclass
class _State:
    scripts: dict[str, deque] = field(
        default_factory=lambda: {"openai": deque(), "anthropic": deque()}
    )
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    default_text: str = "Hello! Your invoice is available in Dashboard > Billing > Invoices."


def _openai_body(action: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": action.text}
    if action.refusal is not None:
        message = {"role": "assistant", "content": None, "refusal": action.refusal}
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": action.finish}],
    }
    if not action.omit_usage:
        body["usage"] = {
            "prompt_tokens": action.input_tokens,
            "completion_tokens": action.output_tokens,
            "total_tokens": action.input_tokens + action.output_tokens,
        }
    return body


def _anthropic_body(action: Reply, model: str) -> dict[str, Any]:
    stop = {"stop": "end_turn", "length": "max_tokens"}.get(action.finish, action.finish)
    content = [{"type": "text", "text": action.text}] if action.text else []
    if action.refusal is not None:
        stop = "refusal"
        content = [{"type": "text", "text": action.refusal}]
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": action.input_tokens, "output_tokens": action.output_tokens},
    }


def _error_body(api: str, status: int, message: str) -> dict[str, Any]:
    if api == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": message}}
    return {"error": {"message": message, "type": "server_error", "code": str(status)}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        """Disable Nagle: headers and body are separate writes, and delayed ACKs cost 40 ms."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Stay quiet: the tests read the recorded requests instead."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        """Record the request, then play the next scripted action of its API."""
        state = self.server.state
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        if self.path.rstrip("/").endswith("/chat/completions"):
            api = "openai"
        elif self.path.rstrip("/").endswith("/messages"):
            api = "anthropic"
        else:
            self._send_json(404, {"error": {"message": f"unknown path {self.path}"}})
            return
        headers = {
            k.lower(): v for k, v in self.headers.items() if k.lower() not in _SECRET_HEADERS
        }
        had_credentials = any(k.lower() in _SECRET_HEADERS for k in self.headers.keys())
        with state.lock:
            state.requests.append(RecordedRequest(api, self.path, headers, body, had_credentials))
            script = state.scripts[api]
            action = script.popleft() if script else Reply(state.default_text)
        model = str(body.get("model", "unknown"))
        self._play(api, action, model)

    def _play(self, api: str, action: Any, model: str) -> None:
        state = self.server.state
        if isinstance(action, Slow):
            if state.stopping.wait(action.seconds):
                return
            action = Reply(action.text)
        if isinstance(action, Reply):
            if action.delay_s and state.stopping.wait(action.delay_s):
                return
            build = _openai_body if api == "openai" else _anthropic_body
            payload = build(action, model)
            self._send_json(200, payload)
        elif isinstance(action, Status):
            extra = {}
            if action.retry_after is not None:
                extra["Retry-After"] = f"{action.retry_after:g}"
            self._send_json(action.status, _error_body(api, action.status, action.message), extra)
        elif isinstance(action, Malformed):
            self._send_raw(200, action.body.encode(), "application/json")
        elif isinstance(action, Drop):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                self.log_error("connection already closed")
        else:
            raise TypeError(f"unknown scripted action {action!r}")

    def _send_json(self, status: int, payload: dict[str, Any], extra: dict | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", extra)

    def _send_raw(self, status: int, data: bytes, ctype: str, extra: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", "req_fake")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore client disconnects (the timeout tests hang up on purpose)."""


class FakeLLMServer:
    """A local OpenAI + Anthropic compatible server; use as a context manager."""

    def __init__(self) -> None:
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeLLMServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        self._server = _Server(self._state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release slow handlers that are still waiting."""
        self._state.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def openai_base_url(self) -> str:
        """Base URL for `openai.OpenAI(base_url=...)`."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for `anthropic.Anthropic(base_url=...)` (the SDK appends /v1/messages)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def default_text(self) -> str:
        """The answer given when no action is scripted."""
        return self._state.default_text

    @default_text.setter
    def default_text(self, value: str) -> None:
        self._state.default_text = value

    def script(self, api: str, *actions: Any) -> None:
        """Queue actions for the next requests to `api` ("openai" or "anthropic")."""
        with self._state.lock:
            self._state.scripts[api].extend(actions)

    def pending(self, api: str) -> int:
        """Count the scripted actions not yet consumed."""
        with self._state.lock:
            return len(self._state.scripts[api])

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far."""
        with self._state.lock:
            return list(self._state.requests)

    def requests_for(self, api: str) -> list[RecordedRequest]:
        """Return the requests received for one API."""
        return [r for r in self.requests if r.api == api]

    def reset(self) -> None:
        """Forget scripts and recorded requests."""
        with self._state.lock:
            for queue in self._state.scripts.values():
                queue.clear()
            self._state.requests.clear()


def free_port() -> int:
    """Find a port on 127.0.0.1 with nothing listening (for connection-refused tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
