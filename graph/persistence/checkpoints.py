"""LangGraph's checkpointer on our database: compressed, optionally encrypted values."""

from __future__ import annotations

import threading
import zlib
from typing import Any

from graph.persistence.database import Database, _sqlite_connect

COMPRESSED = "msgpack.z"
"""Type tag of a zlib-compressed msgpack value (below the AES layer when a key is set)."""


COMPRESS_MIN_BYTES = 512


MAX_INFLATED_BYTES = 256 * 1024 * 1024
"""A stored value never inflates beyond this (a tampered row cannot exhaust memory)."""


def inflate(data: bytes) -> bytes:
    """Decompress a `COMPRESSED` value, refusing anything that would inflate past the cap."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_INFLATED_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"a checkpoint value inflates past {MAX_INFLATED_BYTES} bytes")
    return out


class CheckpointKeyError(RuntimeError):
    """Checkpoints that cannot be read with the configured AES key (missing or wrong)."""


def checkpoint_serde(aes_key: str | None) -> Any:
    """The checkpoint serializer: msgpack limited to LangGraph's safe types, AES if keyed.

    Values of 512 bytes or more are zlib-compressed (level 1, type `msgpack.z`): SQLite's
    saver stores the whole state in every checkpoint, and compression took a resolved
    ticket's checkpoints from 99 to about 40 KB. Older uncompressed rows still load.

    `allowed_msgpack_modules=None` is LangGraph's strict mode: only its built-in allow-list
    of plain types is revived from a checkpoint, so a tampered row cannot build arbitrary
    objects. With a key (16, 24 or 32 bytes) every blob is AES-EAX encrypted and
    authenticated by LangGraph's `EncryptedSerializer`. A missing or wrong key on encrypted
    checkpoints raises `CheckpointKeyError` instead of returning garbage.
    """
    from langgraph.checkpoint.serde.base import CipherProtocol
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    class PlainSerde(JsonPlusSerializer):
        def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
            typ, data = super().dumps_typed(obj)
            if typ == "msgpack" and len(data) >= COMPRESS_MIN_BYTES:
                return COMPRESSED, zlib.compress(data, 1)
            return typ, data

        def loads_typed(self, data: tuple[str, bytes]) -> Any:
            if "+" in data[0]:
                raise CheckpointKeyError(
                    "the checkpoints in this database are encrypted: set LANGGRAPH_AES_KEY")
            if data[0] == COMPRESSED:
                return super().loads_typed(("msgpack", inflate(data[1])))
            return super().loads_typed(data)

    class CheckedCipher(CipherProtocol):
        def __init__(self, cipher: CipherProtocol) -> None:
            self.cipher = cipher

        def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
            return self.cipher.encrypt(plaintext)

        def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
            try:
                return self.cipher.decrypt(ciphername, ciphertext)
            except (ValueError, AssertionError) as exc:  # "MAC check failed", other cipher
                raise CheckpointKeyError(
                    "LANGGRAPH_AES_KEY does not decrypt the checkpoints in this database "
                    "(wrong key)") from exc

    if not aes_key:
        return PlainSerde(allowed_msgpack_modules=None)
    key = aes_key.encode()
    if len(key) not in (16, 24, 32):
        raise CheckpointKeyError(
            f"LANGGRAPH_AES_KEY must be 16, 24 or 32 bytes long (got {len(key)})")
    strict = PlainSerde(allowed_msgpack_modules=None)  # compresses before encrypting
    aes = EncryptedSerializer.from_pycryptodome_aes(strict, key=key)
    return EncryptedSerializer(CheckedCipher(aes.cipher), strict)


class _Sealed:
    """A plain channel value routed to the (encrypted) blobs table instead of inline JSONB."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _sealed_postgres_saver() -> type:
    """`PostgresSaver` that stores no channel value in clear.

    PostgresSaver keeps str/int/float/bool/None channel values inline in the `checkpoints`
    JSONB column, outside the serializer, so with encryption on the ticket text (`query`,
    `final_reply`) would still sit there in clear. Here every such value goes through the
    serializer into `checkpoint_blobs`, the path non-primitive values already take. Unchanged
    channels are re-offered at their current version (an existing blob row is kept), so a
    thread begun before the key was set keeps its values.
    """
    from langgraph.checkpoint.postgres import PostgresSaver

    def plain(value: Any) -> bool:
        return value is None or isinstance(value, (str, int, float, bool))

    class SealedPostgresSaver(PostgresSaver):
        def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            values = checkpoint["channel_values"]
            known = checkpoint.get("channel_versions") or {}
            sealed = {k for k, v in values.items() if plain(v) and k in known}
            if sealed:
                checkpoint = {**checkpoint, "channel_values": {
                    k: _Sealed(v) if k in sealed else v for k, v in values.items()}}
                new_versions = {**{k: known[k] for k in sealed}, **new_versions}
            return super().put(config, checkpoint, metadata, new_versions)

        def _dump_blobs(self, thread_id: str, checkpoint_ns: str, values: dict[str, Any],
                        versions: Any) -> list:
            values = {k: v.value if isinstance(v, _Sealed) else v for k, v in values.items()}
            return super()._dump_blobs(thread_id, checkpoint_ns, values, versions)

    return SealedPostgresSaver


def open_checkpointer(db: Database, serde: Any) -> Any:
    """A LangGraph checkpointer on the same database as our tables (tables set up once).

    `serde`: `checkpoint_serde` of the deployment's AES key (read at the edge by
    `supportgraph.app.settings.checkpoint_aes_key`; nodes never see it).
    """
    if db.dialect == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver
        from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

        cls = _sealed_postgres_saver() if isinstance(serde, EncryptedSerializer) else PostgresSaver
        saver = cls(db.handle, serde=serde)
        # PostgresSaver holds one instance-wide lock around every cursor, even when each
        # cursor checks out its own pooled connection, so all tickets' checkpoint writes in a
        # process queued behind one another (langgraph#7259; the fix for the async saver is
        # langgraph#7269). With a pool the lock only has to stop more threads than there are
        # connections from waiting inside the pool.
        saver.lock = threading.BoundedSemaphore(db.handle.max_size)
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        saver = SqliteSaver(_sqlite_connect(db.handle), serde=serde)
    saver.setup()
    return saver
