"""Reviewer tokens (app/forwarding.py) and their check in the server's auth (app/auth.py).

The inbox mounted on the LangGraph server calls the API with these instead of a key; the
end-to-end path is in tests/e2e/test_langgraph_dev.py. Here: forged, expired, foreign-thread,
revoked, empty, huge and malformed tokens, fast.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest
from langgraph_sdk import Auth

from graph.persistence import open_database
from graph.salt import home_salt
from supportgraph.app import auth
from supportgraph.app.forwarding import (
    HEADER,
    TTL_SECONDS,
    SecretError,
    mint,
    on_thread,
    signing_secret,
    verify,
)
from supportgraph.app.keys import add_key, revoke_key
from supportgraph.app.settings import SettingsError, read_settings

SECRET = "a-deployment-secret-of-some-length"
THREAD = "1f0c2b8e-5a5e-4c1e-9a65-3b1d2d1c0a11"
PATH = f"/threads/{THREAD}/runs/wait"


def test_a_token_opens_its_own_thread_for_its_lifetime_only() -> None:
    now = 1_000_000.0
    token = mint(SECRET, "acme-maria", "acme", THREAD, now=now)
    assert verify(SECRET, token, PATH, now=now) == {"key": "acme-maria", "tenant": "acme",
                                                    "thread": THREAD}
    assert verify(SECRET, token, f"/threads/{THREAD}/state", now=now + TTL_SECONDS - 1)
    assert verify(SECRET, token, f"/lgp/threads/{THREAD}", now=now)  # behind a mount prefix
    assert verify(SECRET, token, PATH, now=now + TTL_SECONDS) is None  # expired
    assert verify(SECRET, token, f"/threads/{THREAD}x/state", now=now) is None
    assert verify(SECRET, token, "/threads/search", now=now) is None
    assert verify(SECRET, token, "/assistants/search", now=now) is None
    assert verify("another-secret-of-enough-length", token, PATH, now=now) is None


def test_a_token_cannot_be_altered() -> None:
    token = mint(SECRET, "acme-maria", "acme", THREAD)
    body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for change in ({"k": "acme-admin"}, {"t": "globex"}, {"exp": claims["exp"] + 3600}):
        forged = base64.urlsafe_b64encode(json.dumps({**claims, **change}).encode()).decode()
        assert verify(SECRET, f"{forged.rstrip('=')}.{signature}", PATH) is None
    assert verify(SECRET, f"{body}.{signature[:-2]}AA", PATH) is None
    # A token made to last an hour by whoever holds the secret is still refused.
    late = mint(SECRET, "acme-maria", "acme", THREAD, now=time.time() + 3600)
    assert verify(SECRET, late, PATH) is None


@pytest.mark.parametrize("token", [
    "", ".", "a.b.c", "no-dot", "x" * 100_000, "\x00.\x00", "é.é",
    base64.urlsafe_b64encode(b"[1, 2]").decode() + ".sig",
])
def test_malformed_tokens_are_refused(token: str) -> None:
    assert verify(SECRET, token, PATH) is None


def test_thread_ids_a_token_cannot_name() -> None:
    assert not on_thread("/threads/a/b/state", "a/b")
    assert not on_thread("/threads/", "")
    assert not on_thread("", THREAD)
    assert on_thread(f"/threads/{THREAD}", THREAD)


def test_the_secret_comes_from_settings_or_the_home_salt() -> None:
    assert signing_secret(SECRET, "") == SECRET
    salt = "0123456789abcdef" * 4
    derived = signing_secret("", salt)
    assert derived == signing_secret("", salt) and salt not in derived and len(derived) == 64
    assert signing_secret("", salt[::-1]) != derived
    for bad_secret, bad_salt in (("short", salt), ("", ""), ("", "short")):
        with pytest.raises(SecretError):
            signing_secret(bad_secret, bad_salt)
    assert issubclass(SecretError, SettingsError)  # the CLI prints one line and exits 2
    settings = read_settings({"SUPPORTGRAPH_INBOX_SECRET": SECRET})
    assert settings.inbox_secret == SECRET and SECRET not in repr(settings)


# ---- the server's auth -------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SUPPORTGRAPH_AUTH", "SUPPORTGRAPH_INBOX_SECRET", "SUPPORTGRAPH_PII_SALT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SUPPORTGRAPH_HOME", str(tmp_path))
    return tmp_path


def authenticate(token: str, path: str = PATH) -> dict:
    return asyncio.run(auth.authenticate({HEADER.encode(): token.encode()}, path))


def refused(token: str, path: str = PATH) -> int:
    with pytest.raises(Auth.exceptions.HTTPException) as info:
        authenticate(token, path)
    return info.value.status_code


def test_the_server_takes_a_token_as_its_key_and_nothing_more(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = open_database(None, home)
    add_key(db, "acme", "reviewer", "acme-maria")
    add_key(db, "globex", "reviewer", "globex-bob")
    secret = signing_secret("", home_salt(home))  # what the server derives from its home

    user = authenticate(mint(secret, "acme-maria", "acme", THREAD))
    assert (user["tenant"], user["role"], user["name"]) == ("acme", "reviewer", "acme-maria")
    assert user["identity"] == "acme:acme-maria"

    assert refused(mint(secret, "acme-maria", "globex", THREAD)) == 401  # not the key's tenant
    assert refused(mint(secret, "nobody", "acme", THREAD)) == 401
    assert refused(mint(secret, "acme-maria", "acme", THREAD), "/threads/other/state") == 401
    assert refused(mint("a-secret-the-server-does-not-have", "acme-maria", "acme",
                        THREAD)) == 401
    assert refused("x" * 1_000_000) == 401
    # Auth off (development) still refuses a bad token rather than making it the admin.
    monkeypatch.setenv("SUPPORTGRAPH_AUTH", "off")
    assert refused("forged.token") == 401
    monkeypatch.delenv("SUPPORTGRAPH_AUTH")

    token = mint(secret, "globex-bob", "globex", THREAD)
    assert authenticate(token)["tenant"] == "globex"
    assert revoke_key(db, "globex-bob")
    assert refused(token) == 401  # revoked: its tokens stop at once
    db.close()


def test_the_server_uses_the_configured_secret(home: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    db = open_database(None, home)
    add_key(db, "acme", "reviewer", "acme-maria")
    db.close()
    monkeypatch.setenv("SUPPORTGRAPH_INBOX_SECRET", SECRET)
    assert authenticate(mint(SECRET, "acme-maria", "acme", THREAD))["name"] == "acme-maria"
    derived = signing_secret("", home_salt(home))
    assert refused(mint(derived, "acme-maria", "acme", THREAD)) == 401
