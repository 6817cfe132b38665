"""Knowledge-base markdown as plain-text blocks a reply can quote whole.

A customer reads the reply as plain text, so markdown must go without leaving debris: code
spans lose their backticks but keep their underscores (`rate_limited` stays rate_limited),
emphasis markers go only where they really delimit words, links keep their address, tables
become one line per row, and code blocks keep their lines. Pointers to other articles of the
knowledge base ('See "Duplicate charges".', '(see below)', 'this guide shows ...') are
dropped: the customer cannot open them. Pure functions, no state: the offline drafter calls
them on every ticket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["para", "step", "bullet", "code", "table"]

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s*#{1,6}\s")
_STEP = re.compile(r"^\s*(\d{1,3})[.)]\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")
_STRONG = re.compile(r"(?<![\w*])(\*\*|__)(?=\S)(.+?)(?<=\S)\1(?![\w*])")
_EMPHASIS = re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])")
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_PLACEHOLDER = "\x00{}\x00"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
# Pointers to other knowledge-base articles or sections, which the customer cannot open.
_SEE_SENTENCE = re.compile(
    r"^\s*see\s+(\"[^\"]+\"|the\s+[\w\s-]*?(articles?|guides?|sections?)\b|below|above)",
    re.IGNORECASE)
# Sentences about the article itself ("this guide shows how to ...").
_META_SENTENCE = re.compile(
    r"\bthis (guide|article|policy|page|document)\s+(also\s+)?(explains|shows|covers|describes"
    r"|helps|lists|walks|tells)\b", re.IGNORECASE)
_SEE_CLAUSE = re.compile(r"[;,]\s*see\s+\"[^\"]+\"(\s+for\b[^.;]*)?(?=[.;]|$)", re.IGNORECASE)
_SEE_PAREN = re.compile(r"\s*\((see\s+(below|above)|see\s+\"[^\"]+\")\)", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    """One unit of a rendered passage: a paragraph, a list item, a code block or a table."""

    kind: Kind
    text: str
    number: int = 0
    """The step number of a numbered list item (0 otherwise)."""

    def render(self) -> str:
        """The block as the lines a reply shows."""
        if self.kind == "step":
            return f"{self.number}. {self.text}"
        if self.kind == "bullet":
            return f"- {self.text}"
        if self.kind == "code":
            return "\n".join(f"    {line}" if line.strip() else "" for line in
                             self.text.splitlines())
        return self.text


def inline(text: str) -> str:
    """Inline markdown to plain text: code spans, links, emphasis, HTML tags."""
    kept: list[str] = []

    def protect(match: re.Match[str]) -> str:
        kept.append(match.group(2).strip())
        return _PLACEHOLDER.format(len(kept) - 1)

    text = _CODE_SPAN.sub(protect, text)
    text = _LINK.sub(lambda m: _link(m.group(1), m.group(2)), text)
    text = _TAG.sub("", text)
    for _ in range(2):  # nested emphasis such as ***word***
        text = _STRONG.sub(r"\2", text)
        text = _EMPHASIS.sub(r"\2", text)
    text = re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)
    return re.sub(r"\s+", " ", text).strip()


def _link(label: str, target: str) -> str:
    if re.match(r"^(https?://|mailto:)", target):
        return f"{label} ({target})" if label and label != target else target
    return label  # a relative link points inside the knowledge base: keep only its words


def drop_internal_references(text: str) -> str:
    """Remove pointers to other articles: whole 'See ...' sentences and '; see "X"' clauses."""
    text = _SEE_PAREN.sub("", text)
    text = _SEE_CLAUSE.sub("", text)
    sentences = [s for s in split_sentences(text)
                 if not _SEE_SENTENCE.match(s) and not _META_SENTENCE.search(s)]
    return " ".join(sentences)


def split_sentences(text: str) -> list[str]:
    """Sentences of one paragraph (a line break never ends a sentence here)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _table_rows(rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    if not body:
        return [" / ".join(c for c in header if c)]
    out = []
    for cells in body:
        label = cells[0] if cells else ""
        pairs = [f"{h} {c}".strip() if h else c
                 for h, c in zip(header[1:], cells[1:], strict=False) if c]
        out.append(f"{label}: {'; '.join(pairs)}" if label else "; ".join(pairs))
    return out


def _cells(line: str) -> list[str]:
    return [inline(c) for c in line.strip().strip("|").split("|")]


def markdown_blocks(text: str) -> list[Block]:
    """Split a markdown passage into plain-text blocks, in source order.

    Headings are dropped (the passage title already names the section); paragraphs are joined
    across wrapped lines; every list item is its own block; a table becomes one block of
    `label: header value; ...` lines; a code block keeps its lines verbatim.
    """
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    paragraph: list[str] = []
    item: list[str] = []
    item_kind: Kind | None = None
    item_number = 0

    def flush_paragraph() -> None:
        if paragraph:
            rendered = drop_internal_references(inline(" ".join(paragraph)))
            if rendered:
                blocks.append(Block("para", rendered))
            paragraph.clear()

    def flush_item() -> None:
        nonlocal item_kind
        if item_kind is not None:
            rendered = drop_internal_references(inline(" ".join(item)))
            if rendered:
                blocks.append(Block(item_kind, rendered, item_number))
            item.clear()
            item_kind = None

    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            flush_paragraph()
            flush_item()
            code: list[str] = []
            i += 1
            while i < len(lines) and not _FENCE.match(lines[i]):
                code.append(lines[i].rstrip())
                i += 1
            if any(c.strip() for c in code):
                blocks.append(Block("code", "\n".join(code).strip("\n")))
            i += 1
            continue
        stripped = line.strip()
        if not stripped or _HEADING.match(line):
            flush_paragraph()
            flush_item()
        elif stripped.startswith("|"):
            flush_paragraph()
            flush_item()
            rows: list[list[str]] = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                if not _TABLE_RULE.match(lines[i]):
                    rows.append(_cells(lines[i]))
                i += 1
            rendered = "\n".join(f"- {row}" for row in _table_rows(rows))
            if rendered:
                blocks.append(Block("table", rendered))
            continue
        elif (step := _STEP.match(line)) or (bullet := _BULLET.match(line)):
            flush_paragraph()
            flush_item()
            if step:
                item_kind, item_number = "step", int(step.group(1))
                item.append(step.group(2))
            elif bullet:
                item_kind, item_number = "bullet", 0
                item.append(bullet.group(1))
        elif item_kind is not None and line[:1].isspace():
            item.append(stripped)  # a wrapped list item
        else:
            flush_item()
            paragraph.append(stripped)
        i += 1
    flush_paragraph()
    flush_item()
    return blocks
