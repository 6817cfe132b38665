"""Ticket intake: parse and validate chat/JSONL tickets (emails: `supportgraph.text.mail`).

Everything that enters the workflow passes through here, so the rest of the graph can rely on one
normalised shape: ``{"id", "channel", "subject", "body", "customer_id", "tenant", "extra"}``.
Bad input is reported as a :class:`TicketError` with a one-line reason (the CLI prints it and
exits 2); it never escapes as a traceback.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

from supportgraph.text.normalise import (
    CHANNELS,
    CONTROL_RE,
    MAX_BODY_BYTES,
    MAX_ID_CHARS,
    MAX_SUBJECT_CHARS,
    TicketError,
    check_body_size,
    check_id,
    normalise_text,
    one_line,
)
from supportgraph.text.quotes import strip_quotes_and_signature

_KNOWN_KEYS = frozenset({"id", "channel", "subject", "body", "customer_id", "tenant"})
_TENANT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _optional_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TicketError(f"ticket {key} must be a string, got {type(value).__name__}")
    return value


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
    ticket_id = check_id(obj["id"])

    channel = obj.get("channel", "chat")
    if not isinstance(channel, str) or channel not in CHANNELS:
        shown = repr(channel)[:40]
        raise TicketError(f"ticket channel must be 'chat' or 'email', got {shown}")

    subject = _optional_str(obj, "subject")
    subject = one_line(subject)[:MAX_SUBJECT_CHARS] if subject else ""

    if "body" not in obj or obj["body"] is None:
        raise TicketError("ticket has no body")
    body = obj["body"]
    if not isinstance(body, str):
        raise TicketError(f"ticket body must be a string, got {_json_type(body)}")
    check_body_size(body)
    body = strip_quotes_and_signature(body) if channel == "email" else normalise_text(body)
    if not body.strip():
        raise TicketError("ticket body is empty")

    customer_id = _optional_str(obj, "customer_id")
    if customer_id is not None:
        customer_id = customer_id.strip() or None
    if customer_id is not None and (
        len(customer_id) > MAX_ID_CHARS or CONTROL_RE.search(customer_id) or "\n" in customer_id
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


