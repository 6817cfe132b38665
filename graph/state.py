"""Typed workflow state, plus the Agent Inbox shapes used by human review.

State holds raw data (ids, texts, scores, decisions); prompts are built inside nodes. No
embeddings or whole documents: a checkpoint is written every step and its size is a cost.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NotRequired

# typing_extensions, not typing: on Python < 3.12 pydantic (which LangGraph uses to publish the
# input/output JSON schemas, e.g. for the Studio form) refuses `typing.TypedDict`.
from typing_extensions import TypedDict

from graph.reasons import ReviewReason, StepName

Route = Literal["billing", "technical", "human"]
Status = Literal["processing", "sent", "awaiting_review", "rejected", "stalled", "failed"]
TERMINAL_STATUSES = ("sent", "awaiting_review", "rejected", "stalled", "failed")


class Ticket(TypedDict):
    """A normalised, PII-redacted ticket."""

    id: str
    channel: Literal["chat", "email"]
    subject: str
    body: str
    customer_id: str | None
    tenant: str | None


class IntentResult(TypedDict):
    """What the intent classifier said about the ticket."""

    intent: str
    confidence: float
    route: Route
    out_of_scope: bool
    oos_score: float


class Passage(TypedDict):
    """One retrieved chunk (text kept: the draft cites it and review shows it).

    Once its ticket is closed and pruned, `text` is "" (the knowledge base holds it, under
    `collection` / `chunk_id`): see `compact_closed`.
    """

    doc_id: str
    chunk_id: str
    title: str
    text: str
    score: float
    collection: str


class CaseHit(TypedDict):
    """A similar resolved case from `resolved_cases` (`reply` is "" once closed and pruned)."""

    ticket_id: str
    intent: str
    reply: str
    score: float


class Draft(TypedDict):
    """One version of the reply (the first draft, then each rewrite).

    Once its ticket is closed and pruned, only the last version keeps its `text`.
    """

    text: str
    citations: list[str]
    provider: str
    model: str
    template: str


class ToneResult(TypedDict):
    """Tone score in [0, 1] with the reasons behind it."""

    score: float
    reasons: list[str]


class ConfidenceResult(TypedDict):
    """Answer confidence in [0, 1], its signals, the key terms the cited sections lack.

    `unknown_object`: what a short request is about when no section of the KB is about it.
    """

    score: float
    signals: dict[str, float]
    missing_terms: NotRequired[list[str]]
    unknown_object: NotRequired[str]


class StepUsage(TypedDict):
    """Cost and effort of one step execution, for the run summary."""

    step: str
    duration_ms: float
    cost: float
    model_calls: int
    cache_hits: int
    retries: int
    models: list[str]
    started_at: NotRequired[str]
    """When the step began (as in its audit row): steps that ran side by side finish in any
    order, so the run summary lists them by start, as `audit show` does."""


class ReviewDecision(TypedDict, total=False):
    """The reviewer's answer to a review interrupt, as applied."""

    type: Literal["accept", "edit", "response", "ignore", "stalled"]
    reviewer: str
    reply: str
    note: str
    reason: str
    decided_at: str


# Agent Inbox `HumanInterrupt` convention (declared here; the shape is the contract).
class ActionRequest(TypedDict):
    """The action a human is asked to approve."""

    action: str
    args: dict[str, Any]


class HumanInterruptConfig(TypedDict):
    """Which responses the reviewer may give."""

    allow_ignore: bool
    allow_respond: bool
    allow_edit: bool
    allow_accept: bool


class HumanInterrupt(TypedDict):
    """The payload of the review `interrupt()`."""

    action_request: ActionRequest
    config: HumanInterruptConfig
    description: str | None


class HumanResponse(TypedDict):
    """The resume value: accept, edit (args = {"reply": ...}), response (note), ignore."""

    type: Literal["accept", "ignore", "response", "edit"]
    args: None | str | dict[str, Any]


class TicketInput(TypedDict, total=False):
    """A ticket as a caller sends it (validated by intake, not by the schema).

    Declared so the published input schema (the Studio form) names the fields; intake checks
    them and routes a bad ticket to `failed` with a one-line reason. Other keys are kept under
    `extra` (eval gold fields, for example).
    """

    id: str
    """The ticket's id (required)."""
    channel: Literal["chat", "email"]
    """'chat' (default) or 'email' (quotes and signature are stripped)."""
    subject: str
    body: str
    """The customer's message (required)."""
    customer_id: str
    tenant: str
    """Ignored under the server: the tenant comes from the caller's API key."""


class InputState(TypedDict, total=False):
    """What a caller passes in: a ticket as JSON (chat) or a raw email."""

    ticket: TicketInput
    """A chat/JSONL ticket object: id, channel, subject?, body, customer_id?, tenant?."""
    eml: str
    """A raw RFC 822 email (text), as an alternative to `ticket`."""


class State(InputState, total=False):
    """The whole state of one ticket's run."""

    normalized: Ticket
    """The validated, normalised, redacted ticket that every later step reads."""
    intent: IntentResult
    """Classifier output."""
    route: Route
    """Current route: from the classifier, possibly changed by the planner."""
    query: str
    """What the models read: the redacted ticket text cleaned of email noise, with the salted
    digits of redaction tokens dropped (`supportgraph.text.pii.model_text`); typos corrected to
    the KB's words when the planner reformulates after nothing was retrieved."""
    passages: list[Passage]
    """Knowledge-base passages retrieved for the draft."""
    cases: list[CaseHit]
    """Similar resolved cases (known solutions)."""
    drafts: list[Draft]
    """Every draft version, oldest first; the last is current."""
    tone: ToneResult
    """Tone of the current draft."""
    rewrites: int
    """How many tone rewrites have been made."""
    confidence: ConfidenceResult
    """Confidence of the current draft."""
    flags: list[str]
    """Risk flags raised on the ticket (for example `possible_injection`, `non_english`)."""
    review_reason: ReviewReason | StepName
    """Why the ticket needs (or needed) a human (graph/reasons.py lists the reasons)."""
    review: ReviewDecision
    """The reviewer's decision once given."""
    planner_steps: Annotated[list[dict[str, Any]], operator.add]
    """Planner decisions: action, reason."""
    final_reply: str
    """The reply that was (or will be) delivered."""
    status: Status
    """Where the ticket is: a terminal status once it ends."""
    error: str
    """Why the ticket failed (status `failed`) or which step failed before a handoff."""
    failures: Annotated[list[str], operator.add]
    """Every failure seen on the way, in order, even those recovered from."""
    usage: Annotated[list[StepUsage], operator.add]
    """Per-step duration, cost and model effort, appended by each step."""
    started_at: str
    """When intake started (ISO 8601 UTC)."""


def compact_closed(values: Mapping[str, Any]) -> dict[str, Any]:
    """The state update that shrinks a closed ticket's final state; {} when already compact.

    For tickets that are over only (`supportgraph.app.prune` checks: closed, not waiting for
    review, nothing
    left to run): texts that are stored elsewhere or no longer read are emptied, the shapes
    stay. Passages keep doc id, chunk id, title, score and collection (citations `[n]` still
    index the same list, and the knowledge base holds the text); cases keep ticket id, intent
    and score (`resolved_cases` holds the reply); drafts before the last keep their citations
    and model but not their text. Kept whole: the ticket (`normalized`, read by `audit
    export`), the last draft, `final_reply`, intent, scores, flags, review, usage (the summary).
    """
    update: dict[str, Any] = {}
    passages = values.get("passages") or []
    if any(p.get("text") for p in passages):
        update["passages"] = [{**p, "text": ""} for p in passages]
    cases = values.get("cases") or []
    if any(c.get("reply") for c in cases):
        update["cases"] = [{**c, "reply": ""} for c in cases]
    drafts = values.get("drafts") or []
    if any(d.get("text") for d in drafts[:-1]):
        update["drafts"] = [*({**d, "text": ""} for d in drafts[:-1]), drafts[-1]]
    return update
