"""API keys for the LangGraph server: each names a tenant and a role; only a hash is stored.

A key is 32 random bytes (base64url) behind a `sg_` prefix, shown once by `keys add`. The table
keeps its SHA-256: with that much entropy a slow password hash adds nothing, and every request
is one indexed lookup. Revoking sets `revoked_at`; the row stays, so `keys list` shows it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

ROLES = ("service", "reviewer", "admin")
"""service: runs tickets; reviewer: also resumes interrupts (decides reviews); admin: also
changes thread state directly and may set the intent model of a run."""
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""`last_used_at` is written at most this often per key (not once per request)."""


class KeyCommandError(ValueError):
    """A key command that cannot be done (bad tenant/role/name, a name already taken)."""


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def add_key(db: Any, tenant: str, role: str, name: str | None = None) -> dict[str, str]:
    """Create a key; returns {name, tenant, role, key}. The key is not stored, only its hash."""
    if not _TENANT.fullmatch(tenant or ""):
        raise KeyCommandError("--tenant must be 1-64 characters of A-Z a-z 0-9 _ . -")
    if role not in ROLES:
        raise KeyCommandError(f"--role must be one of {', '.join(ROLES)}")
    name = name if name is not None else f"{tenant}-{role}-{secrets.token_hex(3)}"
    if not _NAME.fullmatch(name):
        raise KeyCommandError("--name must be 1-64 characters of A-Z a-z 0-9 _ . -")
    key = "sg_" + secrets.token_urlsafe(32)
    inserted = db.execute(
        """INSERT INTO sg_api_keys (name, tenant, role, key_hash, created_at)
           VALUES (:name, :tenant, :role, :hash, :now) ON CONFLICT (name) DO NOTHING""",
        {"name": name, "tenant": tenant, "role": role, "hash": hash_key(key), "now": _now()})
    if not inserted:
        raise KeyCommandError(f"a key named {name!r} exists already; pick another name")
    return {"name": name, "tenant": tenant, "role": role, "key": key}


def list_keys(db: Any) -> list[dict[str, Any]]:
    """Every key's name, tenant, role, created, last used and revoked times (never the key)."""
    return db.fetchall(
        "SELECT name, tenant, role, created_at, last_used_at, revoked_at FROM sg_api_keys "
        "ORDER BY tenant, name")


def revoke_key(db: Any, name: str) -> bool:
    """Revoke a key by name; False when no live key has that name."""
    return db.execute(
        "UPDATE sg_api_keys SET revoked_at = :now WHERE name = :name AND revoked_at IS NULL",
        {"name": name, "now": _now()}) > 0


def identity_for(db: Any, key: str) -> dict[str, str] | None:
    """{tenant, role, name} of a live key, or None (missing, unknown or revoked)."""
    if not key or len(key) > 200:
        return None
    digest = hash_key(key)
    row = db.fetchone(
        "SELECT name, tenant, role FROM sg_api_keys WHERE key_hash = :h AND revoked_at IS NULL",
        {"h": digest})
    if row is None:
        return None
    now = datetime.now(UTC)
    db.execute(
        "UPDATE sg_api_keys SET last_used_at = :now WHERE key_hash = :h "
        "AND (last_used_at IS NULL OR last_used_at < :stale)",
        {"h": digest, "now": now.isoformat(timespec="seconds"),
         "stale": (now - LAST_USED_RESOLUTION).isoformat(timespec="seconds")})
    return {"tenant": row["tenant"], "role": row["role"], "name": row["name"]}


def live_key(db: Any, name: str) -> dict[str, str] | None:
    """{tenant, role, name} of the live key with that name (names are never reused), or None."""
    if not name or len(name) > 200:
        return None
    row = db.fetchone("SELECT name, tenant, role FROM sg_api_keys WHERE name = :n "
                      "AND revoked_at IS NULL", {"n": name})
    return {"tenant": row["tenant"], "role": row["role"], "name": row["name"]} if row else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
