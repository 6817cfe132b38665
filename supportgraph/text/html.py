"""HTML email bodies as plain text."""

from __future__ import annotations

import re
from html.parser import HTMLParser


class _HTMLText(HTMLParser):
    """Turn HTML into plain text: drop invisible parts, keep the paragraph structure."""

    _SKIP = frozenset({"script", "style", "head", "title", "noscript", "template"})
    _BLOCK = frozenset({
        "p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
        "hr", "pre", "section", "article", "header", "footer", "dd", "dt", "dl", "address",
    })

    # Items start a new line; their end tag adds nothing, so lists stay compact.
    _ITEM = frozenset({"li", "tr", "dt", "dd", "br"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._quote_depth = 0
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag == "blockquote":
            self._quote_depth += 1
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag in self._BLOCK:
            if tag == "pre":
                self._pre_depth += 1
            self.parts.append("\n\n" if tag == "p" else "\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "blockquote":
            self._quote_depth = max(0, self._quote_depth - 1)
            self.parts.append("\n")
        elif tag in self._BLOCK and tag not in self._ITEM:
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)
            self.parts.append("\n\n" if tag == "p" else "\n")

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if not self._pre_depth:
            data = re.sub(r"\s+", " ", data)
            if not self.parts or self.parts[-1].endswith("\n"):
                data = data.lstrip(" ")
        if self._quote_depth:
            # Mark quoted HTML as "> " lines so the plain-text quote stripper removes it.
            data = "\n".join("> " + line for line in data.split("\n"))
        self.parts.append(data)

    def text(self) -> str:
        joined = "".join(self.parts)
        text = "\n".join(line.rstrip(" ") for line in joined.split("\n"))
        return re.sub(r"\n{3,}", "\n\n", text)


def html_to_text(html: str) -> str:
    """Render an HTML email body as text for emails that have no text/plain part."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text()

