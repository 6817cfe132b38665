"""Ticket intake of RFC 822 emails: the customer's own text, subject, ids and reply address."""

from __future__ import annotations

import codecs
import email
import email.errors
import email.utils
import hashlib
import re
from email import policy
from email.message import EmailMessage, Message
from typing import Any

from supportgraph.text.html import html_to_text
from supportgraph.text.normalise import (
    CONTROL_RE,
    MAX_ID_CHARS,
    MAX_SCREENED_CHARS,
    MAX_SUBJECT_CHARS,
    TicketError,
    check_body_size,
    check_id,
    one_line,
)
from supportgraph.text.quotes import strip_quotes_and_signature

# Above this share of U+FFFD the "text" is binary garbage, not a mis-declared charset.
_MAX_UNDECODABLE = 0.3
_MSGID_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


def _decode_part(part: Message) -> str:
    """Decode a leaf part with its declared charset; bad bytes are replaced, never raised."""
    payload = part.get_payload(decode=True)
    if payload is None:
        payload = b""
    if isinstance(payload, str):  # pragma: no cover - get_payload(decode=True) returns bytes
        payload = payload.encode("utf-8", "surrogateescape")
    if not isinstance(payload, bytes):  # pragma: no cover - a leaf part has no sub-messages
        payload = b""
    charset = part.get_content_charset() or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except (LookupError, ValueError):
        return payload.decode("utf-8", errors="replace")


def _body_text(msg: EmailMessage) -> str:
    """Pick the customer's text: text/plain first, else text/html rendered as text."""
    for subtype in ("plain", "html"):
        try:
            part = msg.get_body(preferencelist=(subtype,))
        except (KeyError, LookupError, ValueError, AttributeError):
            part = None
        if part is None:
            continue
        text = _decode_part(part)
        if subtype == "html":
            text = html_to_text(text)
        if text.strip():
            return text
    return ""


def _header(msg: EmailMessage, name: str) -> str:
    """Read a header defensively: malformed headers give "" rather than an exception."""
    try:
        value = msg.get(name)
    except (ValueError, LookupError, TypeError, AttributeError, IndexError):
        return ""
    return "" if value is None else str(value)


def _message_id(msg: EmailMessage) -> str | None:
    raw = _header(msg, "Message-ID").strip().strip("<>").strip()
    # "@" is replaced too: an id shaped like an email address would be redacted as PII later.
    cleaned = _MSGID_UNSAFE_RE.sub("_", raw).strip("_.-")[:MAX_ID_CHARS]
    return cleaned or None


def email_parts(data: bytes) -> list[str]:
    """Every text part of an email as written, for screening.

    Quoted replies, raw HTML (comments and hidden spans included) and text attachments: the
    ticket keeps only what the customer wrote, screening reads all of it. Unparseable input
    gives [] (parse_eml reports it).
    """
    try:
        msg = email.message_from_bytes(bytes(data), policy=policy.default)
        parts = [_header(msg, "Subject")]
        for part in msg.walk():
            if part.get_content_maintype() == "text" and not part.is_multipart():
                parts.append(_decode_part(part))
    except (ValueError, LookupError, TypeError, AttributeError, IndexError):
        return []  # parse_eml reports a malformed email; there is nothing more to screen
    # Screening is linear but not free: a huge attachment is read up to a bound.
    return [p[:MAX_SCREENED_CHARS] for p in parts if p.strip()]


def parse_eml(data: bytes, *, ticket_id: str | None = None) -> dict[str, Any]:
    """Parse an RFC 822 email into a normalised ticket with quotes and signatures removed.

    The id is ``ticket_id``, else the sanitised Message-ID, else ``eml-`` plus 16 hex digits of
    the SHA-256 of the raw bytes (stable across re-imports). The sender address is deliberately
    not kept: it is personal data and the workflow does not need it.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TicketError(f"email must be bytes, got {type(data).__name__}")
    data = bytes(data)
    try:
        msg = email.message_from_bytes(data, policy=policy.default)
    except Exception as exc:  # the stdlib parser is lenient; anything else is still bad input
        raise TicketError(f"email could not be parsed: {type(exc).__name__}") from exc
    assert isinstance(msg, EmailMessage)

    if ticket_id is not None:
        ticket_id = check_id(ticket_id)
    else:
        ticket_id = _message_id(msg) or "eml-" + hashlib.sha256(data).hexdigest()[:16]

    # The size limit applies to what the customer wrote, not to a long quoted thread below it.
    body = strip_quotes_and_signature(_body_text(msg))
    check_body_size(body)
    if not any(ch.isalnum() for ch in body):
        raise TicketError("email has no text body after removing quotes and signatures")
    visible = [ch for ch in body if not ch.isspace()]
    if visible.count("\ufffd") > _MAX_UNDECODABLE * len(visible):
        raise TicketError("email body is not readable text (mostly undecodable bytes)")

    return {
        "id": ticket_id,
        "channel": "email",
        "subject": one_line(_header(msg, "Subject"))[:MAX_SUBJECT_CHARS],
        "body": body,
        "customer_id": None,
        "tenant": None,
        "extra": {},
    }


def reply_address(data: bytes) -> str | None:
    """Where a reply to this email goes: its Reply-To, else its From address (None if neither).

    Kept apart from the ticket (which never holds the address): the caller seals it for
    delivery (app/delivery.py).
    """
    try:
        msg = email.message_from_bytes(bytes(data), policy=policy.default)
        for name in ("Reply-To", "From"):
            _, address = email.utils.parseaddr(str(msg.get(name) or ""))
            if "@" in address and len(address) <= 320 and not CONTROL_RE.search(address):
                return address
    except (ValueError, TypeError, IndexError, email.errors.MessageError):
        return None  # a header the stdlib cannot parse gives no address, not an error
    return None

