"""OpenAI and Anthropic chat providers on the official SDKs, with failures mapped to our errors.

The SDKs' own retries are switched off (`max_retries=0`): `ModelChain` owns retries, backoff and
fallback, so one policy applies to every provider. API keys arrive as constructor arguments and
are never logged or shown in a repr; only `providers_from_env`, the edge helper, reads the
environment. The SDKs are imported, and their clients built, on first use: importing them costs
seconds and building a client about 0.1 s, which an offline run should never pay.
"""

from __future__ import annotations

import email.utils
import importlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from supportgraph.models.chat import (
    ChatRequest,
    ClientError,
    Completion,
    ConnectionFailed,
    InvalidOutput,
    Provider,
    ProviderError,
    RateLimited,
    ServerError,
    Timeout,
)

log = logging.getLogger(__name__)

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"
# Reasoning models reject a temperature other than the default.
_NO_TEMPERATURE_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_JSON_INSTRUCTION = (
    "\n\nReply with one JSON value only (no prose, no code fences) that matches this JSON "
    "Schema:\n{schema}"
)


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            log.debug("ignoring unparsable retry-after-ms header %r", millis)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            log.debug("ignoring unparsable retry-after header %r", value)
            return None
        return max(0.0, when - (time.time() if now is None else now))


def map_sdk_error(exc: Exception) -> ProviderError | None:
    """Translate an `openai` or `anthropic` SDK exception into a `ProviderError`.

    Returns None for anything else (a bug on our side must surface, not be retried).
    Both SDKs are generated from the same template and share their exception names.
    """
    sdk = sys.modules.get(type(exc).__module__.partition(".")[0])
    if sdk is not None and sdk.__name__ in ("openai", "anthropic"):
        if isinstance(exc, sdk.APITimeoutError):
            return Timeout(str(exc))
        if isinstance(exc, sdk.APIConnectionError):
            return ConnectionFailed(str(exc))
        if isinstance(exc, sdk.APIResponseValidationError):
            return InvalidOutput("malformed_response")
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            if status == 429:
                retry_after = parse_retry_after(exc.response.headers)
                return RateLimited(retry_after, "rate limited (HTTP 429)")
            if status == 408:
                return Timeout("request timeout (HTTP 408)")
            if status >= 500:
                return ServerError(status)
            return ClientError(status)
    if isinstance(exc, json.JSONDecodeError):  # what the SDKs raise on a non-JSON body
        return InvalidOutput("malformed_response")
    return None


def _call(create: Any, params: dict[str, Any], timeout: float) -> Any:
    """Make one SDK call, translating its failures into `ProviderError`s."""
    try:
        return create(**params, timeout=timeout)
    except Exception as exc:
        mapped = map_sdk_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


class _LazyClient:
    """Builds an SDK client on first use, once, thread-safely."""

    def __init__(self, module: str, **kwargs: Any) -> None:
        self._module = module
        self._kwargs = kwargs
        self._client: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    sdk = importlib.import_module(self._module)
                    factory = sdk.OpenAI if self._module == "openai" else sdk.Anthropic
                    self._client = factory(**self._kwargs)
        return self._client

    def __repr__(self) -> str:
        return f"<lazy {self._module} client>"


def _schema_name(schema: Mapping[str, Any]) -> str:
    """OpenAI wants a name matching ^[a-zA-Z0-9_-]{1,64}$ for a json_schema response format."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(schema.get("title") or "response")).strip("_")
    return (name or "response")[:64]


def _key_state(has_key: bool) -> str:
    return "<set>" if has_key else "<none>"


class OpenAIProvider:
    """Chat completions on OpenAI or any OpenAI-compatible server (vLLM, Ollama, ...)."""

    cacheable = True

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        name: str = "openai",
        organization: str | None = None,
        max_tokens_param: str = "max_completion_tokens",
        json_mode: str = "json_schema",
    ) -> None:
        if json_mode not in ("json_schema", "json_object", "prompt"):
            raise ValueError("json_mode must be 'json_schema', 'json_object' or 'prompt'")
        self.name = name
        self.base_url = base_url or OPENAI_DEFAULT_BASE_URL
        self.max_tokens_param = max_tokens_param
        self.json_mode = json_mode
        self._has_key = bool(api_key)
        # A placeholder key keeps the SDK from reading OPENAI_API_KEY itself; local
        # OpenAI-compatible servers accept any key, the real API answers 401 (-> http_4xx).
        self._client = _LazyClient(
            "openai",
            api_key=api_key or "no-key",
            base_url=self.base_url,
            organization=organization,
            max_retries=0,
        )

    def __repr__(self) -> str:
        return (
            f"OpenAIProvider(name={self.name!r}, base_url={self.base_url!r}, "
            f"api_key={_key_state(self._has_key)})"
        )

    def _params(self, request: ChatRequest, model: str) -> dict[str, Any]:
        system = request.system
        params: dict[str, Any] = {"model": model, self.max_tokens_param: request.max_tokens}
        if not model.startswith(_NO_TEMPERATURE_PREFIXES):
            params["temperature"] = request.temperature
        if request.json_schema is not None:
            if self.json_mode == "json_schema":
                params["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": _schema_name(request.json_schema),
                        "schema": request.json_schema,
                        "strict": False,
                    },
                }
            elif self.json_mode == "json_object":
                params["response_format"] = {"type": "json_object"}
            if self.json_mode != "json_schema":
                system += _JSON_INSTRUCTION.format(schema=json.dumps(request.json_schema))
        params["messages"] = [
            {"role": "system", "content": system},
            {"role": "user", "content": request.user},
        ]
        return params

    def complete(self, request: ChatRequest, model: str, *, timeout: float) -> Completion:
        """One chat-completions call; raises `ProviderError` subclasses on failure."""
        client = self._client.get()
        response = _call(client.chat.completions.create, self._params(request, model), timeout)
        if not getattr(response, "choices", None):
            raise InvalidOutput("malformed_response")
        choice = response.choices[0]
        message = choice.message
        text = message.content or ""
        usage = response.usage
        if usage is None:  # some OpenAI-compatible servers omit usage: estimate, never bill 0
            log.debug("%s returned no usage for %s; estimating tokens", self.name, model)
            input_tokens = (len(request.system) + len(request.user)) // 4 + 1
            output_tokens = len(text) // 4 + 1
        else:
            input_tokens = int(usage.prompt_tokens or 0)
            output_tokens = int(usage.completion_tokens or 0)
        return Completion(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            truncated=choice.finish_reason == "length",
            refusal=getattr(message, "refusal", None) or None,
        )


class AnthropicProvider:
    """Claude models through the Messages API."""

    cacheable = True

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        name: str = "anthropic",
    ) -> None:
        self.name = name
        self.base_url = base_url or ANTHROPIC_DEFAULT_BASE_URL
        self._has_key = bool(api_key)
        # As for OpenAI: an explicit placeholder stops the SDK reading the environment.
        self._client = _LazyClient(
            "anthropic", api_key=api_key or "no-key", base_url=self.base_url, max_retries=0
        )

    def __repr__(self) -> str:
        return (
            f"AnthropicProvider(name={self.name!r}, base_url={self.base_url!r}, "
            f"api_key={_key_state(self._has_key)})"
        )

    def _params(self, request: ChatRequest, model: str) -> dict[str, Any]:
        system = request.system
        if request.json_schema is not None:
            # Instruct, then validate in the chain: works for every Claude model and proxy.
            system += _JSON_INSTRUCTION.format(schema=json.dumps(request.json_schema))
        # No temperature: the current Messages API (anthropic SDK 2.x) no longer accepts
        # sampling parameters; the request's temperature still keys the cache.
        return {
            "model": model,
            "max_tokens": request.max_tokens,
            "system": system,
            "messages": [{"role": "user", "content": request.user}],
        }

    def complete(self, request: ChatRequest, model: str, *, timeout: float) -> Completion:
        """One Messages API call; raises `ProviderError` subclasses on failure."""
        client = self._client.get()
        response = _call(client.messages.create, self._params(request, model), timeout)
        blocks = getattr(response, "content", None)
        if blocks is None:
            raise InvalidOutput("malformed_response")
        text = "".join(getattr(b, "text", "") for b in blocks if getattr(b, "type", "") == "text")
        usage = response.usage
        input_tokens = sum(
            int(getattr(usage, field, 0) or 0)
            for field in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        return Completion(
            text=text,
            input_tokens=input_tokens,
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            truncated=response.stop_reason == "max_tokens",
            refusal=(text or "refused") if response.stop_reason == "refusal" else None,
        )


def providers_from_env(environ: Mapping[str, str]) -> dict[str, Provider]:
    """Edge helper: the remote providers configured in `environ`, by name.

    `openai` is configured by `OPENAI_API_KEY` or by `OPENAI_BASE_URL` alone (a local
    OpenAI-compatible server needs no key); `anthropic` by `ANTHROPIC_API_KEY` (with
    `ANTHROPIC_BASE_URL` honoured). The offline provider is not included.
    """
    providers: dict[str, Provider] = {}
    openai_key = environ.get("OPENAI_API_KEY") or None
    openai_url = environ.get("OPENAI_BASE_URL") or None
    if openai_key or openai_url:
        providers["openai"] = OpenAIProvider(api_key=openai_key, base_url=openai_url)
    anthropic_key = environ.get("ANTHROPIC_API_KEY") or None
    if anthropic_key:
        providers["anthropic"] = AnthropicProvider(
            api_key=anthropic_key, base_url=environ.get("ANTHROPIC_BASE_URL") or None
        )
    log.debug("remote chat providers configured: %s", ", ".join(providers) or "none")
    return providers
