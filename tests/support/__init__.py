"""Helpers the tests and benchmarks share: a throwaway Postgres server and a fake model-provider
HTTP server."""
