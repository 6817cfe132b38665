"""The home's PII salt: the HMAC key of every redaction token, kept outside the database.

A database dump, a checkpoint or an export then holds tokens that cannot be brute-forced back to
the phone number or address they replaced. `SUPPORTGRAPH_PII_SALT` (Settings) wins; otherwise the
salt is the file `pii_salt` in the home, created with mode 0600 by `init` or by the first run
that needs it (homes made before the file existed get one then: tokens written earlier keep
their old, unsalted form and no longer correlate with new ones).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from graph.settings import SettingsError

SALT_FILE = "pii_salt"
MIN_CHARS = 16


class SaltError(SettingsError):
    """The salt file cannot be used (unreadable, too short, open to other users)."""


def salt_path(home: Path) -> Path:
    """Where a home keeps its salt."""
    return Path(home).expanduser() / SALT_FILE


def home_salt(home: Path, *, create: bool = True) -> str:
    """The home's salt, created (random, 0600) when missing and `create` is set."""
    path = salt_path(home)
    if not path.exists():
        if not create:
            raise SaltError(f"no PII salt at {path}; run `supportgraph init`")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: read theirs
        else:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    try:
        mode = path.stat().st_mode
        salt = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SaltError(f"cannot read the PII salt at {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SaltError(f"the PII salt at {path} is readable by other users; chmod 600 it")
    if len(salt) < MIN_CHARS:
        raise SaltError(f"the PII salt at {path} is shorter than {MIN_CHARS} characters")
    return salt
