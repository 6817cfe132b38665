"""The configuration an eval runs: the team's `Context` plus overrides, in an isolated home.

Overrides come from TOML files (a flat table of `Context` fields, or a `[context]` table) and
`key=value` strings, applied in the order given. Where the workflow keeps its data (`home`,
`database_url`, `qdrant_url`) is not overridable: the eval always runs in its own home.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from graph.context import Context
from supportgraph.app.settings import SettingsError, env_defaults, env_name

LOCATION_FIELDS = ("home", "database_url", "qdrant_url", "pii_salt")


class ConfigError(ValueError):
    """An override the eval cannot apply (unknown field, wrong type, unreadable file)."""


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in fields(Context)}


def _check(name: str, value: Any, source: str) -> Any:
    types = _field_types()
    if name in LOCATION_FIELDS:
        raise ConfigError(f"{source}: {name} cannot be overridden: an eval always runs in its "
                          "own isolated home and database")
    if name not in types:
        raise ConfigError(f"{source}: unknown setting {name!r}; known: {', '.join(types)}")
    kind = types[name]
    if isinstance(value, str):
        try:
            return env_defaults(name, kind, {env_name(name): value}) if value != "" else ""
        except SettingsError:
            raise ConfigError(f"{source}: {name}={value!r} is not a valid {kind}") from None
    ok = {"float": isinstance(value, int | float) and not isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "bool": isinstance(value, bool)}.get(kind, False)
    if not ok:
        raise ConfigError(f"{source}: {name} must be a {kind}, got {value!r:.40}")
    return float(value) if kind == "float" else value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn `--config` arguments (TOML files or key=value) into Context field values."""
    overrides: dict[str, Any] = {}
    for item in items:
        if "=" in item and not item.endswith(".toml"):
            name, _, raw = item.partition("=")
            name = name.strip()
            overrides[name] = _check(name, raw.strip(), f"--config {item!r:.60}")
            continue
        path = Path(item)
        if not path.is_file():
            raise ConfigError(f"--config {item}: no such file (and not key=value)")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        table = data.get("context", data)
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [context] must be a table")
        for name, value in table.items():
            overrides[name] = _check(name, value, str(path))
    model_dir = overrides.get("intent_model_dir")
    if model_dir and not Path(model_dir).is_dir():
        raise ConfigError(f"intent_model_dir {model_dir}: no such directory")
    return overrides


def team_intent_model(base: Context) -> str:
    """The intent model the team's runs use, to load read-only ('' if none is trained yet)."""
    from supportgraph.models.intent import default_model_dir
    from supportgraph.models.intent_model import META_FILE

    if base.intent_model_dir:
        return base.intent_model_dir
    default = default_model_dir(base.home_path)
    return str(default.resolve()) if (default / META_FILE).is_file() else ""


def eval_context(base: Context, home: Path, overrides: dict[str, Any]) -> Context:
    """The context of the eval's runs: team settings, overrides, and the isolated locations.

    Learning is off unless asked for: a case learned from one eval ticket (or from a gold
    reference answer given in review) would leak into the next ticket, and the result would
    depend on the order threads happen to finish in.
    """
    settings = {"intent_model_dir": team_intent_model(base), "learn_enabled": False,
                **overrides}
    from supportgraph.app.settings import Settings

    isolated = Settings(home=str(home), pii_salt=base.settings.pii_salt)
    return base.replace(**settings).with_settings(isolated)
