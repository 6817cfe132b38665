"""The environment is read in one module (supportgraph/app/settings.py); the rest asks it."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from supportgraph.app import settings
from supportgraph.app.observability import log_level
from supportgraph.app.settings import SettingsError

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("supportgraph", "graph", "nodes", "retrieval", "evals")


def environment_reads(path: Path) -> list[str]:
    """`os.environ` / `os.getenv` / `os.putenv` uses in one file (by syntax, not by text)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "os" and node.attr in ("environ", "getenv", "putenv")):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} os.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                alias.name in ("environ", "getenv", "putenv") for alias in node.names):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} from os import ...")
    return found


def test_only_the_settings_module_reads_the_environment() -> None:
    files = [p for package in PRODUCT for p in (REPO / package).rglob("*.py")]
    assert len(files) > 50
    reads = [hit for p in files if p != REPO / "supportgraph" / "app" / "settings.py"
             for hit in environment_reads(p)]
    assert reads == []
    # the scan does see a real read
    assert environment_reads(REPO / "supportgraph" / "app" / "settings.py")


def test_library_defaults_fill_gaps_and_keep_what_the_user_set() -> None:
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    settings.apply_library_defaults(environ=environ)
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE", "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1"}
    settings.apply_library_defaults(quiet=True, environ=environ)
    assert environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"


@pytest.mark.parametrize(("raw", "off"), [("off", True), (" OFF ", True), ("0", True),
                                          ("false", True), ("no", True), ("", False),
                                          ("on", False), ("of", False), ("x" * 10_000, False),
                                          ("off\x00", False)])
def test_auth_is_off_only_when_said_plainly(raw: str, off: bool) -> None:
    assert settings.auth_disabled({"SUPPORTGRAPH_AUTH": raw}) is off
    assert settings.auth_disabled({}) is False


def test_edge_values_are_read_from_the_given_environment() -> None:
    assert settings.langgraph_api_key({"LANGGRAPH_API_KEY": "sg_abc"}) == "sg_abc"
    assert settings.langgraph_api_key({"LANGGRAPH_API_KEY": ""}) is None
    assert settings.otel_endpoint({}) is None
    assert settings.otel_endpoint({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318"}) == (
        "http://c:4318")
    assert settings.otel_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
                                   "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b"}) == (
        "http://a:4318")
    assert settings.otel_service_name({}) == "supportgraph"
    assert settings.otel_service_name({"OTEL_SERVICE_NAME": "support-eu"}) == "support-eu"
    assert settings.shared_data_dir({}) is None
    assert settings.shared_data_dir({"SUPPORTGRAPH_SHARED_DATA": "/data"}) == "/data"
    assert settings.inbox_dev_identity({}) == {"key": "", "tenant": "", "role": "", "name": ""}
    assert settings.inbox_dev_identity({"SUPPORTGRAPH_INBOX_DEV_KEY": "k",
                                        "SUPPORTGRAPH_INBOX_DEV_ROLE": "admin"}) == {
        "key": "k", "tenant": "", "role": "admin", "name": ""}


@pytest.mark.parametrize(("raw", "level"), [(None, logging.WARNING), ("debug", logging.DEBUG),
                                            (" error ", logging.ERROR), ("", logging.WARNING)])
def test_log_level_comes_from_the_settings_module(raw: str | None, level: int) -> None:
    environ = {} if raw is None else {"SUPPORTGRAPH_LOG_LEVEL": raw}
    assert log_level(False, environ) == level
    assert log_level(True, environ) == logging.INFO


@pytest.mark.parametrize("raw", ["LOUD", "x" * 5000, "INFO\nDEBUG", "\x00"])
def test_a_bad_log_level_is_a_one_line_settings_error(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        log_level(False, {"SUPPORTGRAPH_LOG_LEVEL": raw})
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_a_child_process_environment_drops_our_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORTGRAPH_HOME", "/elsewhere")
    monkeypatch.setenv("DATABASE_URL", "postgresql://x")
    monkeypatch.setenv("PATH_FOR_TEST", "kept")
    env = settings.child_environment(SUPPORTGRAPH_HOME="/bench/home")
    assert env["SUPPORTGRAPH_HOME"] == "/bench/home" and "DATABASE_URL" not in env
    assert env["PATH_FOR_TEST"] == "kept"
