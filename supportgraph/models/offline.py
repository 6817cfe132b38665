"""The `offline` provider: deterministic, retrieval-grounded, free, no network.

It does what an answer model does, by extraction: it picks the retrieved section that best
answers the ticket (one per part of a multi-part ticket) and quotes it whole, as plain text,
with numbered citations; a customer gets the whole procedure, never fragments stitched from
several articles. Rewrites use fixed
templates; plans use a fixed policy. It reads the structured `request.data` the nodes attach,
never the rendered prompt, so prompt wording cannot change its behaviour.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from supportgraph.models.chat import ChatRequest, Completion, InvalidOutput
from supportgraph.models.plaintext import Block, markdown_blocks, split_sentences
from supportgraph.models.tone import ACRONYMS

if TYPE_CHECKING:
    from supportgraph.models.embeddings import Embedder

MODEL = "offline-v1"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = set(
    "the a an is are was were be to of and or in on for with my your our i you we it this that "
    "what how why when can do does did not have has please thanks hi hello there me us if but "
    "from at by about which will just get any".split()
)

# A part of a multi-part ticket gets its own section only when some sentence of that section
# matches the part at least this well (0.75 dense + 0.25 lexical, see `_score_many`) ...
PART_MIN_SCORE = 0.3
# ... and the section ranks this much above every section already chosen, for that part.
PART_MAX_PARTS = 4
PART_MARGIN = 0.05
# The article's opening section is its summary: a specific section of the same article, when
# retrieved too, usually answers better (and the summary then opens the reply).
LEAD_PENALTY = 0.05
LEAD_MIN_SCORE = 0.35
_CONNECTIVE = {"step": "Here is how to do it:\n", "bullet": "Here are the details:\n",
               "table": "Here are the details:\n"}
_PART_OPENING = re.compile(r"^(also|and also|plus|additionally|secondly|second)\b", re.I)

def _tokens(text: str) -> set[str]:
    return {t for t in _TOKEN.findall(text.lower()) if t not in _STOP and len(t) > 1}


def _overlap(query: set[str], other: set[str]) -> float:
    """Cosine-style word overlap of two token sets (0 when either is empty)."""
    if not query or not other:
        return 0.0
    return len(query & other) / (len(query) ** 0.5 * len(other) ** 0.5)


def question_parts(query: str) -> list[str]:
    """The separate asks of a ticket: its questions and its 'also ...' sentences.

    The subject line (the query's first line) only summarises the body, so it is not a part.
    """
    body = query.split("\n", 1)[1] if "\n" in query else query
    parts: list[str] = []
    for paragraph in re.split(r"\n\s*\n|\n", body):
        previous = ""
        for sentence in split_sentences(paragraph):
            ask = sentence
            if len(_tokens(sentence)) < 3 and len(_tokens(previous)) >= 2:
                ask = f"{previous} {sentence}"  # "Is that possible?" asks about the last one
            if (("?" in sentence or _PART_OPENING.match(sentence))
                    and _tokens(ask) and ask not in parts):
                parts.append(ask)
            previous = sentence
    return parts[:PART_MAX_PARTS]


def _article(passage: dict) -> str:
    return str(passage.get("doc_id") or "").split("#", 1)[0]


def _is_lead(passage: dict) -> bool:
    """Whether a passage is its article's opening section (its title has no heading path)."""
    return " > " not in str(passage.get("title") or "")


def _siblings(passage: dict, sections: list[tuple[int, dict, list[Block]]]) -> bool:
    article = _article(passage)
    return any(p is not passage and _article(p) == article for _, p, _ in sections)


def _has_prose(blocks: list[Block]) -> bool:
    """Whether a passage has something to say besides code and tables."""
    return any(b.kind in ("para", "step", "bullet") and len(b.text.split()) >= 3 for b in blocks)


class _Said:
    """The sentences a reply already contains.

    A near copy (the same words, give or take one in five) counts as said too: knowledge bases
    repeat facts across sections.
    """

    def __init__(self) -> None:
        self._words: list[set[str]] = []

    def already(self, sentence: str) -> bool:
        """Whether `sentence` was said; if not, it is now."""
        words = set(_TOKEN.findall(sentence.lower()))
        for other in self._words:
            if words == other or (words and len(words & other) / len(words | other) >= 0.8):
                return True
        self._words.append(words)
        return False


def _render_section(blocks: list[Block], said: _Said) -> str:
    """A section's blocks as reply lines, in source order, without sentences already said."""
    lines: list[str] = []
    for block in blocks:
        if block.kind == "para":
            fresh = [s for s in split_sentences(block.text) if not said.already(s)]
            if fresh:
                lines.append(" ".join(fresh))
        elif block.kind in ("step", "bullet"):
            if not said.already(block.text):
                lines.append(block.render())
        else:
            lines.append(block.render())
    while lines and lines[-1].startswith("    ") and len(lines) == 1:
        lines.pop()  # code alone, with no words around it, is no answer
    return "\n".join(lines)


def _cite(text: str, number: int) -> str:
    """Put the citation `[n]` after the section's first line of words (never inside code)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith("    "):
            lines[i] = f"{line} [{number}]"
            break
    return "\n".join(lines)


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

    def __init__(self, max_sections: int = 3, *, embedder: Embedder) -> None:
        self.max_sections = max_sections
        self.embedder = embedder
        """The composition root's sentence embedder (KB sentences are pinned in it)."""

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
        """Quote the best-matching section whole (one per part of a multi-part ticket).

        The retriever ranks passages; the drafter re-ranks them with what it can see better: how
        well the passage's best sentence matches the question, and the words of its title.
        Each chosen section is rendered whole, in source order, so a procedure keeps all its
        steps; sentences are never taken from several articles into one paragraph, and a
        sentence already said is not said again.
        """
        query = str(data.get("query") or "")
        passages = list(data.get("passages") or [])
        # [n] is the n-th passage given, as in the prompt remote models read: `draft` maps the
        # numbers back to doc ids by position.
        sections = [(i, p, markdown_blocks(str(p.get("text") or "")))
                    for i, p in enumerate(passages) if isinstance(p, dict)]
        sections = [(i, p, blocks) for i, p, blocks in sections if _has_prose(blocks)]
        if not sections:
            raise InvalidOutput("no usable sentences in the retrieved passages")
        chosen = self._choose(query, sections)
        seen = _Said()
        paragraphs: list[str] = []
        cited: list[int] = []
        for p_index, blocks, lead in chosen:
            text = _render_section(blocks, seen)
            if not text:
                continue
            opening = ""
            if lead is not None and not seen.already(lead[1]):
                cited.append(lead[0])
                opening = f"{lead[1]} [{lead[0] + 1}]\n"
            elif not paragraphs:
                opening = _CONNECTIVE.get(blocks[0].kind, "")
            cited.append(p_index)
            paragraphs.append(opening + _cite(text, p_index + 1))
        if not paragraphs:
            raise InvalidOutput("no usable sentences in the retrieved passages")
        sources = "\n".join(
            f"[{p + 1}] {passages[p].get('title', '')} ({passages[p].get('doc_id', '')})"
            for p in sorted(cited))
        greeting = data.get("greeting") or "Hi there,"
        signature = data.get("signature") or "The Support Team"
        return (f"{greeting}\n\nThanks for reaching out. " + "\n\n".join(paragraphs)
                + "\n\nIf anything is still unclear, just reply to this message and we will "
                f"help.\n\nBest regards,\n{signature}\n\nSources:\n{sources}")

    def _choose(self, query: str,
                sections: list[tuple[int, dict, list[Block]]],
                ) -> list[tuple[int, list[Block], tuple[int, str] | None]]:
        """The best section for the whole ticket, plus the best for each other part of it."""
        units = [(k, s) for k, (_, p, _) in enumerate(sections)
                 for s in passage_sentences(str(p.get("text") or ""))]
        parts = question_parts(query)
        queries = [query, *parts] if len(parts) > 1 else [query]
        scores = self._score_many(queries, [s for _, s in units])
        best = np.full((len(queries), len(sections)), -1.0)
        for u, (k, _) in enumerate(units):
            best[:, k] = np.maximum(best[:, k], scores[:, u])
        ranked = []
        for q, text in enumerate(queries):
            q_tokens = _tokens(text)
            row = []
            for k, (i, p, _) in enumerate(sections):
                title = _overlap(q_tokens, _tokens(str(p.get("title") or "")))
                words = _overlap(q_tokens, _tokens(str(p.get("text") or "")))
                dense = float(p.get("score") or 0.0) if q == 0 else best[q, k]
                penalty = LEAD_PENALTY if _is_lead(p) and _siblings(p, sections) else 0.0
                row.append(0.45 * best[q, k] + 0.25 * dense + 0.15 * title + 0.15 * words
                           - 0.02 * i - penalty)
            ranked.append(row)
        order: list[int] = [int(np.argmax(ranked[0]))]
        for q in range(1, len(queries)):
            k = int(np.argmax(ranked[q]))
            # A part gets its own section only when that section answers it clearly better
            # than the sections already chosen (and answers it at all).
            if (k not in order and best[q, k] >= PART_MIN_SCORE
                    and ranked[q][k] >= max(ranked[q][c] for c in order) + PART_MARGIN
                    and len(order) < self.max_sections):
                order.append(k)
        chosen = []
        for k in order:
            i, p, blocks = sections[k]
            lead = self._lead_of(p, k, sections, best[0], order)
            chosen.append((i, blocks, lead))
        return chosen

    @staticmethod
    def _lead_of(passage: dict, k: int, sections: list[tuple[int, dict, list[Block]]],
                 best: np.ndarray, order: list[int]) -> tuple[int, str] | None:
        """The article's own opening sentence, when retrieved and relevant, to open with."""
        if _is_lead(passage):
            return None
        for j, (i, p, blocks) in enumerate(sections):
            if (j != k and j not in order and _is_lead(p) and _article(p) == _article(passage)
                    and best[j] >= LEAD_MIN_SCORE):
                text = " ".join(b.text for b in blocks if b.kind == "para")
                sentences = split_sentences(text)
                if sentences and len(sentences) <= 2:
                    return i, " ".join(sentences)
        return None

    def _score_many(self, queries: list[str], sentences: list[str]) -> np.ndarray:
        """Score every sentence against every query: 0.75 MiniLM cosine + 0.25 word overlap.

        Knowledge-base sentences are pinned at ingest and the ticket was embedded by retrieve,
        so a single-part ticket costs no forward pass here.
        """
        if not sentences:
            return np.zeros((len(queries), 0))
        vectors = self.embedder.encode([*queries, *sentences])
        dense = vectors[: len(queries)] @ vectors[len(queries):].T
        sentence_tokens = [_tokens(s) for s in sentences]
        lexical = np.array([[_overlap(_tokens(q), t) for t in sentence_tokens] for q in queries])
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
        # the workflow sends the actions it allows; the policy names only real ones
        allowed = set(data.get("allowed") or ()) if "allowed" in data else None
        policy = {
            "low_intent_confidence": ["search_other_kb", "handoff"],
            "nothing_retrieved": ["reformulate_and_retrieve", "search_other_kb", "handoff"],
            "low_answer_confidence": ["search_resolved_cases", "search_other_kb", "handoff"],
            "invalid_output": ["regenerate_stronger", "handoff"],
        }.get(reason, ["handoff"])
        for action in policy:
            if action not in tried and (allowed is None or action in allowed):
                return json.dumps({"action": action, "reason": f"offline policy for {reason}"})
        return json.dumps({"action": "handoff", "reason": f"policy exhausted for {reason}"})


_SOFTEN = [
    (r"\byou should have\b", "it helps to"),
    (r"\byou must\b", "please"),
    (r"\bobviously\b", ""),
    (r"\bas I already said\b", "as mentioned"),
    (r"\bthat's wrong\b", "that may not be quite right"),
]
