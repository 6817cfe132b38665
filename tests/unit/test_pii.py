"""PII and secret redaction: a labelled corpus, look-alikes that must survive, token properties."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from supportgraph.text.pii import (
    KINDS,
    EmptySalt,
    find_pii,
    iban_ok,
    luhn_ok,
    model_text,
    redact,
    redact_obj,
    scrub,
    ssn_ok,
    uk_nino_ok,
)

CORPUS_FILE = Path(__file__).resolve().parents[1] / "data" / "pii_corpus.json"
TOKEN = re.compile(r"\[(EMAIL|PHONE|CARD|IBAN|SECRET|NATID|NAME|ADDRESS|DOB):[0-9a-f]{8}\]")

# Each entry of tests/data/pii_corpus.json: a realistic ticket fragment, the values that must not
# survive redaction, and the kind of token that must replace them (the integration tests search
# stored bytes for the same values).
PII_CORPUS: list[dict] = json.loads(CORPUS_FILE.read_text(encoding="utf-8"))
# Tests get their salt explicitly: redaction refuses an empty one.
S = "unit-test-salt-0123456789"

NOT_PII = [
    "Order ORD-2024-558812 was shipped",
    "order #123456789 is missing",
    "invoice INV-2024-000123 from 2024-01-15",
    "It failed on 15.01.2024 at 10:30 and again on 03/15/2024 10:45:12",
    "We upgraded the SDK from v3.2.1 to 3.10.0 (Python 3.11.7)",
    "We were billed $1,500,000 instead of $1,500.00",
    "That is €1.500.000 or 1 500 000 EUR",
    "API returns 429 Too Many Requests, then 503, then 500",
    "Retry-After: 30 and X-RateLimit-Reset: 1717430400",
    "server 192.168.100.200 and 10.0.0.1 cannot connect",
    "Windows build 10.0.19041.1234",
    "timestamp 1700000000 in the webhook header",
    "card ending 4242 was declined",
    "test card 4111 1111 1111 1112 fails Luhn",
    "reference 1234567812345678 fails Luhn",
    "bank ref DE89 3704 0044 0532 0130 01 (wrong check digits)",
    "sklearn calls it sk-learn-compatible-models",
    "we use Bearer authentication as documented",
    "live keys start rp_live_ and test keys rp_test_",
    "send Authorization: Bearer <key> on every request",
    "Idempotency-Key: order-42-retry gave 409",
    "Token: expired",
    "request_id req_8f3a2b1c in the error body",
    "POST /v3/messages/batch with up to 500 messages",
    "Hello {{first_name}}, your plan renews on 2025-07-01",
    "ISBN 978-3-16-148410-0 for the manual",
    "quota of 250,000 emails and 5,000 SMS per month",
    "phone support? the plan page says 99.99% SLA",
    "monkey: banana, and the key point: we need help",
    "Version 2.0.0-beta.1 and 1.2.3.4",
    "SIRET 732 829 320 00074 (passes Luhn, but is not grouped like a card)",
    "Secret: the best plan is Growth",
    "see https://status.relaypoint.example for 2024-06-03 incidents",
]


def test_corpus_is_big_and_covers_every_kind():
    assert len(PII_CORPUS) >= 80
    assert {entry["kind"] for entry in PII_CORPUS} == set(KINDS)
    for entry in PII_CORPUS:
        assert all(value in entry["text"] for value in entry["secret_values"]), entry


@pytest.mark.parametrize("entry", PII_CORPUS, ids=lambda e: e["text"][:40])
def test_corpus_values_are_redacted(entry):
    out = redact(entry["text"], salt=S)
    for value in entry["secret_values"]:
        assert value not in out, out
    assert f"[{entry['kind'].upper()}:" in out, out
    assert entry["kind"] in {kind for kind, _, _ in find_pii(entry["text"])}
    assert redact(out, salt=S) == out


@pytest.mark.parametrize("entry", PII_CORPUS, ids=lambda e: e["text"][:40])
def test_corpus_keeps_surrounding_words(entry):
    text = entry["text"]
    spans = find_pii(text)
    out = redact(text, salt=S)
    # Words outside the detected spans are untouched, so the ticket stays readable.
    outside = [
        m.group(0)
        for m in re.finditer(r"[^\W\d_]{3,}", text)
        if not any(s < m.end() and m.start() < e for _, s, e in spans)
    ]
    rest = TOKEN.split(out)
    for word in outside:
        assert any(word in part for part in rest), (word, out)
    assert len(TOKEN.findall(out)) == len(spans)


@pytest.mark.parametrize("text", NOT_PII)
def test_look_alikes_survive(text):
    assert find_pii(text) == []
    assert redact(text, salt=S) == text


def test_mixed_text_redacts_only_pii():
    text = (
        "Order ORD-2024-558812, v3.2.1, error 429: email jane@example.com, "
        "card 4111 1111 1111 1111."
    )
    out = redact(text, salt=S)
    assert out.startswith("Order ORD-2024-558812, v3.2.1, error 429: email [EMAIL:")
    assert ", card [CARD:" in out and out.endswith("].")
    assert [kind for kind, _, _ in find_pii(text)] == ["email", "card"]


def test_find_pii_spans_point_at_the_values():
    text = "mail a@b.example or call +44 20 7946 0958; password: pw123"
    spans = find_pii(text)
    assert [(kind, text[s:e]) for kind, s, e in spans] == [
        ("email", "a@b.example"),
        ("phone", "+44 20 7946 0958"),
        ("secret", "pw123"),
    ]


def test_label_and_scheme_stay_readable():
    assert redact("password: hunter2", salt=S).startswith("password: [SECRET:")
    assert redact("Authorization: Bearer abc123def456ghi", salt=S).startswith(
        "Authorization: Bearer [SECRET:"
    )


def test_same_value_same_token_across_texts_and_formats():
    a = redact("from Jane@Example.com", salt=S)
    b = redact("contact jane@example.com now", salt=S)
    tok = TOKEN.search(a).group(0)
    assert tok in b
    c = redact("card 4111-1111-1111-1111", salt=S)
    d = redact("card 4111 1111 1111 1111", salt=S)
    assert TOKEN.search(c).group(0) == TOKEN.search(d).group(0)
    e = redact("IBAN DE89 3704 0044 0532 0130 00", salt=S)
    f = redact("IBAN de89370400440532013000", salt=S)
    assert TOKEN.search(e).group(0) == TOKEN.search(f).group(0)


def test_different_values_different_tokens():
    a = TOKEN.search(redact("jane@example.com", salt=S)).group(0)
    b = TOKEN.search(redact("john@example.com", salt=S)).group(0)
    assert a != b


def test_empty_salt_is_refused():
    with pytest.raises(EmptySalt):
        redact("call 555-867-5309", salt="")
    with pytest.raises(EmptySalt):
        redact_obj({"a": "x"}, salt="")


def test_tokens_are_hmac_of_the_value_keyed_by_the_salt():
    import hashlib
    import hmac

    token = redact("jane@example.com", salt=S)
    expected = hmac.new(S.encode(), b"email\x00jane@example.com", hashlib.sha256).hexdigest()
    assert token == f"[EMAIL:{expected[:8]}]"
    # Without the salt a phone token is not the plain hash any dictionary attack would try.
    plain = hashlib.sha256(b"\x00phone\x005558675309").hexdigest()[:8]
    assert plain not in redact("call 555-867-5309", salt=S)


def test_salt_changes_tokens():
    plain = redact("jane@example.com", salt=S)
    salted = redact("jane@example.com", salt="tenant-a")
    other = redact("jane@example.com", salt="tenant-b")
    assert TOKEN.fullmatch(plain) and TOKEN.fullmatch(salted) and TOKEN.fullmatch(other)
    assert len({plain, salted, other}) == 3
    assert redact("jane@example.com", salt="tenant-a") == salted  # deterministic
    assert "jane" not in plain


@pytest.mark.parametrize("salt", ["s", S])
def test_idempotent_on_whole_corpus(salt):
    pii_text = "\n".join(entry["text"] for entry in PII_CORPUS)
    once = redact(pii_text + "\n" + "\n".join(NOT_PII), salt=salt)
    assert redact(once, salt=salt) == once
    assert find_pii(once) == []
    assert once.endswith("\n" + "\n".join(NOT_PII))
    pii_part = once[: -len("\n".join(NOT_PII))]
    for entry in PII_CORPUS:
        for value in entry["secret_values"]:
            assert value not in pii_part


def test_redaction_tokens_are_never_matched_again():
    text = "[PHONE:12345678] [CARD:00000000] [EMAIL:abcdef01] password: [SECRET:0a1b2c3d]"
    assert find_pii(text) == []
    assert redact(text, salt=S) == text


def test_redact_obj_recurses_and_does_not_mutate():
    payload = {
        "ticket": {"body": "mail jane@example.com", "tags": ["x", "call +44 20 7946 0958"]},
        "pair": ("password: hunter2", 5),
        "n": 4111111111111111,
        "ok": True,
        "none": None,
        "jane@example.com": "key kept",
    }
    out = redact_obj(payload, salt="s")
    assert "jane@example.com" not in out["ticket"]["body"]
    assert out["ticket"]["tags"][0] == "x"
    assert out["ticket"]["tags"][1].startswith("call [PHONE:")
    assert isinstance(out["pair"], tuple) and "hunter2" not in out["pair"][0]
    assert out["pair"][1] == 5 and out["n"] == 4111111111111111
    assert out["ok"] is True and out["none"] is None
    assert "jane@example.com" in out  # keys are kept (field names, not data)
    assert payload["ticket"]["body"] == "mail jane@example.com"
    assert out["ticket"]["body"] == redact("mail jane@example.com", salt="s")


@pytest.mark.parametrize(
    "number, ok",
    [
        ("4111111111111111", True),
        ("4111 1111 1111 1111", True),
        ("4111-1111-1111-1111", True),
        ("378282246310005", True),
        ("4222222222222", True),
        ("4111111111111112", False),
        ("1234567812345678", False),
        ("411111111111", False),  # too short
        ("41111111111111111111", False),  # too long
        ("4111x11111111111", False),
        ("", False),
        ("٤١١١١١١١١١١١١١١١", False),  # non-ASCII digits
    ],
)
def test_luhn_ok(number, ok):
    assert luhn_ok(number) is ok


@pytest.mark.parametrize(
    "iban, ok",
    [
        ("DE89 3704 0044 0532 0130 00", True),
        ("de89370400440532013000", True),
        ("GB82WEST12345698765432", True),
        ("FR14 2004 1010 0505 0001 3M02 606", True),
        ("NL91ABNA0417164300", True),
        ("DE89 3704 0044 0532 0130 01", False),  # check digits
        ("DE89 3704 0044 0532 0130 0", False),  # length for DE
        ("XX00", False),
        ("GB82-WEST-1234-5698-7654-32", False),
        ("", False),
    ],
)
def test_iban_ok(iban, ok):
    assert iban_ok(iban) is ok


@pytest.mark.parametrize(
    "text",
    [
        "x@" + "a" * 100_000,
        "a" * 100_000 + "@",
        "1 " * 50_000,
        "+1" * 50_000,
        "a-" * 50_000,
        "key=" * 25_000,
        "AB12 " * 20_000,
        "1-" * 50_000,
    ],
)
def test_adversarial_input_is_fast(text):
    start = time.process_time()  # CPU time: backtracking burns it, machine load does not
    redact(text, salt=S)
    assert time.process_time() - start < 5.0


def test_cached_short_texts_redact_exactly_like_long_ones_and_per_salt():
    from supportgraph.text import pii

    value = "mail me at ana@example.com or call +44 20 7946 0958"
    assert len(value) <= pii.SHORT_TEXT
    padded = value + " " * (pii.SHORT_TEXT + 1 - len(value))  # takes the uncached path
    assert pii.redact(value, salt=S) == pii.redact(padded, salt=S).rstrip()
    # The salt is part of the cache key: one text, two salts, two different tokens.
    a, b = pii.redact(value, salt="a"), pii.redact(value, salt="b")
    assert a != b and "ana@example.com" not in a + b
    assert pii.redact(value, salt="a") == a


def test_scrub_removes_pii_with_tokens_that_correlate_with_nothing():
    text = "mail ana@example.com, SSN 123-45-6789"
    a, b = scrub(text), scrub(text)
    assert "ana@example.com" not in a and "123-45-6789" not in a
    assert a != b and TOKEN.search(a)


@pytest.mark.parametrize("value, ok", [
    ("123-45-6789", True), ("078-05-1120", True), ("000-12-3456", False),
    ("666-12-3456", False), ("912-12-3456", False), ("123-00-4567", False),
    ("123-45-0000", False), ("12-345-6789", False), ("", False)])
def test_ssn_area_group_serial_rules(value, ok):
    assert ssn_ok(value) is ok


@pytest.mark.parametrize("value, ok", [
    ("AB123456C", True), ("JG 10 37 82 C", True), ("GB123456A", False),
    ("DA123456A", False), ("AB123456E", False), ("AB12345C", False)])
def test_uk_nino_rules(value, ok):
    assert uk_nino_ok(value) is ok


@pytest.mark.parametrize("text", [
    "I reset my password yesterday and it still fails",
    "the password reset email never arrives",
    "password-protected PDF invoices",
    "you can pass through the header X-Request-Id",
    "pin the SDK version to 3.2.1",
    "the order 123456789 shipped",
    "the API returned 123-45-678 as a partial id",
    "dear support team, my invoice is wrong",
    "I am having trouble with webhooks",
    "We had 3 Failed payments on Monday",
    "shipped in 2 boxes on 2024-01-15",
    "git commit 9fceb02d0ae598e95dc970b74767f19372d61af8 broke it",
])
def test_prose_near_the_new_kinds_survives(text):
    assert find_pii(text) == [], find_pii(text)


def test_models_read_redaction_tokens_without_the_salted_digits() -> None:
    text = "Cheers, Elif. Mail me at elif@example.com"
    a, b = redact(text, salt="salt-one-" + "1" * 40), redact(text, salt="salt-two-" + "2" * 40)
    assert a != b and TOKEN.search(a)
    assert model_text(a) == model_text(b) == "Cheers, [NAME]. Mail me at [EMAIL]"
    assert model_text("order [NAME:zz] and [NOTE:1a2b3c4d] stay") == (
        "order [NAME:zz] and [NOTE:1a2b3c4d] stay")
