"""The rules every ticket obeys, whatever its channel: size limits, ids, clean text.

Chat tickets (`supportgraph.text.tickets`) and emails (`supportgraph.text.mail`) both check and
normalise through here, so a ticket hashes, embeds and compares the same way from either.
"""

from __future__ import annotations

import re
import unicodedata

MAX_BODY_BYTES = 100_000
MAX_SUBJECT_CHARS = 500
MAX_ID_CHARS = 200
MAX_SCREENED_CHARS = 400_000
CHANNELS = ("chat", "email")

# C0/C1 control characters except tab and newline (carriage returns are handled before).
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LONE_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


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
    text = CONTROL_RE.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.strip("\n")


def one_line(text: str) -> str:
    """Collapse a header-like value (subject) to a single clean line."""
    text = _LONE_SURROGATE_RE.sub("\ufffd", text)
    text = unicodedata.normalize("NFC", text)
    text = CONTROL_RE.sub(" ", text)
    return " ".join(text.split())


def check_id(value: object) -> str:
    """A ticket id that is a short, printable, one-line string (or TicketError)."""
    if not isinstance(value, str):
        raise TicketError(f"ticket id must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise TicketError("ticket id is empty")
    if len(value) > MAX_ID_CHARS:
        raise TicketError(f"ticket id is {len(value)} characters long; the limit is {MAX_ID_CHARS}")
    if CONTROL_RE.search(value) or "\n" in value or "\t" in value:
        raise TicketError("ticket id contains control characters")
    return value


def check_body_size(body: str) -> None:
    """Refuse bodies above MAX_BODY_BYTES before any other work is done on them."""
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise TicketError(
            f"ticket body is {size:,} bytes in UTF-8; the limit is {MAX_BODY_BYTES:,} bytes"
        )


