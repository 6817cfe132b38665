"""PII and secret redaction applied before anything is stored (audit log, checkpoints, Qdrant).

Values are replaced by tokens such as ``[EMAIL:1a2b3c4d]``: 8 hex digits of a salted SHA-256 of
the normalised value. The same address therefore correlates across tickets while the original
cannot be read back. Detection favours precision on look-alikes that support tickets are full of
(order numbers, dates, versions, prices, status codes): cards must pass Luhn, IBANs mod-97, and
phone numbers must have a phone shape.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["KINDS", "find_pii", "iban_ok", "luhn_ok", "redact", "redact_obj"]

KINDS = ("email", "phone", "card", "iban", "secret")

Span = tuple[str, int, int]

_TOKEN_RE = re.compile(r"\[(?:EMAIL|PHONE|CARD|IBAN|SECRET):[0-9a-f]{8}\]")

# --------------------------------------------------------------------------- validators

# Official IBAN lengths (SWIFT registry); unknown countries only need 15-34 characters.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
_IBAN_SHAPE_RE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


def luhn_ok(digits: str) -> bool:
    """Return True if a 13-19 digit number (spaces/dashes allowed) passes the Luhn check.

    Used so that arbitrary long numbers (order ids, timestamps) are not mistaken for cards.
    """
    digits = re.sub(r"[ -]", "", digits)
    if not digits.isascii() or not digits.isdigit() or not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(s: str) -> bool:
    """Return True if ``s`` (spaces allowed, any case) is an IBAN with valid mod-97 check digits."""
    iban = re.sub(r"\s", "", s).upper()
    if not iban.isascii() or not _IBAN_SHAPE_RE.fullmatch(iban):
        return False
    expected = _IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


# --------------------------------------------------------------------------- detectors

_EMAIL_RE = re.compile(
    r"(?<![\w.%+-])[\w.%+-]*\w(?:@|%40)"
    r"\w(?:[\w-]*\w)?(?:\.\w(?:[\w-]*\w)?)*\.[^\W\d_]{2,}(?![\w-])"
)

_SECRET_RES = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"(?<![\w-])sk-(?:ant-)?[A-Za-z0-9_-]{16,}"),
    re.compile(r"(?<![\w-])rp_(?:live|test)_[A-Za-z0-9_]{8,}"),
    re.compile(r"(?<![\w-])whsec_[A-Za-z0-9+/=_-]{8,}"),
    re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])"),
    re.compile(r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    re.compile(r"(?<![\w-])xox[abprs]-[A-Za-z0-9-]{10,}"),
    re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
]
# Group 1 is the credential; the scheme word stays readable.
_AUTH_SCHEME_RE = re.compile(r"(?i)\b(?:Bearer|Basic|Token)\s+([A-Za-z0-9._~+/=-]{8,})")
# "password: hunter2", "api_key=...", "AWS_SECRET_ACCESS_KEY = ..."; group 1 is the value.
_LABEL_RE = re.compile(
    r"(?i)(?<![\w-])((?:[a-z0-9]+[_-])*)(key|token|secret|password|passwd|pwd|apikey)"
    r"[\"']?[ \t]*[:=][ \t]*[\"']?([^\s\"',;<>()\[\]{}]{3,})"
)
_SYMBOLS = frozenset("_-./+=!@#$%^&*?~")
_LABELS_NOT_SECRET = ("idempotency", "public", "sort", "primary", "foreign", "cache")

_IBAN_CANDIDATE_RE = re.compile(
    r"(?i)(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]){11,40}(?![A-Za-z0-9])"
)
_CARD_CANDIDATE_RE = re.compile(r"(?<![\w.+/-])\d(?:[ -]?\d){12,30}(?![\w])(?![.,/-]\d)")
_PHONE_CANDIDATE_RE = re.compile(
    r"(?<![\w+./-])(?:\+[ ]?)?\(?\d[\d \u00a0().-]{5,24}\d(?![\w])(?![./-]\d)"
)
_PHONE_CONTEXT_RE = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|cellphone|call|ring|whatsapp|sms|text me|fax)"
    r"\b[^\n\d]{0,20}$"
)


def _looks_random(value: str) -> bool:
    """Tell a credential from a word: long enough and containing a digit or mixed symbols."""
    return len(value) >= 8 and (
        any(ch.isdigit() for ch in value) or any(ch in "_-./+=" for ch in value)
    )


def _secrets(text: str) -> Iterator[tuple[int, int]]:
    for pattern in _SECRET_RES:
        for m in pattern.finditer(text):
            value = m.group(0)
            if value.startswith("sk-") and not any(ch.isdigit() for ch in value):
                continue  # "sk-learn-compatible" is prose, real keys contain digits
            yield m.start(), m.end()
    for m in _AUTH_SCHEME_RE.finditer(text):
        if _looks_random(m.group(1)):
            yield m.start(1), m.end(1)
    for m in _LABEL_RE.finditer(text):
        if m.group(1).lower().startswith(_LABELS_NOT_SECRET):
            continue
        # A bare "key:"/"token:"/"secret:" is often prose ("Token: expired"); then the value
        # must contain a digit or symbol. Other labels ("password:", "api_key=") redact any value.
        bare = not m.group(1) and m.group(2).lower() in ("key", "token", "secret")
        if bare and not any(ch.isdigit() or ch in _SYMBOLS for ch in m.group(3)):
            continue
        yield m.start(3), m.end(3)


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for m in _EMAIL_RE.finditer(text):
        yield m.start(), m.end()


def _groups(text: str, start: int, separators: str) -> list[tuple[int, int]]:
    """Spans of the digit/alnum runs of a candidate, split at ``separators``."""
    spans = []
    for m in re.finditer(rf"[^{re.escape(separators)}]+", text):
        spans.append((start + m.start(), start + m.end()))
    return spans


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in _IBAN_CANDIDATE_RE.finditer(text):
        groups = _groups(m.group(0), m.start(), " ")
        # The candidate may have swallowed following words ("... 32 NOW"): try shorter endings.
        for end in range(len(groups), 0, -1):
            s, e = groups[0][0], groups[end - 1][1]
            if iban_ok(text[s:e]):
                yield s, e
                break


def _card_grouping(sizes: list[int]) -> bool:
    """Cards are printed as one run, 4-4-4-4(-3) or 4-6-5; other groupings are ids (SIRET...)."""
    if len(sizes) == 1 or sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(size == 4 for size in sizes[:-1]) and 3 <= sizes[-1] <= 4


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD_CANDIDATE_RE.finditer(text):
        groups = _groups(m.group(0), m.start(), " -")
        # Longest run of whole groups that is a valid card: "4111 1111 1111 1111 123" (with a
        # CVV after it) still yields the card.
        best: tuple[int, int] | None = None
        for i in range(len(groups)):
            digits = 0
            for j in range(i, len(groups)):
                gs, ge = groups[j]
                digits += ge - gs
                if digits > 19:
                    break
                s = groups[i][0]
                longer = best is None or ge - s > best[1] - best[0]
                sizes = [b - a for a, b in groups[i : j + 1]]
                if digits >= 13 and longer and _card_grouping(sizes) and luhn_ok(text[s:ge]):
                    best = (s, ge)
        if best:
            yield best


def _phone_shape(candidate: str, preceding: str) -> bool:
    """Decide whether a digit run with separators is written like a phone number."""
    stripped = candidate.replace("\u00a0", " ")
    if re.search(r"[ .-]{2,}|\(\s*\)|[.][ ]|[ ][.]", stripped):
        return False
    digits = re.sub(r"\D", "", stripped)
    groups = re.findall(r"\d+", stripped)
    if stripped.startswith("+") or digits.startswith("00"):
        national = digits[2:] if not stripped.startswith("+") else digits
        return 8 <= len(national) <= 15
    seps = set(re.sub(r"[\d()]", "", stripped))
    if len(seps - {" "}) > 1:  # mixing dots and dashes is how versions and ids look
        return False
    sizes = [len(g) for g in groups]
    if sizes in ([3, 3, 4], [1, 3, 3, 4]) and (len(sizes) == 3 or groups[0] == "1"):
        return True  # US: (555) 123-4567, 555.123.4567, 1-800-555-0199
    if digits.startswith("0") and 9 <= len(digits) <= 12 and len(groups) >= 2:
        if "." in seps:
            return all(s == 2 for s in sizes)  # French style 06.12.34.56.78
        return all(s >= 2 for s in sizes)  # 030 1234567, 020 7946 0958, 06-12345678
    if len(groups) == 1 and 7 <= len(digits) <= 15:
        return bool(_PHONE_CONTEXT_RE.search(preceding))  # "call me on 5551234567"
    return False


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _PHONE_CANDIDATE_RE.finditer(text):
        s, e = m.start(), m.end()
        candidate = m.group(0)
        # A closing parenthesis without its opener belongs to the prose, not the number.
        if candidate.count("(") != candidate.count(")"):
            continue
        line_start = text.rfind("\n", 0, s) + 1
        if _phone_shape(candidate, text[line_start:s]):
            yield s, e


# Priority order: a span claimed earlier wins over later kinds that overlap it.
_DETECTORS: list[tuple[str, Callable[[str], Iterator[tuple[int, int]]]]] = [
    ("secret", _secrets),
    ("email", _emails),
    ("iban", _ibans),
    ("phone", _phones),
    ("card", _cards),
]


def find_pii(text: str) -> list[Span]:
    """Return non-overlapping ``(kind, start, end)`` spans of PII and secrets, sorted by start.

    ``kind`` is one of :data:`KINDS`. Existing redaction tokens are never matched again, which
    makes :func:`redact` idempotent.
    """
    claimed: list[tuple[int, int]] = [(m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]
    found: list[Span] = []
    for kind, detector in _DETECTORS:
        for s, e in sorted(set(detector(text)), key=lambda se: (se[0], -se[1])):
            if e <= s or any(s < ce and cs < e for cs, ce in claimed):
                continue
            claimed.append((s, e))
            found.append((kind, s, e))
    found.sort(key=lambda span: span[1])
    return found


# --------------------------------------------------------------------------- redaction


def _normalise(kind: str, value: str) -> str:
    """Canonical form so that one value written two ways gets one token."""
    if kind == "email":
        return value.replace("%40", "@").lower()
    if kind in ("phone", "card"):
        return re.sub(r"\D", "", value)
    if kind == "iban":
        return re.sub(r"\s", "", value).upper()
    return value


def _token(kind: str, value: str, salt: str) -> str:
    material = f"{salt}\x00{kind}\x00{_normalise(kind, value)}".encode("utf-8", "surrogatepass")
    return f"[{kind.upper()}:{hashlib.sha256(material).hexdigest()[:8]}]"


SHORT_TEXT = 256
"""Texts up to this long are redacted through a small cache: audit details repeat the same ids,
step names and labels every step, and each miss runs every detector's regexes."""


def redact(text: str, *, salt: str = "") -> str:
    """Replace every PII value and secret in ``text`` by a salted, irreversible token.

    Idempotent: ``redact(redact(x)) == redact(x)``. Use a per-deployment salt so tokens cannot be
    matched against a dictionary of known addresses.
    """
    if len(text) <= SHORT_TEXT:
        return _redact_short(text, salt)
    return _redact(text, salt)


@functools.lru_cache(maxsize=4096)
def _redact_short(text: str, salt: str) -> str:
    return _redact(text, salt)


def _redact(text: str, salt: str) -> str:
    spans = find_pii(text)
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for kind, s, e in spans:
        out.append(text[pos:s])
        out.append(_token(kind, text[s:e], salt))
        pos = e
    out.append(text[pos:])
    return "".join(out)


def redact_obj(obj: Any, *, salt: str = "") -> Any:
    """Redact every string inside nested dicts/lists/tuples (audit payloads); keys are kept.

    Returns a new object; the input is not modified. Non-string scalars are returned unchanged.
    """
    if isinstance(obj, str):
        return redact(obj, salt=salt)
    if isinstance(obj, dict):
        return {key: redact_obj(value, salt=salt) for key, value in obj.items()}
    if isinstance(obj, list):
        return [redact_obj(item, salt=salt) for item in obj]
    if isinstance(obj, tuple):
        return tuple(redact_obj(item, salt=salt) for item in obj)
    return obj
