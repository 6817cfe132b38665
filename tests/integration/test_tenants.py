"""Two tenants with overlapping ticket ids on the CLI: nothing one does reaches the other.

acme and globex both have ticket 2001 waiting for review. An id that several tenants have is
refused (exit 2, naming them); with `--tenant`, review, audit, learn and `cases remove` touch
only that tenant's rows and cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supportgraph.app.cli import main

OUT_OF_SCOPE = "Can you recommend a good banana bread recipe?"
ANSWERABLE = "Where can I download the PDF of last month's invoice?"
AMBIGUOUS = "supportgraph: ticket 2001 exists for tenants acme, globex: add --tenant\n"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def db_rows(sql: str, **params: str) -> list[dict]:
    from graph.context import Context
    from supportgraph.app.services import run_services

    return run_services(Context()).db.fetchall(sql, params)


def case_payloads(ticket_id: str) -> list[dict]:
    from graph.context import Context
    from retrieval.cases import COLLECTION
    from supportgraph.app.services import run_services

    store = run_services(Context()).store
    return store.payloads_where(COLLECTION, "ticket_ids", ticket_id) if store.exists(
        COLLECTION) else []


def test_two_tenants_with_the_same_ticket_id_never_cross(
    demo_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for tenant in ("acme", "globex"):
        code, out, _ = cli(capsys, "run", "--text", OUT_OF_SCOPE, "--id", "2001",
                           "--tenant", tenant, "--json")
        assert code == 0
        summary = json.loads(out)
        assert summary["status"] == "awaiting_review"
        assert summary["thread_id"] == f"ticket:{tenant}:2001"

    # An id two tenants have is refused, naming them; nothing is decided.
    for args in (("review", "show", "2001"), ("review", "accept", "2001", "--reviewer", "m"),
                 ("review", "reject", "2001", "--reviewer", "m"), ("audit", "show", "2001")):
        code, out, err = cli(capsys, *args)
        assert (code, out, err) == (2, "", AMBIGUOUS), args
    waiting = db_rows("SELECT tenant, status FROM sg_reviews ORDER BY tenant")
    assert waiting == [{"tenant": "acme", "status": "waiting"},
                       {"tenant": "globex", "status": "waiting"}]

    # The review queue of one tenant shows only its tickets.
    code, out, _ = cli(capsys, "review", "list", "--tenant", "globex", "--json")
    assert code == 0
    assert [json.loads(line)["thread_id"] for line in out.splitlines()] == ["ticket:globex:2001"]

    # acme's agent edits acme's ticket, quoting acme's account id.
    reply = "Your acme account ACCT-ACME-7731 has the recipe you asked for in the portal."
    code, out, err = cli(capsys, "review", "edit", "2001", "--tenant", "acme",
                         "--reply", reply, "--reviewer", "maria")
    assert code == 0, err
    assert "ticket 2001: sent" in out
    outbox = db_rows("SELECT tenant, thread_id, reply, approved_by FROM sg_outbox")
    assert outbox == [{"tenant": "acme", "thread_id": "ticket:acme:2001", "reply": reply,
                       "approved_by": "maria"}]
    assert db_rows("SELECT status FROM sg_reviews WHERE tenant = 'globex'") == [
        {"status": "waiting"}]

    # Learned into acme's cases only.
    learned = case_payloads("2001")
    assert [(p["tenant"], p["reply"]) for p in learned] == [("acme", reply)]

    # globex's reviewer rejects globex's ticket: nothing is delivered or learned for globex.
    code, out, err = cli(capsys, "review", "reject", "2001", "--tenant", "globex",
                         "--reason", "spam", "--reviewer", "dana")
    assert code == 0, err
    assert "ticket 2001: rejected" in out
    assert [r["tenant"] for r in db_rows("SELECT tenant FROM sg_outbox")] == ["acme"]
    assert [p["tenant"] for p in case_payloads("2001")] == ["acme"]

    # Audit of one tenant's ticket: only that tenant's thread and rows.
    code, out, err = cli(capsys, "audit", "show", "2001", "--tenant", "globex", "--json")
    assert code == 0, err
    trail = json.loads(out)
    assert trail["tenant"] == "globex"
    assert {e["thread_id"] for e in trail["events"]} == {"ticket:globex:2001"}
    assert {e["tenant"] for e in trail["events"]} == {"globex"}
    assert [r["status"] for r in trail["runs"]] == ["rejected"]
    code, _, err = cli(capsys, "audit", "show", "2001", "--tenant", "initech")
    assert code == 1 and "of tenant initech" in err

    # Removing globex's case 2001 does not touch acme's; without --tenant, the one holder's.
    code, _, err = cli(capsys, "cases", "remove", "2001", "--tenant", "globex")
    assert code == 1 and "no resolved case holds ticket 2001 of tenant globex" in err
    assert [p["tenant"] for p in case_payloads("2001")] == ["acme"]
    code, out, _ = cli(capsys, "cases", "remove", "2001")
    assert code == 0 and "(tenant acme)" in out
    assert case_payloads("2001") == []

    # Every row of every table carries its tenant.
    for table in ("sg_audit", "sg_runs", "sg_reviews", "sg_outbox"):
        tenants = {r["tenant"] for r in db_rows(f"SELECT DISTINCT tenant FROM {table}")}
        assert tenants <= {"acme", "globex"} and tenants, table


def test_a_ticket_without_tenant_is_the_default_tenants_and_ids_with_colons_stay_apart(
    demo_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without tenants in the thread id, `acme:2002` of no tenant and `2002` of acme were the
    # same thread (`ticket:acme:2002`).
    code, out, _ = cli(capsys, "run", "--text", OUT_OF_SCOPE, "--id", "acme:2002", "--json")
    assert code == 0 and json.loads(out)["thread_id"] == "ticket:default:acme:2002"
    code, out, _ = cli(capsys, "run", "--text", OUT_OF_SCOPE, "--id", "2002", "--tenant",
                       "acme", "--json")
    assert code == 0
    second = json.loads(out)
    assert second["thread_id"] == "ticket:acme:2002" and second["status"] == "awaiting_review"
    code, _, err = cli(capsys, "review", "show", "2002", "--tenant", "default")
    assert code == 1 and "for tenant default" in err
    code, out, _ = cli(capsys, "review", "show", "acme:2002")
    assert code == 0 and "thread:  ticket:default:acme:2002" in out


@pytest.mark.parametrize("tenant", ["", "acme:x", "a" * 65, "../etc", "acme globex",
                                    "\u00e9", "x\n"])
def test_hostile_tenant_options_are_refused(
    demo_home: Path, capsys: pytest.CaptureFixture[str], tenant: str
) -> None:
    for args in (("review", "show", "2001"), ("audit", "show", "2001"),
                 ("cases", "remove", "2001"), ("run", "--text", "hi")):
        with pytest.raises(SystemExit) as info:
            main([*args, "--tenant", tenant])
        assert info.value.code == 2
        assert "a tenant is 1-64 characters" in capsys.readouterr().err


def test_two_tenants_learn_the_same_ticket_id_as_two_cases(
    demo_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replies = {tenant: f"Your {tenant} account ACCT-{tenant.upper()}-2002 is set up." for tenant
               in ("acme", "globex")}
    for tenant, reply in replies.items():
        code, _, _ = cli(capsys, "run", "--text", OUT_OF_SCOPE, "--id", "2002",
                         "--tenant", tenant, "--json")
        assert code == 0
        code, out, err = cli(capsys, "review", "edit", "2002", "--tenant", tenant,
                             "--reply", reply, "--reviewer", f"{tenant}-agent")
        assert code == 0 and "ticket 2002: sent" in out, err

    # Two cases, one per tenant: globex's learn did not overwrite acme's.
    learned = sorted((p["tenant"], p["reply"]) for p in case_payloads("2002"))
    assert learned == sorted(replies.items())

    # Every command that takes the id refuses to guess, and names both tenants.
    ambiguous = AMBIGUOUS.replace("2001", "2002")
    for args in (("show", "2002"), ("cases", "show", "2002"), ("cases", "remove", "2002"),
                 ("audit", "show", "2002")):
        code, out, err = cli(capsys, *args)
        assert (code, err) == (2, ambiguous), args
    for tenant, reply in replies.items():
        code, out, err = cli(capsys, "show", "2002", "--tenant", tenant, "--json")
        assert code == 0, err
        view = json.loads(out)
        assert (view["tenant"], view["reply"]) == (tenant, reply)
        code, out, _ = cli(capsys, "cases", "list", "--tenant", tenant, "--json")
        assert [json.loads(line)["tenant"] for line in out.splitlines()] == [tenant]

    # Removing globex's case leaves acme's.
    code, out, _ = cli(capsys, "cases", "remove", "2002", "--tenant", "globex")
    assert code == 0 and "(tenant globex)" in out
    assert [(p["tenant"], p["reply"]) for p in case_payloads("2002")] == [
        ("acme", replies["acme"])]
