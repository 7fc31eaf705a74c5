"""The worker's side of the object-deletion queue (keel.storage.table): delete what was queued.

Each batch is claimed (`FOR UPDATE SKIP LOCKED`, so several workers split the queue), deleted
from storage, then removed from the queue in the same transaction. If the storage refuses or is
down, the transaction rolls back and the keys stay queued for the next run: an outage delays a
deletion, never loses it. Deleting a key twice is harmless.
"""

from __future__ import annotations

from keel.db.database import Database
from keel.storage.store import ObjectStore

BATCH = 500
CLAIM = """
    SELECT object_key FROM object_deletions ORDER BY requested_at LIMIT $1 FOR UPDATE SKIP LOCKED
"""
FORGET = "DELETE FROM object_deletions WHERE object_key = ANY($1)"


async def delete_released_objects(database: Database, storage: ObjectStore) -> int:
    """Delete every queued object; how many. Raises StorageUnavailable (keys stay queued)."""
    total = 0
    while True:
        async with database.transaction() as db:
            keys = [row["object_key"] for row in await db.fetch(CLAIM, BATCH)]
            if keys:
                await storage.delete(keys)
                await db.execute(FORGET, keys)
        total += len(keys)
        if len(keys) < BATCH:
            return total
