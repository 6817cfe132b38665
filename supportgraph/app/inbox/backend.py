"""Where the inbox reads a thread and applies a decision: the local Runner or the server's API.

Under `langgraph dev` / LangGraph server the checkpoints live in the server, so the inbox reads
and resumes threads through the server's own API, in process and *as the signed-in reviewer*
(a reviewer token, app/forwarding.py), exactly as Agent Inbox and Studio do. Under
`supportgraph serve` the project's `Runner` does both on the shared database. Either way a
decision is first claimed in `sg_reviews` (one conditional UPDATE), so of two reviewers only one
wins.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool

from supportgraph.app.inbox.identity import Identity

GRAPH_ID = "support"
log = logging.getLogger("supportgraph.inbox")


class AlreadyDecided(RuntimeError):
    """Someone else decided first; `by` names them."""

    def __init__(self, by: str | None) -> None:
        super().__init__(f"already decided by {by or 'someone else'}")
        self.by = by or "someone else"


class DecisionFailed(RuntimeError):
    """The thread could not be resumed (busy, malformed, server error); nothing was recorded."""


@dataclass
class ThreadView:
    """What the inbox needs of a thread: its values, the open interrupt and a version."""

    values: dict[str, Any]
    payload: dict[str, Any] | None
    version: str
    pending: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """Reads threads and applies decisions; `db` is the database of our own tables."""

    db: Any

    def reviewer(self, ident: Identity) -> str:
        """The name a decision by `ident` is recorded under."""

    async def view(self, thread_id: str, ident: Identity) -> ThreadView | None:
        """The thread as `ident` may see it, or None if there is no such thread."""

    async def decide(self, thread_id: str, response: dict[str, Any], ident: Identity) -> str:
        """Apply a HumanResponse as `ident`; returns the thread's status afterwards."""


def decided_by(db: Any, thread_id: str) -> str | None:
    """Who closed a review (None if it is open or unknown)."""
    row = db.fetchone("SELECT status, decided_by FROM sg_reviews WHERE thread_id = :t",
                      {"t": thread_id})
    if not row or row["status"] in ("waiting", "escalated"):
        return None
    return row["decided_by"] or row["status"]


def _version(checkpoint_id: str | None, interrupt_id: str | None) -> str:
    """What changes whenever the thread does: a note re-interrupts in the same checkpoint."""
    return f"{checkpoint_id}/{interrupt_id}"


class RunnerBackend:
    """The CLI/worker deployment: the project's Runner on the shared database."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.db = runner.db

    def reviewer(self, ident: Identity) -> str:
        """The key's name, as the CLI records its `--reviewer`."""
        return ident.name

    async def view(self, thread_id: str, ident: Identity) -> ThreadView | None:
        """The thread's latest checkpoint from the local checkpointer."""
        return await run_in_threadpool(self._view, thread_id)

    def _view(self, thread_id: str) -> ThreadView | None:
        from supportgraph.app.runner import _pending

        snapshot = self.runner.graph.get_state({"configurable": {"thread_id": thread_id}})
        if not snapshot.values:
            return None
        return ThreadView(
            values=snapshot.values,
            payload=snapshot.interrupts[0].value if snapshot.interrupts else None,
            version=_version(snapshot.config["configurable"].get("checkpoint_id"),
                             snapshot.interrupts[0].id if snapshot.interrupts else None),
            pending=_pending(snapshot), metadata=dict(snapshot.metadata or {}))

    async def decide(self, thread_id: str, response: dict[str, Any], ident: Identity) -> str:
        """`Runner.decide`: claim, then resume under the thread's lease."""
        return await run_in_threadpool(self._decide, thread_id, response)

    def _decide(self, thread_id: str, response: dict[str, Any]) -> str:
        from nodes.human_review import InvalidResume
        from supportgraph.app.leases import ThreadBusy
        from supportgraph.app.runner import AlreadyDecided as RunnerAlreadyDecided
        from supportgraph.app.runner import NotFound

        try:
            return self.runner.decide(thread_id, response).summary["status"]
        except RunnerAlreadyDecided:
            raise AlreadyDecided(decided_by(self.db, thread_id)) from None
        except (ThreadBusy, NotFound, InvalidResume) as exc:
            raise DecisionFailed(str(exc)) from None


class ServerBackend:
    """Inside the LangGraph server: threads are read and resumed through its own API.

    Every call carries a reviewer token for the signed-in key and that one thread, and goes
    through the server's auth middleware (not the SDK's `/noauth` loopback): the server filters
    by the reviewer's tenant, checks their role, redacts the resume and hands the graph
    `langgraph_auth_user`, which records the decision as `api:<key name>`, the same as any other
    API client. So Agent Inbox, Studio and the inbox see and record one history.
    """

    def __init__(self, db: Any, secret: str, pii_salt: str = "", client: Any = None) -> None:
        self.db = db
        self.secret = secret
        self.pii_salt = pii_salt
        self._client = client

    @property
    def client(self) -> Any:
        """An SDK client of this server, in process, through the auth middleware."""
        if self._client is None:
            self._client = in_process_client()
        return self._client

    def reviewer(self, ident: Identity) -> str:
        """`api:<key name>`: what the graph records for any decision that comes via the API."""
        return f"api:{ident.name}"

    def _auth(self, ident: Identity, thread_id: str) -> dict[str, str]:
        from supportgraph.app.forwarding import HEADER, mint

        return {HEADER: mint(self.secret, ident.name, ident.tenant, thread_id)}

    async def view(self, thread_id: str, ident: Identity) -> ThreadView | None:
        """The thread's state from the server, as the reviewer (another tenant's: None)."""
        import httpx

        if "/" in thread_id:  # not a server thread id (UUID); a token cannot name it
            return None
        try:
            state = await self.client.threads.get_state(thread_id,
                                                        headers=self._auth(ident, thread_id))
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 401:  # a signed-in reviewer: the token was refused
                log.warning("the LangGraph server refused the inbox's reviewer token for %s "
                            "(its key was just revoked, or the inbox secret changed)", ident.name)
            if exc.response.status_code in (401, 403, 404, 422):
                return None
            raise
        if not state.get("values"):
            return None
        interrupts = state.get("interrupts") or []
        return ThreadView(
            values=state["values"],
            payload=interrupts[0]["value"] if interrupts else None,
            version=_version((state.get("checkpoint") or {}).get("checkpoint_id"),
                             interrupts[0].get("id") if interrupts else None),
            pending=bool(state.get("next")) and not interrupts,
            metadata=dict(state.get("metadata") or {}))

    async def decide(self, thread_id: str, response: dict[str, Any], ident: Identity) -> str:
        """Claim the review, then resume the thread with a run on the server, as the reviewer."""
        import httpx

        from nodes.human_review import InvalidResume, parse_resume
        from supportgraph.text.pii import redact_obj

        view = await self.view(thread_id, ident)
        if view is None:
            raise DecisionFailed(f"no thread {thread_id}")
        try:
            decision = parse_resume(response, has_draft=bool(view.values.get("drafts")))
        except InvalidResume as exc:
            raise DecisionFailed(str(exc)) from None
        # A reviewer may quote the customer's PII: redact before it is recorded or resumed.
        response = redact_obj(response, salt=self.pii_salt)
        if decision["type"] != "response":
            claimed = await run_in_threadpool(self._claim, thread_id, response, decision)
            if not claimed:
                raise AlreadyDecided(await run_in_threadpool(decided_by, self.db, thread_id))
        if view.payload is None:
            raise AlreadyDecided(await run_in_threadpool(decided_by, self.db, thread_id))
        # The resume names no reviewer: the graph takes who decided from the identity the
        # server authenticated (the token's key), and from nothing the request says.
        resume = {k: v for k, v in response.items() if k != "reviewer"}
        try:
            values = await self.client.runs.wait(thread_id, GRAPH_ID, command={"resume": resume},
                                                 headers=self._auth(ident, thread_id))
        except httpx.HTTPError as exc:
            if decision["type"] != "response":
                await run_in_threadpool(self._release, thread_id, decision["reviewer"])
            detail = exc.response.text[:200] if isinstance(exc, httpx.HTTPStatusError) else exc
            raise DecisionFailed(f"the server did not resume the thread: {detail}") from None
        return (values or {}).get("status") or "unknown"

    def _claim(self, thread_id: str, response: dict, decision: dict) -> bool:
        return bool(self.db.execute(
            """UPDATE sg_reviews SET status = 'decided', decision = :decision,
                   decided_by = :reviewer, decided_at = :at
               WHERE thread_id = :t AND status IN ('waiting', 'escalated')""",
            {"decision": json.dumps(response, ensure_ascii=False),
             "reviewer": decision["reviewer"], "at": decision["decided_at"], "t": thread_id}))

    def _release(self, thread_id: str, reviewer: str) -> None:
        """Give a claim back when the resume never reached the thread."""
        self.db.execute(
            """UPDATE sg_reviews SET status = 'waiting', decision = NULL, decided_by = NULL,
                   decided_at = NULL
               WHERE thread_id = :t AND status = 'decided' AND decided_by = :r""",
            {"t": thread_id, "r": reviewer})


def in_process_client() -> Any:
    """An async SDK client of the LangGraph server this code runs in, through its auth.

    `langgraph_sdk.get_client()` with no URL would use root path `/noauth`, which skips the
    auth middleware and every handler of app/auth.py; this one sends requests to the same
    in-process app at its normal root, so each carries and is checked by its reviewer token.
    """
    import httpx
    from langgraph_api.config import MOUNT_PREFIX
    from langgraph_api.server import app
    from langgraph_sdk.client import LangGraphClient

    return LangGraphClient(httpx.AsyncClient(
        base_url=f"http://inbox.internal{MOUNT_PREFIX or ''}",
        transport=httpx.ASGITransport(app=app),
        timeout=httpx.Timeout(connect=5, read=300, write=300, pool=5)))


def sweep_resolved_on_server(db: Any, client: Any, now: str) -> list[str]:
    """Record reviews whose server thread ended with no decision ("Mark as Resolved").

    `client`: a sync `langgraph_sdk` client of the LangGraph server that holds the threads.
    """
    import httpx

    from supportgraph.app.runner import open_reviews, record_resolved_outside

    resolved = []
    for row in open_reviews(db):
        try:
            state = client.threads.get_state(row["thread_id"])
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in (404, 422):
                continue  # a thread of another deployment (or a CLI thread id)
            raise
        if (state.get("values") and not state.get("interrupts") and not state.get("next")
                and record_resolved_outside(db, row, state.get("metadata"), now)):
            resolved.append(row["thread_id"])
    return resolved
