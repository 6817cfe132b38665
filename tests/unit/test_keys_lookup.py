"""API keys (app/keys.py) and ticket lookup across tenants (app/lookup.py) on a real SQLite db."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.persistence import Database, open_database
from supportgraph.app.cli import main
from supportgraph.app.keys import (
    KeyCommandError,
    add_key,
    hash_key,
    identity_for,
    list_keys,
    revoke_key,
)
from supportgraph.app.lookup import AmbiguousTicket, UnknownTicket, resolve_ticket


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(None, tmp_path)
    yield database
    database.close()


def test_a_key_is_shown_once_and_only_its_hash_is_stored(db: Database) -> None:
    created = add_key(db, "acme", "reviewer", "acme-rev")
    assert set(created) == {"name", "tenant", "role", "key"}
    key = created["key"]
    assert key.startswith("sg_") and len(key) > 40
    stored = db.fetchall("SELECT * FROM sg_api_keys")
    assert key not in json.dumps(stored)
    assert stored[0]["key_hash"] == hash_key(key)
    assert identity_for(db, key) == {"tenant": "acme", "role": "reviewer", "name": "acme-rev"}
    other = add_key(db, "acme", "reviewer")  # a generated name
    assert other["name"].startswith("acme-reviewer-") and other["key"] != key


@pytest.mark.parametrize("key", ["", "sg_", "sg_" + "a" * 43, "x" * 10_000, "\x00", "' OR 1=1"])
def test_missing_unknown_or_hostile_keys_have_no_identity(db: Database, key: str) -> None:
    add_key(db, "acme", "service", "svc")
    assert identity_for(db, key) is None


def test_revoked_keys_stop_working_and_stay_listed(db: Database) -> None:
    key = add_key(db, "globex", "admin", "g-admin")["key"]
    assert identity_for(db, key) is not None
    assert revoke_key(db, "g-admin") is True
    assert identity_for(db, key) is None
    assert revoke_key(db, "g-admin") is False  # already revoked
    assert revoke_key(db, "nobody") is False
    (row,) = list_keys(db)
    assert row["name"] == "g-admin" and row["revoked_at"] and row["last_used_at"]
    assert "key_hash" not in row


@pytest.mark.parametrize(("tenant", "role", "name", "message"), [
    ("", "service", None, "--tenant"), ("acme:x", "service", None, "--tenant"),
    ("a" * 65, "service", None, "--tenant"), ("acme", "root", None, "--role"),
    ("acme", "service", "", "--name"), ("acme", "service", "x y", "--name"),
    ("acme", "service", "n" * 65, "--name"),
])
def test_bad_key_requests_are_refused(db: Database, tenant: str, role: str, name: str | None,
                                      message: str) -> None:
    with pytest.raises(KeyCommandError, match=message):
        add_key(db, tenant, role, name)
    assert list_keys(db) == []


def test_a_key_name_is_taken_once(db: Database) -> None:
    add_key(db, "acme", "service", "svc")
    with pytest.raises(KeyCommandError, match="exists already"):
        add_key(db, "globex", "admin", "svc")
    assert [r["tenant"] for r in list_keys(db)] == ["acme"]


def test_keys_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SUPPORTGRAPH_HOME", str(tmp_path))
    assert main(["keys", "add", "--tenant", "acme", "--role", "service", "--name", "svc",
                 "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert set(created) == {"name", "tenant", "role", "key"}
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "svc\ttenant acme\trole service\tcreated " in listing and "last used never" in listing
    assert created["key"] not in listing
    assert main(["keys", "add", "--tenant", "acme", "--role", "service", "--name", "svc"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["keys", "revoke", "svc"]) == 0
    assert main(["keys", "revoke", "svc"]) == 1
    assert "no active key named 'svc'" in capsys.readouterr().err


def _seed(db: Database) -> None:
    rows = [("ticket:acme:2001", "2001", "acme", "2026-11-01T10:00:00"),
            ("ticket:globex:2001", "2001", "globex", "2026-11-01T11:00:00"),
            ("ticket:acme:2002", "2002", "acme", "2026-11-01T12:00:00"),
            ("ticket:2003", "2003", "default", "2026-11-01T09:00:00"),
            ("ticket:default:2003", "2003", "default", "2026-11-02T09:00:00")]
    for thread_id, ticket_id, tenant, at in rows:
        db.execute("INSERT INTO sg_runs (thread_id, ticket_id, tenant, status, summary, "
                   "created_at, updated_at) VALUES (:th, :ti, :te, 'sent', '{}', :at, :at)",
                   {"th": thread_id, "ti": ticket_id, "te": tenant, "at": at})


def test_resolve_ticket_never_guesses_between_tenants(db: Database) -> None:
    _seed(db)
    with pytest.raises(AmbiguousTicket) as info:
        resolve_ticket(db, "2001", None)
    assert str(info.value) == "ticket 2001 exists for tenants acme, globex: add --tenant"
    assert info.value.tenants == ["acme", "globex"]
    assert resolve_ticket(db, "2001", "globex") == ("globex", "ticket:globex:2001")
    assert resolve_ticket(db, "2002", None) == ("acme", "ticket:acme:2002")
    assert resolve_ticket(db, "ticket:globex:2001", None) == ("globex", "ticket:globex:2001")
    # the newest of one tenant's threads for an id (an old-style and a new one)
    assert resolve_ticket(db, "2003", None) == ("default", "ticket:default:2003")
    with pytest.raises(UnknownTicket):
        resolve_ticket(db, "2002", "globex")
    with pytest.raises(UnknownTicket):
        resolve_ticket(db, "ticket:globex:2001", "acme")  # a thread id of another tenant


@pytest.mark.parametrize("ref", ["", "x" * 100_000, "' OR '1'='1", "%", "2001\x00", "\u202e"])
def test_resolve_ticket_with_hostile_refs_finds_nothing(db: Database, ref: str) -> None:
    _seed(db)
    with pytest.raises(UnknownTicket):
        resolve_ticket(db, ref, None)
