"""Finding a ticket's thread from what a person types: a ticket id and maybe a tenant.

One ticket id may exist for several tenants (ids come from each tenant's own systems), so a
command never picks one of them silently: it asks for `--tenant`.
"""

from __future__ import annotations

from typing import Any


class TicketLookupError(ValueError):
    """A ticket reference that names no ticket, or more than one; exit status 2."""


def resolve_ticket(db: Any, ticket_id: str, tenant: str | None) -> tuple[str, str]:
    """The (tenant, thread_id) of a ticket; tenant "" is the default (no tenant).

    `ticket_id` may also be a thread id (`ticket:...`). Raises `TicketLookupError` when no
    run has that ticket, or when several tenants have one and `tenant` does not choose.
    """
    ref = (ticket_id or "").strip()
    if not ref or len(ref) > 512 or any(ord(ch) < 32 for ch in ref):
        raise TicketLookupError("give a ticket id as printed by `supportgraph run` "
                                "(at most 512 printable characters)")
    if tenant is not None and (len(tenant) > 128 or any(ord(ch) < 32 for ch in tenant)):
        raise TicketLookupError("--tenant must be a tenant name as given to `supportgraph run`")
    rows = db.fetchall(
        "SELECT thread_id, tenant FROM sg_runs WHERE ticket_id = :r OR thread_id = :r "
        "ORDER BY updated_at DESC", {"r": ref})
    if tenant is not None:
        rows = [r for r in rows if (r["tenant"] or "") == tenant]
    if not rows:
        where = f" for tenant {tenant}" if tenant is not None else ""
        raise TicketLookupError(f"no ticket {ref}{where}: use the id `supportgraph run` "
                                "printed (or see `supportgraph review list`)")
    tenants = sorted({r["tenant"] or "" for r in rows})
    if len(tenants) > 1:
        names = ", ".join(t or "(default)" for t in tenants)
        raise TicketLookupError(f"ticket {ref} exists for tenants {names}: add --tenant")
    return tenants[0], rows[0]["thread_id"]
