"""One settings class, read from the environment (12-factor) and validated at start."""

from __future__ import annotations

import functools
import math
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from keel.token_keys import KeyConfigError, load_keys

# Development default: usable locally, refused in production by `_refuse_weak_production`.
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me-0123456789abcdef"  # noqa: S105
MIN_SECRET_KEY_LENGTH = 32
# Every secret value published in this repository (compose, the k8s example, the benchmarks):
# refused in production even when long and varied, since anyone can read them.
# tests/test_settings.py reads the repository and fails when a published value is not refused.
PUBLISHED_SECRETS = frozenset(
    {
        DEV_SECRET_KEY,
        "local-only-secret-key-not-for-any-real-deployment-0001",
        "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "REPLACE_ME",
    }
)
# Least Shannon entropy of a key's own characters, in bits: random hex digits of the minimum
# length clear it with a wide margin, 'a' * 32 or a word and digits do not.
MIN_SECRET_BITS = 80
GENERATE_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
# The SQLAlchemy forms (postgresql+asyncpg://, postgres://) are normalized to this scheme.
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})

JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "EdDSA"]


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SettingsError(ValueError):
    """A setting breaks a rule; the message is one line naming the variable and the rule."""


def _entropy_bits(secret: str) -> float:
    """Shannon entropy of the text itself: what its characters' frequencies allow at most."""
    total = len(secret)
    return -sum(n * math.log2(n / total) for n in Counter(secret).values())


def _repetitive(secret: str) -> bool:
    """Mostly a repeated sequence ('changeme' * 4, with or without a suffix): most of its
    three-character runs occur more than once."""
    runs = [secret[start : start + 3] for start in range(len(secret) - 2)]
    return len(set(runs)) * 2 < len(runs)


def secret_weakness(secret: str) -> str | None:
    """Why a production secret is guessable (the end of a one-line error), or None."""
    if secret == DEV_SECRET_KEY:
        return "must be set in production (the development default is refused)"
    if secret.strip() in PUBLISHED_SECRETS:
        return f"is a value published in the Keel repository; generate one: {GENERATE_HINT}"
    if len(secret) < MIN_SECRET_KEY_LENGTH:
        return f"must be at least {MIN_SECRET_KEY_LENGTH} characters in production"
    if _repetitive(secret) or _entropy_bits(secret) < MIN_SECRET_BITS:
        return f"is too predictable (low entropy); generate one: {GENERATE_HINT}"
    return None


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    environment: Environment = Environment.DEVELOPMENT
    service_name: str = "keel"

    # --- PostgreSQL (asyncpg pool) ---
    database_url: str = "postgresql://postgres@127.0.0.1:5432/keel"

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        """asyncpg takes postgresql:// only; the SQLAlchemy driver forms people copy
        (postgresql+asyncpg://, +psycopg ...) name the same server. The message never
        repeats the URL: it holds a password."""
        scheme, separator, rest = value.partition("://")
        dialect, _, _driver = scheme.partition("+")
        if not separator or dialect.lower() not in POSTGRES_SCHEMES:
            raise ValueError("must be a PostgreSQL URL: postgresql://user:password@host:5432/db")
        return f"postgresql://{rest}"

    db_pool_min_size: int = Field(default=2, ge=0)
    # asyncpg has no overflow: size the pool to the request concurrency of one worker.
    db_pool_max_size: int = Field(default=16, ge=1)
    db_connect_timeout: float = Field(default=2.0, gt=0)
    db_acquire_timeout: float = Field(default=1.0, gt=0)
    db_command_timeout: float = Field(default=5.0, gt=0)
    db_statement_timeout_ms: int = Field(default=5_000, ge=0)
    db_idle_in_transaction_timeout_ms: int = Field(default=10_000, ge=0)
    db_statement_cache_size: int = Field(default=256, ge=0)

    # --- Redis ---
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_socket_timeout: float = Field(default=1.0, gt=0)
    redis_connect_timeout: float = Field(default=1.0, gt=0)
    redis_retries: int = Field(default=2, ge=0)
    redis_max_connections: int = Field(default=64, ge=1)

    # --- Outbound HTTP (one shared httpx.AsyncClient) ---
    http_connect_timeout: float = Field(default=3.0, gt=0)
    http_read_timeout: float = Field(default=10.0, gt=0)
    http_write_timeout: float = Field(default=10.0, gt=0)
    http_pool_timeout: float = Field(default=3.0, gt=0)
    http_max_connections: int = Field(default=100, ge=1)
    http_max_keepalive_connections: int = Field(default=20, ge=0)

    # --- Health ---
    readiness_timeout: float = Field(default=1.0, gt=0)
    # Every request is answered within this (503/504 problem), whatever it waits on; 0: off.
    # Per route: `dependencies=[deadline(seconds)]` (keel.api.deps).
    request_deadline_seconds: float = Field(default=1.5, ge=0)

    # --- Security and edge ---
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False
    docs_enabled: bool | None = None

    # --- Logging ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool | None = None

    # --- Edge: logging, metrics, limits ---
    # Request bodies above this many bytes get 413 before any route code runs; a route may set
    # its own with FastAPI's `max_body_size=`.
    max_body_size: int = Field(default=1_048_576, ge=0)
    gzip_minimum_size: int = Field(default=1_024, ge=0)
    gzip_compress_level: int = Field(default=6, ge=1, le=9)
    # Strict-Transport-Security: only behind TLS you control (browsers remember it for max-age).
    hsts_enabled: bool = False
    hsts_max_age: int = Field(default=31_536_000, ge=0)
    # Paths whose successful requests the access log skips (failures are always logged) ...
    access_log_skip_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/livez", "/readyz", "/metrics"]
    )
    # ... or samples: the fraction of them that is still logged.
    access_log_skip_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    metrics_enabled: bool = True
    # Seconds between samples of the pool/process gauges in every worker.
    metrics_refresh_interval: float = Field(default=5.0, gt=0)
    # Requests are counted in plain Python and moved into prometheus-client (the multiprocess
    # files under gunicorn) before each scrape and at least this often: another worker's scrape
    # lags by at most this many seconds.
    metrics_flush_interval: float = Field(default=1.0, gt=0)
    # feature: tracing
    # Tracing is on only when a collector is named (OTLP/HTTP, e.g. http://otel-collector:4318).
    otel_exporter_otlp_endpoint: str | None = None
    otel_traces_sampler_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    otel_excluded_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/livez", "/readyz", "/metrics"]
    )
    # end feature: tracing
    # Warn (with the stack) when the event loop is blocked longer than this; default: on outside
    # production.
    loop_block_detector: bool | None = None
    loop_block_threshold_ms: int = Field(default=100, ge=1)
    # The garbage collector while serving (keel.gc_tuning): the start-up heap frozen out of every
    # collection, and the young generation's threshold (0: the interpreter's own, 700).
    gc_freeze: bool = True
    gc_young_threshold: int = Field(default=50_000, ge=0)

    @field_validator(
        "access_log_skip_paths",
        "otel_excluded_urls",  # feature: tracing
        mode="before",
    )
    @classmethod
    def _parse_edge_csv(cls, value: object) -> object:
        return _split_csv(value)

    @property
    def loop_block_detector_on(self) -> bool:
        if self.loop_block_detector is None:
            return not self.is_production
        return self.loop_block_detector

    # feature: worker
    # --- Worker (ARQ) ---
    arq_queue_name: str = "keel:queue"
    # SIGTERM: the worker takes no new job and lets running ones finish for up to this long
    # (the k8s/compose grace periods are this + 15; docs/deployment.md checks the budget).
    arq_job_completion_wait: int = Field(default=30, ge=0)
    # A job run is cancelled after this long; a job killed mid-run (SIGKILL, OOM) is picked up
    # again by another worker ARQ_JOB_TIMEOUT + 10 s later.
    arq_job_timeout: int = Field(default=120, ge=1)
    arq_max_tries: int = Field(default=5, ge=1)
    arq_max_jobs: int = Field(default=50, ge=1)
    arq_poll_delay: float = Field(default=0.25, gt=0)
    arq_keep_result_seconds: int = Field(default=3_600, ge=0)
    # The worker refreshes its health key this often; `keel worker --check` reads it.
    arq_health_check_interval: int = Field(default=5, ge=1)
    # Prometheus /metrics of the worker process; 0 turns it off.
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the container
    worker_metrics_port: int = Field(default=9100, ge=0, le=65_535)
    # end feature: worker

    # feature: webhooks
    # --- Webhooks ---
    # SSRF guard: private, loopback, link-local, metadata ... targets are refused unless they
    # fall in one of these CIDRs (e.g. "127.0.0.0/8" for local development; tests use it).
    webhook_allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # https-only webhook URLs; default: on in production.
    webhook_require_https: bool | None = None
    # Budget of one HTTP attempt (connect + send + wait for the answer).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Attempts inside one job run (tenacity, exponential backoff with jitter) ...
    webhook_attempts_per_run: int = Field(default=3, ge=1)
    webhook_retry_base_seconds: float = Field(default=0.5, gt=0)
    webhook_retry_max_seconds: float = Field(default=8.0, gt=0)
    # ... then later runs, scheduled in PostgreSQL (durable), until this many attempts in all.
    webhook_max_attempts: int = Field(default=12, ge=1)
    webhook_run_backoff_base_seconds: float = Field(default=30.0, gt=0)
    webhook_run_backoff_max_seconds: float = Field(default=3_600.0, gt=0)
    # Circuit breaker per destination host, shared by every worker through Redis.
    webhook_breaker_threshold: int = Field(default=5, ge=1)
    webhook_breaker_cooldown_seconds: float = Field(default=30.0, gt=0)
    # The outbox relay wakes on every committed delivery (LISTEN/NOTIFY) and at least this often.
    webhook_relay_interval_seconds: float = Field(default=1.0, gt=0)
    webhook_relay_batch_size: int = Field(default=200, ge=1)
    # After a secret rotation the previous secret keeps signing (a second signature) this long.
    webhook_secret_rotation_grace_seconds: int = Field(default=86_400, ge=0)
    # Finished deliveries (and their attempts) are purged after this many days.
    webhook_delivery_retention_days: int = Field(default=30, ge=1)

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _parse_webhook_networks(cls, value: object) -> object:
        networks = _split_csv(value)
        if isinstance(networks, list):
            import ipaddress

            for network in networks:
                try:
                    ipaddress.ip_network(str(network), strict=False)
                except ValueError:
                    raise SettingsError(f"not a CIDR network: {network!r}") from None
        return networks

    @property
    def webhook_https_required(self) -> bool:
        if self.webhook_require_https is None:
            return self.is_production
        return self.webhook_require_https

    # end feature: webhooks

    # feature: files
    # --- File storage (S3-compatible; docs/files.md) ---
    # Unset: AWS S3 itself. `make dev` / `make test` start an embedded server and set it.
    s3_endpoint_url: str | None = None
    # Presigned URLs name this host instead (what clients reach when S3_ENDPOINT_URL is private).
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str = "keel-files"
    # Unset: the default credential chain (instance or workload identity, AWS_* variables).
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    # Create the bucket at start when missing (compose, dev, tests); in production it exists.
    s3_create_bucket: bool = False
    # What a storage outage can cost one call: a short connect, no retry (a 503 with Retry-After
    # tells the client when to try again; the worker's jobs run again by themselves).
    s3_connect_timeout: float = Field(default=1.0, gt=0)
    s3_read_timeout: float = Field(default=5.0, gt=0)
    s3_max_attempts: int = Field(default=1, ge=1)
    s3_max_connections: int = Field(default=32, ge=1)
    # Largest file, in bytes (uploads past it get 413 while streaming), and each user's total.
    file_max_size: int = Field(default=100 * 1_048_576, ge=1)
    file_quota_bytes: int = Field(default=1_073_741_824, ge=0)
    # Types decided from each file's first bytes (keel.kit.uploads.sniff); others get 415.
    file_allowed_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "application/pdf",
        ]
    )
    # Streamed uploads go to storage in parts of this size: the memory one upload holds.
    file_part_size: int = Field(default=8 * 1_048_576, ge=5 * 1_048_576)
    # Presigned upload and download URLs expire after this long.
    file_presign_expiry_seconds: int = Field(default=300, ge=1, le=604_800)
    # Unconfirmed uploads and objects without a row are purged after this long (worker).
    file_pending_ttl_seconds: int = Field(default=86_400, ge=60)
    # The request deadline of routes that stream a file in or out (REQUEST_DEADLINE_SECONDS
    # would cut a large transfer short).
    file_transfer_deadline_seconds: float = Field(default=600.0, gt=0)

    @field_validator("file_allowed_types", mode="before")
    @classmethod
    def _parse_file_types(cls, value: object) -> object:
        return _split_csv(value)

    # end feature: files

    # feature: realtime
    # --- Real-time events (WebSocket and SSE at /api/v1/events; docs/realtime.md) ---
    # Open streams one process holds, and one user holds in this process (each process counts its
    # own); past either, a new stream is refused with a 503 / 429 (WebSocket: 1013).
    realtime_max_connections_per_process: int = Field(default=10_000, ge=1)
    realtime_max_connections_per_user: int = Field(default=20, ge=1)
    # Events waiting to be written to one client; a client this far behind is dropped (1013)
    # instead of slowing the others or growing without bound.
    realtime_queue_limit: int = Field(default=256, ge=1)
    # SSE heartbeat comments: a write to a peer that is gone fails and ends its stream (WebSocket:
    # uvicorn's protocol pings, every 20 s, answered within 20 s).
    realtime_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # A WebSocket must authenticate (its first message) within this long.
    realtime_auth_timeout_seconds: float = Field(default=5.0, gt=0)
    # Single-use tickets (POST /api/v1/events/tickets) expire after this long.
    realtime_ticket_ttl_seconds: int = Field(default=30, ge=1, le=600)
    # How often each process checks that the sessions of its open streams are still valid.
    realtime_session_check_seconds: float = Field(default=5.0, gt=0)
    # Events are kept this long for clients that reconnect with their last event id.
    realtime_retention_seconds: int = Field(default=3_600, ge=60)
    # The relay (worker) sequences and publishes committed events at least this often.
    realtime_relay_interval_seconds: float = Field(default=1.0, gt=0)
    # On shutdown clients are told to reconnect after a random delay up to this long.
    realtime_reconnect_spread_seconds: float = Field(default=10.0, gt=0)
    # The Redis pub/sub channel events are fanned out on. Channels ignore the Redis database
    # number: services (or test runs) that share one Redis need names of their own.
    realtime_channel: str = "keel:realtime"
    # end feature: realtime

    # --- Auth and domain ---
    # Access tokens are verified with exactly this algorithm (the allow-list is this one entry).
    jwt_algorithm: JwtAlgorithm = "HS256"
    # HS*: the signing secret; defaults to SECRET_KEY. RS*/ES*/EdDSA: PEM key files instead.
    jwt_secret_key: SecretStr | None = None
    jwt_private_key_file: Path | None = None
    jwt_public_key_file: Path | None = None
    jwt_issuer: str = "keel"
    jwt_audience: str = "keel-api"
    jwt_leeway_seconds: int = Field(default=10, ge=0, le=60)
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=3600)
    refresh_token_ttl_seconds: int = Field(default=14 * 86_400, ge=300)
    # How long Redis remembers a session's state (active/admin/revoked); a miss reads PostgreSQL.
    auth_session_cache_ttl_seconds: int = Field(default=900, ge=1)
    password_min_length: int = Field(default=12, ge=8, le=128)
    # Failed logins per target account (any IP): this many are free, then each further failure
    # closes the account's logins (429) for the base delay, doubled per failure up to the max;
    # a success or the max without failures forgets them (keel.auth.throttle).
    login_free_failures: int = Field(default=5, ge=1)
    login_backoff_base_seconds: float = Field(default=1.0, gt=0)
    login_backoff_max_seconds: float = Field(default=900.0, gt=0)
    # argon2id; the defaults are OWASP's minimum (m=19 MiB, t=2, p=1).
    argon2_memory_cost_kib: int = Field(default=19_456, ge=7_168)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_parallelism: int = Field(default=1, ge=1)
    page_default_limit: int = Field(default=20, ge=1)
    page_max_limit: int = Field(default=100, ge=1)

    # feature: ratelimit
    # --- Rate limits ---
    # Limits use the slowapi/limits syntax ("100/minute"; several joined by ";" must all hold),
    # counted per client (the user of a valid bearer token, else the client IP) in Redis, so
    # every worker and instance shares them. See docs/resilience.md.
    rate_limit_enabled: bool = True
    # Per client and per route, for every route without a limit of its own; empty: none.
    rate_limit_default: str = "600/minute"
    rate_limit_login: str = "10/minute"
    rate_limit_register: str = "5/minute"
    rate_limit_refresh: str = "30/minute"
    # Most hits one process leases from a window at a time (keel.ratelimit.leases): unset means
    # 1% of each limit (limits under 100 per window: none, every hit counted in Redis); 0: no
    # leases. A client can be refused early by at most (processes - 1) x 1.5 leases, never
    # admitted past its limit.
    rate_limit_lease_max: int | None = Field(default=None, ge=0)
    # Paths never limited (probes and scrapes must not get 429).
    rate_limit_exempt_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/livez", "/readyz", "/metrics"]
    )
    # Peers whose X-Forwarded-For is believed (IPs or CIDRs, comma-separated); with none, the
    # TCP peer is the client. List only your own load balancers.
    rate_limit_trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # end feature: ratelimit

    # --- Caching ---
    # The Redis client of what fails open (the cache, the rate limits): connect and read
    # timeout (what a dead Redis can cost one request), no retries, and after a failure Redis
    # is left alone for REDIS_FAST_RETRY_INTERVAL seconds before one request probes it again.
    redis_fast_timeout: float = Field(default=0.25, gt=0, le=5)
    redis_fast_retry_interval: float = Field(default=5.0, gt=0)
    redis_fast_max_connections: int = Field(default=32, ge=2)
    cache_ttl_seconds: float = Field(default=60.0, gt=0)
    # Single flight: the computing process holds a lock this long at most (if it dies) ...
    cache_lock_ttl_seconds: float = Field(default=10.0, gt=0)
    # ... and the others wait this long for its result before computing themselves.
    cache_lock_wait_seconds: float = Field(default=2.0, gt=0)
    # After an invalidation nothing is cached for the key this long: longer than the writing
    # transaction may stay open, so a value read before its commit is never stored.
    cache_invalidation_hold_seconds: float = Field(default=5.0, ge=0)

    # --- Contract ---
    # The OpenAPI document's `servers` (comma-separated base URLs, e.g.
    # "https://api.example.com,https://staging-api.example.com"); empty: none listed, and
    # clients resolve paths against wherever they fetched the document.
    openapi_servers: Annotated[list[AnyHttpUrl], NoDecode] = Field(default_factory=list)

    @field_validator("openapi_servers", mode="before")
    @classmethod
    def _parse_openapi_servers(cls, value: object) -> object:
        return _split_csv(value)

    # feature: ratelimit
    @field_validator("rate_limit_exempt_paths", "rate_limit_trusted_proxies", mode="before")
    @classmethod
    def _parse_rate_limit_csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator(
        "rate_limit_default", "rate_limit_login", "rate_limit_register", "rate_limit_refresh"
    )
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse_many

        if value.strip():
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a rate limit (e.g. '10/minute' or '10/minute;100/hour')"
                ) from None
        return value

    @field_validator("rate_limit_trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    # end feature: ratelimit

    @model_validator(mode="before")
    @classmethod
    def _parse_csv_lists(cls, data: object) -> object:
        if isinstance(data, dict) and "cors_origins" in data:
            data = {**data, "cors_origins": _split_csv(data["cors_origins"])}
        return data

    @model_validator(mode="after")
    def _refuse_weak_production(self) -> Self:
        if self.environment is not Environment.PRODUCTION:
            return self
        secrets = [("SECRET_KEY", self.secret_key)]
        if self.jwt_secret_key is not None and self.jwt_algorithm.startswith("HS"):
            secrets.append(("JWT_SECRET_KEY", self.jwt_secret_key))
        for variable, secret in secrets:
            weakness = secret_weakness(secret.get_secret_value())
            if weakness is not None:
                raise SettingsError(f"{variable} {weakness}")
        return self

    @model_validator(mode="after")
    def _refuse_wildcard_cors_with_credentials(self) -> Self:
        # Starlette would reflect any Origin back with credentials allowed: a CSRF hole. "null"
        # is the Origin of sandboxed iframes and file:// pages, which anyone can make.
        wildcards = {origin.strip().lower() for origin in self.cors_origins} & {"*", "null"}
        if self.cors_allow_credentials and wildcards:
            raise SettingsError(
                "CORS_ORIGINS must list explicit origins when CORS_ALLOW_CREDENTIALS is true "
                "('*' and 'null' are refused)"
            )
        return self

    @model_validator(mode="after")
    def _check_jwt_keys(self) -> Self:
        # Every environment: a short HMAC secret or a missing/weak key file is a bug, not a
        # production-only concern. The loader names the variable and the rule.

        # Guessable HS secrets in production: `_refuse_weak_production`.
        if self.page_default_limit > self.page_max_limit:
            raise SettingsError("PAGE_DEFAULT_LIMIT must not exceed PAGE_MAX_LIMIT")
        try:
            load_keys(*self.jwt_key_source)
        except KeyConfigError as error:
            raise SettingsError(str(error)) from None
        return self

    @property
    def jwt_signing_secret(self) -> SecretStr:
        """The HMAC secret: JWT_SECRET_KEY, else SECRET_KEY."""
        return self.jwt_secret_key or self.secret_key

    @property
    def jwt_key_source(self) -> tuple[str, str | None, str | None, str | None]:
        """Hashable arguments of `keel.token_keys.load_keys` (it caches the loaded keys)."""
        if self.jwt_algorithm.startswith("HS"):
            return (self.jwt_algorithm, self.jwt_signing_secret.get_secret_value(), None, None)
        return (
            self.jwt_algorithm,
            None,
            str(self.jwt_private_key_file) if self.jwt_private_key_file else None,
            str(self.jwt_public_key_file) if self.jwt_public_key_file else None,
        )

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def log_as_json(self) -> bool:
        """JSON lines in production (for the log pipeline), console output elsewhere."""
        if self.log_json is None:
            return self.is_production
        return self.log_json

    @property
    def docs_on(self) -> bool:
        """Docs are on outside production; in production only when DOCS_ENABLED=true."""
        if self.docs_enabled is None:
            return not self.is_production
        return self.docs_enabled


def describe_validation_error(error: ValidationError) -> str:
    """One line per broken rule: `VARIABLE: rule`, the way an operator reads it."""
    lines = []
    for problem in error.errors():
        variable = "_".join(str(part) for part in problem["loc"]).upper()
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{variable}: {message}" if variable else message)
    return "; ".join(lines)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once (tests build their own `Settings(...)` instead)."""
    return Settings()
