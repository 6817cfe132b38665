"""The review inbox: server-rendered pages for the tickets waiting for a human.

`supportgraph.app.inbox.web.create_app` builds the Starlette app;
`supportgraph.app.inbox.server:app` is the one
`langgraph.json` mounts on the LangGraph server, and `supportgraph serve` runs it on its own.
"""
