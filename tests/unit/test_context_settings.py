"""Per-run settings: graph/context.py (Context) and app/settings.py (the environment edge)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from graph.context import Context
from supportgraph.app.settings import (
    Settings,
    SettingsError,
    api_keys,
    env_defaults,
    env_name,
    qdrant_api_key,
    read_settings,
    run_context,
)


def test_defaults_without_environment(monkeypatch):
    monkeypatch.delenv("SUPPORTGRAPH_HOME")
    ctx = run_context()
    assert ctx.settings.home == ".supportgraph"
    assert ctx.intent_threshold == 0.85
    assert ctx.tone_threshold == 0.7
    assert ctx.confidence_threshold == 0.8957
    assert ctx.max_rewrites == 2
    assert ctx.planner_enabled is True
    assert (ctx.max_planner_steps, ctx.max_cost_usd, ctx.max_seconds) == (3, 0.05, 120.0)
    assert ctx.settings.database_url == "" and ctx.settings.qdrant_url == ""


def test_env_fills_a_field_left_at_default(monkeypatch):
    monkeypatch.setenv("SUPPORTGRAPH_INTENT_THRESHOLD", "0.9")
    assert run_context().intent_threshold == 0.9


def test_explicit_value_wins_over_env(monkeypatch):
    monkeypatch.setenv("SUPPORTGRAPH_INTENT_THRESHOLD", "0.9")
    monkeypatch.setenv("SUPPORTGRAPH_MAX_REWRITES", "5")
    ctx = run_context(intent_threshold=0.6, max_rewrites=1)
    assert ctx.intent_threshold == 0.6
    assert ctx.max_rewrites == 1


def test_explicit_value_equal_to_the_default_still_wins(monkeypatch):
    # A per-run setting (CLI, or a `langgraph dev` run context coerced with run_context(**dict))
    # that happens to equal the default is still explicit: the environment must not replace it.
    monkeypatch.setenv("SUPPORTGRAPH_INTENT_THRESHOLD", "0.9")
    monkeypatch.setenv("SUPPORTGRAPH_PLANNER_ENABLED", "false")
    ctx = run_context(intent_threshold=0.85, planner_enabled=True)
    assert ctx.intent_threshold == 0.85
    assert ctx.planner_enabled is True


def test_home_comes_from_supportgraph_home(isolated_env):
    assert run_context().settings.home == str(isolated_env)
    elsewhere = run_context().with_settings(Settings(home="/elsewhere"))
    assert elsewhere.home_path.as_posix() == "/elsewhere"


LOCATIONS_AND_SECRETS = ("home", "database_url", "qdrant_url", "pii_salt")


def test_a_run_context_cannot_choose_storage_or_the_salt(isolated_env, monkeypatch):
    # The context is what an API caller sends with a run: none of these may be in it.
    names = {f.name for f in fields(Context)}
    assert names.isdisjoint(LOCATIONS_AND_SECRETS)
    for name in LOCATIONS_AND_SECRETS:
        with pytest.raises(TypeError):
            run_context(**{name: "/tmp/attacker"})
    monkeypatch.setenv("SUPPORTGRAPH_PII_SALT", "deployment-salt")
    ctx = run_context(confidence_threshold=0.9)
    assert ctx.pii_salt == "deployment-salt"
    assert ctx.settings.home == str(isolated_env)
    with pytest.raises(TypeError):
        ctx.replace(home="/tmp/attacker")


def test_settings_from_env_and_explicit_values():
    env = {"SUPPORTGRAPH_HOME": "/srv/sg", "DATABASE_URL": "postgresql://u:pw@db/sg",
           "SUPPORTGRAPH_QDRANT_URL": "http://q:6333", "QDRANT_URL": "http://plain:6333",
           "SUPPORTGRAPH_PII_SALT": "s3cret"}
    settings = read_settings(env)
    assert settings == Settings(home="/srv/sg", database_url="postgresql://u:pw@db/sg",
                                qdrant_url="http://q:6333", pii_salt="s3cret")
    assert read_settings(env, home="/other").home == "/other"
    assert read_settings({}) == Settings()
    shown = repr(settings)  # a log line or a traceback never shows the salt or the password
    assert "s3cret" not in shown and ":pw@" not in shown


def test_int_float_bool_conversion(monkeypatch):
    monkeypatch.setenv("SUPPORTGRAPH_MAX_PLANNER_STEPS", "1")
    monkeypatch.setenv("SUPPORTGRAPH_MAX_COST_USD", "0.01")
    monkeypatch.setenv("SUPPORTGRAPH_MAX_SECONDS", "30")
    monkeypatch.setenv("SUPPORTGRAPH_PLANNER_ENABLED", "false")
    monkeypatch.setenv("SUPPORTGRAPH_LEARN_ENABLED", "No")
    ctx = run_context()
    assert ctx.max_planner_steps == 1 and type(ctx.max_planner_steps) is int
    assert ctx.max_cost_usd == 0.01 and type(ctx.max_cost_usd) is float
    assert ctx.max_seconds == 30.0 and type(ctx.max_seconds) is float
    assert ctx.planner_enabled is False
    assert ctx.learn_enabled is False


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", True), ("true", True), ("YES", True), (" on ", True),
    ("0", False), ("False", False), ("no", False), ("off", False),
])
def test_bool_spellings(raw, expected):
    assert env_defaults("demo_kb", "bool", {"SUPPORTGRAPH_DEMO_KB": raw}) is expected


def test_empty_or_unset_variable_is_no_value():
    assert env_defaults("max_rewrites", "int", {}) is None
    assert env_defaults("max_rewrites", "int", {"SUPPORTGRAPH_MAX_REWRITES": ""}) is None


def test_string_fields_are_taken_verbatim(monkeypatch):
    monkeypatch.setenv("SUPPORTGRAPH_ANSWER_MODELS", "openai:gpt-4.1-mini,offline")
    assert run_context().answer_models == "openai:gpt-4.1-mini,offline"


def test_database_and_qdrant_urls_use_their_plain_names(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db:5432/sg")
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    ctx = run_context()
    assert ctx.settings.database_url == "postgresql://u@db:5432/sg"
    assert ctx.settings.qdrant_url == "http://qdrant:6333"


def test_prefixed_url_variable_beats_the_plain_name(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://plain/db")
    monkeypatch.setenv("SUPPORTGRAPH_DATABASE_URL", "postgresql://prefixed/db")
    assert run_context().settings.database_url == "postgresql://prefixed/db"


@pytest.mark.parametrize(("name", "raw"), [
    ("SUPPORTGRAPH_MAX_REWRITES", "two"),
    ("SUPPORTGRAPH_MAX_REWRITES", "2.5"),
    ("SUPPORTGRAPH_INTENT_THRESHOLD", "high"),
    ("SUPPORTGRAPH_PLANNER_ENABLED", "maybe"),
])
def test_bad_value_raises_settings_error_naming_the_variable(monkeypatch, name, raw):
    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingsError) as info:
        run_context()
    assert name in str(info.value)
    assert repr(raw) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_env_name_convention():
    assert env_name("max_planner_steps") == "SUPPORTGRAPH_MAX_PLANNER_STEPS"
    for f in fields(Context):
        assert env_name(f.name) == "SUPPORTGRAPH_" + f.name.upper()


def test_every_field_can_be_set_from_its_variable(monkeypatch):
    samples = {"str": "custom", "int": "7", "float": "0.5", "bool": "false"}
    expected = {"str": "custom", "int": 7, "float": 0.5, "bool": False}
    for f in fields(Context):
        monkeypatch.setenv(env_name(f.name), samples[str(f.type)])
    ctx = run_context()
    for f in fields(Context):
        assert getattr(ctx, f.name) == expected[str(f.type)], f.name


def test_api_keys_are_read_but_never_context_fields(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("QDRANT_API_KEY", "qd-test")
    assert api_keys() == {"openai": "sk-test-openai", "anthropic": "sk-ant-test"}
    assert qdrant_api_key() == "qd-test"
    assert [f.name for f in fields(Context) if "key" in f.name.lower()] == []
    values = vars(Context())
    assert not any(v in ("sk-test-openai", "sk-ant-test", "qd-test") for v in values.values())


def test_api_keys_empty_when_unset():
    assert api_keys() == {}
    assert api_keys({"OPENAI_API_KEY": ""}) == {}
    assert api_keys({"ANTHROPIC_API_KEY": "a"}) == {"anthropic": "a"}
    assert qdrant_api_key() is None


def test_replace_applies_changes_and_keeps_the_rest():
    ctx = run_context(intent_threshold=0.6, max_rewrites=1).with_settings(Settings(home="/h"))
    other = ctx.replace(confidence_threshold=0.95)
    assert other is not ctx
    assert other.confidence_threshold == 0.95
    assert (other.settings.home, other.intent_threshold, other.max_rewrites) == ("/h", 0.6, 1)
    assert ctx.confidence_threshold == 0.8957  # the original is untouched
    with pytest.raises(TypeError):
        ctx.replace(no_such_setting=1)


def test_replace_values_are_not_overridden_by_env(monkeypatch):
    monkeypatch.setenv("SUPPORTGRAPH_MAX_REWRITES", "5")
    ctx = run_context(max_rewrites=1)
    assert ctx.replace(tone_threshold=0.5).max_rewrites == 1
    # An explicit replace() value is never overridden by the environment, even when it
    # happens to equal the field's default (documented in Context.replace).
    monkeypatch.setenv("SUPPORTGRAPH_PLANNER_ENABLED", "false")
    base = run_context()
    assert base.planner_enabled is False
    assert base.replace(planner_enabled=True).planner_enabled is True


def test_resources_follow_the_folder_a_relative_home_names(tmp_path, monkeypatch):
    from supportgraph.app.services import close_services, services_for

    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        monkeypatch.chdir(tmp_path / "a")
        def at(home: str):
            return services_for(Context().with_settings(Settings(home=home)).settings)

        first = at("state")
        assert at("state") is first  # remembered
        assert at(str(tmp_path / "a" / "state")) is first  # same folder
        monkeypatch.chdir(tmp_path / "b")
        other = at("state")  # same words, another folder
        assert other is not first
        assert other.settings.home_path.resolve() == tmp_path / "b" / "state"
    finally:
        close_services()


def test_the_workflow_context_reads_nothing_the_edge_completes_it(monkeypatch, isolated_env):
    """graph.context imports no app code: a bare Context has the schema's defaults and no
    Settings; the edge (run_context, or a root's bind) adds the deployment's."""
    monkeypatch.setenv("SUPPORTGRAPH_INTENT_THRESHOLD", "0.9")
    bare = Context()
    assert bare.intent_threshold == 0.85 and not bare.has_settings and not bare.complete
    with pytest.raises(RuntimeError, match="no deployment settings"):
        bare.settings  # noqa: B018
    done = run_context()
    assert done.complete and done.intent_threshold == 0.9
    assert done.settings.home == str(isolated_env)


def test_a_root_completes_a_request_context_and_explicit_values_win(monkeypatch, tmp_path):
    """What the LangGraph server hands a node: Context(**request JSON), nothing attached."""
    from supportgraph.app.services import Services

    monkeypatch.setenv("SUPPORTGRAPH_INTENT_THRESHOLD", "0.9")
    monkeypatch.setenv("SUPPORTGRAPH_MAX_REWRITES", "5")
    with Services(Settings(home=str(tmp_path / "deployment"), pii_salt="d" * 20)) as root:
        request = Context(**{"max_rewrites": 2, "tone_threshold": 0.5})
        ctx = root.bind(request)
        assert ctx.intent_threshold == 0.9  # the deployment's default
        assert (ctx.max_rewrites, ctx.tone_threshold) == (2, 0.5)  # the caller's, even = default
        assert ctx.settings is root.settings and ctx.pii_salt == "d" * 20
        assert root.bind(ctx) is ctx  # complete: nothing more to do
        assert not request.complete  # the caller's object is left alone
