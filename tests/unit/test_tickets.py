"""Ticket intake: chat/JSONL validation, email parsing and quote stripping, JSONL batches."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from supportgraph.text.html import html_to_text
from supportgraph.text.mail import parse_eml
from supportgraph.text.quotes import strip_quotes_and_signature
from supportgraph.text.tickets import (
    MAX_BODY_BYTES,
    MAX_SUBJECT_CHARS,
    TicketError,
    normalise_text,
    parse_chat,
    read_jsonl,
)

KEYS = {"id", "channel", "subject", "body", "customer_id", "tenant", "extra"}


def chat(**fields):
    base = {"id": "t-1", "channel": "chat", "body": "My invoice is wrong."}
    base.update(fields)
    return base


# --------------------------------------------------------------------------- parse_chat


def test_minimal_chat_ticket_is_normalised():
    ticket = parse_chat({"id": "t-1", "channel": "chat", "body": "Hello"})
    assert ticket == {
        "id": "t-1",
        "channel": "chat",
        "subject": "",
        "body": "Hello",
        "customer_id": None,
        "tenant": None,
        "extra": {},
    }


def test_full_chat_ticket_keeps_fields_and_extra():
    obj = chat(
        subject="  Refund\tplease ",
        customer_id="cus_42",
        tenant="acme.eu-1",
        expected_intent="refund_request",
        expected_route="billing",
        tags=["angry"],
    )
    ticket = parse_chat(obj)
    assert set(ticket) == KEYS
    assert ticket["subject"] == "Refund please"
    assert ticket["customer_id"] == "cus_42"
    assert ticket["tenant"] == "acme.eu-1"
    assert ticket["extra"] == {
        "expected_intent": "refund_request",
        "expected_route": "billing",
        "tags": ["angry"],
    }
    assert obj["subject"] == "  Refund\tplease "  # input not mutated


def test_missing_channel_defaults_to_chat():
    assert parse_chat({"id": "x", "body": "hi"})["channel"] == "chat"


@pytest.mark.parametrize(
    "obj, reason",
    [
        (["not", "an", "object"], "must be a JSON object, got array"),
        ("just text", "must be a JSON object, got string"),
        (None, "must be a JSON object, got null"),
        (42, "must be a JSON object, got number"),
        ({"channel": "chat", "body": "x"}, "has no id"),
        (chat(id=""), "id is empty"),
        (chat(id="   "), "id is empty"),
        (chat(id=17), "id must be a string"),
        (chat(id="a\x00b"), "control characters"),
        (chat(id="a\nb"), "control characters"),
        (chat(id="x" * 201), "201 characters long; the limit is 200"),
        ({"id": "t", "channel": "chat"}, "has no body"),
        (chat(body=None), "has no body"),
        (chat(body=""), "body is empty"),
        (chat(body="   \n\t \r\n  "), "body is empty"),
        (chat(body="\x00\x01\x02"), "body is empty"),
        (chat(body=12345), "body must be a string, got number"),
        (chat(body=["a", "b"]), "body must be a string, got array"),
        (chat(body={"text": "hi"}), "body must be a string, got object"),
        (chat(body=True), "body must be a string, got boolean"),
        (chat(channel="sms"), "channel must be 'chat' or 'email', got 'sms'"),
        (chat(channel="CHAT"), "channel must be 'chat' or 'email'"),
        (chat(channel=None), "channel must be 'chat' or 'email'"),
        (chat(channel=["chat"]), "channel must be 'chat' or 'email'"),
        (chat(subject=5), "subject must be a string"),
        (chat(customer_id=123), "customer_id must be a string"),
        (chat(customer_id="c" * 500), "customer_id is too long"),
        (chat(tenant="acme corp"), "tenant must be 1-64 characters"),
        (chat(tenant="'; DROP TABLE tickets; --"), "tenant must be"),
        (chat(tenant="t" * 65), "tenant must be"),
        (chat(tenant=""), "tenant must be"),
        (chat(tenant=7), "tenant must be a string"),
    ],
)
def test_invalid_chat_tickets_are_rejected(obj, reason):
    with pytest.raises(TicketError) as info:
        parse_chat(obj)
    message = str(info.value)
    assert reason in message
    assert "\n" not in message and "Traceback" not in message


def test_ticket_error_is_a_value_error_with_one_line():
    err = TicketError("bad\n  ticket\tbody")
    assert isinstance(err, ValueError)
    assert str(err) == "bad ticket body"


def test_one_megabyte_body_is_rejected_with_size_and_limit():
    body = "a" * 1_000_000
    with pytest.raises(TicketError) as info:
        parse_chat(chat(body=body))
    assert "1,000,000 bytes" in str(info.value)
    assert f"{MAX_BODY_BYTES:,}" in str(info.value)


def test_body_limit_counts_utf8_bytes_not_characters():
    exactly = "a" * MAX_BODY_BYTES
    assert parse_chat(chat(body=exactly))["body"] == exactly
    # 40,000 euro signs are 120,000 bytes in UTF-8 although only 40,000 characters.
    with pytest.raises(TicketError, match="120,000 bytes"):
        parse_chat(chat(body="€" * 40_000))


def test_body_normalisation():
    raw = "  \r\n\r\nHello\x00 there\x07\t \r\nline two\u200b   \n\n\n\n\n\nafter gap  \r\n\n"
    body = parse_chat(chat(body=raw))["body"]
    assert body == "Hello there\nline two\u200b\n\n\nafter gap"
    assert "\r" not in body and "\x00" not in body and "\x07" not in body
    assert "\n\n\n\n" not in body
    assert body.endswith("after gap")
    assert all(line == line.rstrip() for line in body.split("\n"))
    assert "Hello there\nline two" in body


def test_normalise_text_rules():
    assert normalise_text("a\r\nb\rc") == "a\nb\nc"
    assert normalise_text("a\n\n\n\n\nb") == "a\n\n\nb"  # at most two blank lines
    assert normalise_text("a\n\n\nb") == "a\n\n\nb"
    assert normalise_text("\n\n  x  \n\n") == "  x"
    assert normalise_text("tab\tkept") == "tab\tkept"
    assert normalise_text("c\u0327a") == "\u00e7a"  # NFC
    assert normalise_text("bad \ud800 surrogate") == "bad \ufffd surrogate"
    assert normalise_text("C1\x85\x9fchars") == "C1chars"


def test_unicode_and_hostile_strings_survive_unchanged():
    body = (
        "Ünïcödé 日本語 emoji 👍🏽 RTL مرحبا; '; DROP TABLE tickets; -- "
        "<script>alert(1)</script>"
    )
    ticket = parse_chat(chat(id="Ω-'; DROP TABLE t;--", body=body, subject="{{7*7}} ${jndi:x}"))
    assert ticket["body"] == body
    assert ticket["id"] == "Ω-'; DROP TABLE t;--"
    assert ticket["subject"] == "{{7*7}} ${jndi:x}"


def test_id_is_trimmed_and_limit_is_inclusive():
    assert parse_chat(chat(id="  abc  "))["id"] == "abc"
    assert parse_chat(chat(id="x" * 200))["id"] == "x" * 200


def test_long_subject_is_truncated_not_rejected():
    ticket = parse_chat(chat(subject="s" * 2000))
    assert len(ticket["subject"]) == MAX_SUBJECT_CHARS


def test_empty_customer_id_becomes_none():
    assert parse_chat(chat(customer_id="  "))["customer_id"] is None
    assert parse_chat(chat(customer_id=None, tenant=None))["tenant"] is None


def test_email_channel_json_gets_quote_and_signature_stripping():
    body = (
        "Please resend invoice INV-2024-06.\n\n-- \nJane Doe\nACME\n\n"
        "On Mon, 3 Jun 2024 at 10:02, Support <support@relaypoint.example> wrote:\n> old text"
    )
    assert parse_chat(chat(channel="email", body=body))["body"] == (
        "Please resend invoice INV-2024-06."
    )
    # The chat channel keeps the text as written.
    assert "Jane Doe" in parse_chat(chat(channel="chat", body=body))["body"]


def test_email_channel_json_with_only_quotes_is_empty():
    with pytest.raises(TicketError, match="body is empty"):
        parse_chat(chat(channel="email", body="> quoted\n> only"))


# --------------------------------------------------------------------------- quote stripping


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Thanks!\n\nOn Tue, Jun 4, 2024 at 9:15 AM Relaypoint Support <help@rp.example> "
            "wrote:\n> Hello\n> world",
            "Thanks!",
        ),
        (
            # Gmail wraps long attribution lines.
            "Still broken.\n\nOn Tue, Jun 4, 2024 at 9:15 AM Relaypoint Support <\n"
            "help@rp.example> wrote:\n\n> earlier",
            "Still broken.",
        ),
        (
            "Danke.\n\nAm Di., 4. Juni 2024 um 09:15 Uhr schrieb Support <s@rp.example>:\n> alt",
            "Danke.",
        ),
        (
            "Merci.\n\nLe mar. 4 juin 2024 à 09:15, Support <s@rp.example> a écrit :\n> ancien",
            "Merci.",
        ),
        (
            "New question.\n\n-----Original Message-----\nFrom: Support\nSent: Monday\nold",
            "New question.",
        ),
        (
            "See below.\n\n________________________________\nFrom: Relaypoint <s@rp.example>\n"
            "Sent: Monday, June 3, 2024 10:02 AM\nTo: Jane\nSubject: RE: invoice\n\nold reply",
            "See below.",
        ),
        ("Inline reply:\n> your question\nmy answer\n>> older", "Inline reply:\nmy answer"),
        ("Body text\n--\nJane\n+1 555 123 4567", "Body text"),
        ("Body text\n-- \nJane", "Body text"),
        ("Quick q about SMS\n\nSent from my iPhone", "Quick q about SMS"),
        ("Quick q\nSent from my Android device\nGet Outlook for iOS", "Quick q"),
    ],
)
def test_strip_quotes_and_signature(text, expected):
    assert strip_quotes_and_signature(text) == expected


def test_forwarded_messages_are_kept():
    text = (
        "FYI, see the customer's problem below.\n\nBegin forwarded message:\n\n"
        "From: Bob <bob@example.com>\nSubject: Webhooks failing\nDate: 3 June 2024\n\n"
        "Our webhook endpoint returns 500."
    )
    out = strip_quotes_and_signature(text)
    assert "Begin forwarded message:" in out
    assert "Our webhook endpoint returns 500." in out


def test_prose_that_mentions_from_and_on_is_kept():
    text = (
        "On Monday our webhooks stopped.\nFrom: the logs it looks like a 401.\n"
        "The CLI -- verbose flag shows nothing."
    )
    assert strip_quotes_and_signature(text) == text


# --------------------------------------------------------------------------- parse_eml


def eml(headers: str, body: bytes) -> bytes:
    return headers.strip().replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


PLAIN = eml(
    """
From: Jane Doe <jane.doe@example.com>
To: support@relaypoint.example
Subject: Invoice for May
Message-ID: <CAF=abc.123@mail.gmail.com>
Date: Mon, 3 Jun 2024 10:02:00 +0000
Content-Type: text/plain; charset=utf-8
""",
    "Hi,\r\n\r\nI need a copy of my May invoice — thanks.\r\n\r\n-- \r\nJane Doe\r\n".encode(),
)


def test_plain_email():
    ticket = parse_eml(PLAIN)
    assert set(ticket) == KEYS
    assert ticket["channel"] == "email"
    assert ticket["subject"] == "Invoice for May"
    assert ticket["body"] == "Hi,\n\nI need a copy of my May invoice — thanks."
    assert ticket["id"] == "CAF_abc.123_mail.gmail.com"
    assert ticket["customer_id"] is None and ticket["tenant"] is None
    assert ticket["extra"] == {}
    # The sender address is personal data and is not kept anywhere in the ticket.
    assert "jane.doe@example.com" not in json.dumps(ticket)


def test_explicit_ticket_id_wins_and_is_validated():
    assert parse_eml(PLAIN, ticket_id="T-9")["id"] == "T-9"
    with pytest.raises(TicketError, match="id is empty"):
        parse_eml(PLAIN, ticket_id=" ")


def test_id_from_hash_when_no_message_id():
    data = eml("Subject: hi\nContent-Type: text/plain", b"Where is my invoice?")
    ticket = parse_eml(data)
    assert re.fullmatch(r"eml-[0-9a-f]{16}", ticket["id"])
    assert parse_eml(data)["id"] == ticket["id"]  # stable
    assert parse_eml(data + b" ")["id"] != ticket["id"]


def test_message_id_is_sanitised():
    data = eml("Message-ID: <a b/c\\d@x;y>\nSubject: s", b"text")
    ticket_id = parse_eml(data)["id"]
    assert re.fullmatch(r"[A-Za-z0-9._-]+", ticket_id)
    assert "@" not in ticket_id


def test_encoded_subject_is_decoded():
    data = eml("Subject: =?utf-8?q?Rechnung_f=C3=BCr_Mai_=E2=82=AC?=", b"Hallo")
    assert parse_eml(data)["subject"] == "Rechnung für Mai €"


def test_html_only_email():
    html = b"""<html><head><title>Ignore me</title><style>p {color: red}</style></head>
<body><p>Hello&nbsp;team &amp; friends,</p><p>My webhook<br>returns 500 &lt;always&gt;.</p>
<script>alert("x")</script><ul><li>one</li><li>two</li></ul></body></html>"""
    data = eml("Subject: help\nContent-Type: text/html; charset=utf-8", html)
    body = parse_eml(data)["body"]
    assert "Hello team & friends," in body  # &nbsp; collapses like any HTML whitespace
    assert "My webhook\nreturns 500 <always>." in body
    assert "one\ntwo" in body
    for hidden in ("Ignore me", "color", "alert", "<p>", "&amp;"):
        assert hidden not in body


def test_html_gmail_quote_is_stripped():
    html = (
        b"<div dir='ltr'>Still failing with 401.</div><br><div class='gmail_quote'>"
        b"<div class='gmail_attr'>On Mon, Jun 3, 2024 at 10:02 AM Support &lt;s@rp.example&gt; "
        b"wrote:<br></div><blockquote>Please rotate your <b>key</b>.</blockquote></div>"
    )
    data = eml("Subject: re\nContent-Type: text/html; charset=utf-8", html)
    assert parse_eml(data)["body"] == "Still failing with 401."


def test_html_blockquote_without_attribution_is_dropped():
    text = html_to_text("<p>mine</p><blockquote><p>quoted</p></blockquote>")
    assert "> quoted" in text  # marked as a quote...
    assert strip_quotes_and_signature(text) == "mine"  # ...so the quote stripper removes it
    assert "\na  b\n  c\n" in html_to_text("<div> x </div><pre>a  b\n  c</pre>")


def test_multipart_alternative_prefers_plain():
    data = eml(
        """
Subject: Both
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="XYZ"
""",
        b"--XYZ\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML version</p>\r\n"
        b"--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain version\r\n"
        b"--XYZ--\r\n",
    )
    assert parse_eml(data)["body"] == "Plain version"


def test_multipart_with_attachment_and_base64_html_fallback():
    import base64

    html = base64.b64encode("<p>Caf\u00e9 invoice, please</p>".encode("iso-8859-1"))
    data = eml(
        """
Subject: Attach
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="B1"
""",
        b"--B1\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + html + b"\r\n"
        b"--B1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
        b'filename="inv.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n'
        b"--B1--\r\n",
    )
    assert parse_eml(data)["body"] == "Caf\u00e9 invoice, please"


def test_outlook_reply_and_signature_in_email():
    body = (
        b"Can you raise my rate limit?\r\n\r\nSent from my iPhone\r\n\r\n"
        b"-----Original Message-----\r\nFrom: Support\r\nSent: Monday\r\n\r\nOld text\r\n"
    )
    data = eml("Subject: RE: limits\nContent-Type: text/plain; charset=utf-8", body)
    assert parse_eml(data)["body"] == "Can you raise my rate limit?"


def test_invalid_utf8_bytes_in_declared_utf8_body_are_replaced():
    data = eml(
        "Subject: bytes\nContent-Type: text/plain; charset=utf-8",
        b"Hello \xff\xfe\xfa world \xc3\x28 end",
    )
    body = parse_eml(data)["body"]
    assert body.startswith("Hello ") and body.endswith(" end")
    assert "\ufffd" in body


def test_unknown_charset_falls_back_to_utf8():
    data = eml(
        "Subject: cs\nContent-Type: text/plain; charset=x-klingon-9",
        "naïve question".encode(),
    )
    assert parse_eml(data)["body"] == "naïve question"


def test_declared_legacy_charset_is_used():
    data = eml("Subject: cs\nContent-Type: text/plain; charset=iso-8859-1", b"Caf\xe9")
    assert parse_eml(data)["body"] == "Café"


@pytest.mark.parametrize(
    "data",
    [
        eml("Subject: empty\nContent-Type: text/plain", b""),
        eml("Subject: ws\nContent-Type: text/plain", b"   \r\n\r\n   "),
        eml("Subject: only quote\nContent-Type: text/plain", b"> quoted\r\n> text\r\n"),
        eml("Subject: sig only\nContent-Type: text/plain", b"-- \r\nJane\r\n"),
        eml("Subject: pdf\nContent-Type: application/pdf", b"%PDF-1.4 binary"),
        b"",
    ],
)
def test_email_without_text_body_is_rejected(data):
    with pytest.raises(
        TicketError, match="email has no text body after removing quotes and signatures"
    ):
        parse_eml(data)


@pytest.mark.parametrize("seed", range(20))
def test_binary_garbage_never_raises_anything_but_ticket_error(seed):
    import random

    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))
    try:
        ticket = parse_eml(data)
    except TicketError as exc:
        assert "\n" not in str(exc)
    else:
        assert set(ticket) == KEYS and ticket["body"].strip()


def test_mostly_undecodable_body_is_rejected():
    data = eml("Subject: bin\nContent-Type: text/plain; charset=utf-8", b"a" + b"\xff" * 200)
    with pytest.raises(TicketError, match="not readable text"):
        parse_eml(data)


def test_parse_eml_rejects_non_bytes():
    with pytest.raises(TicketError, match="must be bytes"):
        parse_eml("From: x\n\nhello")  # type: ignore[arg-type]


def test_oversize_email_body_is_rejected():
    data = eml("Subject: big\nContent-Type: text/plain", b"x" * (MAX_BODY_BYTES + 1))
    with pytest.raises(TicketError, match="100,001 bytes"):
        parse_eml(data)


def test_long_quoted_history_does_not_count_against_the_limit():
    history = b"> " + b"q" * 200 + b"\r\n"
    data = eml("Subject: thread\nContent-Type: text/plain", b"New question\r\n" + history * 1000)
    assert parse_eml(data)["body"] == "New question"


def test_malformed_headers_do_not_raise():
    data = b"Subject: =?utf-8?b?!!!not-base64?=\r\nFrom: <<<>>>\r\nMessage-ID: <>\r\n\r\nHello"
    ticket = parse_eml(data)
    assert ticket["body"] == "Hello"
    assert ticket["id"].startswith("eml-")


# --------------------------------------------------------------------------- read_jsonl


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_read_jsonl_reports_bad_line_and_continues(tmp_path):
    lines = [
        json.dumps({"id": "a", "channel": "chat", "body": "one", "expected_intent": "x"}),
        "",
        "   ",
        '{"id": "b", "channel": "chat", "body": "two"',  # truncated JSON on line 4
        json.dumps({"id": "c", "channel": "sms", "body": "three"}),
        json.dumps({"id": "d", "channel": "email", "body": "four"}),
        "[1, 2]",
        json.dumps({"id": "e", "body": "five"}),
    ]
    path = write(tmp_path / "t.jsonl", ("\n".join(lines) + "\n").encode())
    results = list(read_jsonl(path))
    assert [n for n, _ in results] == [1, 4, 5, 6, 7, 8]
    by_line = dict(results)
    assert by_line[1]["id"] == "a" and by_line[1]["extra"] == {"expected_intent": "x"}
    assert isinstance(by_line[4], TicketError)
    assert str(by_line[4]).startswith("line 4: invalid JSON: ")
    assert isinstance(by_line[5], TicketError) and str(by_line[5]).startswith("line 5: ")
    assert "channel" in str(by_line[5])
    assert by_line[6]["channel"] == "email"
    assert str(by_line[7]) == "line 7: ticket must be a JSON object, got array"
    assert by_line[8]["id"] == "e"


def test_read_jsonl_non_utf8_file_is_processed(tmp_path):
    data = (
        b'{"id": "l1", "channel": "chat", "body": "Caf\xe9 \xff ok"}\n'
        b'{"id": "l2", "channel": "chat", "body": "plain"}\r\n'
    )
    results = list(read_jsonl(write(tmp_path / "latin.jsonl", data)))
    assert [n for n, _ in results] == [1, 2]
    assert results[0][1]["body"] == "Caf\ufffd \ufffd ok"
    assert results[1][1]["body"] == "plain"


def test_read_jsonl_bom_and_no_trailing_newline(tmp_path):
    data = b'\xef\xbb\xbf{"id": "x", "body": "hi"}'
    assert list(read_jsonl(write(tmp_path / "bom.jsonl", data)))[0][1]["id"] == "x"


def test_read_jsonl_over_long_line_is_reported_without_parsing(tmp_path):
    huge = json.dumps({"id": "big", "body": "x" * (2 * MAX_BODY_BYTES + 10)})
    ok = json.dumps({"id": "small", "body": "fine"})
    path = write(tmp_path / "huge.jsonl", f"{huge}\n{ok}\n".encode())
    results = list(read_jsonl(path))
    assert [n for n, _ in results] == [1, 2]
    assert isinstance(results[0][1], TicketError)
    assert str(results[0][1]).startswith("line 1: line is ")
    assert "200,000 bytes" in str(results[0][1])
    assert results[1][1]["id"] == "small"


def test_read_jsonl_body_over_limit_but_line_under_is_validated(tmp_path):
    line = json.dumps({"id": "big", "body": "x" * (MAX_BODY_BYTES + 1)})
    (number, result), = list(read_jsonl(write(tmp_path / "b.jsonl", line.encode())))
    assert number == 1 and isinstance(result, TicketError)
    assert "100,001 bytes" in str(result)


def test_read_jsonl_deeply_nested_json_is_an_error_not_a_crash(tmp_path):
    line = "[" * 100_000 + "]" * 100_000
    ((number, result),) = list(read_jsonl(write(tmp_path / "deep.jsonl", line.encode())))
    assert number == 1 and isinstance(result, TicketError)
    assert str(result).startswith("line 1: invalid JSON")


def test_read_jsonl_accepts_str_and_pathlike(tmp_path):
    path = write(tmp_path / "p.jsonl", b'{"id": "p", "body": "b"}\n')
    assert list(read_jsonl(str(path)))[0][1]["id"] == "p"
    assert list(read_jsonl(os.fspath(path)))[0][0] == 1
