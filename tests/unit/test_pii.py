"""PII and secret redaction: a labelled corpus, look-alikes that must survive, token properties."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from graph.pii import KINDS, find_pii, iban_ok, luhn_ok, redact, redact_obj

CORPUS_FILE = Path(__file__).resolve().parents[1] / "data" / "pii_corpus.json"
TOKEN = re.compile(r"\[(EMAIL|PHONE|CARD|IBAN|SECRET):[0-9a-f]{8}\]")

# Each entry: a realistic ticket fragment, the values that must not survive redaction, and the
# kind of token that must replace them. tests/data/pii_corpus.json holds the same list (checked
# below) for integration tests that search stored bytes.
PII_CORPUS: list[dict] = [
    # --- emails
    {"text": "Please reply to jane.doe@example.com about my invoice.",
     "secret_values": ["jane.doe@example.com"], "kind": "email"},
    {"text": "CC my colleague BOB+billing@Corp.Example.co.uk on this",
     "secret_values": ["BOB+billing@Corp.Example.co.uk", "BOB+billing"], "kind": "email"},
    {"text": "The unsubscribe link https://x.example/?u=jane@example.com&v=2 is broken",
     "secret_values": ["jane@example.com"], "kind": "email"},
    {"text": "Tracking URL https://t.example/c?r=jane.doe%40example.com returns 404",
     "secret_values": ["jane.doe%40example.com", "jane.doe"], "kind": "email"},
    {"text": "Link: <mailto:support-team@acme.example?subject=help>",
     "secret_values": ["support-team@acme.example"], "kind": "email"},
    {"text": "Emails to jürgen.müller@beispiel.de bounce with 550",
     "secret_values": ["jürgen.müller@beispiel.de"], "kind": "email"},
    {"text": "From: \"Doe, Jane\" <jane_doe99@mail.example.org>",
     "secret_values": ["jane_doe99@mail.example.org"], "kind": "email"},
    # --- phones
    {"text": "Call me at +1 (555) 123-4567 after 5pm.",
     "secret_values": ["555) 123-4567", "123-4567"], "kind": "phone"},
    {"text": "Our office: +44 20 7946 0958", "secret_values": ["7946 0958"], "kind": "phone"},
    {"text": "Mobile 555.867.5309 is best", "secret_values": ["555.867.5309"], "kind": "phone"},
    {"text": "or (212) 555-0199 during business hours",
     "secret_values": ["555-0199"], "kind": "phone"},
    {"text": "Appelez-moi au 06 12 34 56 78 svp", "secret_values": ["06 12 34 56 78"],
     "kind": "phone"},
    {"text": "Portable: 06.12.34.56.78", "secret_values": ["06.12.34.56.78"], "kind": "phone"},
    {"text": "Meine Nummer: +49 151 23456789", "secret_values": ["151 23456789", "23456789"],
     "kind": "phone"},
    {"text": "Büro 030 1234567, bitte zurückrufen", "secret_values": ["030 1234567"],
     "kind": "phone"},
    {"text": "Dial 0044 20 7946 0958 from abroad", "secret_values": ["7946 0958"],
     "kind": "phone"},
    {"text": "toll free 1-800-555-0199", "secret_values": ["800-555-0199"], "kind": "phone"},
    {"text": "WhatsApp +4915123456789", "secret_values": ["4915123456789"], "kind": "phone"},
    {"text": "please call me on 5551234567 today", "secret_values": ["5551234567"],
     "kind": "phone"},
    # --- payment cards
    {"text": "My card 4111 1111 1111 1111 was charged twice",
     "secret_values": ["4111 1111 1111 1111", "1111 1111 1111"], "kind": "card"},
    {"text": "card number 4111-1111-1111-1111 exp 12/27",
     "secret_values": ["4111-1111-1111-1111"], "kind": "card"},
    {"text": "Amex 3782 822463 10005 declined", "secret_values": ["822463"], "kind": "card"},
    {"text": "charged on 5555555555554444 yesterday", "secret_values": ["5555555555554444"],
     "kind": "card"},
    {"text": "old Visa 4222222222222 still on file", "secret_values": ["4222222222222"],
     "kind": "card"},
    {"text": "card 4012 8888 8888 1881 123 (cvv included, sorry)",
     "secret_values": ["4012 8888 8888 1881", "8888 8888"], "kind": "card"},
    # --- IBANs
    {"text": "Refund to DE89 3704 0044 0532 0130 00 please",
     "secret_values": ["DE89 3704 0044 0532 0130 00", "3704 0044 0532"], "kind": "iban"},
    {"text": "IBAN: GB82WEST12345698765432", "secret_values": ["GB82WEST12345698765432"],
     "kind": "iban"},
    {"text": "SEPA from FR14 2004 1010 0505 0001 3M02 606 failed",
     "secret_values": ["FR14 2004 1010 0505 0001 3M02 606", "0505 0001"], "kind": "iban"},
    {"text": "account nl91abna0417164300 (lower case)", "secret_values": ["nl91abna0417164300"],
     "kind": "iban"},
    {"text": "Swiss IBAN CH93 0076 2011 6238 5295 7 NOW ACTIVE",
     "secret_values": ["CH93 0076 2011 6238 5295 7"], "kind": "iban"},
    # --- secrets
    {"text": "I used sk-proj-abc123DEF456ghi789JKL012mno and got 401",
     "secret_values": ["sk-proj-abc123DEF456ghi789JKL012mno", "abc123DEF456"], "kind": "secret"},
    {"text": "ANTHROPIC key sk-ant-api03-AbCdEf0123456789_XyZ-abcdef",
     "secret_values": ["sk-ant-api03-AbCdEf0123456789_XyZ-abcdef"], "kind": "secret"},
    {"text": "Our key rp_live_51HxYzAbCdEf1234567890 stopped working",
     "secret_values": ["rp_live_51HxYzAbCdEf1234567890", "51HxYzAbCdEf"], "kind": "secret"},
    {"text": "sandbox rp_test_9f8e7d6c5b4a3210 sends nothing",
     "secret_values": ["rp_test_9f8e7d6c5b4a3210"], "kind": "secret"},
    {"text": "webhook secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
     "secret_values": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "kind": "secret"},
    {"text": "AWS creds AKIAIOSFODNN7EXAMPLE leaked?",
     "secret_values": ["AKIAIOSFODNN7EXAMPLE"], "kind": "secret"},
    {"text": "GitHub token ghp_abcdefghijklmnopqrstuvwxyz0123456789 in CI",
     "secret_values": ["ghp_abcdefghijklmnopqrstuvwxyz0123456789"], "kind": "secret"},
    {"text": "fine-grained github_pat_11ABCDEFG0abcdefghijklmnop_qrstuvwxyz0123456789",
     "secret_values": ["github_pat_11ABCDEFG0abcdefghijklmnop_qrstuvwxyz0123456789"],
     "kind": "secret"},
    {"text": "slack bot xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
     "secret_values": ["xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp"], "kind": "secret"},
    {"text": "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
             "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "secret_values": ["eyJzdWIiOiIxMjM0NTY3ODkwIn0",
                       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"],
     "kind": "secret"},
    {"text": "curl -H 'Authorization: Bearer a1b2c3d4e5f6g7h8i9j0' "
             "https://api.relaypoint.example/v3",
     "secret_values": ["a1b2c3d4e5f6g7h8i9j0"], "kind": "secret"},
    {"text": "my password: hunter2 (please reset)", "secret_values": ["hunter2"],
     "kind": "secret"},
    {"text": "config has api_key=abcd1234efgh and region=eu",
     "secret_values": ["abcd1234efgh"], "kind": "secret"},
    {"text": 'settings {"client_secret": "s3cr3t-V4lue!"}', "secret_values": ["s3cr3t-V4lue!"],
     "kind": "secret"},
    {"text": "headers {'x-api-key': 'xyz987654abc'}", "secret_values": ["xyz987654abc"],
     "kind": "secret"},
    {"text": "DB_PASSWD = Tr0ub4dor&3", "secret_values": ["Tr0ub4dor&3"], "kind": "secret"},
    {"text": "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "secret_values": ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"], "kind": "secret"},
    {"text": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\n-----END RSA PRIVATE KEY-----",
     "secret_values": ["MIIEowIBAAKCAQEA7bq"], "kind": "secret"},
]

# Look-alikes that support tickets are full of; none of them may be touched.
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
    assert len(PII_CORPUS) >= 45
    assert {entry["kind"] for entry in PII_CORPUS} == set(KINDS)


def test_corpus_file_matches_module_list():
    assert json.loads(CORPUS_FILE.read_text(encoding="utf-8")) == PII_CORPUS


@pytest.mark.parametrize("entry", PII_CORPUS, ids=lambda e: e["text"][:40])
def test_corpus_values_are_redacted(entry):
    out = redact(entry["text"])
    for value in entry["secret_values"]:
        assert value not in out, out
    assert f"[{entry['kind'].upper()}:" in out, out
    assert entry["kind"] in {kind for kind, _, _ in find_pii(entry["text"])}
    assert redact(out) == out


@pytest.mark.parametrize("entry", PII_CORPUS, ids=lambda e: e["text"][:40])
def test_corpus_keeps_surrounding_words(entry):
    text = entry["text"]
    spans = find_pii(text)
    out = redact(text)
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
    assert redact(text) == text


def test_mixed_text_redacts_only_pii():
    text = (
        "Order ORD-2024-558812, v3.2.1, error 429: email jane@example.com, "
        "card 4111 1111 1111 1111."
    )
    out = redact(text)
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
    assert redact("password: hunter2").startswith("password: [SECRET:")
    assert redact("Authorization: Bearer abc123def456ghi").startswith(
        "Authorization: Bearer [SECRET:"
    )


def test_same_value_same_token_across_texts_and_formats():
    a = redact("from Jane@Example.com")
    b = redact("contact jane@example.com now")
    tok = TOKEN.search(a).group(0)
    assert tok in b
    c = redact("card 4111-1111-1111-1111")
    d = redact("card 4111 1111 1111 1111")
    assert TOKEN.search(c).group(0) == TOKEN.search(d).group(0)
    e = redact("IBAN DE89 3704 0044 0532 0130 00")
    f = redact("IBAN de89370400440532013000")
    assert TOKEN.search(e).group(0) == TOKEN.search(f).group(0)


def test_different_values_different_tokens():
    a = TOKEN.search(redact("jane@example.com")).group(0)
    b = TOKEN.search(redact("john@example.com")).group(0)
    assert a != b


def test_salt_changes_tokens_and_empty_salt_still_hashes():
    plain = redact("jane@example.com")
    salted = redact("jane@example.com", salt="tenant-a")
    other = redact("jane@example.com", salt="tenant-b")
    assert TOKEN.fullmatch(plain) and TOKEN.fullmatch(salted) and TOKEN.fullmatch(other)
    assert len({plain, salted, other}) == 3
    assert redact("jane@example.com", salt="tenant-a") == salted  # deterministic
    assert "jane" not in plain


@pytest.mark.parametrize("salt", ["", "s"])
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
    assert redact(text) == text


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
    start = time.perf_counter()
    redact(text)
    assert time.perf_counter() - start < 5.0


def test_cached_short_texts_redact_exactly_like_long_ones_and_per_salt():
    from graph import pii

    value = "mail me at ana@example.com or call +44 20 7946 0958"
    assert len(value) <= pii.SHORT_TEXT
    padded = value + " " * (pii.SHORT_TEXT + 1 - len(value))  # takes the uncached path
    assert pii.redact(value) == pii.redact(padded).rstrip()
    # The salt is part of the cache key: one text, two salts, two different tokens.
    a, b = pii.redact(value, salt="a"), pii.redact(value, salt="b")
    assert a != b and "ana@example.com" not in a + b
    assert pii.redact(value, salt="a") == a
