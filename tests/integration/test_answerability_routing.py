"""Replies a customer can trust: look-alike out-of-domain tickets and unanswerable ones go to a
person (route `human`, with the reason), and a team that brings only its own docs is routed by
retrieval evidence, from `init --no-demo` on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.context import Context
from retrieval.files import copy_tree
from supportgraph.app.runner import Runner
from supportgraph.app.services import NO_DEMO_MARKER, close_services
from supportgraph.app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "evals" / "datasets" / "demo_tickets.jsonl"

DOCS = """# Acme Notes help

## Resetting your password
Open the sign-in page and click "Forgot password". Enter your email address; we send a reset
link that works for 30 minutes. Choose a new password of at least 12 characters.

## Exporting your notes
Go to Settings > Export, choose Markdown or PDF and click "Export all". The archive is emailed
to you within ten minutes.

## Sharing a notebook
Open the notebook, click Share and enter your colleague's email address. Choose "Can view" or
"Can edit" and click Send.
"""
GERMAN = """# Hilfe

## Passwort zurücksetzen
Öffnen Sie die Anmeldeseite und klicken Sie auf "Passwort vergessen". Geben Sie Ihre
E-Mail-Adresse ein; der Link ist 30 Minuten gültig.
"""


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTGRAPH_")}
    env.update(SUPPORTGRAPH_HOME=str(home), LANGSMITH_TRACING="false")
    result = subprocess.run([sys.executable, "-m", "supportgraph", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def byo_homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An empty `init --no-demo` home, and copies given a one-document KB (English, German)."""
    base = tmp_path_factory.mktemp("byo")
    empty = base / "empty"
    init = _cli(empty, "init", "--no-demo")
    assert "knowledge base: empty" in init.stdout and "routing retrieval" in init.stdout
    homes = {"empty": empty}
    for name, text in (("docs", DOCS), ("german", GERMAN)):
        home = base / name
        copy_tree(empty, home)
        doc = base / f"{name}.md"
        doc.write_text(text, encoding="utf-8")
        out = _cli(home, "ingest", "--collection", "kb_technical", str(doc)).stdout
        assert "answerability: term profile of" in out
        homes[name] = home
    return homes


@pytest.fixture
def runner_in(tmp_path: Path) -> Iterator:
    """`runner_in(home)`: a Runner on a private copy of `home`."""
    def make(home: Path) -> Runner:
        copy = tmp_path / home.name
        copy_tree(home, copy)
        return Runner(Context().with_settings(Settings(home=str(copy))))

    yield make
    close_services()


def _run(runner: Runner, body: str, n: int = 0) -> tuple[dict, dict]:
    outcome = runner.run({"id": f"t-{n}-{abs(hash(body))}", "channel": "chat", "body": body})
    state = runner.graph.get_state({"configurable": {"thread_id": outcome.thread_id}}).values
    return outcome.summary, state


# ------------------------------------------------------------------ the demo (SaaS) desk
@pytest.mark.parametrize("body", [
    "how could I check what delivery options are available?",
    "i havesubmitted a wrong delivery address how do i correct it",
    "I want to cancel my order",
    "I need to cancel the order I placed yesterday",
    "I need to change my shipping address",
])
def test_look_alike_out_of_domain_goes_to_a_person(demo_home: Path, body: str) -> None:
    summary, state = _run(Runner(Context().with_settings(Settings(home=str(demo_home)))), body)
    assert summary["status"] == "awaiting_review", summary
    assert summary["route"] == "human", summary
    assert summary["review_reason"], summary


@pytest.mark.parametrize("body", ["how to cancel a purchase",
                                  "i want to cancel a purchase, can u help me?"])
def test_a_request_about_a_thing_the_kb_is_not_about_goes_to_a_person(demo_home: Path,
                                                                       body: str) -> None:
    """Dev Bitext's wrong sends: the subscription article mentions "your first annual purchase"
    and scored 0.87, but no section is about purchases: a person, told which thing."""
    from nodes.human_review import describe

    summary, state = _run(Runner(Context().with_settings(Settings(home=str(demo_home)))), body)
    assert summary["status"] == "awaiting_review", (summary, state.get("confidence"))
    assert (summary["route"], summary["review_reason"]) == ("human", "off_knowledge_base")
    assert state["confidence"]["unknown_object"] == "purchase"
    assert '"purchase"' in describe(state, "off_knowledge_base")


def test_a_question_about_our_own_thing_keeps_its_route(demo_home: Path) -> None:
    """demo-072 asks for a key that can read delivery stats: not a shop's delivery question, so
    it is not put on route human (its gold route is technical), even when it goes to review."""
    row = next(json.loads(line) for line in DEMO.read_text().splitlines()
               if json.loads(line)["id"] == "demo-072")
    summary, _ = _run(Runner(Context().with_settings(Settings(home=str(demo_home)))),
                      row["body"])
    assert summary["route"] == "technical", summary


@pytest.mark.parametrize("ticket_id", ["demo-158", "demo-160"])
def test_a_ticket_not_in_english_goes_to_a_person_on_route_human(demo_home: Path,
                                                                 ticket_id: str) -> None:
    """The English intent model routed these German and Portuguese tickets to `technical`."""
    row = next(json.loads(line) for line in DEMO.read_text().splitlines()
               if json.loads(line)["id"] == ticket_id)
    ticket = {k: row[k] for k in ("id", "channel", "body", "subject", "tenant", "customer_id")
              if k in row}
    summary = Runner(Context().with_settings(Settings(home=str(demo_home)))).run(ticket).summary
    assert (summary["status"], summary["route"], summary["review_reason"]) == (
        "awaiting_review", "human", "non_english"), summary


@pytest.mark.parametrize("ticket_id", ["demo-139", "demo-165", "demo-166", "demo-168",
                                       "demo-169"])
def test_gold_human_demo_tickets_are_not_auto_sent(demo_home: Path, ticket_id: str) -> None:
    row = next(json.loads(line) for line in DEMO.read_text().splitlines()
               if json.loads(line)["id"] == ticket_id)
    ticket = {k: row[k] for k in ("id", "channel", "body", "subject", "tenant", "customer_id")
              if k in row}
    summary = Runner(Context().with_settings(Settings(home=str(demo_home)))).run(ticket).summary
    assert summary["status"] == "awaiting_review", summary


@pytest.mark.parametrize(("body", "step"), [
    ("Where can I download the PDF of last month's invoice?", 'Click "Download PDF"'),
    ("What does the 429 rate_limited error mean and how long should I wait?",
     "Retry-After header"),
])
def test_answerable_examples_are_sent_with_the_step_that_answers(demo_home: Path, body: str,
                                                                 step: str) -> None:
    summary, state = _run(Runner(Context().with_settings(Settings(home=str(demo_home)))), body)
    assert summary["status"] == "sent", (summary, state.get("confidence"))
    reply = state["drafts"][-1]["text"]
    assert step in reply and "`" not in reply, reply


def test_a_ticket_that_is_only_a_greeting_goes_to_a_person(demo_home: Path) -> None:
    summary, _ = _run(Runner(Context().with_settings(Settings(home=str(demo_home)))), "hi there!")
    assert summary["status"] == "awaiting_review" and summary["route"] == "human", summary


def test_confidence_is_the_answerability_probability(demo_home: Path) -> None:
    summary, state = _run(Runner(Context().with_settings(Settings(home=str(demo_home)))),
                          "How do I rotate an API key without downtime?")
    signals = state["confidence"]["signals"]
    assert {"relevance", "coverage", "term_coverage", "kb_terms", "route_agree"} <= set(signals)
    assert 0.0 <= state["confidence"]["score"] <= 1.0
    assert (demo_home / "answerability.json").is_file()


def test_same_ticket_same_outcome_whatever_the_homes_salt(demo_home: Path,
                                                          tmp_path: Path) -> None:
    """demo-005 signs with a name; its redaction token's digits depend on the home's salt.

    The models read the token without the digits, so two homes (an eval's isolated home gets a
    new salt each run) route and score the ticket alike. With the digits, the intent confidence
    was 0.33 in one home and 0.26 in another.
    """
    other = tmp_path / "other_home"
    copy_tree(demo_home, other)
    (other / "pii_salt").write_text("another-salt-" + "7" * 40 + "\n", encoding="ascii")
    row = next(json.loads(line) for line in DEMO.read_text().splitlines()
               if json.loads(line)["id"] == "demo-005")
    ticket = {k: row[k] for k in ("id", "channel", "body", "subject", "tenant") if k in row}
    seen = []
    for home in (demo_home, other):
        close_services()
        runner = Runner(Context().with_settings(Settings(home=str(home))))
        outcome = runner.run(dict(ticket))
        state = runner.graph.get_state({"configurable": {"thread_id": outcome.thread_id}}).values
        seen.append((state["normalized"]["body"], state["query"], state["intent"],
                     state["confidence"], outcome.summary["status"]))
    close_services()
    (body_a, query_a, *rest_a), (body_b, query_b, *rest_b) = seen
    assert rest_a == rest_b  # intent, confidence (score and signals), status
    assert "[NAME:" in body_a and body_a != body_b  # stored tokens are salted per home
    assert "[NAME]" in query_a and query_a == query_b


# ------------------------------------------------------------------ bring your own KB
def test_init_no_demo_makes_an_empty_home(byo_homes: dict[str, Path]) -> None:
    empty = byo_homes["empty"]
    assert (empty / NO_DEMO_MARKER).is_file()
    assert not (empty / "models").exists() or not any((empty / "models").iterdir())
    assert not (empty / "answerability.json").exists()


def test_empty_kb_sends_every_ticket_to_a_person(byo_homes: dict[str, Path],
                                                 runner_in) -> None:
    runner = runner_in(byo_homes["empty"])
    for n, body in enumerate(["How do I reset my password?", "cancel my order", "hello"]):
        summary, _ = _run(runner, body, n)
        assert summary["status"] == "awaiting_review", summary
        assert summary["review_reason"] == "no_knowledge_base", summary
        assert summary["route"] == "human", summary


def test_kb_of_one_document_routes_by_retrieval(byo_homes: dict[str, Path], runner_in) -> None:
    runner = runner_in(byo_homes["docs"])
    summary, state = _run(runner, "How can I reset my password? I forgot it.")
    assert state["intent"]["intent"] == "kb:technical" and summary["route"] == "technical"
    assert summary["status"] == "sent", (summary, state.get("confidence"))
    assert "Forgot password" in state["drafts"][-1]["text"]
    for n, body in enumerate(["I want to cancel my order", "what is the weather tomorrow?",
                              "How do I change my flight booking?"]):
        summary, _ = _run(runner, body, n + 1)
        assert summary["status"] == "awaiting_review" and summary["route"] == "human", summary


def test_routing_setting_forces_retrieval_routing(demo_home: Path) -> None:
    runner = Runner(Context(routing="retrieval").with_settings(Settings(home=str(demo_home))))
    summary, state = _run(runner, "How do I verify webhook signatures?")
    assert state["intent"]["intent"].startswith("kb:"), state["intent"]
    assert summary["route"] in ("technical", "human")


def test_non_english_kb_is_not_used_to_answer_english(byo_homes: dict[str, Path],
                                                     runner_in) -> None:
    runner = runner_in(byo_homes["german"])
    summary, _ = _run(runner, "How do I export all my notes as PDF?")
    assert summary["status"] == "awaiting_review" and summary["route"] == "human", summary
