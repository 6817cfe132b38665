"""Who is signed in: the ONE place that turns an API key into an identity.

This is a development implementation. It knows the keys it was given (by default one key from
`SUPPORTGRAPH_INBOX_DEV_KEY`, a reviewer of tenant `default`); the tenant-scoped key store
(`supportgraph keys add`) replaces `identity_for_key` at merge, and nothing else in the inbox
reads keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("service", "reviewer", "admin")
DEFAULT_TENANT = "default"
"""The tenant of tickets that name none."""


@dataclass(frozen=True)
class Identity:
    """A signed-in key's owner: their tenant, role and name (recorded on decisions)."""

    tenant: str
    role: str
    name: str

    @property
    def can_review(self) -> bool:
        """Reviewers and admins decide; service keys only run tickets."""
        return self.role in ("reviewer", "admin")


@dataclass
class KeyStore:
    """Known keys by their SHA-256 hash (the key itself is never kept)."""

    by_hash: dict[str, Identity]

    def add(self, key: str, identity: Identity) -> None:
        """Register a key (development and tests)."""
        self.by_hash[_digest(key)] = identity


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def dev_key_store(environ: Mapping[str, str] | None = None) -> KeyStore:
    """The development store: `SUPPORTGRAPH_INBOX_DEV_KEY` as a reviewer of tenant `default`.

    `SUPPORTGRAPH_INBOX_DEV_TENANT`, `_DEV_ROLE` and `_DEV_NAME` change that one identity.
    """
    environ = os.environ if environ is None else environ
    store = KeyStore({})
    key = environ.get("SUPPORTGRAPH_INBOX_DEV_KEY") or ""
    if key:
        role = environ.get("SUPPORTGRAPH_INBOX_DEV_ROLE") or "reviewer"
        store.add(key, Identity(tenant=environ.get("SUPPORTGRAPH_INBOX_DEV_TENANT")
                                or DEFAULT_TENANT,
                                role=role if role in ROLES else "reviewer",
                                name=environ.get("SUPPORTGRAPH_INBOX_DEV_NAME") or "dev"))
    return store


def identity_for_key(store: KeyStore, key: str | None) -> Identity | None:
    """The identity of an API key, or None for an unknown, empty or oversized key."""
    if not key or len(key) > 512:
        return None
    digest = _digest(key)
    for known, identity in store.by_hash.items():
        if hmac.compare_digest(known, digest):
            return identity
    return None
