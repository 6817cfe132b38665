"""Cutting quoted history and signatures out of an email body."""

from __future__ import annotations

import re

from supportgraph.text.normalise import normalise_text

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

