"""Turning files into stored passages, and the `supportgraph retrieve` file contract.

Markdown is split at headings (a heading names what follows, which is what a question asks
about); each section becomes one document `path#heading-slug` whose title is the document title
plus the heading path. Long sections and long JSONL records are cut into overlapping windows of
about `MAX_WORDS` words (MiniLM reads 256 word pieces; longer input is silently truncated).
Bad files are reported with the reason and never stop the rest of an ingest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tqdm import tqdm

from retrieval.points import Chunk, RetrievalUnavailable
from retrieval.store import KnowledgeStore
from supportgraph.models.embeddings import MODEL_NAME

log = logging.getLogger(__name__)

MAX_WORDS = 160
OVERLAP_WORDS = 32
MAX_FILE_BYTES = 5 * 1024 * 1024
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
CHUNKER_VERSION = "2"
DEMO_COLLECTIONS = {"kb_billing": "billing", "kb_technical": "technical"}

_BREAK = "\x00"  # marks a word that starts a paragraph while windows are counted in words
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass
class IngestReport:
    """What an ingest did: documents and chunks stored, files or lines skipped and why."""

    documents: int = 0
    chunks: int = 0
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    doc_ids: set[str] = field(default_factory=set, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (for the CLI and benchmarks)."""
        data = asdict(self)
        data.pop("doc_ids")
        data["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return data


# ---------------------------------------------------------------------- chunking


def slugify(text: str) -> str:
    """GitHub-style anchor: lowercase words joined by hyphens, punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[\s_]+", "-", text).strip("-") or "section"


def split_words(text: str, max_words: int = MAX_WORDS, overlap: int = OVERLAP_WORDS) -> list[str]:
    """Cut `text` into windows of at most `max_words` words, paragraphs kept whole when they fit.

    Consecutive windows share about `overlap` words so a sentence cut at a boundary is still
    readable in one of them.
    """
    if len(text.split()) <= max_words:
        return [text.strip()] if text.strip() else []  # fits: keep its formatting as is
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    units: list[list[str]] = []
    for number, paragraph in enumerate(paragraphs):
        words = paragraph.split()
        if number:  # remember the paragraph break on the paragraph's first word
            words[0] = _BREAK + words[0]
        if len(words) <= max_words:
            units.append(words)
            continue
        # oversize paragraph: sentence-sized units, each at most (max - overlap) words so
        # that the carried-over overlap plus one unit always fits in a window
        step = max(1, max_words - overlap)
        first = len(units)
        for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
            words = sentence.split()
            for start in range(0, len(words), step):
                units.append(words[start : start + step])
        if number and len(units) > first:
            units[first][0] = _BREAK + units[first][0]
    chunks: list[list[str]] = []
    current: list[str] = []
    for unit in units:
        if current and len(current) + len(unit) > max_words:
            chunks.append(current)
            tail = current[-overlap:] if overlap else []
            current = tail + unit if len(tail) + len(unit) <= max_words else list(unit)
        else:
            current = current + unit if current else list(unit)
    if current:
        chunks.append(current)
    return [" ".join(words).replace(" " + _BREAK, "\n\n").replace(_BREAK, "").strip()
            for words in chunks]


@dataclass(frozen=True)
class Section:
    """A heading's worth of a text document."""

    doc_id: str
    title: str
    text: str


def markdown_sections(relpath: str, text: str) -> list[Section]:
    """Split markdown at headings into sections with doc ids `relpath#slug` (unique per file).

    Title = document title (first H1, else file name) plus the path of enclosing headings.
    Text before the first heading belongs to the document title's section.
    """
    lines = text.splitlines()
    doc_title = Path(relpath).stem.replace("_", " ").replace("-", " ")
    for line in lines:
        match = _HEADING.match(line)
        if match and len(match.group(1)) == 1:
            doc_title = match.group(2).strip()
            break
    sections: list[Section] = []
    slugs: dict[str, int] = {}
    path: list[tuple[int, str]] = []
    heading = doc_title
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        content = "\n".join(body).strip()
        if not content:
            return
        slug = slugify(heading)
        n = slugs.get(slug, 0)
        slugs[slug] = n + 1
        anchor = slug if n == 0 else f"{slug}-{n}"
        trail = [h for _, h in path if h != doc_title]
        title = " > ".join([doc_title, *trail]) if trail else doc_title
        sections.append(Section(doc_id=f"{relpath}#{anchor}", title=title, text=content))

    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        flush()
        body = []
        level, heading = len(match.group(1)), match.group(2).strip()
        path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, heading)]
    flush()
    return sections


def text_sections(relpath: str, text: str) -> list[Section]:
    """Treat a plain-text file as one document titled by its file name."""
    title = Path(relpath).stem.replace("_", " ").replace("-", " ")
    return [Section(doc_id=relpath, title=title, text=text.strip())] if text.strip() else []


def section_chunks(section: Section, source: str, metadata: dict[str, Any] | None = None,
                   tenant: str | None = None, *, max_words: int = MAX_WORDS,
                   overlap: int = OVERLAP_WORDS) -> list[Chunk]:
    """Cut one section (or record) into the chunks that get stored."""
    return [
        Chunk(doc_id=section.doc_id, chunk=i, text=part, title=section.title, source=source,
              tenant=tenant, metadata=dict(metadata or {}))
        for i, part in enumerate(split_words(section.text, max_words, overlap))
    ]


# ---------------------------------------------------------------------- reading files


def _read_text(path: Path) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason the file is skipped)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if size > MAX_FILE_BYTES:
        return None, f"too large ({size} bytes > {MAX_FILE_BYTES // (1024 * 1024)} MB)"
    if size == 0:
        return None, "empty"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if b"\x00" in data[:8192]:
        return None, "binary (NUL bytes)"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (bad byte at offset {exc.start})"
    if not text.strip():
        return None, "empty"
    return text, None


def _expand(paths: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """Files to ingest with the relative path used in their doc ids."""
    cwd = Path.cwd().resolve()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            base = path.resolve().parent
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in file.relative_to(path).parts):
                    continue
                yield file, file.resolve().relative_to(base).as_posix()
        else:
            resolved = path.resolve()
            try:
                rel = resolved.relative_to(cwd).as_posix()
            except ValueError:
                rel = path.name
            yield path, rel


def file_chunks(path: Path, relpath: str, report: IngestReport, *, max_words: int = MAX_WORDS,
                overlap: int = OVERLAP_WORDS) -> list[Chunk]:
    """Chunks of one file; problems go to `report.skipped`, never raise."""
    suffix = path.suffix.lower()
    if not path.exists():
        report.skipped.append((str(path), "not found"))
        return []
    if suffix not in TEXT_SUFFIXES | JSONL_SUFFIXES:
        report.skipped.append((str(path), f"unsupported file type {suffix or '(none)'}"))
        return []
    text, reason = _read_text(path)
    if text is None:
        report.skipped.append((str(path), reason or "unreadable"))
        return []
    if suffix in JSONL_SUFFIXES:
        return _jsonl_chunks(path, text, report, max_words=max_words, overlap=overlap)
    if suffix in {".md", ".markdown"}:
        sections = markdown_sections(relpath, text)
    else:
        sections = text_sections(relpath, text)
    chunks = [c for s in sections
              for c in section_chunks(s, relpath, max_words=max_words, overlap=overlap)]
    report.doc_ids.update(s.doc_id for s in sections)
    return chunks


def _jsonl_chunks(path: Path, text: str, report: IngestReport, *, max_words: int,
                  overlap: int) -> list[Chunk]:
    """Read records `{"id", "text", "title"?, "metadata"?}`; report bad lines by number."""
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            report.skipped.append((str(path), f"malformed JSONL line {number}: {exc.msg}"))
            continue
        problem = _record_problem(record)
        if problem:
            report.skipped.append((str(path), f"malformed JSONL line {number}: {problem}"))
            continue
        doc_id = str(record["id"])
        if doc_id in seen:
            report.skipped.append((str(path), f"malformed JSONL line {number}: duplicate id"))
            continue
        seen.add(doc_id)
        section = Section(doc_id=doc_id, title=str(record.get("title") or ""),
                          text=record["text"])
        chunks.extend(section_chunks(section, path.name, record.get("metadata"),
                                     max_words=max_words, overlap=overlap))
        report.doc_ids.add(doc_id)
    return chunks


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    if not isinstance(record.get("id"), str | int) or isinstance(record.get("id"), bool):
        return "missing or invalid 'id'"
    if str(record["id"]).strip() == "":
        return "empty 'id'"
    if not isinstance(record.get("text"), str) or not record["text"].strip():
        return "missing or empty 'text'"
    if "title" in record and record["title"] is not None and not isinstance(record["title"], str):
        return "'title' must be a string"
    if "metadata" in record and record["metadata"] is not None and not isinstance(
        record["metadata"], dict
    ):
        return "'metadata' must be an object"
    return None


# ---------------------------------------------------------------------- ingest


def ingest_paths(
    store: KnowledgeStore,
    collection: str,
    paths: Sequence[Path],
    *,
    progress: bool = False,
    batch_chunks: int = 256,
    relative_to: Path | None = None,
    max_words: int = MAX_WORDS,
    overlap: int = OVERLAP_WORDS,
) -> IngestReport:
    """Ingest files and folders into `collection` (created if missing); idempotent.

    `relative_to`: base folder for doc ids (default: a folder argument's parent, or the
    current directory for a file argument).
    """
    started = time.perf_counter()
    report = IngestReport()
    store.ensure_collection(collection)
    if relative_to is not None:
        base = relative_to.resolve()
        files = [(p, p.resolve().relative_to(base).as_posix()) for p in paths]
    else:
        files = list(_expand(paths))
    pending: list[Chunk] = []
    bar = tqdm(files, desc=f"ingest {collection}", unit="file", file=sys.stderr,
               disable=not progress)

    def flush() -> None:
        report.written += store.upsert_chunks(collection, pending)
        pending.clear()

    for path, relpath in bar:
        chunks = file_chunks(path, relpath, report, max_words=max_words, overlap=overlap)
        report.chunks += len(chunks)
        pending.extend(chunks)
        if len(pending) >= batch_chunks:
            flush()
        bar.set_postfix(chunks=report.chunks, skipped=len(report.skipped))
    flush()
    bar.close()
    if report.written:
        store.optimize(collection)  # embedded: index the bulk now, not on the first searches
    report.documents = len(report.doc_ids)
    report.seconds = time.perf_counter() - started
    for path, reason in report.skipped:
        log.warning("skipped %s: %s", path, reason)
    return report


# ---------------------------------------------------------------------- retrieve contract


def retrieve_file(
    store: KnowledgeStore, collection: str, input: Path, output: Path, *, k: int,
    batch: int = 32,
) -> dict[str, Any]:
    """Answer `{"id", "query"}` lines with the K best distinct documents, in input order.

    A bad line still yields an output line (`hits: []` plus an `error`) and is listed under
    `errors`, so nothing is silently dropped. Raises RetrievalUnavailable if the collection
    is missing or the store is down.
    """
    store.require(collection)
    text = Path(input).read_text(encoding="utf-8")
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append({"id": None, "error": f"line {number}: invalid JSON: {exc.msg}"})
            continue
        if not isinstance(record, dict) or not isinstance(record.get("query"), str) or not (
            record["query"].strip()
        ):
            ident = record.get("id") if isinstance(record, dict) else None
            rows.append({"id": ident, "error": f"line {number}: missing or empty 'query'"})
            continue
        if "id" not in record:
            rows.append({"id": None, "error": f"line {number}: missing 'id'"})
            continue
        rows.append({"id": record["id"], "query": record["query"]})
    answerable = [r for r in rows if "query" in r]
    for start in range(0, len(answerable), batch):
        part = answerable[start : start + batch]
        results = store.best_documents_many(collection, [r["query"] for r in part], k=k)
        for row, hits in zip(part, results, strict=True):
            row["hits"] = [
                {"doc_id": h.doc_id, "score": round(h.score, 6), "title": h.title,
                 "text": h.text}
                for h in hits
            ]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as out:
        for row in rows:
            item: dict[str, Any] = {"id": row["id"], "hits": row.get("hits", [])}
            if "error" in row:
                item["error"] = row["error"]
                errors.append({"id": row["id"], "reason": row["error"]})
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    return {"queries": len(rows), "answered": len(answerable), "errors": errors}


# ---------------------------------------------------------------------- demo knowledge base


def demo_kb_root() -> Path:
    """Folder of the shipped demo knowledge base (`retrieval/kb`)."""
    return Path(str(resources.files("retrieval") / "kb"))


def _fingerprint(files: Sequence[Path], base: Path) -> str:
    digest = hashlib.sha256(f"{MODEL_NAME}|{CHUNKER_VERSION}|{MAX_WORDS}|{OVERLAP_WORDS}".encode())
    for file in files:
        digest.update(file.relative_to(base).as_posix().encode())
        digest.update(b"\x00")
        digest.update(file.read_bytes())
        digest.update(b"\x00")
    return digest.hexdigest()


def ensure_demo_kb(store: KnowledgeStore, root: Path | None = None, *,
                   home: Path | None = None) -> dict[str, Any]:
    """Ingest the shipped billing and technical docs unless the stored copy is current.

    Fast when nothing changed (one fingerprint read per collection); documents removed from
    the package are removed from the collection. With `home`, the docs' sentence vectors are
    kept there too (`retrieval.sentence_cache`) when something changed or the file is missing.
    """
    root = root or demo_kb_root()
    summary: dict[str, Any] = {}
    for collection, folder in DEMO_COLLECTIONS.items():
        files = sorted((root / folder).glob("*.md"))
        fingerprint = _fingerprint(files, root)
        marker = store.get_meta(f"demo_kb:{collection}") or {}
        if store.exists(collection) and marker.get("fingerprint") == fingerprint:
            summary[collection] = {"status": "unchanged"}
            continue
        report = ingest_paths(store, collection, files, relative_to=root)
        keep = report.doc_ids
        stale = [pid for pid, payload in store.scroll_payloads(collection)
                 if payload.get("doc_id") not in keep]
        store.delete_ids(collection, stale)
        store.set_meta(f"demo_kb:{collection}", {"fingerprint": fingerprint,
                                                 "files": len(files),
                                                 "updated_at": time.time()})
        summary[collection] = {"status": "ingested", "documents": report.documents,
                               "chunks": report.chunks, "written": report.written,
                               "deleted": len(stale), "skipped": report.skipped}
    if home is not None:
        from retrieval import sentence_cache

        changed = any(v["status"] == "ingested" for v in summary.values())
        if changed or not sentence_cache.cache_path(home).is_file():
            sentence_cache.build(store, home, DEMO_COLLECTIONS)
    return summary


__all__ = [
    "IngestReport",
    "RetrievalUnavailable",
    "ensure_demo_kb",
    "ingest_paths",
    "markdown_sections",
    "retrieve_file",
    "split_words",
]
