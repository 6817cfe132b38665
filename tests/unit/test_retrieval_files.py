"""A copied home keeps its sparse files sparse, byte for byte the same."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from retrieval.files import copy_sparse, copy_tree

MB = 1 << 20


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sparse_file(path: Path) -> None:
    with open(path, "wb") as out:
        out.write(b"head")
        out.seek(20 * MB)
        out.write(b"middle" * 1000)
        out.truncate(64 * MB)


def test_copy_keeps_bytes_and_holes(tmp_path: Path) -> None:
    src, dst = tmp_path / "wal", tmp_path / "copy"
    _sparse_file(src)
    copy_sparse(src, dst)
    assert dst.stat().st_size == 64 * MB
    assert _digest(dst) == _digest(src)
    assert dst.stat().st_blocks * 512 < 4 * MB  # not 64 MB of written zeros


def test_copy_of_dense_and_empty_files(tmp_path: Path) -> None:
    dense, empty = tmp_path / "dense", tmp_path / "empty"
    dense.write_bytes(os.urandom(3 * MB + 17))
    empty.write_bytes(b"")
    copy_sparse(dense, tmp_path / "dense2")
    copy_sparse(empty, tmp_path / "empty2")
    assert _digest(tmp_path / "dense2") == _digest(dense)
    assert (tmp_path / "empty2").read_bytes() == b""


def test_copy_of_a_file_ending_in_data(tmp_path: Path) -> None:
    src = tmp_path / "tail"
    with open(src, "wb") as out:
        out.seek(8 * MB)
        out.write(b"tail")
    copy_sparse(src, tmp_path / "tail2")
    assert _digest(tmp_path / "tail2") == _digest(src)


def test_copy_tree_with_ignore(tmp_path: Path) -> None:
    root = tmp_path / "home"
    (root / "qdrant_edge" / "kb").mkdir(parents=True)
    _sparse_file(root / "qdrant_edge" / "kb" / "segment")
    (root / "qdrant_edge" / ".lock").write_text("pid 1")
    import shutil

    copy_tree(root, tmp_path / "copy", ignore=shutil.ignore_patterns(".lock"))
    copied = tmp_path / "copy" / "qdrant_edge"
    assert not (copied / ".lock").exists()
    assert _digest(copied / "kb" / "segment") == _digest(root / "qdrant_edge" / "kb" / "segment")
