"""Delivery of outbox rows over real transports: a local SMTP server (aiosmtpd, STARTTLS and
AUTH) and a local HTTP webhook receiver; retries, dead letters, sealed deliverables."""

from __future__ import annotations

import datetime as dt
import email
import hashlib
import hmac
import json
import socket
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from contextlib import closing
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from graph.context import Context
from supportgraph.app.delivery import deliver_due, delivery_counts
from supportgraph.app.runner import Runner
from supportgraph.app.services import Services, close_services
from supportgraph.app.settings import DeliverySettings, SettingsError, read_settings
from supportgraph.app.show import ticket_view

AES_KEY = "k" * 32
SECRET = "webhook-secret-0123456789"
SENT_TEXT = "Where can I download the PDF of last month's invoice?"
PHONE = "+44 20 7946 0958"
ADDRESS = "anna.kowalska@example.org"


class Receiver:
    """A webhook endpoint that honours Idempotency-Key: acts once per key, answers 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[dict] = []
        self.acted: dict[str, dict] = {}
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.acted.setdefault(self.headers["Idempotency-Key"], json.loads(body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def runner(demo_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    monkeypatch.setenv("LANGGRAPH_AES_KEY", AES_KEY)
    with Services(read_settings()) as services:
        yield Runner(Context(), services)


def settings_for(url: str, **extra: str) -> DeliverySettings:
    return DeliverySettings({"SUPPORTGRAPH_WEBHOOK_URL": url,
                             "SUPPORTGRAPH_WEBHOOK_SECRET": SECRET,
                             "LANGGRAPH_AES_KEY": AES_KEY,
                             "SUPPORTGRAPH_DELIVERY_BACKOFF_SECONDS": "0", **extra})


def stored_text(home: Path) -> str:
    """Every value of every table of the home's database, as text (what sits at rest)."""
    out = []
    with closing(sqlite3.connect(home / "state.db")) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):
                out.extend(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row)
    return "\n".join(out)


def edited_ticket(runner: Runner, ticket_id: str, tenant: str | None = None) -> str:
    """A ticket that goes to review, answered by a reviewer whose reply quotes PII."""
    outcome = runner.run({"id": ticket_id, "channel": "email", "tenant": tenant,
                          "subject": "banana bread",
                          "body": f"Can you recommend a good banana bread recipe? {PHONE}"},
                         recipient=ADDRESS)
    assert outcome.summary["status"] == "awaiting_review"
    runner.decide(outcome.thread_id, {"type": "edit", "reviewer": "maria", "args": {
        "reply": f"We only answer billing questions; we will call you on {PHONE}."}})
    return outcome.thread_id


def test_webhook_gets_the_real_reply_signed_once_and_nothing_plain_stays(
        runner: Runner, receiver: Receiver, demo_home: Path) -> None:
    thread = edited_ticket(runner, "dl-1", tenant="acme")
    at_rest = stored_text(demo_home)
    assert PHONE not in at_rest and ADDRESS not in at_rest  # sealed, not plain
    assert runner.db.fetchone("SELECT count(*) AS n FROM sg_vault")["n"] == 1

    report = deliver_due(runner.db, settings_for(receiver.url))
    assert (report.delivered, report.dead, report.retrying) == (1, 0, 0)
    [request] = receiver.requests
    body = request["body"]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert request["headers"]["X-Supportgraph-Signature"] == expected
    assert request["headers"]["Idempotency-Key"].startswith("sg-")
    payload = json.loads(body)
    assert payload["ticket_id"] == "dl-1" and payload["tenant"] == "acme"
    assert payload["recipient"] == ADDRESS
    assert PHONE in payload["reply"] and "[PHONE:" not in payload["reply"]

    # Delivered: marked, the sealed copy erased, a second pass sends nothing.
    assert runner.db.fetchone("SELECT count(*) AS n FROM sg_vault")["n"] == 0
    assert deliver_due(runner.db, settings_for(receiver.url)).delivered == 0
    assert len(receiver.requests) == 1
    view = ticket_view(runner, "acme", thread)
    assert view["delivery"]["state"] == "delivered" and view["delivery"]["attempts"] == 1
    assert view["delivery"]["delivered_at"]
    assert view["review"]["reviewer"] == "maria"
    assert "[PHONE:" in view["reply"] and PHONE not in view["reply"]
    out = runner.db.fetchone("SELECT delivered_at, approved_by FROM sg_outbox")
    assert out["delivered_at"] and out["approved_by"] == "maria"
    assert PHONE not in stored_text(demo_home)


def test_failures_back_off_then_dead_letter_visible_in_show_and_stats(
        runner: Runner, demo_home: Path) -> None:
    from supportgraph.app.stats import compute_stats
    from supportgraph.app.timerange import parse_range

    receiver = Receiver(statuses=[503] * 10)
    try:
        outcome = runner.run({"id": "dl-2", "channel": "chat", "body": SENT_TEXT,
                              "customer_id": "cust-7"})
        assert outcome.summary["status"] == "sent"
        slow = settings_for(receiver.url, SUPPORTGRAPH_DELIVERY_BACKOFF_SECONDS="3600",
                            SUPPORTGRAPH_DELIVERY_MAX_ATTEMPTS="3")
        first = deliver_due(runner.db, slow)
        assert (first.retrying, first.delivered) == (1, 0)
        # Backing off: the next pass does not send yet.
        assert deliver_due(runner.db, slow).waiting == 1 and len(receiver.requests) == 1
        row = runner.db.fetchone("SELECT next_attempt_at, last_error FROM sg_deliveries")
        wait = dt.datetime.fromisoformat(row["next_attempt_at"]) - dt.datetime.now(dt.UTC)
        assert wait.total_seconds() > 3000 and "503" in row["last_error"]

        fast = settings_for(receiver.url, SUPPORTGRAPH_DELIVERY_MAX_ATTEMPTS="3")
        runner.db.execute("UPDATE sg_deliveries SET next_attempt_at = '2000-01-01'")
        assert deliver_due(runner.db, fast).retrying == 1
        assert deliver_due(runner.db, fast).dead == 1
        assert len(receiver.requests) == 3 and not receiver.acted
        view = ticket_view(runner, "", outcome.thread_id)
        assert view["delivery"]["state"] == "dead" and view["delivery"]["attempts"] == 3
        assert "gave up after 3 attempts" in view["delivery"]["last_error"]
        stats = compute_stats(runner.db, parse_range(None, None))
        assert stats["deliveries"]["dead"] == 1
        assert delivery_counts(runner.db)["dead"] == 1
        assert deliver_due(runner.db, fast).dead == 0  # dead stays dead
    finally:
        receiver.close()


def test_without_a_key_pii_replies_are_dead_lettered_never_sent_with_tokens(
        demo_home: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    monkeypatch.delenv("LANGGRAPH_AES_KEY", raising=False)
    runner = Runner(Context())
    try:
        edited_ticket(runner, "dl-3")
        chat = runner.run({"id": "dl-4", "channel": "chat", "body": SENT_TEXT,
                           "customer_id": "cust-9"})
        assert chat.summary["status"] == "sent"
        assert runner.db.fetchone("SELECT count(*) AS n FROM sg_vault")["n"] == 0
        report = deliver_due(runner.db, DeliverySettings({
            "SUPPORTGRAPH_WEBHOOK_URL": receiver.url, "SUPPORTGRAPH_WEBHOOK_SECRET": SECRET}))
        # The chat reply needs nothing restored: delivered. The edited one would need the
        # phone number and the address back: dead-lettered for a person, not sent.
        assert (report.delivered, report.dead) == (1, 1)
        [request] = receiver.requests
        assert json.loads(request["body"])["ticket_id"] == "dl-4"
        assert "cannot be restored" in " ".join(report.errors)
        assert PHONE not in stored_text(demo_home)
    finally:
        close_services()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_smtp_with_starttls_and_login_delivers_to_the_reply_address(
        runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    received: list[dict] = []
    logins: list[str] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            received.append({"to": envelope.rcpt_tos, "data": envelope.content,
                             "tls": session.ssl is not None})
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"bot" and auth_data.password == b"p@ss"
        logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    with socket.socket() as probe:  # aiosmtpd needs a port number up front
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="localhost", port=port, tls_context=tls,
                            require_starttls=True, authenticator=authenticator,
                            auth_require_tls=True)
    controller.start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test server's certificate
        settings = DeliverySettings({
            "SUPPORTGRAPH_SMTP_URL": f"smtp://bot:p%40ss@localhost:{port}?starttls=true",
            "SUPPORTGRAPH_SMTP_FROM": "support@example.com", "LANGGRAPH_AES_KEY": AES_KEY})
        edited_ticket(runner, "dl-5")
        report = deliver_due(runner.db, settings)
        assert report.delivered == 1, report.errors
        [mail] = received
        assert mail["to"] == [ADDRESS] and mail["tls"] and logins == ["bot"]
        message = email.message_from_bytes(mail["data"], policy=policy.default)
        assert message["Subject"] == "Re: banana bread"
        assert PHONE in message.get_content()
        assert message["Message-ID"].startswith("<sg-")
    finally:
        controller.stop()


@pytest.mark.parametrize("environ, needle", [
    ({"SUPPORTGRAPH_SMTP_URL": "smtp://host:notaport"}, "SMTP_URL"),
    ({"SUPPORTGRAPH_SMTP_URL": "http://host:25"}, "SMTP_URL"),
    ({"SUPPORTGRAPH_SMTP_URL": "smtp://h:25?starttls=maybe", "SUPPORTGRAPH_SMTP_FROM": "a@b"},
     "starttls"),
    ({"SUPPORTGRAPH_SMTP_URL": "smtp://h:25"}, "SMTP_FROM"),
    ({"SUPPORTGRAPH_WEBHOOK_URL": "http://example.com/x",
      "SUPPORTGRAPH_WEBHOOK_SECRET": SECRET}, "https"),
    ({"SUPPORTGRAPH_WEBHOOK_URL": "https://example.com/x"}, "SECRET"),
    ({"SUPPORTGRAPH_DELIVERY_MAX_ATTEMPTS": "0"}, "between"),
    ({"SUPPORTGRAPH_DELIVERY_BACKOFF_SECONDS": "-1"}, "between"),
    ({"SUPPORTGRAPH_DELIVERY_MAX_ATTEMPTS": "x" * 10_000}, "valid"),
])
def test_bad_delivery_settings_are_one_line_errors(environ: dict, needle: str) -> None:
    with pytest.raises(SettingsError, match=needle) as info:
        DeliverySettings(environ)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_a_rejected_ticket_leaves_no_sealed_copy(runner: Runner, receiver: Receiver) -> None:
    outcome = runner.run({"id": "dl-6", "channel": "email", "subject": "cake",
                          "body": f"Can you recommend a good banana bread recipe? {PHONE}"},
                         recipient=ADDRESS)
    assert runner.db.fetchone("SELECT count(*) AS n FROM sg_vault")["n"] == 1
    runner.decide(outcome.thread_id, {"type": "ignore", "reviewer": "maria", "args": "spam"})
    report = deliver_due(runner.db, settings_for(receiver.url))
    assert (report.delivered, report.dead) == (0, 0) and not receiver.requests
    assert runner.db.fetchone("SELECT count(*) AS n FROM sg_vault")["n"] == 0


@pytest.mark.postgres
def test_delivery_on_postgres(demo_home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
                              receiver: Receiver) -> None:
    from supportgraph.app.stats import compute_stats
    from supportgraph.app.timerange import parse_range

    monkeypatch.setenv("LANGGRAPH_AES_KEY", AES_KEY)
    runner = Runner(Context().with_settings(read_settings(database_url=pg_url)))
    try:
        thread = edited_ticket(runner, "pg-dl-1", tenant="acme")
        rejected = runner.run({"id": "pg-dl-2", "body": "Can you recommend a good banana bread "
                               "recipe?", "customer_id": "c-2"})
        runner.decide(rejected.thread_id, {"type": "ignore", "reviewer": "m", "args": "spam"})
        report = deliver_due(runner.db, settings_for(receiver.url))
        assert (report.delivered, report.dead) == (1, 0), report.errors
        [request] = receiver.requests
        assert PHONE in json.loads(request["body"])["reply"]
        assert runner.db.fetchone("SELECT count(*) AS n FROM sg_vault")["n"] == 0
        assert ticket_view(runner, "acme", thread)["delivery"]["state"] == "delivered"
        assert compute_stats(runner.db, parse_range(None, None))["deliveries"]["delivered"] == 1
    finally:
        close_services()
