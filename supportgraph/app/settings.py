"""The one place that reads the environment.

`Settings` holds what a deployment decides and a run must never choose: where the data lives
(home, database URL, Qdrant URL), the salt of redaction hashes and the inbox's signing
secret. The deployment's per-run defaults (`SUPPORTGRAPH_<CONTEXT FIELD>`) are read here too
(`run_defaults`) and applied by the edge to each run's `Context`. Provider API keys
are not Context fields: they are read here and handed straight to the provider clients, so they
never reach state, checkpoints or audit rows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from graph.settings import Settings as Settings
from graph.settings import SettingsError as SettingsError

if TYPE_CHECKING:
    from graph.context import Context

# Fields whose conventional variable has no SUPPORTGRAPH_ prefix.
_PLAIN_NAMES = {"database_url": "DATABASE_URL", "qdrant_url": "QDRANT_URL"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def read_settings(environ: Mapping[str, str] | None = None, **explicit: str) -> Settings:
    """Settings from the environment; `explicit` values win over it.

    Variables: `SUPPORTGRAPH_HOME`, `DATABASE_URL`, `QDRANT_URL` (the `SUPPORTGRAPH_`
    prefixed URL names win), `SUPPORTGRAPH_PII_SALT` and `SUPPORTGRAPH_INBOX_SECRET`.
    """
    environ = os.environ if environ is None else environ
    values = {}
    for name in ("home", "database_url", "qdrant_url", "pii_salt", "inbox_secret"):
        raw = environ.get(env_name(name))
        if not raw and name in _PLAIN_NAMES:
            raw = environ.get(_PLAIN_NAMES[name])
        if raw:
            values[name] = raw
    values.update({k: v for k, v in explicit.items() if v is not None})
    return Settings(**values)


def env_name(field_name: str) -> str:
    """The `SUPPORTGRAPH_*` variable for a Context field."""
    return f"SUPPORTGRAPH_{field_name.upper()}"


def run_defaults(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The deployment's per-run defaults: every Context field its variable sets, converted."""
    from dataclasses import fields

    from graph.context import Context

    found = {f.name: env_defaults(f.name, f.type, environ) for f in fields(Context)}
    return {name: value for name, value in found.items() if value is not None}


def run_context(environ: Mapping[str, str] | None = None, **explicit: Any) -> Context:
    """A complete run Context for what the edge starts itself (CLI, evals, the inbox).

    `explicit` values win; fields left out take the deployment's defaults, and the deployment
    Settings are attached (all read from the environment, here).
    """
    from graph.context import Context

    return (Context(**explicit).with_defaults(run_defaults(environ))
            .with_settings(read_settings(environ)))


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


_REMOTE_NAMES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")


def remote_provider_key(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The variables that configure the remote providers (their clients are rebuilt on change)."""
    environ = os.environ if environ is None else environ
    return tuple(environ.get(n, "") for n in _REMOTE_NAMES)


def remote_providers(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The OpenAI/Anthropic providers configured by the environment (new clients each call).

    `supportgraph.app.services.Services` keeps them.
    """
    from supportgraph.models.providers_remote import providers_from_env

    return providers_from_env(os.environ if environ is None else environ)


def langgraph_api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """`LANGGRAPH_API_KEY`: the key the CLI sends to a LangGraph server (`review sweep`)."""
    environ = os.environ if environ is None else environ
    return environ.get("LANGGRAPH_API_KEY") or None


def auth_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether `SUPPORTGRAPH_AUTH=off` (development only: the server checks no API keys)."""
    environ = os.environ if environ is None else environ
    return environ.get("SUPPORTGRAPH_AUTH", "").strip().lower() in ("off", "0", "false", "no")


def log_level_name(environ: Mapping[str, str] | None = None) -> str:
    """`SUPPORTGRAPH_LOG_LEVEL` (upper-cased, stripped), WARNING when unset."""
    environ = os.environ if environ is None else environ
    return (environ.get("SUPPORTGRAPH_LOG_LEVEL") or "WARNING").strip().upper()


def otel_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """Where traces go: `OTEL_EXPORTER_OTLP_ENDPOINT` (or its `_TRACES_` variant); None: off."""
    environ = os.environ if environ is None else environ
    return (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None)


def otel_service_name(environ: Mapping[str, str] | None = None) -> str:
    """`OTEL_SERVICE_NAME`, else `supportgraph`: the service our spans are recorded under."""
    environ = os.environ if environ is None else environ
    return environ.get("OTEL_SERVICE_NAME") or "supportgraph"


def shared_data_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """`SUPPORTGRAPH_SHARED_DATA`: where the development datasets are (evals and benchmarks)."""
    environ = os.environ if environ is None else environ
    return environ.get("SUPPORTGRAPH_SHARED_DATA") or None


def inbox_dev_identity(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`SUPPORTGRAPH_INBOX_DEV_KEY` and its `_DEV_TENANT`, `_DEV_ROLE`, `_DEV_NAME` ("" unset)."""
    environ = os.environ if environ is None else environ
    return {part: environ.get(f"SUPPORTGRAPH_INBOX_DEV_{part.upper()}") or ""
            for part in ("key", "tenant", "role", "name")}


def child_environment(**overrides: str) -> dict[str, str]:
    """The environment for a benchmark's child `supportgraph` process.

    This process's environment minus our own settings (`SUPPORTGRAPH_*`, `DATABASE_URL`), plus
    `overrides`.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SUPPORTGRAPH_") and k != "DATABASE_URL"}
    env.update(overrides)
    return env


def apply_library_defaults(*, quiet: bool = False,
                           environ: MutableMapping[str, str] | None = None) -> None:
    """Environment defaults the ML libraries read; a value the user set is kept.

    The model weights ship inside a Python package, so Hugging Face never needs the network
    (offline). OpenMP threads that spin while waiting turn a busy CPU into a disaster
    (measured on a loaded 2-core box: one query 984 ms spinning, 65 ms passive); OpenMP reads
    this when torch loads, so call this before the first model load. `quiet` hides model
    loading progress bars (noise on a CLI that prints one line per ticket).
    """
    environ = os.environ if environ is None else environ
    environ.setdefault("HF_HUB_OFFLINE", "1")
    environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if quiet:
        environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def price_table(environ: Mapping[str, str] | None = None) -> Any:
    """The shipped price table, merged with the user's `SUPPORTGRAPH_PRICES` file if set."""
    from supportgraph.models.prices import load_prices

    environ = os.environ if environ is None else environ
    return load_prices(environ.get("SUPPORTGRAPH_PRICES") or None)


class DeliverySettings:
    """Where and how replies are delivered (`supportgraph deliver`), read from the environment.

    SMTP: `SUPPORTGRAPH_SMTP_URL=smtp://user:pass@host:port?starttls=true` and
    `SUPPORTGRAPH_SMTP_FROM`. Webhook: `SUPPORTGRAPH_WEBHOOK_URL` (https, or http to a loopback
    address) and `SUPPORTGRAPH_WEBHOOK_SECRET`. Retries: `SUPPORTGRAPH_DELIVERY_MAX_ATTEMPTS`
    (5) and `SUPPORTGRAPH_DELIVERY_BACKOFF_SECONDS` (30, doubled after each failure).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        from urllib.parse import parse_qs, unquote, urlsplit

        environ = os.environ if environ is None else environ
        self.smtp: dict[str, Any] | None = None
        raw = environ.get("SUPPORTGRAPH_SMTP_URL") or ""
        if raw:
            url = urlsplit(raw)
            try:
                port = url.port
            except ValueError:
                port = -1
            if url.scheme not in ("smtp", "smtps") or not url.hostname or port == -1:
                raise SettingsError("SUPPORTGRAPH_SMTP_URL must look like "
                                    "smtp://user:pass@host:587?starttls=true")
            query = parse_qs(url.query)
            starttls = (query.get("starttls") or ["false"])[0].lower()
            if starttls not in _TRUE | _FALSE:
                raise SettingsError("SUPPORTGRAPH_SMTP_URL: starttls must be true or false")
            sender = environ.get("SUPPORTGRAPH_SMTP_FROM") or ""
            if "@" not in sender:
                raise SettingsError("set SUPPORTGRAPH_SMTP_FROM to the sender address "
                                    "(needed with SUPPORTGRAPH_SMTP_URL)")
            self.smtp = {"host": url.hostname, "port": port or (465 if url.scheme == "smtps"
                                                                else 25),
                         "ssl": url.scheme == "smtps", "starttls": starttls in _TRUE,
                         "user": unquote(url.username or "") or None,
                         "password": unquote(url.password or "") or None, "from": sender}
        self.webhook: dict[str, str] | None = None
        hook = environ.get("SUPPORTGRAPH_WEBHOOK_URL") or ""
        if hook:
            url = urlsplit(hook)
            loopback = url.hostname in ("localhost", "127.0.0.1", "::1")
            if not (url.scheme == "https" or (url.scheme == "http" and loopback)):
                raise SettingsError("SUPPORTGRAPH_WEBHOOK_URL must be https:// "
                                    "(http only to localhost)")
            secret = environ.get("SUPPORTGRAPH_WEBHOOK_SECRET") or ""
            if len(secret) < 16:
                raise SettingsError("set SUPPORTGRAPH_WEBHOOK_SECRET (16 characters or more) "
                                    "to sign webhook deliveries")
            self.webhook = {"url": hook, "secret": secret}
        self.max_attempts = _bounded(environ, "SUPPORTGRAPH_DELIVERY_MAX_ATTEMPTS", 5, 1, 100)
        self.backoff_seconds = _bounded(environ, "SUPPORTGRAPH_DELIVERY_BACKOFF_SECONDS", 30.0,
                                        0.0, 86400.0)
        self.aes_key = checkpoint_aes_key(environ)

    @property
    def configured(self) -> bool:
        """Whether any transport is set up."""
        return bool(self.smtp or self.webhook)


def _bounded(environ: Mapping[str, str], name: str, default: Any, low: Any, high: Any) -> Any:
    raw = environ.get(name)
    if not raw:
        return default
    if len(raw) > 32:
        raise SettingsError(f"{name} is not a valid {type(default).__name__}")
    value = _convert(name, raw, type(default).__name__)
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} must be between {low} and {high}")
    return value


def inbox_settings(db: Any, settings: Settings, pii_salt: str,
                   environ: Mapping[str, str] | None = None, dev_keys: bool = True) -> Any:
    """The review inbox's settings: its key store and the secret that signs its sessions.

    Keys: those of `supportgraph keys add` in `db`. With `dev_keys` (`supportgraph serve`),
    `SUPPORTGRAPH_INBOX_DEV_KEY` (one development reviewer, no database) replaces them; the
    inbox mounted on the LangGraph server ignores it, since the server only knows database keys.
    The secret is `supportgraph.app.forwarding.signing_secret` (`SUPPORTGRAPH_INBOX_SECRET`, else
    derived
    from the home's PII salt), so sessions survive restarts and every process of a deployment
    agrees on it.
    """
    from supportgraph.app.forwarding import signing_secret
    from supportgraph.app.inbox.identity import DatabaseKeys, dev_key_store
    from supportgraph.app.inbox.web import InboxSettings

    environ = os.environ if environ is None else environ
    secure = (environ.get("SUPPORTGRAPH_INBOX_SECURE_COOKIES") or "").strip().lower() in _TRUE
    keys = (dev_key_store(environ) if dev_keys and environ.get("SUPPORTGRAPH_INBOX_DEV_KEY")
            else DatabaseKeys(db))
    return InboxSettings(keys=keys, secret=signing_secret(settings.inbox_secret, pii_salt),
                         secure_cookies=secure)
