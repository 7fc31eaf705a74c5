"""Worker jobs of attachments: deleting released files, and purging what was never finished."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from keel.attachments import repository as attachments_repo
from keel.jobs.metrics import JobMetrics
from keel.jobs.purge import BATCH, drain
from keel.resources import Resources
from keel.storage.deletions import delete_released_objects

PREFIX = "attachments/"
# Objects looked at per sweep for a missing row; the rest wait for the next sweep.
ORPHAN_SWEEP_LIMIT = 1_000


async def delete_released_files(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron, every 30 s: delete the files of deleted attachments (the deletion queue)."""
    resources: Resources = ctx["resources"]
    return {"deleted": await delete_released_objects(resources.db, resources.storage)}


async def purge_stale_uploads(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron, every 15 minutes: what is older than FILE_PENDING_TTL_SECONDS and never finished.

    * direct uploads never confirmed (their rows; the files follow through the deletion queue);
    * files in storage that no row names (a process that stopped between storing a file and
      recording it);
    * multipart uploads left in progress (a process killed mid-upload).
    """
    resources: Resources = ctx["resources"]
    ttl = timedelta(seconds=resources.settings.file_pending_ttl_seconds)
    pending = await drain(resources.db, lambda db: attachments_repo.purge_pending(db, ttl, BATCH))
    cutoff = datetime.now(UTC) - ttl
    orphans = await delete_orphans(resources, cutoff)
    aborted = await resources.storage.abort_uploads_older_than(PREFIX, cutoff)
    metrics: JobMetrics | None = ctx.get("job_metrics")
    if metrics is not None:
        metrics.files_stored_bytes.set(await attachments_repo.stored_bytes(resources.db))
    return {"pending": pending, "orphans": orphans, "aborted_uploads": aborted}


async def delete_orphans(resources: Resources, cutoff: datetime) -> int:
    """Delete files written before `cutoff` that no attachment names (one sweep's worth)."""
    keys = await resources.storage.keys_older_than(PREFIX, cutoff, ORPHAN_SWEEP_LIMIT)
    if not keys:
        return 0
    orphans = sorted(set(keys) - await attachments_repo.known_keys(resources.db, keys))
    await resources.storage.delete(orphans)
    return len(orphans)
