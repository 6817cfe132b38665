"""Process-wide observability set-up, done once at the edge (CLI, runner), never in nodes.

Logs: each step writes one JSON line to the `supportgraph.steps` logger (`graph.instrument`);
they show with `supportgraph -v` or `SUPPORTGRAPH_LOG_LEVEL=INFO`, and are quiet otherwise.
Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (and the `otel` extra is installed), steps
become OpenTelemetry spans exported over OTLP/HTTP; the exporter reads the standard `OTEL_*`
variables itself. LangSmith tracing is LangGraph's own (`LANGSMITH_TRACING`), nothing here.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping

from supportgraph.app.settings import (
    SettingsError,
    log_level_name,
    otel_endpoint,
    otel_service_name,
)

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_lock = threading.Lock()
_tracing: dict[str, object] = {}
"""The endpoint OpenTelemetry's global tracer provider was set for: that provider can be set
once per process, so this is process state by nature, not a resource of a root."""


def log_level(verbose: bool, environ: Mapping[str, str] | None = None) -> int:
    """INFO with `-v`, else `SUPPORTGRAPH_LOG_LEVEL`, else WARNING (quiet)."""
    if verbose:
        return logging.INFO
    raw = log_level_name(environ)
    if raw not in _LEVELS:
        raise SettingsError(f"SUPPORTGRAPH_LOG_LEVEL={raw[:20]!r} is not one of {_LEVELS}")
    return getattr(logging, raw)


def configure_logging(verbose: bool, environ: Mapping[str, str] | None = None) -> None:
    """Log to stderr, one message per line (step lines are JSON objects)."""
    logging.basicConfig(level=log_level(verbose, environ), format="%(message)s",
                        stream=sys.stderr)


def configure_tracing(environ: Mapping[str, str] | None = None) -> bool:
    """Install an OTLP/HTTP tracer provider once if `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

    Returns whether tracing is on. Without the `otel` extra this is a clear error, not a
    silent no-op: the operator asked for traces.
    """
    endpoint = otel_endpoint(environ)
    if not endpoint:
        return False
    with _lock:
        if _tracing.get("endpoint") == endpoint:
            return True
        try:
            from opentelemetry import trace
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise SettingsError("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not "
                                "installed: pip install 'supportgraph[otel]'") from None
        if _tracing:  # the global provider can be set once per process
            return True
        provider = TracerProvider(resource=Resource.create(
            {"service.name": otel_service_name(environ)}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)  # flushed at exit by the provider's atexit hook
        _tracing.update(endpoint=endpoint, provider=provider)
        return True
