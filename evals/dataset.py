"""Eval datasets: recorded tickets with gold fields, validated row by row.

One JSON object a line: the ticket fields of `supportgraph run --input` (`id`, `channel`,
`subject`?, `body`, `customer_id`?, `tenant`?) plus the gold fields below. Every bad row is
reported with its line number and the whole dataset is refused: an eval over a silently
partial set would print numbers about tickets nobody chose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from supportgraph.text.tickets import MAX_BODY_BYTES, TicketError, parse_chat

ROUTES = ("billing", "technical", "human")
OUTCOMES = ("sent", "human")
TICKET_FIELDS = ("id", "channel", "subject", "body", "customer_id", "tenant")
GOLD_FIELDS = ("expected_intent", "expected_route", "expected_outcome", "reference_answer",
               "tags", "expected_doc_ids")
MAX_DOC_IDS = 50
MAX_DOC_ID_CHARS = 500
MAX_ROWS = 100_000
MAX_REPORTED = 50


class DatasetError(ValueError):
    """A dataset that cannot be evaluated; `problems` lists every bad row as `path:line: why`."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        shown = problems[:MAX_REPORTED]
        more = len(problems) - len(shown)
        lines = "\n".join(shown) + (f"\n... and {more} more" if more > 0 else "")
        super().__init__(f"{path}: {len(problems)} bad row(s); nothing was evaluated\n{lines}")


@dataclass(frozen=True)
class EvalTicket:
    """One recorded ticket and what should have happened to it."""

    line: int
    ticket: dict[str, Any]
    expected_route: str
    expected_outcome: str
    expected_intent: str | None = None
    reference_answer: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    expected_doc_ids: tuple[str, ...] = field(default_factory=tuple)
    """Source ids a right answer cites: a passage's `doc_id` (`path#section`) or a whole
    article (`path`, which any of its sections matches). Empty when unknown."""

    @property
    def id(self) -> str:
        """The ticket id (unique per tenant within a dataset)."""
        return self.ticket["id"]


def _optional_text(row: dict, name: str, problems: list[str]) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{name} must be a string, got {type(value).__name__}")
        return None
    return value


def _doc_ids(row: dict, problems: list[str]) -> tuple[str, ...]:
    """`expected_doc_ids`: absent, or a non-empty list of at most MAX_DOC_IDS non-empty ids."""
    if "expected_doc_ids" not in row or row["expected_doc_ids"] is None:
        return ()
    value = row["expected_doc_ids"]
    if not isinstance(value, list):
        problems.append(f"expected_doc_ids must be a list of source ids, got "
                        f"{type(value).__name__}")
        return ()
    if not value:
        problems.append("expected_doc_ids is empty (leave it out when unknown)")
        return ()
    if len(value) > MAX_DOC_IDS:
        problems.append(f"expected_doc_ids has {len(value):,} ids (at most {MAX_DOC_IDS})")
        return ()
    bad = [v for v in value if not isinstance(v, str) or not v.strip()
           or len(v) > MAX_DOC_ID_CHARS]
    if bad:
        problems.append(f"expected_doc_ids must hold non-empty strings of at most "
                        f"{MAX_DOC_ID_CHARS} characters, got {bad[0]!r:.60}")
        return ()
    return tuple(dict.fromkeys(v.strip() for v in value))


def parse_row(row: Any) -> tuple[EvalTicket | None, list[str]]:
    """Validate one decoded row; returns the ticket (or None) and the reasons it is bad."""
    if not isinstance(row, dict):
        return None, [f"row must be a JSON object, got {type(row).__name__}"]
    problems: list[str] = []
    try:
        parse_chat(row)
    except TicketError as exc:
        problems.append(str(exc))
    route = row.get("expected_route")
    if route not in ROUTES:
        problems.append(f"expected_route must be one of {', '.join(ROUTES)}, got {route!r:.40}")
    outcome = row.get("expected_outcome")
    if outcome not in OUTCOMES:
        problems.append(f"expected_outcome must be one of {', '.join(OUTCOMES)}, "
                        f"got {outcome!r:.40}")
    intent = _optional_text(row, "expected_intent", problems)
    if intent is not None and not intent.strip():
        problems.append("expected_intent is empty (leave it out when unknown)")
    reference = _optional_text(row, "reference_answer", problems) or ""
    tags = row.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append("tags must be a list of strings")
        tags = []
    doc_ids = _doc_ids(row, problems)
    if problems:
        return None, problems
    ticket = {k: row[k] for k in TICKET_FIELDS if row.get(k) is not None}
    return EvalTicket(line=0, ticket=ticket, expected_route=str(route),
                      expected_outcome=str(outcome),
                      expected_intent=intent, reference_answer=reference,
                      tags=tuple(tags), expected_doc_ids=doc_ids), []


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield `(line number, decoded JSON or TicketError)` for every non-blank line.

    Undecodable bytes and over-long lines are errors here (a dataset is curated, not a live
    feed), and an over-long line is never held in memory whole.
    """
    limit = 2 * MAX_BODY_BYTES
    with path.open("rb") as fh:
        number = 0
        while raw := fh.readline(limit + 1):
            number += 1
            if len(raw) > limit and not raw.endswith(b"\n"):
                while (chunk := fh.readline(limit)) and not chunk.endswith(b"\n"):
                    pass  # skip the rest of the over-long line
                yield number, TicketError(f"line is longer than {limit:,} bytes")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, TicketError(f"not UTF-8 (byte {exc.start + 1})")
                continue
            text = text.removeprefix("\ufeff") if number == 1 else text
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except (ValueError, RecursionError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
                yield number, TicketError(f"invalid JSON: {msg}")


def load_dataset(path: str | Path) -> list[EvalTicket]:
    """Read and validate a dataset; raises DatasetError listing every bad row, or if empty."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, [f"{path}: no such file"])
    tickets: list[EvalTicket] = []
    problems: list[str] = []
    seen: dict[tuple[str | None, str], int] = {}
    for line, item in read_rows(path):
        if line > MAX_ROWS:
            problems.append(f"{path}:{line}: more than {MAX_ROWS:,} rows; split the dataset")
            break
        if isinstance(item, TicketError):
            problems.append(f"{path}:{line}: {item}")
            continue
        ticket, reasons = parse_row(item)
        problems.extend(f"{path}:{line}: {reason}" for reason in reasons)
        if ticket is None:
            continue
        key = (ticket.ticket.get("tenant"), ticket.id)
        if key in seen:
            problems.append(f"{path}:{line}: duplicate ticket id {ticket.id!r:.60} "
                            f"(first on line {seen[key]})")
            continue
        seen[key] = line
        tickets.append(replace(ticket, line=line))
    if not tickets and not problems:
        problems.append(f"{path}: no tickets (the file is empty)")
    if problems:
        raise DatasetError(path, problems)
    return tickets


def unknown_fields(path: str | Path) -> list[str]:
    """Field names in a dataset that the eval ignores (shown once as a warning)."""
    known = set(TICKET_FIELDS) | set(GOLD_FIELDS)
    names: set[str] = set()
    for _line, item in read_rows(Path(path)):
        if isinstance(item, dict):
            names.update(k for k in item if k not in known)
    return sorted(names)
