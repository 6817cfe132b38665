"""Human review: pause the thread with `interrupt()` until a reviewer decides.

The payload follows the Agent Inbox `HumanInterrupt` convention, so any client that speaks it
can act on the queue. The node runs again from its start when resumed, so nothing before
`interrupt()` may have side effects; the wait is registered by `register_wait` (idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from langgraph.config import get_config
from langgraph.types import interrupt

from graph.instrument import Step, node, now_iso
from graph.reasons import ReviewReason, StepName, error_reason
from graph.routing import review_reason_after_classify
from graph.state import HumanInterrupt, ReviewDecision, State
from graph.summary import build_summary, record_summary

MAX_REPLY_CHARS = 10_000
DECISIONS = ("accept", "edit", "response", "ignore")


class InvalidResume(ValueError):
    """A resume value that is not a well-formed HumanResponse."""


def reason_for_review(state: State, ctx) -> ReviewReason | StepName:
    """The one-line reason a human is looking at this ticket."""
    if state.get("review_reason"):
        return state["review_reason"]
    from_error = error_reason(state.get("error"))
    if from_error:
        return from_error
    if state.get("intent"):
        reason = review_reason_after_classify(state, ctx)
        if reason:
            return reason
    if state.get("tone") and state["tone"]["score"] < ctx.tone_threshold:
        return "tone_below_threshold"
    if state.get("confidence"):
        return "low_confidence"
    return "needs_review"


def ticket_title(ticket: Mapping[str, Any] | None) -> str:
    """A line that tells tickets apart: the subject, else the first line of the (redacted) body."""
    ticket = ticket or {}
    text = (ticket.get("subject") or "").strip()
    if not text:
        text = next((line.strip() for line in (ticket.get("body") or "").splitlines()
                     if line.strip()), "")
    text = " ".join(text.split())
    return (text[:77] + "...") if len(text) > 80 else (text or "(empty ticket)")


def _md_text(text: str) -> str:
    """Ticket text quoted in markdown, so it can never open a heading, link or list of ours."""
    lines = (text or "").strip().splitlines() or [""]
    return "\n".join("> " + line.replace("<", "&lt;") for line in lines)


def describe(state: State, reason: str, error: str | None = None) -> str:
    """The reference data a reviewer reads (not edits), as markdown for Agent Inbox."""
    ticket: Mapping[str, Any] = state.get("normalized") or {}
    lines = [f"**{ticket_title(ticket)}**", "",
             f"Ticket `{ticket.get('id', '?')}` ({ticket.get('channel', '?')}"
             + (f", tenant `{ticket['tenant']}`" if ticket.get("tenant") else "") + ")", "",
             f"Review needed: **{reason}**"]
    if error:
        lines += ["", f"Previous answer rejected: {error}"]
    lines += ["", "### Customer message", _md_text(ticket.get("body") or ""), ""]
    passages = state.get("passages") or []
    if passages:
        lines.append("### Sources")
        lines += [f"{i}. {p['title']} (`{p['doc_id']}`)" for i, p in enumerate(passages, 1)]
        lines.append("")
    scores = []
    intent = state.get("intent")
    if intent:
        scores.append(f"intent {intent['intent']} ({intent['confidence']:.2f})")
    for key in ("tone", "confidence"):
        if state.get(key):
            scores.append(f"{key} {state[key]['score']:.2f}")
    if scores:
        lines += ["### Scores", ", ".join(scores), ""]
    confidence: Mapping[str, Any] = state.get("confidence") or {}
    if confidence.get("unknown_object"):
        lines += ["### Not a topic of the knowledge base",
                  f"The customer asks about \"{confidence['unknown_object']}\"; no section "
                  "of the knowledge base is about that.", ""]
    missing = confidence.get("missing_terms")
    if missing:
        lines += ["### Not in the cited sections", ", ".join(missing), ""]
    if state.get("flags"):
        lines += ["### Flags", ", ".join(state["flags"]), ""]
    return "\n".join(lines).strip()


def build_payload(state: State, reason: str, error: str | None = None) -> HumanInterrupt:
    """Agent Inbox's `HumanInterrupt` for this ticket.

    `args` holds only what a reviewer may change (the reply, never null): Agent Inbox renders
    every arg as an editable field. Everything else is read-only markdown in `description`.
    """
    drafts = state.get("drafts") or []
    return {
        "action_request": {
            "action": f"Reply: {ticket_title(state.get('normalized'))} ({reason})",
            "args": {"reply": drafts[-1]["text"] if drafts else ""},
        },
        "config": {"allow_ignore": True, "allow_respond": True, "allow_edit": True,
                   "allow_accept": bool(drafts)},
        "description": describe(state, reason, error),
    }


def parse_resume(value: object, *, has_draft: bool) -> ReviewDecision:
    """Validate a HumanResponse; raises InvalidResume with a one-line reason."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, dict):
        raise InvalidResume("resume value must be an object with 'type' and 'args'")
    kind = value.get("type")
    args = value.get("args")
    reviewer = str(value.get("reviewer") or "unknown")[:200]
    if kind == "stalled":
        return {"type": "stalled", "reviewer": reviewer, "reason": "review SLA expired"}
    if kind not in DECISIONS:
        raise InvalidResume(f"unknown decision type {kind!r}; expected one of {DECISIONS}")
    decision: ReviewDecision = {"type": kind, "reviewer": reviewer, "decided_at": now_iso()}
    if kind == "accept":
        if not has_draft:
            raise InvalidResume("there is no draft to accept; use edit with a reply")
        return decision
    if kind == "edit":
        if isinstance(args, dict) and isinstance(args.get("args"), dict):
            args = args["args"]  # Agent Inbox sends an edited ActionRequest
        reply = args.get("reply") if isinstance(args, dict) else args
        if not isinstance(reply, str) or not reply.strip():
            raise InvalidResume("edit needs a non-empty reply text")
        reply = reply.strip()
        if len(reply) > MAX_REPLY_CHARS:
            raise InvalidResume(f"edited reply is {len(reply)} chars; the limit is "
                                f"{MAX_REPLY_CHARS}")
        return {**decision, "reply": reply.strip()}
    text = args.get("note") or args.get("reason") if isinstance(args, dict) else args
    if text is not None and not isinstance(text, str):
        raise InvalidResume(f"{kind} takes a text note")
    if kind == "response":
        if not text or not text.strip():
            raise InvalidResume("response needs a non-empty note")
        return {**decision, "note": text.strip()[:MAX_REPLY_CHARS]}
    return {**decision, "reason": (text or "rejected by reviewer").strip()[:2000]}


def api_identity() -> str:
    """Who decided a review that came through the server without a `reviewer` field.

    `api:<user>` from LangGraph's custom auth (`langgraph_auth_user`) when the server has it,
    else `api:unauthenticated`: never a made-up name. The CLI always names its reviewer.
    """
    from langgraph.config import get_config

    try:
        user = get_config().get("configurable", {}).get("langgraph_auth_user")
    except RuntimeError:  # not inside a run
        user = None
    identity = getattr(user, "identity", None) or (user.get("identity")
                                                   if isinstance(user, dict) else None)
    return f"api:{str(identity)[:200]}" if identity else "api:unauthenticated"


def register_wait(state: State, step: Step) -> None:
    """Record the open review and an `awaiting_review` summary (safe to repeat)."""
    reason = reason_for_review(state, step.ctx)
    now = datetime.now(UTC)
    deadline = now + timedelta(hours=step.ctx.review_sla_hours)
    tenant = step.tenant
    step.res.db.execute(
        """INSERT INTO sg_reviews (thread_id, ticket_id, tenant, reason, route, queue, status,
               requested_at, deadline_at)
           VALUES (:thread_id, :ticket_id, :tenant, :reason, :route, 'agent', 'waiting', :now,
               :deadline)
           ON CONFLICT (thread_id) DO NOTHING""",
        {"thread_id": step.thread_id, "ticket_id": step.ticket_id, "tenant": tenant,
         "reason": reason, "route": state.get("route") or "human",
         "now": now.isoformat(timespec="microseconds"),
         "deadline": deadline.isoformat(timespec="microseconds")})
    summary = build_summary({**state, "review_reason": reason}, thread_id=step.thread_id,
                            status="awaiting_review")
    record_summary(step.res.db, summary, tenant)


def authenticated_reviewer() -> str | None:
    """The identity the LangGraph server authenticated for this run, if any.

    A resume through the server API carries `langgraph_auth_user`; it wins over a `reviewer`
    named in the resume value, which only trusted in-process callers (CLI, our inbox) set.
    """
    try:
        configurable = get_config().get("configurable") or {}
    except RuntimeError:  # called outside a run
        return None
    user = configurable.get("langgraph_auth_user")
    if user is None:
        return None
    get = user.get if isinstance(user, dict) else lambda key: getattr(user, key, None)
    if get("is_authenticated") is False:
        return None
    identity = get("identity")
    return str(identity)[:200] if identity else None


def record_decision(step: Step, decision: ReviewDecision) -> None:
    """Close the review row with the decision, whichever client resumed the thread.

    A decision claimed before the resume (CLI, inbox) already filled the row; COALESCE keeps
    that claim, so repeating this (a re-run step) changes nothing.
    """
    if decision["type"] == "response":
        return
    args = {"edit": {"reply": decision.get("reply")}, "ignore": decision.get("reason")}
    # Stored as a resume value, so `recover` can re-apply it if this step's checkpoint is lost.
    stored = {"type": decision["type"], "args": args.get(decision["type"]),
              "reviewer": decision["reviewer"]}
    step.res.db.execute(
        """UPDATE sg_reviews SET status = 'decided',
               decision = COALESCE(decision, :decision),
               decided_by = COALESCE(decided_by, :reviewer),
               decided_at = COALESCE(decided_at, :at)
           WHERE thread_id = :t""",
        {"decision": json.dumps(stored, ensure_ascii=False), "reviewer": decision["reviewer"],
         "at": decision.get("decided_at") or now_iso(), "t": step.thread_id})


@node("human_review", on_interrupt=register_wait)
def human_review(state: State, step: Step) -> dict:
    """Wait for a reviewer; notes keep the thread waiting, a decision moves it on."""
    reason = reason_for_review(state, step.ctx)
    has_draft = bool(state.get("drafts"))
    notes: list[str] = []
    error = None
    while True:
        value = interrupt(build_payload(state, reason, error))
        try:
            decision = parse_resume(value, has_draft=has_draft)
        except InvalidResume as exc:
            error = str(exc)
            continue
        if decision["type"] == "response":
            notes.append(decision["note"])
            error = None
            continue
        break
    if notes:
        decision["note"] = "\n".join(notes)
    # On the server, who decided is who authenticated, never what the request typed.
    who = step.identity["name"] if step.identity else authenticated_reviewer()
    if who:
        decision["reviewer"] = f"api:{who}"
    elif decision.get("reviewer") in (None, "", "unknown"):
        decision["reviewer"] = api_identity()
    record_decision(step, decision)
    step.detail.update(decision=decision["type"], reviewer=decision.get("reviewer"),
                       reason=reason)
    update: dict = {"review": decision, "review_reason": reason, "error": ""}
    if decision["type"] == "accept":
        update["final_reply"] = state["drafts"][-1]["text"]
    elif decision["type"] == "edit":
        update["final_reply"] = decision["reply"]
    elif decision["type"] == "stalled":
        update["status"] = "stalled"
    else:
        update["status"] = "rejected"
    return update
