"""Ticket intake: parse and validate chat/JSONL tickets and RFC 822 emails.

Everything that enters the workflow passes through here, so the rest of the graph can rely on one
normalised shape: ``{"id", "channel", "subject", "body", "customer_id", "tenant", "extra"}``.
Bad input is reported as a :class:`TicketError` with a one-line reason (the CLI prints it and
exits 2); it never escapes as a traceback.
"""

from __future__ import annotations

import codecs
import email
import email.errors
import email.utils
import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message
from html.parser import HTMLParser
from typing import Any

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_SUBJECT_CHARS",
    "TicketError",
    "html_to_text",
    "normalise_text",
    "parse_chat",
    "parse_eml",
    "read_jsonl",
    "strip_quotes_and_signature",
    "email_parts",
]

MAX_BODY_BYTES = 100_000
MAX_SUBJECT_CHARS = 500
MAX_ID_CHARS = 200
MAX_SCREENED_CHARS = 400_000
CHANNELS = ("chat", "email")

_KNOWN_KEYS = frozenset({"id", "channel", "subject", "body", "customer_id", "tenant"})
_TENANT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# C0/C1 control characters except tab and newline (carriage returns are handled before).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LONE_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# Above this share of U+FFFD the "text" is binary garbage, not a mis-declared charset.
_MAX_UNDECODABLE = 0.3
_MSGID_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")


class TicketError(ValueError):
    """A ticket that cannot enter the workflow; the message is a one-line reason for people."""

    def __init__(self, reason: object) -> None:
        super().__init__(" ".join(str(reason).split()))


# --------------------------------------------------------------------------- normalisation


def normalise_text(text: str) -> str:
    """Normalise a body so equal texts compare, hash and embed equally whatever their source.

    NFC, CR/LF to LF, control characters (except tab and newline) removed, trailing whitespace
    trimmed on every line, leading/trailing blank lines dropped, and runs of more than two blank
    lines collapsed to two.
    """
    text = _LONE_SURROGATE_RE.sub("\ufffd", text)
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n")
    text = _CONTROL_RE.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.strip("\n")


def _one_line(text: str) -> str:
    """Collapse a header-like value (subject) to a single clean line."""
    text = _LONE_SURROGATE_RE.sub("\ufffd", text)
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL_RE.sub(" ", text)
    return " ".join(text.split())


def _check_id(value: object) -> str:
    if not isinstance(value, str):
        raise TicketError(f"ticket id must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise TicketError("ticket id is empty")
    if len(value) > MAX_ID_CHARS:
        raise TicketError(f"ticket id is {len(value)} characters long; the limit is {MAX_ID_CHARS}")
    if _CONTROL_RE.search(value) or "\n" in value or "\t" in value:
        raise TicketError("ticket id contains control characters")
    return value


def _check_body_size(body: str) -> None:
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise TicketError(
            f"ticket body is {size:,} bytes in UTF-8; the limit is {MAX_BODY_BYTES:,} bytes"
        )


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TicketError(f"ticket {key} must be a string, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- quote stripping

_GMAIL_ATTRIBUTION_RE = re.compile(
    # "On Mon, 3 Jun 2024 at 10:02, Jane <jane@x.example> wrote:" possibly wrapped over 3 lines,
    # plus the same attribution line of common German/French/Spanish clients.
    r"^[ \t]*(?:On|Am|Le|El)\b[^\n]*(?:\n[^\n]*){0,2}?"
    r"(?:\bwrote|\bschrieb[^\n]*|\ba [ée]crit|\bescribi[óo])[ \t]*:[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
_ORIGINAL_MESSAGE_RE = re.compile(
    r"^[ \t]*-{2,}[ \t]*Original Message[ \t]*-{2,}[ \t]*$", re.MULTILINE | re.IGNORECASE
)
_OUTLOOK_HEADER_RE = re.compile(
    # Outlook reply header: an optional underscore rule, then From: and, within the next three
    # lines, Sent: (forwards use Date:, so Apple Mail/Gmail forwards are kept).
    r"^(?:[ \t]*_{5,}[ \t]*\n)?[ \t]*\*?From:\*?[^\n]*\n(?:[^\n]*\n){0,2}?[ \t]*\*?Sent:\*?",
    re.MULTILINE | re.IGNORECASE,
)
_SIGNATURE_RE = re.compile(r"^--[ \t]?$", re.MULTILINE)
_MOBILE_FOOTER_RE = re.compile(
    r"^[ \t]*(?:Sent from my \w[^\n]*|Get Outlook for (?:iOS|Android)[^\n]*)$",
    re.MULTILINE | re.IGNORECASE,
)
_QUOTED_LINE_RE = re.compile(r"^[ \t]*>[^\n]*(?:\n|$)", re.MULTILINE)


def strip_quotes_and_signature(text: str) -> str:
    """Keep only what the customer wrote in this message, so earlier replies are not re-answered.

    Cuts at a Gmail-style ``On ... wrote:`` attribution, an Outlook ``-----Original Message-----``
    line or ``From:``/``Sent:`` header block, and a ``-- `` signature separator; drops ``>``
    quoted lines and "Sent from my iPhone" footers. Forwarded messages are kept on purpose:
    the forwarded text is usually the customer's problem.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    cut = len(text)
    for pattern in (_GMAIL_ATTRIBUTION_RE, _ORIGINAL_MESSAGE_RE, _OUTLOOK_HEADER_RE, _SIGNATURE_RE):
        match = pattern.search(text)
        if match:
            cut = min(cut, match.start())
    text = text[:cut]
    text = _QUOTED_LINE_RE.sub("", text)
    text = _MOBILE_FOOTER_RE.sub("", text)
    return normalise_text(text)


# --------------------------------------------------------------------------- chat / JSONL


def parse_chat(obj: object) -> dict[str, Any]:
    """Validate one chat/JSONL ticket object and return the normalised ticket.

    Unknown fields (for example eval gold fields such as ``expected_intent``) are kept unchanged
    under ``extra`` so callers can carry them along. Email tickets given as JSON get the same
    quote and signature stripping as ``.eml`` files.
    """
    if not isinstance(obj, dict):
        raise TicketError(f"ticket must be a JSON object, got {_json_type(obj)}")
    if "id" not in obj:
        raise TicketError("ticket has no id")
    ticket_id = _check_id(obj["id"])

    channel = obj.get("channel", "chat")
    if not isinstance(channel, str) or channel not in CHANNELS:
        shown = repr(channel)[:40]
        raise TicketError(f"ticket channel must be 'chat' or 'email', got {shown}")

    subject = _optional_str(obj, "subject")
    subject = _one_line(subject)[:MAX_SUBJECT_CHARS] if subject else ""

    if "body" not in obj or obj["body"] is None:
        raise TicketError("ticket has no body")
    body = obj["body"]
    if not isinstance(body, str):
        raise TicketError(f"ticket body must be a string, got {_json_type(body)}")
    _check_body_size(body)
    body = strip_quotes_and_signature(body) if channel == "email" else normalise_text(body)
    if not body.strip():
        raise TicketError("ticket body is empty")

    customer_id = _optional_str(obj, "customer_id")
    if customer_id is not None:
        customer_id = customer_id.strip() or None
    if customer_id is not None and (
        len(customer_id) > MAX_ID_CHARS or _CONTROL_RE.search(customer_id) or "\n" in customer_id
    ):
        raise TicketError("ticket customer_id is too long or contains control characters")

    tenant = _optional_str(obj, "tenant")
    if tenant is not None and not _TENANT_RE.fullmatch(tenant):
        raise TicketError("ticket tenant must be 1-64 characters of A-Z a-z 0-9 _ . -")

    return {
        "id": ticket_id,
        "channel": channel,
        "subject": subject,
        "body": body,
        "customer_id": customer_id,
        "tenant": tenant,
        "extra": {k: v for k, v in obj.items() if k not in _KNOWN_KEYS},
    }


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return names.get(type(value), type(value).__name__)


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | TicketError]]:
    """Yield ``(line_number, ticket or TicketError)`` for every non-blank line of a JSONL file.

    A bad line is reported with its number and never stops the batch: one broken ticket must not
    cost the other thousand. Bytes that are not UTF-8 are replaced, and a line longer than
    ``2 * MAX_BODY_BYTES`` is reported without being parsed (or held in memory whole).
    """
    limit = 2 * MAX_BODY_BYTES
    with open(path, "rb") as fh:
        number = 0
        while True:
            raw = fh.readline(limit + 1)
            if not raw:
                return
            number += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                size = len(raw) + _skip_rest_of_line(fh)
                yield number, TicketError(
                    f"line {number}: line is {size:,} bytes; the limit is {limit:,} bytes"
                )
                continue
            text = raw.decode("utf-8", errors="replace")
            if number == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, TicketError(
                    f"line {number}: invalid JSON: {exc.msg.removesuffix(' at')} at column "
                    f"{exc.colno}"
                )
                continue
            except (ValueError, RecursionError) as exc:
                yield number, TicketError(f"line {number}: invalid JSON: {type(exc).__name__}")
                continue
            try:
                yield number, parse_chat(obj)
            except TicketError as exc:
                yield number, TicketError(f"line {number}: {exc}")


def _skip_rest_of_line(fh: Any) -> int:
    """Consume an over-long line in chunks and return how many more bytes it had."""
    skipped = 0
    while True:
        chunk = fh.readline(1 << 16)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


# --------------------------------------------------------------------------- email


class _HTMLText(HTMLParser):
    """Turn HTML into plain text: drop invisible parts, keep the paragraph structure."""

    _SKIP = frozenset({"script", "style", "head", "title", "noscript", "template"})
    _BLOCK = frozenset({
        "p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
        "hr", "pre", "section", "article", "header", "footer", "dd", "dt", "dl", "address",
    })

    # Items start a new line; their end tag adds nothing, so lists stay compact.
    _ITEM = frozenset({"li", "tr", "dt", "dd", "br"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._quote_depth = 0
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag == "blockquote":
            self._quote_depth += 1
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag in self._BLOCK:
            if tag == "pre":
                self._pre_depth += 1
            self.parts.append("\n\n" if tag == "p" else "\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "blockquote":
            self._quote_depth = max(0, self._quote_depth - 1)
            self.parts.append("\n")
        elif tag in self._BLOCK and tag not in self._ITEM:
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)
            self.parts.append("\n\n" if tag == "p" else "\n")

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if not self._pre_depth:
            data = re.sub(r"\s+", " ", data)
            if not self.parts or self.parts[-1].endswith("\n"):
                data = data.lstrip(" ")
        if self._quote_depth:
            # Mark quoted HTML as "> " lines so the plain-text quote stripper removes it.
            data = "\n".join("> " + line for line in data.split("\n"))
        self.parts.append(data)

    def text(self) -> str:
        joined = "".join(self.parts)
        text = "\n".join(line.rstrip(" ") for line in joined.split("\n"))
        return re.sub(r"\n{3,}", "\n\n", text)


def html_to_text(html: str) -> str:
    """Render an HTML email body as text for emails that have no text/plain part."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text()


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
        ticket_id = _check_id(ticket_id)
    else:
        ticket_id = _message_id(msg) or "eml-" + hashlib.sha256(data).hexdigest()[:16]

    # The size limit applies to what the customer wrote, not to a long quoted thread below it.
    body = strip_quotes_and_signature(_body_text(msg))
    _check_body_size(body)
    if not any(ch.isalnum() for ch in body):
        raise TicketError("email has no text body after removing quotes and signatures")
    visible = [ch for ch in body if not ch.isspace()]
    if visible.count("\ufffd") > _MAX_UNDECODABLE * len(visible):
        raise TicketError("email body is not readable text (mostly undecodable bytes)")

    return {
        "id": ticket_id,
        "channel": "email",
        "subject": _one_line(_header(msg, "Subject"))[:MAX_SUBJECT_CHARS],
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
            if "@" in address and len(address) <= 320 and not _CONTROL_RE.search(address):
                return address
    except (ValueError, TypeError, IndexError, email.errors.MessageError):
        return None  # a header the stdlib cannot parse gives no address, not an error
    return None
