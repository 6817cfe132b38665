"""Checkpoint writes of different tickets do not queue behind one another in a process."""

from __future__ import annotations

import threading
from pathlib import Path

from graph.persistence import checkpoint_serde, open_checkpointer, open_database


def test_two_threads_hold_postgres_checkpoint_cursors_at_once(pg_url: str, tmp_path: Path) -> None:
    saver = open_checkpointer(open_database(pg_url, tmp_path), checkpoint_serde(None))
    first_inside = threading.Event()
    release = threading.Event()
    second_inside = threading.Event()

    def hold() -> None:
        with saver._cursor() as cur:
            cur.execute("SELECT 1")
            first_inside.set()
            release.wait(10)

    def other() -> None:
        with saver._cursor() as cur:
            cur.execute("SELECT 1")
            second_inside.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert first_inside.wait(10)
    second = threading.Thread(target=other)
    second.start()
    # with LangGraph's instance-wide lock the second thread would wait for the first to finish
    assert second_inside.wait(5), "a second ticket's checkpoint waited for the first one"
    release.set()
    holder.join(10)
    second.join(10)
