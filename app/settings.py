"""The one place that reads the environment.

`Context` asks here for a default it was not given explicitly. Provider API keys are not Context
fields: they are read here and handed straight to the provider clients, so they never reach
state, checkpoints or audit rows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# Fields whose conventional variable has no SUPPORTGRAPH_ prefix.
_PLAIN_NAMES = {"database_url": "DATABASE_URL", "qdrant_url": "QDRANT_URL"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """An environment variable that cannot be used as the setting it names."""


def env_name(field_name: str) -> str:
    """The `SUPPORTGRAPH_*` variable for a Context field."""
    return f"SUPPORTGRAPH_{field_name.upper()}"


def env_defaults(
    field_name: str, field_type: Any, environ: Mapping[str, str] | None = None
) -> Any:
    """The environment's value for a Context field, converted to its type, or None if unset."""
    environ = os.environ if environ is None else environ
    raw = environ.get(env_name(field_name))
    if raw is None and field_name in _PLAIN_NAMES:
        raw = environ.get(_PLAIN_NAMES[field_name])
    if raw is None or raw == "":
        return None
    return _convert(env_name(field_name), raw, str(field_type))


def _convert(name: str, raw: str, type_name: str) -> Any:
    try:
        if type_name in ("float", "<class 'float'>"):
            return float(raw)
        if type_name in ("int", "<class 'int'>"):
            return int(raw)
        if type_name in ("bool", "<class 'bool'>"):
            if raw.strip().lower() in _TRUE:
                return True
            if raw.strip().lower() in _FALSE:
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {type_name}") from None
    return raw


def api_keys(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Provider API keys present in the environment, by provider name."""
    environ = os.environ if environ is None else environ
    keys = {}
    if environ.get("OPENAI_API_KEY"):
        keys["openai"] = environ["OPENAI_API_KEY"]
    if environ.get("ANTHROPIC_API_KEY"):
        keys["anthropic"] = environ["ANTHROPIC_API_KEY"]
    return keys


def qdrant_api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The Qdrant server API key, if one is set (never stored in Context)."""
    environ = os.environ if environ is None else environ
    return environ.get("QDRANT_API_KEY") or None


def checkpoint_aes_key(environ: Mapping[str, str] | None = None) -> str | None:
    """LangGraph's `LANGGRAPH_AES_KEY`: when set, checkpoints are encrypted at rest."""
    environ = os.environ if environ is None else environ
    return environ.get("LANGGRAPH_AES_KEY") or None


_remote_cache: dict[tuple, Any] = {}


def remote_providers(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The OpenAI/Anthropic providers configured by the environment (built once per setting)."""
    from models.providers_remote import providers_from_env

    environ = os.environ if environ is None else environ
    names = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
    key = tuple(environ.get(n, "") for n in names)
    if key not in _remote_cache:
        _remote_cache.clear()
        _remote_cache[key] = providers_from_env(environ)
    return _remote_cache[key]


def price_table(environ: Mapping[str, str] | None = None) -> Any:
    """The shipped price table, merged with the user's `SUPPORTGRAPH_PRICES` file if set."""
    from models.prices import load_prices

    environ = os.environ if environ is None else environ
    return load_prices(environ.get("SUPPORTGRAPH_PRICES") or None)


def inbox_settings(environ: Mapping[str, str] | None = None) -> Any:
    """The review inbox's settings: its key store and the secret that signs session cookies.

    Without `SUPPORTGRAPH_INBOX_SECRET` a random secret is made, so sessions end when the
    process does (set it when several processes serve the inbox).
    """
    import secrets

    from app.inbox.identity import dev_key_store
    from app.inbox.web import InboxSettings

    environ = os.environ if environ is None else environ
    secure = (environ.get("SUPPORTGRAPH_INBOX_SECURE_COOKIES") or "").strip().lower() in _TRUE
    return InboxSettings(keys=dev_key_store(environ),
                         secret=environ.get("SUPPORTGRAPH_INBOX_SECRET")
                         or secrets.token_urlsafe(32), secure_cookies=secure)
