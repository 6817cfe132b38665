"""Deployment settings as a plain value: where data lives and the secrets a run never chooses.

The type lives in the workflow core so that the core can name it; the environment is read only
at the edge (`supportgraph.app.settings.read_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable that cannot be used as the setting it names."""


@dataclass(frozen=True)
class Settings:
    """Deployment settings, read from the environment at the edge (CLI or server start).

    `supportgraph.app.settings.read_settings` reads them.

    Not part of any run's input or context schema, so no API caller can move storage or
    change the salt.
    """

    home: str = ".supportgraph"
    database_url: str = ""
    qdrant_url: str = ""
    pii_salt: str = ""
    inbox_secret: str = ""
    """Signs inbox sessions and the reviewer tokens the inbox sends to the LangGraph API
    (app/forwarding.py); empty: derived from the home's PII salt."""

    @property
    def home_path(self) -> Path:
        """The local-state folder as a Path."""
        return Path(self.home).expanduser()

    def __repr__(self) -> str:  # the salt is a secret: never in a log or a traceback
        return (f"Settings(home={self.home!r}, database_url={_no_password(self.database_url)!r},"
                f" qdrant_url={self.qdrant_url!r}, pii_salt={'***' if self.pii_salt else ''!r},"
                f" inbox_secret={'***' if self.inbox_secret else ''!r})")


def _no_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url
