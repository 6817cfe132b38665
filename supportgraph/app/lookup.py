"""Find a ticket's thread from what a person types: a ticket id (or a thread id) and a tenant.

Tenants use overlapping ticket ids (`2001` at acme and at globex), so an id alone may name
several tickets. A command never picks one of them: it is told which tenants have that id and
asked for `--tenant`.
"""

from __future__ import annotations

from typing import Any

from graph.persistence import DEFAULT_TENANT


class TicketLookupError(LookupError):
    """A ticket reference that names no ticket, or several."""


class UnknownTicket(TicketLookupError):
    """No ticket (of that tenant) has this id."""


class AmbiguousTicket(TicketLookupError):
    """Several tenants have a ticket with this id; the caller must say which."""

    def __init__(self, ticket_id: str, tenants: list[str]) -> None:
        super().__init__(f"ticket {ticket_id} exists for tenants {', '.join(tenants)}: "
                         "add --tenant")
        self.ticket_id = ticket_id
        self.tenants = tenants


def resolve_ticket(db: Any, ticket_id: str, tenant: str | None) -> tuple[str, str]:
    """(tenant, thread id) of the ticket `ticket_id` (or of the thread with that id).

    `tenant` None: any tenant, as long as only one has that id. Raises `UnknownTicket` or
    `AmbiguousTicket`. A tenant's newest thread wins when it has several for one id (a thread
    from an older version and one from this version).
    """
    if not ticket_id or len(ticket_id) > 512 or any(ord(ch) < 32 for ch in ticket_id):
        raise UnknownTicket("give a ticket id as `supportgraph run` printed it "
                            "(at most 512 printable characters)")
    candidates = ticket_threads(db, ticket_id)
    if tenant is not None:
        candidates = [c for c in candidates if c[0] == tenant]
    if not candidates:
        scope = f" for tenant {tenant}" if tenant is not None else ""
        raise UnknownTicket(f"no ticket or thread {ticket_id[:200]!r}{scope}")
    tenants = sorted({c[0] for c in candidates})
    if len(tenants) > 1:
        raise AmbiguousTicket(ticket_id, tenants)
    return candidates[0][0], candidates[0][1]


def ticket_threads(db: Any, ref: str) -> list[tuple[str, str]]:
    """Every (tenant, thread id) a ticket id or thread id names, newest first."""
    rows = db.fetchall(
        """SELECT tenant, thread_id, updated_at AS at FROM sg_runs
               WHERE ticket_id = :r OR thread_id = :r
           UNION ALL
           SELECT tenant, thread_id, requested_at AS at FROM sg_reviews
               WHERE ticket_id = :r OR thread_id = :r""", {"r": ref})
    rows.sort(key=lambda r: r["at"], reverse=True)
    seen: dict[str, str] = {}
    for row in rows:
        seen.setdefault(row["thread_id"], row["tenant"] or DEFAULT_TENANT)
    return [(tenant, thread_id) for thread_id, tenant in seen.items()]


__all__ = ["AmbiguousTicket", "TicketLookupError", "UnknownTicket", "resolve_ticket",
           "ticket_threads"]
