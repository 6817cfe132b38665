"""The inbox mounted on the LangGraph server (`langgraph.json`: "http" names this `app`).

`langgraph dev` (or any LangGraph server started from `langgraph.json`) then serves `/inbox`
beside its API. Threads live in the server's checkpointer, so they are read and resumed through
the server's own API, as the signed-in reviewer (app/forwarding.py); our review, audit, outbox
and key tables are in the database of `SUPPORTGRAPH_HOME` / `DATABASE_URL`, opened by the first
request. Reviewers sign in with the same keys the API takes (`supportgraph keys add`).

The server's custom auth does not guard these routes (`enable_custom_route_auth` stays off):
a browser holds a session cookie, not an API key, so the inbox checks its own sign-in, and
every API call it makes is then checked by app/auth.py as that reviewer.
"""

from __future__ import annotations

from typing import Any

from supportgraph.app.inbox.backend import ServerBackend
from supportgraph.app.inbox.web import InboxSettings, create_app


def _resources() -> tuple[Any, Any]:
    """The server's own settings (from its environment, never a request's) with the salt."""
    from supportgraph.app.services import run_services
    from supportgraph.app.settings import run_context

    ctx = run_context()
    res = run_services(ctx)
    return res.with_salt(ctx).settings, res


def _settings() -> InboxSettings:
    from supportgraph.app.settings import inbox_settings

    settings, res = _resources()
    return inbox_settings(res.db, settings, settings.pii_salt, dev_keys=False)


def _backend() -> ServerBackend:
    from supportgraph.app.forwarding import signing_secret

    settings, res = _resources()
    return ServerBackend(res.db, secret=signing_secret(settings.inbox_secret, settings.pii_salt),
                         pii_salt=settings.pii_salt)


app = create_app(_backend, _settings)
