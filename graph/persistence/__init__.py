"""The workflow's database: LangGraph checkpoints plus our own tables, in one place.

One module per job: `database` (the Database and SQL on both engines), `migrations` (our
versioned tables), `pool` (Postgres connections) and `checkpoints` (LangGraph's checkpointer and
its serializer). The names other packages use are re-exported here.
"""

from graph.persistence.checkpoints import (
    COMPRESSED,
    MAX_INFLATED_BYTES,
    CheckpointKeyError,
    checkpoint_serde,
    inflate,
    open_checkpointer,
)
from graph.persistence.database import DEFAULT_TENANT, Database, open_database, tenant_key
from graph.persistence.migrations import MIGRATIONS, SCHEMA_VERSION, Migration
from graph.persistence.pool import IDLE_CHECK_S

__all__ = [
    "COMPRESSED",
    "CheckpointKeyError",
    "DEFAULT_TENANT",
    "Database",
    "IDLE_CHECK_S",
    "MAX_INFLATED_BYTES",
    "MIGRATIONS",
    "Migration",
    "SCHEMA_VERSION",
    "checkpoint_serde",
    "inflate",
    "open_checkpointer",
    "open_database",
    "tenant_key",
]
