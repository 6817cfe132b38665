"""Fixtures for end-to-end tests: private copies of a prepared home, and server logs on failure.

The session-wide `template_home` (the demo model trained and the demo KB ingested, built once by
`supportgraph init` in a subprocess) lives in tests/conftest.py. Qdrant local mode allows one
process per folder, so every process started here gets its own copy of it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrieval.files import copy_tree

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    """Attach the log of any server fixture (an object with `failure_log()`) to a failure."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for name, value in getattr(item, "funcargs", {}).items():
            failure_log = getattr(value, "failure_log", None)
            if callable(failure_log):
                report.sections.append((f"{name} log", failure_log()))
    return report


@pytest.fixture
def e2e_home(template_home: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared home for one test's subprocesses (not set in the env)."""
    home = tmp_path / "e2e_home"
    copy_tree(template_home, home)
    return home


@pytest.fixture
def chromium() -> Iterator[object]:
    """Debian's chromium driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), "apt-get install chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
