"""The `offline` provider: deterministic, retrieval-grounded, free, no network.

It does what an answer model does, by extraction: it picks the retrieved sentences that best
answer the ticket and composes them into a reply with numbered citations. Rewrites use fixed
templates; plans use a fixed policy. It reads the structured `request.data` the nodes attach,
never the rendered prompt, so prompt wording cannot change its behaviour.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from models.chat import ChatRequest, Completion, InvalidOutput
from models.tone import ACRONYMS

MODEL = "offline-v1"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = set(
    "the a an is are was were be to of and or in on for with my your our i you we it this that "
    "what how why when can do does did not have has please thanks hi hello there me us if but "
    "from at by about which will just get any".split()
)

PLANNER_ACTIONS = (
    "reformulate_and_retrieve", "search_other_kb", "search_resolved_cases",
    "regenerate_stronger", "ask_clarifying_question", "handoff",
)


def _tokens(text: str) -> set[str]:
    return {t for t in _TOKEN.findall(text.lower()) if t not in _STOP and len(t) > 1}


def passage_sentences(passage_text: str) -> list[str]:
    """Plain-language sentences of a markdown passage (headings and code blocks dropped)."""
    text = re.sub(r"```.*?```", " ", passage_text, flags=re.DOTALL)
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("|"):
            continue
        line = re.sub(r"^([-*+]|\d+[.)])\s+", "", line)
        line = re.sub(r"[*_`]{1,2}([^*_`]+)[*_`]{1,2}", r"\1", line)
        for sentence in _SENTENCE_END.split(line):
            sentence = sentence.strip()
            if len(sentence) >= 25 and len(sentence.split()) >= 5:
                if sentence[-1] not in ".!?:":
                    sentence += "."
                out.append(sentence)
    return out


class OfflineProvider:
    """Deterministic provider for the `draft`, `rewrite` and `plan` tasks."""

    name = "offline"

    def __init__(self, max_sentences: int = 4) -> None:
        self.max_sentences = max_sentences

    def complete(self, request: ChatRequest, model: str, *, timeout: float) -> Completion:
        """Answer `request` from its structured data."""
        handler = {"draft": self._draft, "rewrite": self._rewrite, "plan": self._plan}.get(
            request.task)
        if handler is None:
            raise InvalidOutput(f"offline provider has no task {request.task!r}")
        text = handler(dict(request.data))
        return Completion(text=text, input_tokens=(len(request.system) + len(request.user)) // 4,
                          output_tokens=len(text) // 4)

    def _draft(self, data: dict[str, Any]) -> str:
        query = data.get("query", "")
        passages = data.get("passages") or []
        candidates: list[tuple[int, int, str]] = []
        for p_index, passage in enumerate(passages):
            for s_index, sentence in enumerate(passage_sentences(passage.get("text", ""))):
                candidates.append((p_index, s_index, sentence))
        if not candidates:
            raise InvalidOutput("no usable sentences in the retrieved passages")
        scores = self._score(query, [c[2] for c in candidates])
        # Passage rank is evidence too: the retriever already ordered them by relevance.
        scores = scores - 0.03 * np.array([c[0] for c in candidates])
        order = np.argsort(-scores, kind="stable")
        chosen: list[tuple[int, int, str]] = []
        per_passage: dict[int, int] = {}
        for i in order:
            p_index, s_index, sentence = candidates[int(i)]
            if scores[int(i)] < 0.2 and chosen:
                break
            if per_passage.get(p_index, 0) >= 3:
                continue
            chosen.append(candidates[int(i)])
            per_passage[p_index] = per_passage.get(p_index, 0) + 1
            if len(chosen) >= self.max_sentences:
                break
        # Cite sources in the order they are first used; keep each passage's sentence order.
        cited: list[int] = []
        for p_index, _, _ in sorted(chosen, key=lambda c: (c[0], c[1])):
            if p_index not in cited:
                cited.append(p_index)
        lines = []
        for number, p_index in enumerate(cited, start=1):
            sentences = [s for p, _, s in sorted(chosen, key=lambda c: c[1]) if p == p_index]
            lines.append(" ".join(sentences) + f" [{number}]")
        sources = "\n".join(
            f"[{n}] {passages[p]['title']} ({passages[p]['doc_id']})"
            for n, p in enumerate(cited, start=1))
        greeting = data.get("greeting") or "Hi there,"
        signature = data.get("signature") or "The Support Team"
        return (f"{greeting}\n\nThanks for reaching out. " + "\n\n".join(lines)
                + "\n\nIf anything is still unclear, just reply to this message and we will "
                f"help.\n\nBest regards,\n{signature}\n\nSources:\n{sources}")

    @staticmethod
    def _score(query: str, sentences: list[str]) -> np.ndarray:
        from models.embeddings import get_embedder

        vectors = get_embedder().encode([query, *sentences])
        dense = vectors[1:] @ vectors[0]
        q = _tokens(query)
        lexical = np.array([len(q & _tokens(s)) / (len(q) ** 0.5 * max(len(_tokens(s)), 1) ** 0.5)
                            if q else 0.0 for s in sentences])
        return 0.75 * dense + 0.25 * lexical

    def _rewrite(self, data: dict[str, Any]) -> str:
        text = data.get("draft", "")
        template = data.get("template", "warm")
        body = re.sub(r"!{2,}", "!", text)
        body = re.sub(r"\b([A-Z]{4,})\b",
                      lambda m: m.group(1) if m.group(1) in ACRONYMS else m.group(1).capitalize(),
                      body)
        for harsh, soft in _SOFTEN:
            body = re.sub(harsh, soft, body, flags=re.IGNORECASE)
        head, sep, rest = body.partition("\n\n")
        if not re.match(r"^(hi|hello|dear|good (morning|afternoon|evening))\b", head, re.I):
            rest, head = body, ""
        opening = {
            "warm": "Hi there,\n\nThank you for getting in touch, and I'm sorry for any "
                    "trouble this has caused.",
            "formal": "Hello,\n\nThank you for contacting us. We appreciate your patience and "
                      "are happy to help.",
        }.get(template, "Hi there,\n\nThank you for your message.")
        rest = re.sub(r"^Thanks for reaching out\.\s*", "", rest.strip())
        return f"{opening}\n\n{rest}".strip()

    def _plan(self, data: dict[str, Any]) -> str:
        reason = data.get("reason", "")
        tried = set(data.get("tried") or [])
        allowed = [a for a in data.get("allowed") or PLANNER_ACTIONS if a in PLANNER_ACTIONS]
        policy = {
            "low_intent_confidence": ["search_other_kb", "handoff"],
            "nothing_retrieved": ["reformulate_and_retrieve", "search_other_kb", "handoff"],
            "low_answer_confidence": ["search_resolved_cases", "search_other_kb", "handoff"],
            "invalid_output": ["regenerate_stronger", "handoff"],
        }.get(reason, ["handoff"])
        for action in policy:
            if action not in tried and action in allowed:
                return json.dumps({"action": action, "reason": f"offline policy for {reason}"})
        return json.dumps({"action": "handoff", "reason": f"policy exhausted for {reason}"})


_SOFTEN = [
    (r"\byou should have\b", "it helps to"),
    (r"\byou must\b", "please"),
    (r"\bobviously\b", ""),
    (r"\bas I already said\b", "as mentioned"),
    (r"\bthat's wrong\b", "that may not be quite right"),
]
