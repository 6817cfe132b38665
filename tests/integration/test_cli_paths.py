"""Every subcommand's error paths, driven through `supportgraph.app.cli.main` on a home with real
tickets.

Contract: exit 2 (bad input) or 1 (refused) with exactly one stderr line that says what to do
instead, and never a traceback. Also what a person sees on the happy paths: `run` prints the
reply, `show` shows reply, review and delivery, `review show` the notes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.context import Context
from retrieval.files import copy_tree
from supportgraph.app.cli import main
from supportgraph.app.runner import Runner
from supportgraph.app.services import close_services

SENT_TEXT = "Where can I download the PDF of last month's invoice?"
OFF_TOPIC = "Can you recommend a good banana bread recipe?"
SHOW_KEYS = {"ticket_id", "tenant", "status", "reply", "recipient", "sources", "review",
             "delivery"}


@pytest.fixture(scope="module")
def tickets(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One home with a sent ticket, a draftless review, a drafted review, one id x2 tenants."""
    
    home = tmp_path_factory.mktemp("cli_paths") / "home"
    copy_tree(template_home, home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUPPORTGRAPH_HOME", str(home))
        for name in ("SUPPORTGRAPH_WEBHOOK_URL", "SUPPORTGRAPH_SMTP_URL", "LANGGRAPH_AES_KEY",
                     "DATABASE_URL"):
            mp.delenv(name, raising=False)
        runner = Runner(Context())
        made = {"home": home}
        made["sent"] = runner.run({"id": "cp-sent", "body": SENT_TEXT, "customer_id": "c-1"})
        made["nodraft"] = runner.run({"id": "cp-nodraft", "body": OFF_TOPIC})
        for tenant in ("acme", "globex"):
            runner.run({"id": "cp-dup", "tenant": tenant, "body": SENT_TEXT})
        assert made["sent"].summary["status"] == "sent"
        assert made["nodraft"].summary["status"] == "awaiting_review"
        yield made
        close_services()


@pytest.fixture
def cli(tickets: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        tmp_path: Path):
    monkeypatch.setenv("SUPPORTGRAPH_HOME", str(tickets["home"]))
    monkeypatch.chdir(tmp_path)
    for name in ("SUPPORTGRAPH_WEBHOOK_URL", "SUPPORTGRAPH_SMTP_URL", "LANGGRAPH_AES_KEY"):
        monkeypatch.delenv(name, raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


NODRAFT = "cp-nodraft"
ERROR_PATHS = [
    # (argv, exit status, words the one line must hold)
    (["review", "accept", NODRAFT, "--reviewer", "m"], 2, ["no draft to accept", "review edit"]),
    (["review", "accept", NODRAFT], 2, ["--reviewer"]),
    (["review", "accept", NODRAFT, "--reviewer", "  "], 2, ["--reviewer"]),
    (["review", "edit", NODRAFT, "--reviewer", "m"], 2, ["--reply"]),
    (["review", "edit", NODRAFT, "--reply", "   ", "--reviewer", "m"], 2, ["--reply"]),
    (["review", "edit", NODRAFT, "--reply-file", "missing.txt", "--reviewer", "m"], 2,
     ["cannot read", "missing.txt"]),
    (["review", "edit", NODRAFT, "--reply", "x" * 20_000, "--reviewer", "m"], 2, ["limit"]),
    (["review", "reject", "no-such-ticket", "--reviewer", "m"], 1, ["no ticket"]),
    (["review", "show", "cp-sent"], 1, ["not waiting", "supportgraph show"]),
    (["review", "reject", "cp-sent", "--reviewer", "m"], 1, ["already decided"]),
    (["review", "sweep", "--now", "yesterday"], 2, ["ISO"]),
    (["show", "no-such-ticket"], 2, ["no ticket"]),
    (["show", ""], 2, ["ticket id"]),
    (["show", "x" * 100_000], 2, ["ticket id"]),
    (["show", "cp\x00sent"], 2, ["ticket id"]),
    (["show", "cp-sent", "--tenant", "a\nb"], 2, ["--tenant"]),
    (["show", "cp-dup"], 2, ["acme, globex", "--tenant"]),
    (["show", "cp-dup", "--tenant", "initech"], 2, ["no ticket", "initech"]),
    (["cases", "show", "no-such-ticket"], 1, ["cases list"]),
    (["cases", "list", "--limit", "0"], 2, ["--limit"]),
    (["cases", "remove", "no-such-ticket"], 1, ["no resolved case"]),
    (["deliver", "--once"], 2, ["SUPPORTGRAPH_SMTP_URL", "SUPPORTGRAPH_WEBHOOK_URL"]),
    (["deliver", "--interval", "0"], 2, ["--interval"]),
    (["audit", "show", "no-such-ticket"], 1, ["no audit records"]),
    (["audit", "export", "--since", "soon", "--out", "x.jsonl"], 2, ["since"]),
    (["stats", "--since", "2026-13-45"], 2, ["2026-13-45"]),
    (["prune", "--before", "\x00"], 2, ["--before"]),
    (["run", "--text", ""], 2, ["body is empty"]),
    (["run", "--text", "hi", "--tenant", "bad tenant!"], 2, ["tenant"]),
    (["run", "--eml", "missing.eml"], 2, ["no such file"]),
    (["run", "--input", "missing.jsonl"], 2, ["no such file"]),
    (["ingest", "--collection", "kb_billing", "missing.md"], 2, ["no such file"]),
    (["retrieve", "--collection", "kb_billing", "--input", "missing.jsonl", "--output", "o"],
     2, ["no such file"]),
    (["train-intents", "--data", "m.jsonl", "--routes", "r.toml", "--out", "o"], 2,
     ["no such file"]),
    (["classify", "--model", "m", "--input", "missing.jsonl", "--output", "o"], 2,
     ["no such file"]),
    (["eval", "--dataset", "missing.jsonl", "--out", "o"], 2, ["missing.jsonl"]),
]


@pytest.mark.parametrize(("argv", "status", "words"), ERROR_PATHS,
                         ids=[" ".join(a[:3])[:40] for a, _, _ in ERROR_PATHS])
def test_error_paths_exit_with_one_line_and_no_traceback(cli, argv: list[str], status: int,
                                                         words: list[str]) -> None:
    code, out, err = cli(*argv)
    assert "Traceback" not in err + out
    assert code == status, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("supportgraph: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_bad_settings_are_one_line_errors(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTGRAPH_WEBHOOK_URL", "ftp://example.com")
    code, _, err = cli("deliver", "--once")
    assert (code, len(err.splitlines())) == (2, 1) and "https" in err
    monkeypatch.delenv("SUPPORTGRAPH_WEBHOOK_URL")
    monkeypatch.setenv("LANGGRAPH_AES_KEY", "short")
    code, _, err = cli("show", "cp-sent")
    assert (code, len(err.splitlines())) == (2, 1) and "16, 24 or 32" in err
    assert "Traceback" not in err


def test_argparse_errors_have_no_traceback(cli) -> None:
    for argv in (["review"], ["show"], ["deliver", "--interval", "soon"], ["nonsense"]):
        code, out, err = cli(*argv)
        assert code == 2 and "Traceback" not in err + out


def test_show_json_contract_and_text(cli, tickets: dict) -> None:
    code, out, _ = cli("show", "cp-sent", "--json")
    assert code == 0
    view = json.loads(out)
    assert SHOW_KEYS <= set(view)
    assert {"state", "attempts", "delivered_at"} <= set(view["delivery"])
    assert view["status"] == "sent" and view["recipient"] == "c-1"
    assert view["reply"] and view["sources"] and view["sources"][0]["title"]
    assert view["review"]["decision"] == "auto"
    assert view["delivery"] == {"state": "pending", "attempts": 0, "delivered_at": None,
                                "last_error": None}
    code, out, _ = cli("show", "cp-dup", "--tenant", "globex", "--json")
    assert code == 0 and json.loads(out)["tenant"] == "globex"
    code, out, _ = cli("show", "cp-sent")
    assert code == 0 and "--- reply as sent ---" in out and view["reply"][:40] in out


def test_run_prints_the_reply_and_a_working_resume_hint(cli) -> None:
    code, out, _ = cli("run", "--id", "cp-run", "--text", SENT_TEXT)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("ticket cp-run: sent")
    assert "--- reply ---" in out and "supportgraph show cp-run" in out
    code, out, _ = cli("run", "--id", "cp-quiet", "--text", SENT_TEXT, "--quiet")
    assert code == 0 and len(out.splitlines()) == 1
    code, out, _ = cli("run", "--id", "cp-offtopic", "--text", OFF_TOPIC)
    assert "awaiting_review" in out
    assert "review accept" not in out and "review edit ticket:default:cp-offtopic" in out


def test_review_note_is_visible_and_decisions_record_the_reviewer(cli) -> None:
    code, _, err = cli("review", "respond", NODRAFT, "--note", "asked billing, call +1 415 555 "
                       "0100", "--reviewer", "maria")
    assert code == 0, err
    code, out, _ = cli("review", "show", NODRAFT)
    assert code == 0 and "note from maria" in out and "asked billing" in out
    assert "555 0100" not in out  # the note was redacted before it was stored
    code, out, _ = cli("audit", "show", "cp-nodraft")
    assert "review_note" in out and "asked billing" in out
    code, out, err = cli("review", "edit", NODRAFT, "--reply", "We only do billing, sorry.",
                         "--reviewer", "maria")
    assert code == 0, err
    code, out, _ = cli("show", "cp-nodraft", "--json")
    view = json.loads(out)
    assert view["status"] == "sent" and view["review"]["reviewer"] == "maria"
    assert view["review"]["decision"] == "edit"
    assert view["review"]["notes"][0]["note"].startswith("asked billing")


def test_eml_customer_id_is_not_ignored_and_sender_is_not_stored(cli, tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_text("From: Anna <anna.k@example.org>\nSubject: invoice\n"
                   "Message-ID: <cp-eml@example.org>\n\n" + SENT_TEXT + "\n", encoding="utf-8")
    code, out, err = cli("run", "--eml", str(eml), "--customer-id", "cust-9", "--quiet")
    assert code == 0, err
    ticket_id = out.split(":")[0].removeprefix("ticket ")
    code, out, _ = cli("show", ticket_id, "--json")
    view = json.loads(out)
    assert view["recipient"] == "cust-9" and view["channel"] == "email"
    # Without LANGGRAPH_AES_KEY the sender's address is not kept anywhere.
    eml.write_text(eml.read_text().replace("cp-eml@", "cp-eml2@"), encoding="utf-8")
    code, out, _ = cli("run", "--eml", str(eml), "--quiet")
    code, out, _ = cli("show", out.split(":")[0].removeprefix("ticket "), "--json")
    view = json.loads(out)
    assert view["recipient"] is None and view["recipient_sealed"] is False
