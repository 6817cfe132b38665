"""The inbox's routes: sign-in, the queue, a ticket, and the decisions taken on it.

Pages are rendered on the server with Jinja; a small vendored script adds keyboard shortcuts
and the stale-data poll. A browser signs in once with its key and then holds a signed session
cookie naming the key (never the key itself) and a CSRF token bound to it; the key is looked up
by name on every request, so a revoked key is signed out at once. Tools send `x-api-key` on
every request instead. Reviewers see and act on their own tenant's tickets only; admins may
look across tenants (on the LangGraph server, whose auth is per tenant, only at the queue).
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from supportgraph.app.inbox.backend import AlreadyDecided, Backend, DecisionFailed, ThreadView
from supportgraph.app.inbox.identity import (
    DEFAULT_TENANT,
    DatabaseKeys,
    Identity,
    KeyStore,
    identity_for_key,
    session_identity,
)

HERE = Path(__file__).parent
COOKIE = "sg_inbox"
SESSION_SECONDS = 12 * 3600
PAGE_SIZE = 50
MAX_FORM_BYTES = 64 * 1024
"""A decision form is a reply of at most 10,000 characters plus a few fields."""
MAX_FILTER_CHARS = 100
ACTIONS = {"accept": "accept", "edit": "edit", "respond": "response", "reject": "ignore"}
_CITATION = re.compile(r"\[(\d{1,3})\]")


class FormTooLarge(ValueError):
    """A request body over `MAX_FORM_BYTES`."""


@dataclass
class InboxSettings:
    """Read once at the edge: the key store and the secret that signs session cookies."""

    keys: KeyStore | DatabaseKeys
    secret: str
    secure_cookies: bool = False


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"]))
    env.filters["cite"] = cite_links
    env.filters["age"] = age
    return env


def cite_links(text: str, count: int) -> Markup:
    """The draft as HTML with each `[n]` linked to passage n (other brackets left as text)."""
    def link(match: re.Match) -> str:
        n = int(match.group(1))
        if 1 <= n <= count:
            return f'<a class="cite" href="#source-{n}">[{n}]</a>'
        return match.group(0)

    return Markup(_CITATION.sub(link, str(escape(text))))


def age(stamp: str | None) -> str:
    """How long ago an ISO time was, for people ("3h 5m ago", "in 2h")."""
    if not stamp:
        return ""
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    seconds = (datetime.now(UTC) - then).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    minutes = int(seconds // 60)
    text = (f"{minutes // 1440}d {minutes % 1440 // 60}h" if minutes >= 1440 else
            f"{minutes // 60}h {minutes % 60}m" if minutes >= 60 else f"{minutes}m")
    return f"in {text}" if future else f"{text} ago"


def create_app(backend_factory: Callable[[], Backend],
               settings: InboxSettings | Callable[[], InboxSettings]) -> Starlette:
    """The inbox as a Starlette app.

    `backend_factory` (and `settings`, when given as a factory) are called once, on first use
    and off the event loop: inside the LangGraph server the database and the home's secret are
    opened by the first request, not when the server imports this app.
    """
    templates = _templates()
    state: dict[str, Any] = {}

    async def setup() -> tuple[InboxSettings, URLSafeTimedSerializer]:
        if "settings" not in state:  # reading keys and secrets blocks: not on the event loop
            made = settings if isinstance(settings, InboxSettings) else \
                await run_in_threadpool(settings)
            state.setdefault("settings", made)
            state.setdefault("signer", URLSafeTimedSerializer(state["settings"].secret,
                                                              salt="supportgraph-inbox"))
        return state["settings"], state["signer"]

    async def backend() -> Backend:
        if "backend" not in state:  # opening the database blocks: not on the event loop
            made = await run_in_threadpool(backend_factory)
            state.setdefault("backend", made)
        return state["backend"]

    # ---- identity -------------------------------------------------------------------------

    def session_of(request: Request, signer: URLSafeTimedSerializer) -> dict | None:
        raw = request.cookies.get(COOKIE)
        if not raw or len(raw) > 4096:
            return None
        try:
            data = signer.loads(raw, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None

    async def who(request: Request) -> tuple[Identity | None, str | None]:
        """(identity, CSRF token of the session); tools with `x-api-key` need no token."""
        conf, signer = await setup()
        key = request.headers.get("x-api-key")
        if key is not None:
            return await run_in_threadpool(identity_for_key, conf.keys, key), None
        session = session_of(request, signer)
        if not session:
            return None, None
        ident = await run_in_threadpool(session_identity, conf.keys, str(session.get("t")),
                                        str(session.get("n")))
        return ident, str(session.get("c")) if ident else None

    async def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        # In a thread: Jinja reads and stats template files, and the LangGraph server
        # refuses blocking calls on its event loop.
        html = await run_in_threadpool(lambda: templates.get_template(name).render(**context))
        return HTMLResponse(html, status_code=status)

    async def refuse(request: Request, status: int, message: str, ident: Identity | None = None,
               csrf: str | None = None) -> Response:
        if request.headers.get("x-api-key") is not None or _wants_json(request):
            return JSONResponse({"error": message}, status_code=status)
        return await page("message.html", status, message=message, who=ident, csrf=csrf)

    def sign_in_redirect(request: Request) -> Response:
        if request.headers.get("x-api-key") is not None:
            return JSONResponse({"error": "unknown API key"}, status_code=401)
        return RedirectResponse("/inbox/login?" + urlencode({"next": request.url.path}),
                                status_code=303)

    def may_see(ident: Identity, row: dict) -> bool:
        return ident.role == "admin" or (row.get("tenant") or DEFAULT_TENANT) == ident.tenant

    # ---- sign-in ---------------------------------------------------------------------------

    async def login(request: Request) -> Response:
        nxt = _safe_next(request.query_params.get("next"))
        if request.method == "GET":
            return await page("login.html", next=nxt, error=None)
        try:
            form = await read_form(request)
        except FormTooLarge:
            return await page("login.html", 413, next=nxt, error="That form was too large.")
        conf, signer = await setup()
        ident = await run_in_threadpool(identity_for_key, conf.keys, form.get("key"))
        if ident is None or not ident.can_review:
            return await page("login.html", 401, next=_safe_next(form.get("next")),
                        error="That key is not a reviewer key.")
        # The session names the key (tenant, name), never holds it.
        token = signer.dumps({"t": ident.tenant, "n": ident.name,
                              "c": secrets.token_urlsafe(24)})
        response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=conf.secure_cookies, path="/inbox")
        return response

    async def logout(request: Request) -> Response:
        ident, csrf = await who(request)
        form = await _form_or_none(request)
        if ident and csrf and (form or {}).get("csrf") != csrf:
            return await refuse(request, 403, "Missing or wrong CSRF token.", ident, csrf)
        response = RedirectResponse("/inbox/login", status_code=303)
        response.delete_cookie(COOKIE, path="/inbox")
        return response

    # ---- the queue -------------------------------------------------------------------------

    async def queue(request: Request) -> Response:
        ident, csrf = await who(request)
        if ident is None or not ident.can_review:
            return sign_in_redirect(request)
        params = request.query_params
        filters = {k: (params.get(k) or "")[:MAX_FILTER_CHARS] for k in ("route", "reason",
                                                                          "tenant")}
        if ident.role != "admin":
            filters["tenant"] = ident.tenant
        try:
            page_no = max(1, min(int(params.get("page") or 1), 1_000_000))
        except ValueError:
            return await refuse(request, 400, "page must be a number", ident, csrf)
        data = await run_in_threadpool(queue_page, (await backend()).db, filters, page_no)
        if _wants_json(request) or request.headers.get("x-api-key") is not None:
            return JSONResponse({k: data[k] for k in ("rows", "total", "overdue", "page",
                                                      "pages")})
        query = {k: v for k, v in filters.items() if v and not (k == "tenant"
                                                                and ident.role != "admin")}
        return await page("queue.html", who=ident, csrf=csrf, filters=filters, query=query,
                    urlencode=urlencode, quote=quote, notice=params.get("notice", "")[:300],
                    **data)

    # ---- a ticket --------------------------------------------------------------------------

    async def load(request: Request, ident: Identity, thread_id: str
                   ) -> tuple[dict, ThreadView | None] | Response:
        if len(thread_id) > 300 or not thread_id.isprintable():  # NUL breaks Postgres text
            return await refuse(request, 404, "No such ticket.", ident)
        row = await run_in_threadpool(review_row, (await backend()).db, thread_id)
        if row is None or not may_see(ident, row):
            # The same answer for another tenant's ticket as for none: ids are not disclosed.
            return await refuse(request, 404, "No such ticket.", ident)
        view = await (await backend()).view(thread_id, ident)
        if view is None and row["status"] in ("waiting", "escalated"):
            # An open review whose thread this reviewer cannot read (on the LangGraph server:
            # an admin looking at another tenant's ticket) is not theirs to see or decide.
            return await refuse(request, 404, "No such ticket.", ident)
        return row, view

    async def ticket(request: Request) -> Response:
        ident, csrf = await who(request)
        if ident is None or not ident.can_review:
            return sign_in_redirect(request)
        thread_id = request.path_params["thread_id"]
        loaded = await load(request, ident, thread_id)
        if isinstance(loaded, Response):
            return loaded
        row, view = loaded
        notice = request.query_params.get("notice", "")[:300]
        if request.query_params.get("noted"):
            notice = "note added; the ticket keeps waiting"
        return await render_ticket(request, ident, csrf, row, view, notice=notice)

    async def render_ticket(request: Request, ident: Identity, csrf: str | None, row: dict,
                            view: ThreadView | None, status: int = 200, error: str = "",
                            stale: bool = False, decided: str | None = None,
                            form: dict | None = None, notice: str = "") -> Response:
        db = (await backend()).db
        if view is not None and view.payload is None and not view.pending \
                and row["status"] in ("waiting", "escalated"):
            await run_in_threadpool(_close_if_resolved_outside, db, row, view)
            row = await run_in_threadpool(review_row, db, row["thread_id"]) or row
        audit = await run_in_threadpool(audit_rows, db, row["thread_id"])
        values = (view.values if view else {}) or {}
        if decided is None and row["status"] not in ("waiting", "escalated"):
            decided = row.get("decided_by") or row["status"]
        if request.headers.get("x-api-key") is not None or _wants_json(request):
            body = {"thread_id": row["thread_id"], "ticket_id": row["ticket_id"],
                    "status": row["status"], "reason": row["reason"],
                    "decided_by": row.get("decided_by"), "version": view.version if view else None,
                    "waiting": bool(view and view.payload)}
            if error:
                body["error"] = error
            return JSONResponse(body, status_code=status)
        passages = values.get("passages") or []
        drafts = values.get("drafts") or []
        from nodes.human_review import ticket_title

        title = ticket_title(values.get("normalized")) if values else row["ticket_id"]
        return await page("ticket.html", status, who=ident, csrf=csrf, row=row, v=values,
                          title=title,
                    ticket=values.get("normalized") or {}, passages=passages,
                    draft=drafts[-1]["text"] if drafts else "", audit=audit,
                    waiting=bool(view and view.payload), version=view.version if view else "",
                    error=error, stale=stale, decided=decided, form=form or {}, notice=notice,
                    quote=quote, now=datetime.now(UTC).isoformat())

    async def version(request: Request) -> Response:
        ident, _ = await who(request)
        if ident is None or not ident.can_review:
            return JSONResponse({"error": "sign in"}, status_code=401)
        loaded = await load(request, ident, request.path_params["thread_id"])
        if isinstance(loaded, Response):
            return JSONResponse({"error": "No such ticket."}, status_code=404)
        row, view = loaded
        return JSONResponse({"version": view.version if view else None, "status": row["status"],
                             "decided_by": row.get("decided_by")})

    async def decide(request: Request) -> Response:
        ident, csrf = await who(request)
        if ident is None or not ident.can_review:
            return sign_in_redirect(request)
        try:
            form = await read_form(request)
        except FormTooLarge:
            return await refuse(request, 413, f"The form is larger than {MAX_FORM_BYTES} bytes.",
                                ident, csrf)
        if csrf is not None and not secrets.compare_digest(form.get("csrf", ""), csrf):
            return await refuse(request, 403, "Missing or wrong CSRF token: reload the page.",
                                ident, csrf)
        thread_id = request.path_params["thread_id"]
        loaded = await load(request, ident, thread_id)
        if isinstance(loaded, Response):
            return loaded
        row, view = loaded
        action = form.get("action", "")
        if action not in ACTIONS:
            return await render_ticket(request, ident, csrf, row, view, 400,
                                       error=f"Unknown action {action[:40]!r}.")
        if row["status"] not in ("waiting", "escalated") or view is None or view.payload is None:
            by = row.get("decided_by") or row["status"]
            return await render_ticket(request, ident, csrf, row, view, 409,
                                       error=f"Already decided by {by}.", decided=by)
        if form.get("version") and form["version"] != view.version:
            return await render_ticket(request, ident, csrf, row, view, 409, stale=True,
                                       error="This ticket changed since you opened it: "
                                             "check it again before deciding.", form=form)
        be = await backend()
        response = _response(action, form, be.reviewer(ident))
        try:
            status = await be.decide(thread_id, response, ident)
        except AlreadyDecided as exc:
            row = await run_in_threadpool(review_row, be.db, thread_id) or row
            return await render_ticket(request, ident, csrf, row,
                                       await be.view(thread_id, ident), 409,
                                       error=f"Already decided by {exc.by}.", decided=exc.by)
        except DecisionFailed as exc:
            return await render_ticket(request, ident, csrf, row, view, 422, error=str(exc),
                                       form=form)
        if request.headers.get("x-api-key") is not None:
            return JSONResponse({"thread_id": thread_id, "status": status,
                                 "decided_by": response["reviewer"]})
        if action == "respond":
            return RedirectResponse(f"/inbox/tickets/{quote(thread_id, safe='')}?noted=1",
                                    status_code=303)
        nxt = await run_in_threadpool(next_thread, (await backend()).db, ident)
        notice = f"{row['ticket_id']}: {action} ({status})"
        if nxt:
            return RedirectResponse(f"/inbox/tickets/{quote(nxt, safe='')}?"
                                    + urlencode({"notice": notice}), status_code=303)
        return RedirectResponse("/inbox?" + urlencode({"notice": notice}), status_code=303)

    routes = [
        Route("/inbox", queue),
        Route("/inbox/login", login, methods=["GET", "POST"]),
        Route("/inbox/logout", logout, methods=["POST"]),
        Route("/inbox/tickets/{thread_id:str}", ticket),
        Route("/inbox/tickets/{thread_id:str}/version", version),
        Route("/inbox/tickets/{thread_id:str}/decide", decide, methods=["POST"]),
        Mount("/inbox/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes)


def _response(action: str, form: dict, reviewer: str) -> dict:
    """The Agent Inbox `HumanResponse` for a form; the reviewer is the signed-in identity."""
    kind = ACTIONS[action]
    args: Any = None
    if kind == "edit":
        args = {"reply": form.get("reply", "")}
    elif kind == "response":
        args = form.get("note", "")
    elif kind == "ignore":
        args = form.get("reason") or "rejected by reviewer"
    return {"type": kind, "args": args, "reviewer": reviewer}


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _safe_next(value: str | None) -> str:
    """Only a path inside the inbox (never another site) after sign-in."""
    if value and value.startswith("/inbox") and "//" not in value and "\\" not in value:
        return value[:500]
    return "/inbox"


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form, refusing bodies over `MAX_FORM_BYTES` before reading them whole."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise FormTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True,
                      max_num_fields=20)
    return {k: v[0] for k, v in parsed.items()}


async def _form_or_none(request: Request) -> dict | None:
    try:
        return await read_form(request)
    except (FormTooLarge, ValueError):
        return None


# ---- queries (sync: run in a thread) --------------------------------------------------------

_OPEN = "status IN ('waiting', 'escalated')"


def _where(filters: dict[str, str]) -> tuple[str, dict]:
    """SQL conditions for open reviews matching the filters (shaped for `sg_reviews_open`)."""
    clauses, params = [_OPEN], {}
    tenant = filters.get("tenant")
    if tenant == DEFAULT_TENANT:  # tickets that name no tenant belong to the default one
        clauses.append("(tenant = :tenant OR tenant IS NULL)")
        params["tenant"] = tenant
    elif tenant:
        clauses.append("tenant = :tenant")
        params["tenant"] = tenant
    for key in ("route", "reason"):
        if filters.get(key):
            clauses.append(f"{key} = :{key}")
            params[key] = filters[key]
    return " AND ".join(clauses), params


def queue_page(db: Any, filters: dict[str, str], page_no: int) -> dict[str, Any]:
    """One page of open reviews, by SLA deadline then age, with the counts around it."""
    where, params = _where(filters)
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    counts = db.fetchone(
        f"SELECT COUNT(*) AS total, SUM(CASE WHEN deadline_at < :now THEN 1 ELSE 0 END) "
        f"AS overdue FROM sg_reviews WHERE {where}", {**params, "now": now})
    total, overdue = int(counts["total"] or 0), int(counts["overdue"] or 0)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page_no = min(page_no, pages)
    rows = db.fetchall(
        f"SELECT thread_id, ticket_id, tenant, reason, route, queue, status, "
        f"requested_at, deadline_at FROM sg_reviews WHERE {where} "
        f"ORDER BY deadline_at, requested_at LIMIT :limit OFFSET :offset",
        {**params, "limit": PAGE_SIZE, "offset": (page_no - 1) * PAGE_SIZE})
    for row in rows:
        row["overdue"] = row["deadline_at"] < now
    tenant_where, tenant_params = _where({"tenant": filters.get("tenant", "")})
    pairs = db.fetchall(f"SELECT DISTINCT route, reason FROM sg_reviews WHERE {tenant_where}",
                        tenant_params)
    options = {key: sorted({p[key] for p in pairs if p[key]}) for key in ("route", "reason")}
    return {"rows": rows, "total": total, "overdue": overdue, "page": page_no, "pages": pages,
            "options": options}


def review_row(db: Any, thread_id: str) -> dict | None:
    """The review of a thread (any status)."""
    return db.fetchone(
        "SELECT thread_id, ticket_id, tenant, reason, route, queue, status, requested_at,"
        " deadline_at, decided_by, decided_at, decision FROM sg_reviews WHERE thread_id = :t",
        {"t": thread_id})


def audit_rows(db: Any, thread_id: str) -> list[dict]:
    """The thread's audit timeline, oldest first."""
    return db.fetchall(
        "SELECT step, attempt, started_at, duration_ms, outcome, cost_usd, failure "
        "FROM sg_audit WHERE thread_id = :t ORDER BY started_at LIMIT 500", {"t": thread_id})


def next_thread(db: Any, ident: Identity) -> str | None:
    """The first open review in queue order that this reviewer may act on."""
    where, params = _where({"tenant": "" if ident.role == "admin" else ident.tenant})
    row = db.fetchone(f"SELECT thread_id FROM sg_reviews WHERE {where} "
                      f"ORDER BY deadline_at, requested_at LIMIT 1", params)
    return row["thread_id"] if row else None


def _close_if_resolved_outside(db: Any, row: dict, view: ThreadView) -> None:
    """A thread that ended with no decision (Agent Inbox "Mark as Resolved") is recorded."""
    from supportgraph.app.runner import record_resolved_outside

    record_resolved_outside(db, row, view.metadata,
                            datetime.now(UTC).isoformat(timespec="microseconds"))
