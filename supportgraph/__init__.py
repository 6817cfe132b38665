"""supportgraph: the app edge (`supportgraph.app`) and model providers (`supportgraph.models`).

The workflow core lives in the top-level `graph`, `nodes` and `retrieval` packages;
see docs/architecture.md for the layers and their rules.
"""
