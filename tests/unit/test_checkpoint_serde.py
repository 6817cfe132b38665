"""Checkpoint values are compressed at rest, still load when old, and never inflate unbounded."""

from __future__ import annotations

import zlib

import ormsgpack
import pytest

from graph.persistence import COMPRESSED, MAX_INFLATED_BYTES, checkpoint_serde, inflate

STATE = {"passages": [{"doc_id": f"d{i}", "text": "Refunds are issued within 5 days. " * 20}
                      for i in range(4)], "query": "refund please"}


def test_large_values_are_compressed_and_round_trip() -> None:
    serde = checkpoint_serde(None)
    kind, blob = serde.dumps_typed(STATE)
    plain = ormsgpack.packb(STATE)
    assert kind == COMPRESSED and len(blob) < len(plain) / 5
    assert serde.loads_typed((kind, blob)) == STATE


def test_small_values_and_rows_written_before_compression_still_load() -> None:
    serde = checkpoint_serde(None)
    assert serde.dumps_typed({"n": 1})[0] == "msgpack"  # not worth compressing
    old_row = ("msgpack", ormsgpack.packb(STATE))
    assert serde.loads_typed(old_row) == STATE


def test_keyed_values_are_compressed_then_encrypted() -> None:
    keyed = checkpoint_serde("k" * 32)
    kind, blob = keyed.dumps_typed(STATE)
    assert kind == f"{COMPRESSED}+aes"
    assert b"Refunds" not in blob and keyed.loads_typed((kind, blob)) == STATE


def test_a_value_that_would_inflate_past_the_cap_is_refused() -> None:
    bomb = zlib.compress(b"\0" * (MAX_INFLATED_BYTES + 1024), 9)
    assert len(bomb) < 1_000_000
    with pytest.raises(ValueError, match="inflates past"):
        inflate(bomb)
    with pytest.raises(zlib.error):
        checkpoint_serde(None).loads_typed((COMPRESSED, b"not zlib data"))
