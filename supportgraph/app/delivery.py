"""Delivering outbox rows to customers: SMTP or a signed webhook, retried, exactly once.

The workflow's `send` step ends at one durable outbox row per (tenant, ticket) holding the
*redacted* reply. What the customer must receive (the real reply and address) is kept apart,
in `sg_vault`: AES-sealed with the checkpoint key (`LANGGRAPH_AES_KEY`) when the ticket is
run, restored only in memory here, and erased as soon as the row is delivered or given up
(dead-lettered). So no plaintext PII is ever at rest, and the sealed copy lives only as long as
a delivery is pending. Without a key nothing is sealed: replies that need a restored value
(an email address, a redacted token in the text) are dead-lettered for a person to handle,
never sent with `[EMAIL:...]` tokens in them.

Exactly once per (tenant, ticket): a row is claimed with one conditional UPDATE (attempts + 1)
before it is sent, and marked delivered after. A sender that dies between send and mark leaves
the claim; the next `deliver` takes it over (at once on the same host when the pid is gone,
else when the claim expires) and sends again with the *same* idempotency key (webhook header
`Idempotency-Key`, SMTP `Message-ID`), so a receiver that honours it acts once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

from supportgraph.text.pii import _token, find_pii

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120.0
"""A claim not marked within this long is taken to be a dead sender's."""
TIMEOUT_SECONDS = 15.0
_TOKEN_RE = re.compile(r"\[(?:EMAIL|PHONE|CARD|IBAN|SECRET):[0-9a-f]{8}\]")


class Undeliverable(Exception):
    """A row that no retry can deliver (no address, unrestorable text, refused for good)."""


class SealError(RuntimeError):
    """The sealed copy cannot be opened with the configured key."""


@dataclass
class DeliveryReport:
    """What one pass of `deliver` did."""

    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    waiting: int = 0
    """Rows not yet due (backoff) or without a transport for their channel."""
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    def line(self) -> str:
        """One line for a person."""
        return (f"delivered {self.delivered}, retrying {self.retrying}, dead {self.dead}, "
                f"waiting {self.waiting}")


# --------------------------------------------------------------------------- the vault


def seal(aes_key: str, obj: Any) -> str:
    """`obj` encrypted and authenticated (AES-EAX, LangGraph's serializer) as text."""
    from graph.persistence import checkpoint_serde

    kind, data = checkpoint_serde(aes_key).dumps_typed(obj)
    if "+" not in kind:  # never store it if the serializer did not encrypt
        raise SealError("sealing needs LANGGRAPH_AES_KEY")
    return json.dumps({"t": kind, "d": base64.b64encode(data).decode()})


def unseal(aes_key: str | None, text: str) -> Any:
    """The object `seal` stored; SealError without the right key."""
    from graph.persistence import CheckpointKeyError, checkpoint_serde

    if not aes_key:
        raise SealError("the reply was sealed with LANGGRAPH_AES_KEY: set it to deliver")
    box = json.loads(text)
    try:
        return checkpoint_serde(aes_key).loads_typed((box["t"], base64.b64decode(box["d"])))
    except CheckpointKeyError as exc:
        raise SealError(str(exc)) from None


def pii_tokens(text: str, salt: str) -> dict[str, str]:
    """Each redaction token `redact(text, salt=salt)` produces, mapped to its original value."""
    return {_token(kind, text[s:e], salt): text[s:e] for kind, s, e in find_pii(text or "")}


def keep_deliverable(db: Any, aes_key: str | None, delivery_key: str, *, salt: str,
                     recipient: str | None = None, subject: str | None = None,
                     texts: tuple[str, ...] = ()) -> bool:
    """Seal what delivery needs to restore (address, PII in `texts`); False without a key.

    Called at the edge, before the redacted ticket (or a reviewer's redacted edit) enters the
    graph. Merges with what an earlier call kept for the same delivery.
    """
    if not aes_key:
        return False
    tokens: dict[str, str] = {}
    for text in texts:
        tokens.update(pii_tokens(text, salt))
    if not tokens and not recipient and not subject:
        return False
    row = db.fetchone("SELECT sealed FROM sg_vault WHERE delivery_key = :k", {"k": delivery_key})
    kept = unseal(aes_key, row["sealed"]) if row else {}
    merged = {"recipient": recipient or kept.get("recipient"),
              "subject": subject or kept.get("subject"),
              "tokens": {**(kept.get("tokens") or {}), **tokens}}
    db.execute("""INSERT INTO sg_vault (delivery_key, sealed, created_at)
                  VALUES (:k, :s, :now)
                  ON CONFLICT (delivery_key) DO UPDATE SET sealed = excluded.sealed""",
               {"k": delivery_key, "s": seal(aes_key, merged), "now": _iso()})
    return True


def restore(text: str, tokens: dict[str, str]) -> str:
    """`text` with the tokens whose originals are known put back."""
    return _TOKEN_RE.sub(lambda m: tokens.get(m.group(0), m.group(0)), text)


# --------------------------------------------------------------------------- transports


def idempotency_key(delivery_key: str) -> str:
    """The receiver-facing key of one delivery (stable across retries and processes)."""
    return "sg-" + hashlib.sha256(delivery_key.encode()).hexdigest()[:32]


def signature(secret: str, body: bytes) -> str:
    """`X-Supportgraph-Signature`: sha256=<hex HMAC-SHA256 of the raw body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(cfg: dict[str, str], message: dict[str, Any]) -> None:
    """POST the reply as JSON, signed; raises Undeliverable on a permanent refusal."""
    body = json.dumps({k: message[k] for k in ("ticket_id", "tenant", "recipient", "reply",
                                               "channel", "subject")},
                      ensure_ascii=False, sort_keys=True).encode()
    request = urllib.request.Request(cfg["url"], data=body, method="POST", headers={
        "Content-Type": "application/json",
        "Idempotency-Key": message["idempotency_key"],
        "X-Supportgraph-Signature": signature(cfg["secret"], body),
        "User-Agent": "supportgraph-deliver"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read(1024)
    except urllib.error.HTTPError as exc:
        if exc.code == 409:  # the receiver already has this idempotency key
            return
        if 400 <= exc.code < 500 and exc.code not in (408, 425, 429):
            raise Undeliverable(f"webhook refused it: HTTP {exc.code}") from None
        raise OSError(f"webhook answered HTTP {exc.code}") from None


def send_smtp(cfg: dict[str, Any], message: dict[str, Any]) -> None:
    """Send the reply by SMTP (STARTTLS and login when configured)."""
    name, address = parseaddr(message["recipient"] or "")
    if "@" not in address:
        raise Undeliverable("no email address to send the reply to")
    mail = EmailMessage()
    mail["From"] = cfg["from"]
    mail["To"] = address
    subject = message.get("subject") or "Your support request"
    mail["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    mail["Message-ID"] = f"<{message['idempotency_key']}@supportgraph>"
    mail["X-Supportgraph-Ticket"] = message["ticket_id"]
    mail.set_content(message["reply"])
    context = ssl.create_default_context()
    if cfg["ssl"]:
        client: smtplib.SMTP = smtplib.SMTP_SSL(cfg["host"], cfg["port"],
                                                timeout=TIMEOUT_SECONDS, context=context)
    else:
        client = smtplib.SMTP(cfg["host"], cfg["port"], timeout=TIMEOUT_SECONDS)
    with client:
        client.ehlo()
        if cfg["starttls"]:
            client.starttls(context=context)
            client.ehlo()
        if cfg["user"]:
            client.login(cfg["user"], cfg["password"] or "")
        try:
            client.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise Undeliverable(f"the mail server refused the recipient: "
                                f"{_smtp_reason(exc)}") from None


def _smtp_reason(exc: smtplib.SMTPRecipientsRefused) -> str:
    codes = [code for code, _ in exc.recipients.values()]
    return f"SMTP {codes[0]}" if codes else "refused"


# --------------------------------------------------------------------------- the worker


def _iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).isoformat(timespec="microseconds")


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim_is_dead(claimed_by: str | None, claimed_until: float | None) -> bool:
    if claimed_until is None or claimed_until < time.time():
        return True
    host, _, pid = (claimed_by or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def enqueue(db: Any) -> int:
    """A delivery row for every outbox row that has none yet (idempotent)."""
    now = _iso()
    rows = db.fetchall("""SELECT o.delivery_key, o.ticket_id, o.thread_id FROM sg_outbox o
                          WHERE o.delivered_at IS NULL AND NOT EXISTS (
                              SELECT 1 FROM sg_deliveries d
                              WHERE d.delivery_key = o.delivery_key)""")
    added = 0
    for row in rows:
        added += db.execute(
            """INSERT INTO sg_deliveries (delivery_key, tenant, ticket_id, thread_id, state,
                   attempts, next_attempt_at, updated_at)
               VALUES (:k, :tenant, :ticket, :thread, 'pending', 0, :now, :now)
               ON CONFLICT (delivery_key) DO NOTHING""",
            {"k": row["delivery_key"], "tenant": row["delivery_key"].split(":", 1)[0] or "default",
             "ticket": row["ticket_id"], "thread": row["thread_id"], "now": now})
    return added


def erase_unsent(db: Any) -> int:
    """Erase the sealed copies of tickets that closed without a reply to deliver.

    A rejected, stalled or failed ticket never reaches the outbox, so nothing else would
    erase what was sealed for it when it was run.
    """
    return db.execute("""DELETE FROM sg_vault WHERE NOT EXISTS (
                             SELECT 1 FROM sg_outbox o WHERE o.delivery_key = sg_vault.delivery_key)
                         AND EXISTS (
                             SELECT 1 FROM sg_runs r
                             WHERE r.status IN ('rejected', 'stalled', 'failed')
                             AND (CASE WHEN r.tenant IS NULL OR r.tenant IN ('', 'default')
                                       THEN '' ELSE r.tenant END) || ':' || r.ticket_id
                                 = sg_vault.delivery_key)""")


def _transport(settings: Any, channel: str) -> str | None:
    """SMTP for email tickets when configured, else the webhook; None: wait for one."""
    if channel == "email" and settings.smtp:
        return "smtp"
    return "webhook" if settings.webhook else None


def deliver_due(db: Any, settings: Any) -> DeliveryReport:
    """Send every delivery that is due now, once; returns what happened."""
    db.migrate()
    enqueue(db)
    erase_unsent(db)
    report = DeliveryReport()
    now = datetime.now(UTC)
    candidates = db.fetchall(
        """SELECT d.delivery_key, d.state, d.attempts, d.next_attempt_at, d.claimed_by,
                  d.claimed_until, o.channel FROM sg_deliveries d
           JOIN sg_outbox o ON o.delivery_key = d.delivery_key
           WHERE d.state IN ('pending', 'sending') ORDER BY d.next_attempt_at""")
    for row in candidates:
        if row["state"] == "pending" and row["next_attempt_at"] > _iso(now):
            report.waiting += 1
            continue
        if row["state"] == "sending" and not _claim_is_dead(row["claimed_by"],
                                                             row["claimed_until"]):
            continue  # another deliverer is on it
        transport = _transport(settings, row["channel"])
        if transport is None:
            report.waiting += 1
            continue
        if not _claim(db, row):
            continue
        _attempt(db, settings, row["delivery_key"], row["attempts"] + 1, transport, report)
    return report


def _claim(db: Any, row: dict) -> bool:
    """Take a row for sending; one conditional UPDATE, so only one deliverer wins."""
    return bool(db.execute(
        """UPDATE sg_deliveries SET state = 'sending', attempts = attempts + 1,
               claimed_by = :me, claimed_until = :until, updated_at = :now
           WHERE delivery_key = :k AND state = :state AND attempts = :attempts""",
        {"me": _owner(), "until": time.time() + CLAIM_SECONDS, "now": _iso(),
         "k": row["delivery_key"], "state": row["state"], "attempts": row["attempts"]}))


def _message(db: Any, settings: Any, key: str) -> dict[str, Any]:
    """The deliverable message, restored from the outbox row and the sealed copy."""
    out = db.fetchone("SELECT ticket_id, channel, customer_id, reply FROM sg_outbox "
                      "WHERE delivery_key = :k", {"k": key})
    vault = db.fetchone("SELECT sealed FROM sg_vault WHERE delivery_key = :k", {"k": key})
    kept = unseal(settings.aes_key, vault["sealed"]) if vault else {}
    tokens = kept.get("tokens") or {}
    recipient = kept.get("recipient") or out["customer_id"]
    if recipient and _TOKEN_RE.search(recipient):
        recipient = None  # a redacted address cannot be written to
    reply = restore(out["reply"], tokens)
    if _TOKEN_RE.search(reply):
        raise Undeliverable("the reply holds redacted values that cannot be restored "
                            "(set LANGGRAPH_AES_KEY before running tickets); answer by hand")
    if out["channel"] == "email" and not recipient:
        raise Undeliverable("no recipient address for this email ticket (it had no "
                            "customer_id, From or Reply-To, or LANGGRAPH_AES_KEY was unset when "
                            "it ran); answer by hand")
    subject = restore(kept.get("subject") or "", tokens)
    return {"ticket_id": out["ticket_id"], "tenant": key.split(":", 1)[0] or None,
            "recipient": recipient, "reply": reply, "channel": out["channel"],
            "subject": subject, "idempotency_key": idempotency_key(key)}


def _attempt(db: Any, settings: Any, key: str, attempt: int, transport: str,
             report: DeliveryReport) -> None:
    try:
        message = _message(db, settings, key)
        if transport == "smtp":
            send_smtp(settings.smtp, message)
        else:
            send_webhook(settings.webhook, message)
    except (Undeliverable, SealError) as exc:
        _finish(db, key, "dead", transport, str(exc))
        report.dead += 1
        report.errors.append(f"{key}: {exc}")
        return
    except (OSError, smtplib.SMTPException) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        if attempt >= settings.max_attempts:
            _finish(db, key, "dead", transport, f"gave up after {attempt} attempts: {reason}")
            report.dead += 1
        else:
            delay = settings.backoff_seconds * 2 ** (attempt - 1)
            db.execute("""UPDATE sg_deliveries SET state = 'pending', next_attempt_at = :next,
                              claimed_by = NULL, claimed_until = NULL, transport = :tr,
                              last_error = :err, updated_at = :now
                          WHERE delivery_key = :k AND state = 'sending'""",
                       {"next": _iso(datetime.now(UTC) + timedelta(seconds=delay)),
                        "tr": transport, "err": reason, "now": _iso(), "k": key})
            report.retrying += 1
        report.errors.append(f"{key}: {reason}")
        return
    _finish(db, key, "delivered", transport, None)
    report.delivered += 1


def _finish(db: Any, key: str, state: str, transport: str, error: str | None) -> None:
    """Mark a row delivered or dead, and erase its sealed copy (no longer needed)."""
    now = _iso()
    db.execute("""UPDATE sg_deliveries SET state = :state, transport = :tr, last_error = :err,
                      delivered_at = :delivered, claimed_by = NULL, claimed_until = NULL,
                      updated_at = :now WHERE delivery_key = :k""",
               {"state": state, "tr": transport, "err": error, "now": now, "k": key,
                "delivered": now if state == "delivered" else None})
    if state == "delivered":
        db.execute("UPDATE sg_outbox SET delivered_at = :now WHERE delivery_key = :k",
                   {"now": now, "k": key})
    db.execute("DELETE FROM sg_vault WHERE delivery_key = :k", {"k": key})
    log.info(json.dumps({"event": "delivery", "delivery_key": key, "state": state,
                         "transport": transport}))


def delivery_counts(db: Any) -> dict[str, int]:
    """Outbox rows by delivery state (rows not yet seen by `deliver` count as pending)."""
    rows = db.fetchall("""SELECT coalesce(d.state, 'pending') AS state, count(*) AS n
                          FROM sg_outbox o LEFT JOIN sg_deliveries d
                          ON d.delivery_key = o.delivery_key GROUP BY coalesce(d.state,
                          'pending')""")
    counts = {"pending": 0, "sending": 0, "delivered": 0, "dead": 0}
    counts.update({r["state"]: int(r["n"]) for r in rows})
    return counts
