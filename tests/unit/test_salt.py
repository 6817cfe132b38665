"""The home's PII salt: created once, 0600, random, outside the database; bad files refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from graph.context import Context
from graph.salt import SaltError, home_salt, salt_path
from supportgraph.app.services import Services
from supportgraph.app.settings import Settings


def test_first_use_creates_a_private_random_salt_that_then_stays(tmp_path: Path) -> None:
    home = tmp_path / "home"
    salt = home_salt(home)
    path = salt_path(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(salt) == 64 and home_salt(home) == salt
    assert home_salt(tmp_path / "other") != salt


def test_missing_file_without_create_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SaltError, match="run `supportgraph init`"):
        home_salt(tmp_path, create=False)


@pytest.mark.parametrize("content, mode, message", [
    ("x" * 64, 0o644, "readable by other users"),
    ("short", 0o600, "shorter than"),
    ("", 0o600, "shorter than"),
])
def test_unsafe_salt_files_are_refused(tmp_path: Path, content: str, mode: int,
                                       message: str) -> None:
    path = salt_path(tmp_path)
    path.write_text(content)
    os.chmod(path, mode)
    with pytest.raises(SaltError, match=message):
        home_salt(tmp_path)


def test_unreadable_salt_file_is_refused(tmp_path: Path) -> None:
    salt_path(tmp_path).mkdir()  # a directory where the file should be
    with pytest.raises(SaltError, match="cannot read"):
        home_salt(tmp_path)


def test_context_salt_wins_and_an_empty_one_gets_the_homes(tmp_path: Path,
                                                           monkeypatch) -> None:
    monkeypatch.delenv("SUPPORTGRAPH_PII_SALT", raising=False)
    ctx = Context().with_settings(Settings(home=str(tmp_path)))
    with Services(ctx.settings) as services:
        res = services.for_run(ctx)
        assert res.with_salt(ctx).pii_salt == home_salt(tmp_path)
        explicit = Context().with_settings(Settings(home=str(tmp_path),
                                                    pii_salt="from-settings-0123456789"))
        assert res.with_salt(explicit).pii_salt == "from-settings-0123456789"

