"""`supportgraph serve` and `review sweep --server`: bad input is one line and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from graph.persistence import open_database
from supportgraph.app.cli import main


def test_serve_refuses_a_bad_port_and_a_missing_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["serve", "--port", "8000"]) == 2
    assert capsys.readouterr().err.strip() == (
        "supportgraph: no reviewer key: add one with `supportgraph keys add --tenant T "
        "--role reviewer`")
    monkeypatch.setenv("SUPPORTGRAPH_INBOX_DEV_KEY", "k")
    for port in ("0", "70000", "-1"):
        assert main(["serve", "--port", port]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not a TCP port" in err
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--port", "eighty"])
    assert exc.value.code == 2


def test_sweep_server_refuses_bad_urls_and_reports_a_dead_server(
    capsys: pytest.CaptureFixture[str], isolated_env: Path
) -> None:
    for url in ("", "ftp://x", "127.0.0.1:2024", "x" * 5000):
        assert main(["review", "sweep", "--server", url]) == 2
        assert "is not an http(s) URL" in capsys.readouterr().err
    # Nothing waits for review, so a dead server is never even asked.
    assert main(["review", "sweep", "--server", "http://127.0.0.1:9", "--json"]) == 0
    assert capsys.readouterr().out.strip() == '{"resolved_outside": []}'

    db = open_database(None, isolated_env)
    db.execute("INSERT INTO sg_reviews (thread_id, ticket_id, reason, queue, status, "
               "requested_at, deadline_at) VALUES ('t-1', 't-1', 'low_confidence', 'agent', "
               "'waiting', '2026-01-01', '2026-01-02')")
    assert main(["review", "sweep", "--server", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("supportgraph: the server at http://127.0.0.1:9 did not answer")
    assert err.count("\n") == 1
    assert db.fetchone("SELECT status FROM sg_reviews")["status"] == "waiting"
