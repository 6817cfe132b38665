"""PII and secret redaction applied before anything is stored (audit log, checkpoints, Qdrant).

Values are replaced by tokens such as ``[EMAIL:1a2b3c4d]``: 8 hex digits of an HMAC-SHA256, keyed
by the home's secret salt (see graph/salt.py), of the normalised value. The same address
therefore correlates across tickets of one home while the original cannot be read back, not
even by trying every phone number: without the salt there is nothing to brute-force against.
An empty salt is refused. Names, addresses and dates of birth are found by their context
("my name is", a signature, "Dear", a street number and suffix, "DOB"), not by a model.
Detection favours precision on look-alikes that support tickets are full of
(order numbers, dates, versions, prices, status codes): cards must pass Luhn, IBANs mod-97, and
phone numbers must have a phone shape.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["KINDS", "find_pii", "iban_ok", "luhn_ok", "model_text", "redact", "redact_obj",
           "scrub", "EmptySalt", "ssn_ok", "uk_nino_ok"]

KINDS = ("email", "phone", "card", "iban", "secret", "natid", "name", "address", "dob")

Span = tuple[str, int, int]

_TOKEN_RE = re.compile(
    r"\[(?:EMAIL|PHONE|CARD|IBAN|SECRET|NATID|NAME|ADDRESS|DOB):[0-9a-f]{8}\]")

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


# --------------------------------------------------------------------------- national ids


def ssn_ok(value: str) -> bool:
    """A US SSN that the SSA could have issued: area not 000, 666 or 9xx; group and serial not 0."""
    if not re.fullmatch(r"\d{9}|\d{3}([- ])\d{2}\1\d{4}", value, flags=re.ASCII):
        return False
    digits = re.sub(r"[ -]", "", value)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return (area not in ("000", "666") and not area.startswith("9") and group != "00"
            and serial != "0000")


_NINO_RE = re.compile(
    r"(?i)(?<![A-Za-z0-9])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])[ ]?(\d{2})[ ]?(\d{2})[ ]?(\d{2})"
    r"[ ]?([A-D])(?![A-Za-z0-9])"
)
_NINO_BAD_PREFIXES = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}


def uk_nino_ok(value: str) -> bool:
    """A UK National Insurance number shape (HMRC's letter rules, suffix A-D)."""
    m = _NINO_RE.fullmatch(value.strip())
    return m is not None and m.group(1).upper() not in _NINO_BAD_PREFIXES


_SSN_DASHED_RE = re.compile(r"(?<![\w-])\d{3}([- ])\d{2}\1\d{4}(?![\w]|-\d)")
_SSN_BARE_RE = re.compile(r"(?<![\w-])\d{9}(?![\w])")
_SSN_CONTEXT_RE = re.compile(r"(?i)\b(ssn|social security|soc\.? sec|tax ?id|itin)\b[^\n]{0,30}$")


def _national_ids(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN_DASHED_RE.finditer(text):
        if ssn_ok(m.group(0)):
            yield m.start(), m.end()
    for m in _SSN_BARE_RE.finditer(text):  # nine bare digits are an SSN only when called one
        line_start = text.rfind("\n", 0, m.start()) + 1
        if ssn_ok(m.group(0)) and _SSN_CONTEXT_RE.search(text[line_start:m.start()]):
            yield m.start(), m.end()
    for m in _NINO_RE.finditer(text):
        if m.group(1).upper() not in _NINO_BAD_PREFIXES and (
                m.group(0).isupper() or re.search(r"(?i)\b(ni|nino|national insurance)\b",
                                                  text[max(0, m.start() - 40):m.start()])):
            yield m.start(), m.end()


# --------------------------------------------------------------------------- passwords, cloud keys

# "my password is hunter2", "pwd: hunter2", "passcode 4471", "the PIN is now 1234": group 1 is the
# value. Strong labels may be followed by a few filler words; "pass" and "PIN" need "is", ":" or
# "=" ("pass through", "pin the version" are prose).
_PW_FILLER = (r"(?:\s+(?:is|was|=|:|of|to|as|now|still|currently|set|changed|reset|temporarily|"
              r"used|i use|we use|i used|just|it's|its|here|ist|est|es))*")
_PASSWORD_RE = re.compile(
    r"(?i)\b(?:password|passwort|passwd|pwd|pass ?code|pass ?phrase|mot de passe|contraseña)\b"
    + _PW_FILLER + r"(\s*[:=]?\s*)[\"'`]?([^\s\"'`,;<>()\[\]{}]{4,})"
    r"|\b(?:pass|pin(?: code)?)\b(?:\s+(?:is|was|now))*(\s*[:=]\s*|\s+is\s+)[\"'`]?"
    r"([^\s\"'`,;<>()\[\]{}]{4,})"
)
# Words that follow "password" in prose and are not the password itself.
_PASSWORD_WORDS = frozenset(
    "reset resets resetting change changed changes expired expires expire policy policies "
    "manager managers field fields protected protection required requirement requirements "
    "rules rule length strength update updated updates recovery forgotten forgot link email "
    "page form prompt screen login logins again anymore there here that this which when will "
    "would should could does doesn't isn't wasn't with without every because twice please "
    "being been have has had into from your their mine ours hint hints works working wrong "
    "incorrect invalid correct the and for but not since after before until today yesterday "
    "anymore".split())
_CLOUD_SECRET_RES = [
    re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),  # GCP API key
    re.compile(r"(?<![A-Za-z0-9_-])GOCSPX-[A-Za-z0-9_-]{20,}"),  # GCP OAuth client secret
    re.compile(r"(?<![A-Za-z0-9_-])ya29\.[A-Za-z0-9_-]{20,}"),  # GCP access token
    re.compile(r"(?i)(?<=AccountKey=)[A-Za-z0-9+/]{40,}={0,2}"),  # Azure storage connection
    re.compile(r"(?<=[?&]sig=)[A-Za-z0-9%+/=]{20,}"),  # Azure SAS signature
    re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])"),  # Azure account key
    re.compile(r"(?<![\w~.-])[A-Za-z0-9_.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![\w~.-])"),  # Entra
]
# An AWS secret access key: 40 characters of base64 with mixed case and a digit.
_AWS_SECRET_RE = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])")


def _passwords(text: str) -> Iterator[tuple[int, int]]:
    for m in _PASSWORD_RE.finditer(text):
        group = 2 if m.group(2) is not None else 4
        value, before = m.group(group), text[m.start():m.start(group)]
        if (value.lower().rstrip(".!?") in _PASSWORD_WORDS or value[0] in "[-."
                or value.endswith(":")):
            continue
        # A plain lowercase word is prose ("password expired") unless it is announced as the
        # value ("password is hunter", "pwd: hunter").
        announced = re.search(r"(\b(is|to|ist|est|es)|[:=])\s*$", before)
        if value.isalpha() and value.islower() and not announced:
            continue
        yield m.start(group), m.end(group)
    for pattern in _CLOUD_SECRET_RES:
        for m in pattern.finditer(text):
            yield m.start(), m.end()
    for m in _AWS_SECRET_RE.finditer(text):
        value = m.group(0)
        if (any(c.isupper() for c in value) and any(c.islower() for c in value)
                and any(c.isdigit() for c in value)):
            yield m.start(), m.end()


# --------------------------------------------------------------------------- dates of birth

_MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|"
           r"aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_DATE = (rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}|\d{{4}}[/.-]\d{{1,2}}[/.-]\d{{1,2}}"
         rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\.?,?\s+\d{{4}}"
         rf"|{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})")
_DOB_RE = re.compile(
    rf"(?i)\b(?:d\.?o\.?b\.?|date of birth|birth ?date|birthday|born(?: on| in)?|"
    rf"geburtsdatum|geboren am|date de naissance|né(?:e)? le|fecha de nacimiento)"
    rf"(?:\s+(?:is|was|=|:|-|on))*\s*[:=-]?\s*({_DATE})"
)


def _dobs(text: str) -> Iterator[tuple[int, int]]:
    for m in _DOB_RE.finditer(text):
        yield m.start(1), m.end(1)


# --------------------------------------------------------------------------- names

_NAME_WORD = r"[A-ZÀ-Ý][a-zà-ÿ'’]+(?:-[A-ZÀ-Ý][a-zà-ÿ'’]+)?"
_PARTICLE = r"(?:(?:van|von|de|da|del|der|la|le|di|du|O')[ \t]*)?"
_NAME = rf"{_NAME_WORD}(?:[ \t]+(?:[A-Z]\.[ \t]+)?{_PARTICLE}{_NAME_WORD}){{0,2}}"
# The name follows a cue: an introduction, a greeting, a title, a sign-off on its own line.
_NAME_CUE_RES = [
    re.compile(rf"(?i:\bmy name is|\bmy name's|\bi am|\bi'm|\bthis is|\bname\s*[:=]|"
               rf"\bfull name\s*[:=]?|\bcustomer\s*[:=]|\baccount holder\s*[:=]?|"
               rf"\bje m'appelle|\bich heiße|\bich bin|\bme llamo|\bmi nombre es)\s+({_NAME})"),
    re.compile(rf"\b(?:Dear|Hi|Hello|Hey|Attn:?|Attention:?|Bonjour|Hallo|Hola)\s+({_NAME})"),
    re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Herr|Frau|Mme|Mlle|Sr|Sra)\.?\s+({_NAME})"),
    re.compile(rf"(?i:regards|best|thanks|thank you|cheers|sincerely|yours|kind regards|"
               rf"best wishes|many thanks|mit freundlichen grüßen|cordialement|saludos)"
               rf"[,.!]?(?:[ \t]*\n[ \t]*|[ \t]+)({_NAME})(?=[ \t]*(?:[).,;!]|\n|$))"),
    re.compile(rf"(?i:\b(?:my|our) (?:colleague|manager|boss|wife|husband|partner|assistant|"
               rf"accountant|admin|cfo|ceo|cto)),?\s+({_NAME})"),
    re.compile(rf"(?i:\bfrom:)\s*\"?({_NAME_WORD},\s*{_NAME_WORD}|{_NAME})\"?\s*<"),
    re.compile(rf"(?i:\b(?:signed|sent by|on behalf of|spoke (?:to|with)|talked to|"
               rf"call(?:ed)? from|ask for))\s+({_NAME})"),
]
# Capitalised words that follow those cues but are not names.
_NOT_NAMES = frozenset(
    "I I'm Im The A An This That It Its We Our My Your You He She They There Here Team "
    "Support Customer Billing Sales Admin Sir Madam All Everyone Folks Guys Again Still Just "
    "Not Now Also Sorry Thanks Thank Please Trying Writing Having Using Getting Looking "
    "Unable Able Confused Frustrated Happy New Back Done Ok Okay Yes No Hello Hi Dear "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April "
    "June July August September October November December Relaypoint Growth Starter Pro "
    "Enterprise Business Free Basic Premium Team Plan Account Invoice Order Regards Best "
    "Cheers Sincerely Kind Warm Many Ticket Re Fwd Hey Help Urgent Question Issue Problem "
    "Error Sent Mobile Iphone Android Api Sdk Webhook Webhooks Python Node Java Ruby Go "
    "Php Aws Gcp Azure Google Microsoft Apple Stripe Paypal Visa Mastercard Amex "
    "Happy Glad Here Following Responding Reaching Contacting Experiencing Seeing".split())


def _names(text: str) -> Iterator[tuple[int, int]]:
    for pattern in _NAME_CUE_RES:
        for m in pattern.finditer(text):
            start, words = m.start(1), re.split(r"(\s+|,\s*)", m.group(1))
            kept_end, pos = start, start
            for part in words:
                word_end = pos + len(part)
                bare = part.strip(" ,")
                if bare and bare in _NOT_NAMES:
                    break
                if bare:
                    kept_end = word_end
                pos = word_end
            if kept_end > start:
                yield start, kept_end


# --------------------------------------------------------------------------- street addresses

_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
    r"Terrace|Close|Crescent|Square|Sq|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Row|Gardens|Mews|"
    r"Walk|Hill|Grove)\b\.?"
)
_STREET_RES = [
    # 221B Baker Street, 1600 Pennsylvania Ave NW, Apt 4
    re.compile(rf"(?<![\w/.-])\d{{1,5}}[A-Za-z]?,?\s+(?:[A-Z][\w'’.-]*\s+){{1,4}}{_STREET_SUFFIX}"
               rf"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
               rf"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl)\.?\s*#?\s*[\w-]+)?"),
    # Hauptstraße 5, Kurfürstendamm-style: a word ending in straße/strasse/weg/platz/gasse + number
    re.compile(r"(?<![\w-])[A-ZÄÖÜ][\wäöüß-]*(?:stra(?:ß|ss)e|weg|platz|gasse|allee|ring|damm)"
               r"\s+\d{1,4}[a-z]?\b"),
    # 12 rue de la Paix, 5 avenue des Champs-Élysées, calle Mayor 3
    re.compile(r"(?i)(?<![\w-])\d{1,4}(?:\s*(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|bd|allée|"
               r"chemin|place|impasse|quai)\s+(?:(?:de|du|des|la|le|l'|d')\s*)*[\w'’-]+"
               r"(?:[ -][A-ZÉ][\w'’-]+)*"),
    re.compile(r"(?i)(?<![\w-])(?:calle|avenida|plaza|via|piazza|viale|rua)\s+[A-ZÁÉÍÓÚ][\w'’-]+"
               r"(?:\s+[A-ZÁÉÍÓÚ][\w'’-]+)*,?\s+\d{1,4}\b"),
    # PO Box 1234
    re.compile(r"(?i)\bP\.?\s?O\.?\s+Box\s+\d{1,6}\b"),
]
# Postcodes only next to an address or "postcode"/"zip": alone they look like ids.
_POSTCODE_RES = [
    re.compile(r"(?<![A-Za-z0-9])[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}(?![A-Za-z0-9])"),  # UK
    re.compile(r"(?<=[A-Z]{2} )\d{5}(?:-\d{4})?(?!\d)"),  # US: ", CA 94105"
    re.compile(r"(?i)(?<=zip )\d{5}(?:-\d{4})?(?!\d)|(?<=zip code )\d{5}(?:-\d{4})?(?!\d)"),
    re.compile(r"(?i)(?<=postcode )[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\b"),
]


def _addresses(text: str) -> Iterator[tuple[int, int]]:
    for pattern in _STREET_RES:
        for m in pattern.finditer(text):
            yield m.start(), m.end()
    for pattern in _POSTCODE_RES:
        for m in pattern.finditer(text):
            yield m.start(), m.end()


# Priority order: a span claimed earlier wins over later kinds that overlap it.
_DETECTORS: list[tuple[str, Callable[[str], Iterator[tuple[int, int]]]]] = [
    ("secret", _secrets),
    ("secret", _passwords),
    ("email", _emails),
    ("natid", _national_ids),
    ("dob", _dobs),
    ("iban", _ibans),
    ("phone", _phones),
    ("card", _cards),
    ("address", _addresses),
    ("name", _names),
]


def model_text(text: str) -> str:
    """Redacted text as the models read it: ``[NAME:1a2b3c4d]`` becomes ``[NAME]``.

    The 8 hex digits depend on the home's salt, so a model reading them would classify, retrieve
    and score one ticket differently in every home (an eval's isolated home has a new salt each
    run). The kind of value is kept, the salted digits are not.
    """
    return _TOKEN_RE.sub(lambda m: m.group(0).split(":", 1)[0] + "]", text)


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
    material = f"{kind}\x00{_normalise(kind, value)}".encode("utf-8", "surrogatepass")
    digest = hmac.new(salt.encode("utf-8", "surrogatepass"), material, hashlib.sha256)
    return f"[{kind.upper()}:{digest.hexdigest()[:8]}]"


class EmptySalt(ValueError):
    """Redaction was asked to run without a salt: its tokens could be brute-forced back."""


SHORT_TEXT = 256
"""Texts up to this long are redacted through a small cache: audit details repeat the same ids,
step names and labels every step, and each miss runs every detector's regexes."""


def redact(text: str, *, salt: str) -> str:
    """Replace every PII value and secret in ``text`` by an HMAC token keyed by ``salt``.

    Idempotent: ``redact(redact(x)) == redact(x)``. The salt is the home's secret
    (graph/salt.py); an empty one raises EmptySalt, since `[PHONE:...]` would then brute-force
    back to the number in 10^4 hashes.
    """
    if not salt:
        raise EmptySalt("redaction needs a non-empty PII salt (see graph/salt.py)")
    if len(text) <= SHORT_TEXT:
        return _redact_short(text, salt)
    return _redact(text, salt)


def scrub(text: str) -> str:
    """Redact with a one-off random salt: irreversible tokens that correlate with nothing.

    For safety nets that have no home salt at hand (text the caller should already have
    redacted): whatever they still find is removed, never stored readable.
    """
    return _redact(text, secrets.token_hex(16))


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


def redact_obj(obj: Any, *, salt: str) -> Any:
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
