"""Replay eval tickets through the real workflow, concurrently, in an isolated home.

The isolated home is a fresh folder under the output directory (`DIR/sg-eval-<random>`): its own
SQLite database and local Qdrant (a copy of the team's local knowledge base without its
resolved cases, or the demo knowledge base ingested afresh) and the team's trained intent
model loaded read-only. The team's database and Qdrant are never opened. The folder is kept, so
`SUPPORTGRAPH_HOME=DIR/sg-eval-<random> supportgraph audit show TICKET` explains any result; the
next eval into the same DIR removes it.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from evals.dataset import EvalTicket
from evals.records import EvalRecord, build_record, failed_record
from graph.context import Context
from retrieval.files import copy_tree

log = logging.getLogger(__name__)
HOME_PREFIX = "sg-eval-"
MARKER = ".supportgraph-eval"
REVIEWER = "eval-gold"
CASES = "resolved_cases"
ReviewMode = Literal["gold", "wait"]


class EvalSetupError(RuntimeError):
    """The isolated home could not be prepared (for example no knowledge base to copy)."""


@contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold `out` for one eval: a second eval into the same folder would delete this home."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".eval.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EvalSetupError(f"another eval is writing to {out}; use another --out") from None
        yield


def make_home(out: Path) -> Path:
    """A fresh isolated home under `out`; earlier eval homes there are removed first."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{HOME_PREFIX}*"):
        if (old / MARKER).is_file():
            shutil.rmtree(old)
    home = Path(tempfile.mkdtemp(prefix=HOME_PREFIX, dir=out))
    (home / MARKER).write_text("made by supportgraph eval; removed by the next eval here\n",
                               encoding="utf-8")
    return home


class Progress:
    """One concise stderr line per setup phase, with its time (silent when disabled).

    Setting up the isolated home takes about a minute on a cold machine (loading models,
    ingesting the demo KB); a silent minute looks like a hang.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._started = time.perf_counter()

    def __call__(self, message: str) -> None:
        """Say what setup does next, and how long setup has taken so far."""
        if self.enabled:
            elapsed = time.perf_counter() - self._started
            print(f"eval: [{elapsed:5.1f} s] {message}", file=sys.stderr, flush=True)


def prepare(ctx: Context, team: Context, say: Progress | None = None) -> None:
    """Load the intent model and fill the isolated knowledge base before any ticket runs.

    The team's local Qdrant folder is copied (read only; its `resolved_cases` dropped, since
    past answers would leak into the eval) when there is one: ingesting the demo KB from
    scratch costs a minute of embedding, a copy milliseconds. The demo KB is then brought up
    to date in the copy (a fingerprint check when it already is).
    """
    from retrieval import sentence_cache
    from retrieval.store import EMBEDDED_DIR
    from supportgraph.app.services import NO_DEMO_MARKER, run_services

    say = say or Progress(enabled=False)

    source = team.home_path / EMBEDDED_DIR
    local = not team.settings.qdrant_url and source.is_dir()
    if not ctx.demo_kb and not local:
        raise EvalSetupError(
            "the demo KB is off and there is no local knowledge base to copy "
            f"({'a Qdrant server is configured' if team.settings.qdrant_url else source}); "
            "evaluate with demo_kb=true or a local SUPPORTGRAPH_HOME")
    if local:
        say(f"copying the knowledge base from {source}")
        copy_tree(source, ctx.home_path / EMBEDDED_DIR,
                        ignore=shutil.ignore_patterns(".lock"))
        # and its sentence vectors, or the copy would embed every KB sentence again
        vectors = sentence_cache.cache_path(team.home_path)
        if vectors.is_file():
            sentence_cache.cache_path(ctx.home_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(vectors, sentence_cache.cache_path(ctx.home_path))
    say("opening the isolated home's knowledge base")
    res = run_services(ctx)
    if local and res.store.exists(CASES):
        res.store.delete_collection(CASES)
    for name in ("answerability.json", NO_DEMO_MARKER):  # a KB-only home stays KB-only
        if local and (team.home_path / name).is_file():
            shutil.copy2(team.home_path / name, ctx.home_path / name)
    if ctx.demo_kb:
        say("checking the demo knowledge base" if local else
            "ingesting the demo knowledge base (about a minute)")
        res.demo_kb_ready()
    res.services.prepare(ctx)  # the demo intent model, when the demo is in use
    if res.routing == "intent":
        say("loading the intent model")
        res.intent_model.predict(["warm-up"])
    say("loading the embedding model")
    res.embedder.encode_one("warm-up")
    say("loading the answerability model")
    res.answerability  # noqa: B018 - loaded (or stored with the KB profile) before any ticket runs


def gold_decision(gold: EvalTicket, has_draft: bool) -> dict[str, Any]:
    """The review a careful human would give, knowing the gold outcome.

    Gold `sent`: accept the draft (or, with no draft, write the reference answer). Gold `human`:
    a person writes the reply, so the reference answer is sent as an edit. With no reference
    to write, the ticket is rejected.
    """
    if gold.expected_outcome == "sent" and has_draft:
        return {"type": "accept", "args": None, "reviewer": REVIEWER}
    if gold.reference_answer.strip():
        return {"type": "edit", "args": {"reply": gold.reference_answer}, "reviewer": REVIEWER}
    return {"type": "ignore", "args": "no reference answer to send", "reviewer": REVIEWER}


def run_one(runner: Any, gold: EvalTicket, review: ReviewMode) -> EvalRecord:
    """Run one ticket (and answer its review when asked to) and record what happened."""
    try:
        outcome = runner.run(gold.ticket)
        thread_id, summary = outcome.thread_id, outcome.summary
        escalated = summary["status"] == "awaiting_review"
        config = {"configurable": {"thread_id": thread_id}}
        drafts = runner.graph.get_state(config).values.get("drafts") or []
        if escalated and review == "gold":
            summary = runner.decide(thread_id, gold_decision(gold, bool(drafts))).summary
    except Exception as exc:  # noqa: BLE001 - counted as a failed ticket and logged, not hidden
        log.exception("eval ticket %s could not run", gold.id)
        return failed_record(gold, f"{type(exc).__name__}: {exc}"[:500])
    return build_record(gold, summary, escalated=escalated,
                        draft=drafts[-1]["text"] if drafts else "")


def run_eval(ctx: Context, team: Context, tickets: Sequence[EvalTicket], *,
             concurrency: int = 4, review: ReviewMode = "gold",
             progress: bool = True) -> tuple[list[EvalRecord], float]:
    """Run every ticket; returns the records in dataset order and the wall time in seconds."""
    from tqdm import tqdm

    from supportgraph.app.runner import Runner

    say = Progress(enabled=progress)
    say(f"preparing an isolated home in {ctx.home_path}")
    prepare(ctx, team, say)
    say("building the workflow")
    runner = Runner(ctx)
    say(f"running {len(tickets)} tickets, {concurrency} at a time")
    started = time.perf_counter()
    records: list[EvalRecord | None] = [None] * len(tickets)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval") as pool, \
            tqdm(total=len(tickets), desc="eval", unit="ticket", file=sys.stderr,
                 disable=not progress) as bar:
        futures = {pool.submit(run_one, runner, t, review): i for i, t in enumerate(tickets)}
        for future in as_completed(futures):
            records[futures[future]] = future.result()
            bar.update(1)
    return [r for r in records if r is not None], time.perf_counter() - started


def release(ctx: Context) -> None:
    """Close the isolated home's database and Qdrant (frees the local folder lock)."""
    from supportgraph.app.services import services_for

    services_for(ctx.settings).close()
