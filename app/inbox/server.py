"""The inbox mounted on the LangGraph server (`"http": {"app": "./app/inbox/server.py:app"}`).

Threads live in the server's checkpointer, so they are read and resumed through the server's
own API; our review, audit and outbox tables are in the database of `SUPPORTGRAPH_HOME` /
`DATABASE_URL`, opened on the first request.
"""

from __future__ import annotations

from app.inbox.backend import ServerBackend
from app.inbox.web import create_app
from app.settings import inbox_settings


def _backend() -> ServerBackend:
    from graph.context import Context
    from graph.resources import get_resources

    ctx = Context()
    return ServerBackend(get_resources(ctx).db, pii_salt=ctx.pii_salt)


app = create_app(_backend, inbox_settings())
