"""Custom auth of the LangGraph server (`langgraph.json`: "auth" names this module's `auth`).

Every request carries an `x-api-key` made by `supportgraph keys add`; the key names a tenant, a
role and a name, which become the caller's identity. Tenants are walls: everything a caller
creates is stamped with its tenant, and every read, search, stream, update, delete and run is
filtered by it, so another tenant's thread answers 404 as if it did not exist. Only reviewers
and admins resume an interrupt (decide a review) or write a thread's state; the graph records
the authenticated name as the reviewer and takes the ticket's tenant from the identity.

`langgraph dev` keeps checkpoints and runs in `.langgraph_api/*.pckl` files that it cannot
encrypt (LANGGRAPH_AES_KEY only applies to the Postgres-backed server), so the ticket (and a
review decision) is redacted here, before the server stores the run's input.

The review inbox mounted on this server (app/inbox/server.py) calls the API in process with a
short-lived reviewer token instead of a key (app/forwarding.py explains why): a token signed with
the deployment secret, for one thread, naming a live key. It authenticates as that key, so
everything below applies to the reviewer exactly as to a direct call with their key.

`SUPPORTGRAPH_AUTH=off` turns the keys off for local hacking: every caller is the `default`
tenant's admin. The server log says so on every start.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import fields
from typing import Any

from langgraph_sdk import Auth

from supportgraph.app.settings import auth_disabled

log = logging.getLogger("supportgraph.auth")

auth = Auth()

DEV_IDENTITY = {"tenant": "default", "role": "admin", "name": "dev-no-auth"}
DECIDERS = ("reviewer", "admin")
BAD_INPUT = 'bad ticket: input must be {"ticket": {...}} or {"eml": "..."}'
ADMIN_ONLY_CONTEXT = ("intent_model_dir",)
"""Context fields that name a path on the server: only an admin may set them per run."""


if auth_disabled():  # the server imports this module once per start: warn on every start
    log.warning("SUPPORTGRAPH_AUTH=off: API keys are NOT checked; every caller is the admin of "
                "tenant 'default'. Development only: never expose this server.")


def _context() -> Any:
    """The server's own settings (from its environment, never from a request)."""
    from supportgraph.app.settings import run_context

    return run_context()


def _lookup(key: str) -> dict[str, str] | None:
    from supportgraph.app.keys import identity_for
    from supportgraph.app.services import run_services

    return identity_for(run_services(_context()).db, key)


def _forwarded(token: str, path: str) -> dict[str, str] | None:
    """The identity of a genuine reviewer token for this path whose key is still live."""
    from supportgraph.app.forwarding import SecretError, signing_secret, verify
    from supportgraph.app.keys import live_key
    from supportgraph.app.services import run_services

    ctx = _context()
    res = run_services(ctx)
    settings = res.with_salt(ctx).settings
    try:
        secret = signing_secret(settings.inbox_secret, settings.pii_salt)
    except SecretError as exc:
        log.warning("reviewer token refused: %s", exc)
        return None
    claims = verify(secret, token, path)
    if claims is None:
        return None
    identity = live_key(res.db, claims["key"])
    return identity if identity and identity["tenant"] == claims["tenant"] else None


def _salt() -> str:
    """The server's PII salt: from its settings, else the home's salt file."""
    from supportgraph.app.services import run_services

    ctx = _context()
    return run_services(ctx).with_salt(ctx).pii_salt


def _header(headers: dict, name: str) -> str:
    value = headers.get(name.encode()) or headers.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return (value or "").strip()


@auth.authenticate
async def authenticate(headers: dict, path: str = "") -> Auth.types.MinimalUserDict:
    """Map `x-api-key` to {identity, tenant, role, name}; 401 for a missing/unknown/revoked key.

    A reviewer token from the inbox (app/forwarding.py) is checked first: a bad, expired or
    foreign-thread token, or one whose key was revoked, is 401 even with auth off.
    """
    from supportgraph.app.forwarding import HEADER

    token = _header(headers, HEADER)
    if token:
        identity = await asyncio.to_thread(_forwarded, token, path)
        if identity is None:
            raise Auth.exceptions.HTTPException(
                status_code=401, detail="invalid, expired or revoked reviewer token")
    elif auth_disabled():
        identity = dict(DEV_IDENTITY)
    else:
        key = _header(headers, "x-api-key")
        identity = await asyncio.to_thread(_lookup, key) if key else None
        if identity is None:
            raise Auth.exceptions.HTTPException(
                status_code=401, detail="missing, unknown or revoked API key (x-api-key)")
    return {"identity": f"{identity['tenant']}:{identity['name']}", "is_authenticated": True,
            "display_name": identity["name"], "permissions": [identity["role"]], **identity}


def _tenant(ctx: Auth.types.AuthContext) -> str:
    return ctx.user["tenant"]


def _role(ctx: Auth.types.AuthContext) -> str:
    return ctx.user["role"]


def _stamp(ctx: Auth.types.AuthContext, value: dict) -> dict[str, str]:
    """Stamp what the caller creates with its tenant (overwriting any it sent); the filter."""
    metadata = value.get("metadata")
    if metadata is None:
        metadata = value["metadata"] = {}
    metadata["tenant"] = _tenant(ctx)
    metadata["created_by_key"] = ctx.user["name"]
    return {"tenant": _tenant(ctx)}


def _forbid(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=403, detail=detail)


@auth.on
async def deny_everything_else(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Crons, the store and anything not handled below: not part of this application."""
    raise _forbid(f"{ctx.resource}.{ctx.action} is not allowed")


@auth.on.threads.create
async def on_thread_create(ctx: Auth.types.AuthContext,
                           value: Auth.types.on.threads.create.value) -> dict[str, str]:
    """A new thread belongs to the caller's tenant."""
    return _stamp(ctx, value)


@auth.on.threads.read
async def on_thread_read(ctx: Auth.types.AuthContext,
                         value: Auth.types.on.threads.read.value) -> dict[str, str]:
    """Get, state, history, stream, join: only the caller's tenant's threads."""
    return {"tenant": _tenant(ctx)}


@auth.on.threads.search
async def on_thread_search(ctx: Auth.types.AuthContext,
                           value: Auth.types.on.threads.search.value) -> dict[str, str]:
    """Searches see only the caller's tenant's threads."""
    return {"tenant": _tenant(ctx)}


@auth.on.threads.delete
async def on_thread_delete(ctx: Auth.types.AuthContext,
                           value: Auth.types.on.threads.delete.value) -> dict[str, str]:
    """Deletes reach only the caller's tenant's threads."""
    return {"tenant": _tenant(ctx)}


@auth.on.threads.update
async def on_thread_update(ctx: Auth.types.AuthContext,
                           value: Auth.types.on.threads.update.value) -> dict[str, str]:
    """Metadata patches and run cancels: own tenant. Writing state: reviewers and admins only.

    A state update (no `metadata` in the request) can write a decision or a reply straight into
    the thread, so it needs the same role as deciding a review.
    """
    if "metadata" not in value and _role(ctx) not in DECIDERS:
        raise _forbid("only reviewer or admin keys may change a thread's state")
    metadata = value.get("metadata")
    if isinstance(metadata, dict) and "tenant" in metadata:
        metadata["tenant"] = _tenant(ctx)  # a thread never changes tenant
    return {"tenant": _tenant(ctx)}


@auth.on.threads.create_run
async def on_run_create(ctx: Auth.types.AuthContext,
                        value: Auth.types.on.threads.create_run.value) -> dict[str, str]:
    """A run: own tenant only; resuming an interrupt needs a reviewer or admin key.

    The ticket's tenant is the caller's, and the ticket (or the decision) is redacted before
    the server stores the run. A context that tries a setting a run may not choose is refused.
    """
    kwargs = value.get("kwargs") or {}
    command = kwargs.get("command")
    if command and _role(ctx) not in DECIDERS:
        raise _forbid("only reviewer or admin keys may resume a review (interrupt)")
    _check_context(ctx, kwargs)
    salt = await asyncio.to_thread(_salt)  # opens the home's resources: not on the event loop
    graph_input = kwargs.get("input")
    if isinstance(graph_input, dict) and (graph_input or not command):
        _redact_input(graph_input, _tenant(ctx), salt)
    elif graph_input is not None and not isinstance(graph_input, dict):
        raise Auth.exceptions.HTTPException(status_code=422, detail=BAD_INPUT)
    if isinstance(command, dict) and "resume" in command:
        from supportgraph.text.pii import redact_obj

        command["resume"] = redact_obj(command["resume"], salt=salt)
    return _stamp(ctx, value)


def _check_context(ctx: Auth.types.AuthContext, kwargs: dict) -> None:
    """Refuse run settings the graph does not have (home, database_url, ...) or may not take."""
    from graph.context import Context

    given = kwargs.get("context") or {}
    if not isinstance(given, dict):
        raise Auth.exceptions.HTTPException(status_code=422, detail="context must be an object")
    unknown = sorted(set(given) - {f.name for f in fields(Context)})
    if unknown:
        raise Auth.exceptions.HTTPException(
            status_code=422,
            detail=f"run context cannot set {', '.join(unknown)[:300]}: not a per-run setting")
    if _role(ctx) != "admin" and set(given) & set(ADMIN_ONLY_CONTEXT):
        raise _forbid(f"only admin keys may set {', '.join(ADMIN_ONLY_CONTEXT)}")


def _redact_input(graph_input: dict, tenant: str, salt: str) -> None:
    """Replace the ticket in a run's input, in place, by its redacted, tenant-stamped form.

    In place: the server stores the dict it handed us. An email is parsed here so only the
    redacted ticket is kept. Input that does not parse is refused with 422 and a one-line
    reason, so nothing unredacted is ever stored.
    """
    from graph.persistence import DEFAULT_TENANT
    from supportgraph.app.runner import safe_ticket_input
    from supportgraph.text.mail import parse_eml
    from supportgraph.text.tickets import TicketError, parse_chat

    owner = None if tenant == DEFAULT_TENANT else tenant
    try:
        if graph_input.get("eml"):
            raw = graph_input["eml"]
            if not isinstance(raw, str):
                raise TicketError("eml must be the raw email as text")
            ticket_field = graph_input.get("ticket")
            given_id = ticket_field.get("id") if isinstance(ticket_field, dict) else None
            raw_ticket = parse_eml(raw.encode("utf-8", "replace"), ticket_id=given_id)
        elif isinstance(graph_input.get("ticket"), dict):
            raw_ticket = dict(graph_input["ticket"])
        else:
            raise TicketError(BAD_INPUT.removeprefix("bad ticket: "))
        raw_ticket["tenant"] = owner
        ticket = parse_chat(raw_ticket)
    except TicketError as exc:  # refused before anything is stored: a one-line reason
        raise Auth.exceptions.HTTPException(status_code=422,
                                            detail=f"bad ticket: {exc}"[:500]) from None
    graph_input["ticket"] = safe_ticket_input(raw_ticket, ticket, salt)
    graph_input["eml"] = ""


@auth.on.assistants.create
async def on_assistant_create(ctx: Auth.types.AuthContext,
                              value: Auth.types.on.assistants.create.value) -> dict[str, str]:
    """An assistant belongs to its creator's tenant; its context obeys the run rules."""
    _check_context(ctx, {"context": value.get("context") or {}})
    return _stamp(ctx, value)


@auth.on.assistants.read
async def on_assistant_read(ctx: Auth.types.AuthContext,
                            value: Auth.types.on.assistants.read.value) -> dict[str, Any]:
    """The graph's own assistant (`support`) and the caller's tenant's assistants."""
    return {"$or": [{"tenant": _tenant(ctx)}, {"created_by": "system"}]}


@auth.on.assistants.search
async def on_assistant_search(ctx: Auth.types.AuthContext,
                              value: Auth.types.on.assistants.search.value) -> dict[str, Any]:
    """Searches see the graph's own assistant and the caller's tenant's assistants."""
    return {"$or": [{"tenant": _tenant(ctx)}, {"created_by": "system"}]}


@auth.on.assistants.update
async def on_assistant_update(ctx: Auth.types.AuthContext,
                              value: Auth.types.on.assistants.update.value) -> dict[str, str]:
    """Only the caller's tenant's assistants change (never the graph's own)."""
    _check_context(ctx, {"context": value.get("context") or {}})
    return {"tenant": _tenant(ctx)}


@auth.on.assistants.delete
async def on_assistant_delete(ctx: Auth.types.AuthContext,
                              value: Auth.types.on.assistants.delete.value) -> dict[str, str]:
    """Only the caller's tenant's assistants can be deleted."""
    return {"tenant": _tenant(ctx)}
