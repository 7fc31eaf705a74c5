"""What each optional feature owns, so that turning it off removes all of it.

A feature owns whole files (`paths`: exact paths or folders ending in `/`) and, in files it
shares with the rest, blocks between two comment lines:

    # feature: webhooks
    ...
    # end feature: webhooks

(`<!-- feature: webhooks -->` in Markdown; inside a paragraph, where a marker line would end
it, a span: `text<!-- feature: worker -->` ... `more<!-- end feature: worker -->`). The
pseudo-feature `template` is the template's own apparatus (its benchmarks, this generator, its
CI stage for it): never in a generated project.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Feature:
    name: str
    summary: str
    default: bool
    paths: tuple[str, ...]
    requires: tuple[str, ...] = field(default=())
    # Metric names only this feature exports: the Grafana panels querying them go with it.
    metrics: tuple[str, ...] = field(default=())
    # Its API paths: their operations (and the schemas only they use) leave the OpenAPI snapshot.
    api_paths: tuple[str, ...] = field(default=())


TEMPLATE_ONLY = Feature(
    name="template",
    summary="the template's benchmarks, generator and their docs",
    default=False,
    paths=(
        "bench/",
        "scripts/new/",
        "scripts/new_check.sh",
        "tests/new_project/",
        # Keel's proof that an API of another shape fits the kit: a second suite inside the
        # suite, minutes long, with nothing of the generated project's own in it.
        "tests/test_any_api_shape.py",
        "tests/any_api_shape/",
        "tests/test_bench_installers.py",
        "docs/performance.md",
        "docs/new-project.md",
    ),
)

FEATURES: tuple[Feature, ...] = (
    Feature(
        name="items",
        summary="the example domain (items owned by users), the model for `new-domain`",
        default=True,
        paths=(
            "src/keel/items/",
            "src/keel/api/v1/items.py",
            "tests/items/",
            "tests/cache/test_item_stats.py",
            "tests/api/v1/test_flow.py",
            # The drills exercise the example domain's routes (a database-backed read and write).
            "tests/degradation/test_postgres_outage.py",
            "tests/degradation/test_blackholed_postgres.py",
            "tests/degradation/test_blackholed_redis.py",
            # `new-domain` copies the example: without it the scaffold has nothing to copy.
            "src/keel_dev/scaffold.py",
            "src/keel_dev/rename.py",
            "src/keel_dev/reflow.py",
            "tests/test_scaffold.py",
            "tests/test_new_domain.py",
        ),
        api_paths=("/api/v1/items",),
    ),
    Feature(
        name="webhooks",
        summary="webhook endpoints and signed deliveries through a PostgreSQL outbox",
        default=True,
        paths=(
            "src/keel/webhooks/",
            "src/keel/api/v1/webhooks.py",
            "migrations/versions/0003_webhooks.py",
            "tests/webhooks/",
        ),
        requires=("items", "worker"),
        metrics=("keel_webhook_",),
        api_paths=("/api/v1/webhooks",),
    ),
    Feature(
        name="files",
        summary="files attached to items on S3-compatible storage: streamed uploads and "
        "downloads, presigned direct uploads, quotas, deletion through a queue the worker "
        "drains, the embedded SeaweedFS of `make dev`/`make test`, the compose storage service",
        default=True,
        paths=(
            "src/keel/attachments/",
            "src/keel/storage/",
            "src/keel/api/files.py",
            "src/keel/api/v1/attachments.py",
            "migrations/versions/0004_attachments.py",
            "tests/attachments/",
            "tests/degradation/test_storage_outage.py",
            "tests/helpers/storage.py",
            "docs/files.md",
        ),
        requires=("items", "worker"),
        metrics=("files_",),
        api_paths=("/api/v1/items/{item_id}/attachments",),
    ),
    Feature(
        name="realtime",
        summary="each user's domain events live over a WebSocket or SSE at /api/v1/events: "
        "fan-out across processes through Redis, resume from the last event id, tickets, "
        "slow-consumer and connection limits, a graceful drain",
        default=True,
        paths=(
            "src/keel/realtime/",
            "src/keel/api/v1/events.py",
            "migrations/versions/0005_realtime.py",
            "tests/realtime/",
            "docs/realtime.md",
            "examples/",
        ),
        requires=("items", "worker"),
        metrics=("realtime_",),
        api_paths=("/api/v1/events",),
    ),
    Feature(
        name="worker",
        summary="the ARQ worker process, its jobs API, manifests, alerts and metrics",
        default=True,
        paths=(
            "src/keel/worker.py",
            "src/keel/jobs/",
            "src/keel/housekeeping/",
            "src/keel/api/v1/jobs.py",
            "src/keel/reloader.py",
            "tests/deploy/test_reloader.py",
            "k8s/base/worker-deployment.yaml",
            "k8s/base/worker-hpa.yaml",
            "k8s/base/worker-pdb.yaml",
            "tests/worker/",
            "tests/test_worker.py",
            "tests/helpers/worker.py",
            "docs/jobs.md",
        ),
        metrics=("keel_arq_",),
        api_paths=("/api/v1/jobs",),
    ),
    Feature(
        name="ratelimit",
        summary="rate limits per caller and route in Redis (failing open to per-process "
        "counts), strict per-IP limits on the auth routes, their settings and dependencies; "
        "without them, limit at your edge (the per-account login backoff stays)",
        default=True,
        paths=(
            "src/keel/ratelimit/",
            "tests/ratelimit/",
            # The Redis outage drill drives the limiter's fail-open (its counts, its metric).
            "tests/degradation/test_redis_outage.py",
        ),
        metrics=("ratelimit_",),
    ),
    Feature(
        name="tracing",
        summary="tracing: server, database, Redis and httpx spans exported over OTLP, trace ids "
        "in log lines, their settings and dependencies, the compose Jaeger service",
        default=True,
        paths=(
            "src/keel/observability/tracing.py",
            "tests/observability/test_tracing.py",
        ),
    ),
)
BY_NAME = {feature.name: feature for feature in FEATURES}


def owner(path: str, enabled: frozenset[str]) -> Feature | None:
    """The disabled feature (or the template itself) that owns `path`, if any."""
    for feature in (TEMPLATE_ONLY, *FEATURES):
        if feature.name in enabled:
            continue
        if any(
            path == owned or (owned.endswith("/") and path.startswith(owned))
            for owned in feature.paths
        ):
            return feature
    return None


def missing_requirements(enabled: frozenset[str]) -> list[str]:
    """One sentence per enabled feature that needs one that is off."""
    return [
        f"{feature.name} needs {needed}: turn {needed} on or {feature.name} off"
        for feature in FEATURES
        if feature.name in enabled
        for needed in feature.requires
        if needed not in enabled
    ]
