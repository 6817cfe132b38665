"""Output guard: an auto-sent reply may only carry specifics its sources support.

Run on every reply about to be sent without a person, whatever provider wrote it: a model that
obeyed an injection the screening missed still cannot deliver its link, its discount code or
its refund promise. A finding sends the ticket to a reviewer with reason `unsupported_content`.

What counts as support: URLs, discount or promo codes and refund/credit/discount promises must
appear in the cited passages (a customer cannot supply them to themselves through the ticket);
email addresses, phone numbers, amounts and other codes (order numbers, error codes) may also
come from the ticket's own text. Replies must not quote the system prompts either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from supportgraph.text.pii import find_pii

_URL = re.compile(
    r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"'`\])]+"
    r"|\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|ly|co|me|info|biz|xyz|ru|cn|app|dev|link|site|"
    r"online|top|gl|gd|cc|tk|to|example)(?:/[^\s<>\"'\])]*)?\b"
)
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
_TOKEN = re.compile(r"\[[A-Z]+:[0-9a-f]{8}\]")
_AMOUNT = re.compile(
    r"(?i)(?:[$€£¥]|\b(?:usd|eur|gbp)\s?)\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:k|m|million|bn))?"
    r"|\b\d[\d,]*(?:\.\d+)?\s?(?:%|(?:usd|eur|gbp|dollars?|euros?|pounds?|percent)\b)"
)
_PROMO_CODE = re.compile(
    r"(?i)(?:\b(?:promo(?:tion)?|coupon|voucher|discount|gift|referral|redeem|redemption)"
    r"(?:\s+code)?s?|(?<!error )(?<!status )(?<!response )(?<!exit )(?<!http )(?<!reason )"
    r"\bcode)\s*(?:is|:|=|-)?\s*[\"'`]?([A-Za-z0-9][A-Za-z0-9_-]{3,})"
)
# A code-like token: letters and digits mixed, or an all-caps word with a digit (SAVE50, X7-Q2).
_CODE = re.compile(r"(?<![\w/.@-])(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Z])"
                   r"[A-Za-z0-9][A-Za-z0-9_-]{3,}(?![\w/@-])")
# Commitments only a person may make: refunds, credits, discounts, waived fees.
_PROMISE = re.compile(
    r"(?i)\b(?:i|we)(?:'ve|'ll| have| will| am| are|'m|'re)?\s+(?:just\s+|already\s+|now\s+|"
    r"gladly\s+|happily\s+)?(?:issued|issue|processed|process(?:ing)?|approved|approve|"
    r"refunded|refund(?:ing)?|credited|credit(?:ing)?|applied|apply(?:ing)?|granted|grant(?:ing)?|"
    r"waived|waive|reimburs\w*|compensat\w*|added)\b[^.!?\n]{0,60}"
    r"\b(?:refund|credit|discount|reimbursement|compensation|voucher|coupon|waiver|fee|"
    r"money back|free month|free months)s?\b"
    r"|\byou(?:'ll| will| are going to| shall)\s+(?:receive|get|be (?:given|issued|refunded|"
    r"credited|reimbursed))\b[^.!?\n]{0,40}\b(?:refund|credit|discount|money back|"
    r"reimbursement|compensation)\b"
    r"|\b(?:your|a|the) (?:full |partial )?(?:refund|credit|discount|reimbursement)"
    r"(?: of [^.!?\n]{1,20})? (?:has been|is|was|will be) (?:approved|issued|processed|granted|"
    r"applied|sent|on (?:its|the) way)\b"
    r"|\b\d{1,3}\s?%\s?(?:off|discount)\b"
)
# Wording that talks about the assistant's own setup.
_PROMPT_TALK = re.compile(
    r"(?i)\bsystem prompt\b|\bmy (?:instructions|system message|prompt|guidelines) "
    r"(?:are|say|tell|is)\b|\bi (?:was|have been|am) (?:instructed|told|programmed|configured) "
    r"to\b|</?(?:ticket|documents?|resolved_cases|draft|customer_ticket|untrusted)\b"
)
_WORDS = re.compile(r"[a-z0-9']+")
PROMPT_WINDOW = 8
"""Words in a row shared with a system prompt that count as revealing it."""


def _norm_url(url: str) -> str:
    url = url.lower().rstrip(".,;:!?)`'\"")
    url = re.sub(r"^(?:https?|ftp)://", "", url)
    return re.sub(r"^www\.", "", url).rstrip("/")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _windows(text: str, size: int) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i:i + size]) for i in range(len(words) - size + 1)}


def _strip_citations(reply: str) -> str:
    """The reply without its 'Sources:' list (titles and doc ids come from the passages)."""
    return re.split(r"\n\s*Sources:", reply, maxsplit=1)[0]


def check_reply(reply: str, *, passages: Iterable[Mapping[str, Any]], ticket_text: str,
                prompts: Iterable[str] = ()) -> list[str]:
    """What in `reply` its sources do not support, as short reasons (empty: nothing).

    `passages`: the cited passages (`text`, `title`, `doc_id`); `ticket_text`: the customer's
    (redacted) subject and body; `prompts`: the system prompts the reply must not reveal.
    Reasons name the kind and, for URLs and codes, the value (the reply is redacted anyway).
    """
    sources = "\n".join(f"{p.get('title', '')}\n{p.get('doc_id', '')}\n{p.get('text', '')}"
                        for p in passages)
    facts = f"{sources}\n{ticket_text}"
    body = _strip_citations(reply or "")
    found: list[str] = []

    source_lower = sources.lower()
    for url in _URL.findall(body):
        if "@" in url:
            continue  # the domain of an email address: checked as an email below
        # Supported when the passages contain it, however they punctuate or quote it.
        norm = _norm_url(url)
        if norm and norm not in source_lower:
            found.append(f"url:{url[:80]}")

    fact_emails = {e.lower() for e in _EMAIL.findall(facts)}
    for address in _EMAIL.findall(body):
        if address.lower() not in fact_emails:
            found.append("email")
    fact_tokens = set(_TOKEN.findall(facts))
    for token in _TOKEN.findall(body):
        if token not in fact_tokens:
            found.append(f"token:{token[1:token.index(':')].lower()}")

    fact_runs = [_digits(run) for run in re.findall(r"[\d() +.-]{7,}", facts)]
    for kind, s, e in find_pii(body):
        if kind == "phone" and not any(_digits(body[s:e]) in run for run in fact_runs):
            found.append("phone")

    fact_numbers = {_digits(m) for m in re.findall(r"\d[\d,]*(?:\.\d+)?", facts)}
    for amount in _AMOUNT.findall(body):
        number = re.search(r"\d[\d,]*(?:\.\d+)?", amount)
        if number and _digits(number.group(0)) not in fact_numbers:
            found.append(f"amount:{amount.strip()[:30]}")

    for m in _PROMO_CODE.finditer(body):
        if m.group(1).lower() not in source_lower and not m.group(1).isalpha():
            found.append(f"code:{m.group(1)[:30]}")
    facts_lower = facts.lower()
    for code in _CODE.findall(body):
        if code.lower() not in facts_lower and not _TOKEN.fullmatch(f"[{code}]"):
            found.append(f"code:{code[:30]}")

    for m in _PROMISE.finditer(body):
        if m.group(0).lower() not in source_lower:
            found.append("promise")

    if _PROMPT_TALK.search(body):
        found.append("prompt_disclosure")
    else:
        reply_windows = _windows(body, PROMPT_WINDOW)
        source_windows = _windows(sources, PROMPT_WINDOW)
        if any((_windows(p, PROMPT_WINDOW) - source_windows) & reply_windows for p in prompts):
            found.append("prompt_disclosure")
    return list(dict.fromkeys(found))
