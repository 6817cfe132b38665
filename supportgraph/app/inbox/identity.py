"""Who is signed in: the ONE place that turns an API key into an identity.

Keys are the tenant-scoped keys of `supportgraph keys add` (`DatabaseKeys`: only their hashes
are stored, revoked keys are refused). A session remembers the key's name, never the key, and
is re-checked by that name on every request, so revoking a key ends its sessions at once.
`KeyStore` holds keys given in process: one development key from `SUPPORTGRAPH_INBOX_DEV_KEY`,
and tests; nothing else in the inbox reads keys.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    from supportgraph.app.settings import inbox_dev_identity

    store = KeyStore({})
    dev = inbox_dev_identity(environ)
    if dev["key"]:
        role = dev["role"] or "reviewer"
        store.add(dev["key"], Identity(tenant=dev["tenant"] or DEFAULT_TENANT,
                                       role=role if role in ROLES else "reviewer",
                                       name=dev["name"] or "dev"))
    return store


@dataclass
class DatabaseKeys:
    """The keys of `supportgraph keys` in our database (the same ones the LangGraph server uses)."""

    db: Any

    def by_name(self, name: str) -> Identity | None:
        """The live (not revoked) key of that name: a session is re-checked on every request."""
        from supportgraph.app.keys import live_key

        found = live_key(self.db, name)
        return Identity(tenant=found["tenant"], role=found["role"], name=found["name"]) \
            if found else None

    def has_reviewers(self) -> bool:
        """Whether any active key may decide reviews (else nobody can sign in usefully)."""
        return bool(self.db.fetchone(
            "SELECT 1 AS x FROM sg_api_keys WHERE revoked_at IS NULL "
            "AND role IN ('reviewer', 'admin')"))


def identity_for_key(store: KeyStore | DatabaseKeys, key: str | None) -> Identity | None:
    """The identity of an API key, or None for an unknown, revoked, empty or oversized key."""
    if not key or len(key) > 512:
        return None
    if isinstance(store, DatabaseKeys):
        from supportgraph.app.keys import identity_for

        found = identity_for(store.db, key)
        return Identity(tenant=found["tenant"], role=found["role"], name=found["name"]) \
            if found else None
    digest = _digest(key)
    for known, identity in store.by_hash.items():
        if hmac.compare_digest(known, digest):
            return identity
    return None


def session_identity(store: KeyStore | DatabaseKeys, tenant: str, name: str) -> Identity | None:
    """The identity behind a signed-in session (tenant and key name), if that key still works.

    Key names are unique for good (a revoked key keeps its row), so a name names one key; its
    role is read afresh, so a key changed to `service` can no longer decide.
    """
    if not name or len(name) > 200:
        return None
    if isinstance(store, DatabaseKeys):
        found = store.by_name(name)
    else:
        found = next((i for i in store.by_hash.values()
                      if i.name == name and i.tenant == tenant and i.can_review), None)
    return found if found and found.tenant == tenant else None
