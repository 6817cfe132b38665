"""Reviewer tokens: the inbox on the LangGraph server calls its API as the signed-in reviewer.

Why a token, and not the two obvious ways:
- The SDK's in-process client (`langgraph_sdk.get_client()` with no URL) enters the server at
  root path `/noauth`, which skips the auth middleware and every `@auth.on` handler of
  app/auth.py: no tenant filter, no role check, no redaction of the resume, and no
  `langgraph_auth_user`, so the graph could not tell who decided.
- Forwarding the reviewer's own key would mean keeping it after sign-in: in a cookie (readable
  by anyone who holds it, and every proxy log), or in server memory (lost on restart, unknown to
  the server's other workers). The inbox keeps no key: a session holds the key's *name*.

So every API call the inbox makes carries a token minted for that one call: HMAC-SHA256 over
{key name, tenant, thread id, expiry}, keyed by the deployment secret (`Settings.inbox_secret`,
else derived from the home's PII salt; never anything a run or a request can choose). It lives
`TTL_SECONDS` and opens only that thread's routes. It never leaves the server process (the
in-process transport carries it; the browser never sees it). app/auth.py verifies it and then
re-reads the key by name, so a revoked key stops at once, and the caller *is* that key: the same
tenant filter, role checks and recorded reviewer (`api:<key name>`) as a direct API call with
the key. A token never grants more than its key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from supportgraph.app.settings import SettingsError

HEADER = "x-supportgraph-reviewer-token"
TTL_SECONDS = 60
MAX_TOKEN_CHARS = 1024
MIN_SECRET_CHARS = 16
_LABEL = b"supportgraph/inbox-reviewer-token/v1"
_DERIVED_LABEL = b"supportgraph/inbox-secret/v1"


class SecretError(SettingsError):
    """No usable deployment secret (too short, or nothing to derive one from)."""


def signing_secret(inbox_secret: str, pii_salt: str) -> str:
    """The deployment secret of the inbox: sessions and reviewer tokens are signed with it.

    `SUPPORTGRAPH_INBOX_SECRET` (Settings.inbox_secret) when set; otherwise derived from the
    home's PII salt (HMAC with its own label, so neither value reveals the other). Every process
    of one deployment therefore agrees on it: the inbox that mints and the auth handler that
    verifies, `supportgraph serve` across restarts.
    """
    if inbox_secret:
        if len(inbox_secret) < MIN_SECRET_CHARS:
            raise SecretError(f"SUPPORTGRAPH_INBOX_SECRET must be {MIN_SECRET_CHARS} characters "
                              "or more")
        return inbox_secret
    if len(pii_salt or "") < MIN_SECRET_CHARS:
        raise SecretError("no inbox secret: set SUPPORTGRAPH_INBOX_SECRET or give the home a "
                          "PII salt (`supportgraph init`)")
    return hmac.new(pii_salt.encode(), _DERIVED_LABEL, hashlib.sha256).hexdigest()


def _key(secret: str) -> bytes:
    """The token key: the secret also signs session cookies, so tokens get a key of their own."""
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(secret: str, key_name: str, tenant: str, thread_id: str,
         now: float | None = None) -> str:
    """A token for one API call on one thread, as the key named `key_name`."""
    claims = {"k": key_name, "t": tenant, "th": thread_id,
              "exp": int((time.time() if now is None else now) + TTL_SECONDS),
              "n": secrets.token_urlsafe(6)}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{body}.{_b64(hmac.new(_key(secret), body.encode(), hashlib.sha256).digest())}"


def verify(secret: str, token: str, path: str, now: float | None = None) -> dict[str, str] | None:
    """The claims {key, tenant, thread} of a genuine, unexpired token for this path, else None."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        return None
    body, signature = token.split(".")
    expected = _b64(hmac.new(_key(secret), body.encode("ascii", "replace"),
                             hashlib.sha256).digest())
    if not hmac.compare_digest(signature.encode("ascii", "replace"), expected.encode()):
        return None
    try:
        claims: Any = json.loads(_unb64(body))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    key, tenant, thread, exp = (claims.get(n) for n in ("k", "t", "th", "exp"))
    if not (isinstance(key, str) and isinstance(tenant, str) and isinstance(thread, str)
            and isinstance(exp, int)):
        return None
    current = time.time() if now is None else now
    if not current < exp <= current + TTL_SECONDS + 5 or not on_thread(path, thread):
        return None
    return {"key": key, "tenant": tenant, "thread": thread}


def on_thread(path: str, thread_id: str) -> bool:
    """Whether an API path is one of that thread's routes (`[/prefix]/threads/<id>[/...]`)."""
    if not thread_id or "/" in thread_id:
        return False
    parts = (path or "").split("/")
    for i, part in enumerate(parts[:-1]):
        if part == "threads":
            return parts[i + 1] == thread_id
    return False
