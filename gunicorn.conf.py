"""Gunicorn configuration for Keel (`gunicorn -c gunicorn.conf.py "keel.main:create_app()"`).

Every knob comes from the environment so the same file serves the image, compose and Kubernetes.
docs/deployment.md explains the numbers; tests/deploy/ checks the budget and the lifecycle.

    WEB_CONCURRENCY        worker processes (default: usable CPU cores, cgroup v1/v2 quota aware)
    BIND                   listen address (default 0.0.0.0:$PORT, PORT default 8000)
    DRAIN_TIMEOUT          seconds in-flight requests get after SIGTERM (default 25)
                           -> graceful_timeout = DRAIN_TIMEOUT + 5 (lifespan shutdown + exit)
    KEEPALIVE              idle keep-alive seconds (default 5; keep it <= DRAIN_TIMEOUT)
    WORKER_TIMEOUT         heartbeat watchdog seconds (default 30)
    MAX_REQUESTS           recycle a worker after this many requests (default 20000; 0 = never)
    MAX_REQUESTS_JITTER    random extra requests so workers do not recycle together (default 2000)
    FORWARDED_ALLOW_IPS    proxies whose X-Forwarded-* headers are trusted (default: none;
                           see "proxies" below)
    LOG_LEVEL              log level, shared with the app's settings (default INFO)
    PROMETHEUS_MULTIPROC_DIR  prometheus-client multiprocess directory (wiped at start)
    DB_MAX_CONNECTIONS     the database's max_connections; unset: asked from DATABASE_URL at start
    DB_RESERVED_CONNECTIONS connections kept free for migrations, the worker, admins (default 10)
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from keel.gunicorn_worker import SHUTDOWN_RESERVE_SECONDS


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPU cores this process may use: the affinity mask, capped by a cgroup CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    quota = cgroup_cpu_quota(cgroup_root)
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


def cgroup_cpu_quota(root: Path) -> float | None:
    """The CPU quota in cores (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us` / `_period_us`),
    or None when unlimited or unreadable. Hosts still on cgroup v1 (older distributions, some
    managed Kubernetes nodes) would otherwise get one worker per host core, whatever the limit."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        pass
    else:
        return None if quota == "max" else _cores(quota, period)
    # v1 mounts the cpu controller as cpu/ or as the combined cpu,cpuacct/ (often both).
    for controller in ("cpu", "cpu,cpuacct"):
        try:
            quota = (root / controller / "cpu.cfs_quota_us").read_text().strip()
            period = (root / controller / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            continue
        return None if quota == "-1" else _cores(quota, period)
    return None


def _cores(quota: str, period: str) -> float | None:
    try:
        cores = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return cores if cores > 0 else None


# --- server socket and processes ---
bind = os.environ.get("BIND") or f"0.0.0.0:{_env_int('PORT', 8000)}"
workers = _env_int("WEB_CONCURRENCY", usable_cpus())
worker_class = "keel.gunicorn_worker.KeelUvicornWorker"
proc_name = "keel"
# Import the app in each worker (not in the master): a HUP reload then picks up new code, and
# nothing with sockets or threads is created before fork.
preload_app = False
# The heartbeat file lives in memory (the root filesystem is read-only in the image).
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108

# --- timeouts: the budget that docs/deployment.md and tests/deploy check ---
drain_timeout = _env_int("DRAIN_TIMEOUT", 25)
graceful_timeout = drain_timeout + int(SHUTDOWN_RESERVE_SECONDS)
timeout = _env_int("WORKER_TIMEOUT", 30)
keepalive = _env_int("KEEPALIVE", 5)
max_requests = _env_int("MAX_REQUESTS", 20_000)
max_requests_jitter = _env_int("MAX_REQUESTS_JITTER", 2_000)

# --- proxies, logging, control ---
# The first of these that is set names the proxies whose X-Forwarded-For uvicorn believes, so
# logs and request.client name the real client; with none set, no forwarded header is
# believed, whoever sends it (127.0.0.1 included).
PROXY_VARIABLES = (
    "FORWARDED_ALLOW_IPS",
    "RATE_LIMIT_TRUSTED_PROXIES",  # feature: ratelimit
)
forwarded_allow_ips = next((os.environ[name] for name in PROXY_VARIABLES if name in os.environ), "")
accesslog = None  # access logs come from Keel's middleware, one JSON line per request
errorlog = "-"
# The master's own lines as JSON, like the workers' (keel/gunicorn_logging.py).
logger_class = "keel.gunicorn_logging.JsonLogger"
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
control_socket_disable = True  # no runtime control socket in a container


# --- hooks ---
def on_starting(server: Any) -> None:
    """Master, before any worker: start the prometheus multiprocess directory empty."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Files left by a previous run would be summed into this run's counters.
        for entry in path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    except OSError as error:
        # Typically a read-only root filesystem without the /tmp tmpfs: say so in one line
        # instead of a traceback from deep inside gunicorn's start-up.
        server.log.error(
            "cannot prepare PROMETHEUS_MULTIPROC_DIR=%s (%s): the container needs a writable "
            "tmpfs on /tmp when the root filesystem is read-only (docs/deployment.md)",
            path,
            error.strerror or error,
        )
        sys.exit(1)
    server.log.info("prometheus multiprocess directory %s emptied", path)


def child_exit(server: Any, worker: Any) -> None:
    """Master, after a worker exited: merge its live gauges away."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def when_ready(server: Any) -> None:
    """Master, sockets bound: warn when the workers could open more DB connections than allowed."""
    max_overflow = 0  # asyncpg's pool never overflows its max_size
    reserved = _env_int("DB_RESERVED_CONNECTIONS", 10)
    raw_max = os.environ.get("DB_MAX_CONNECTIONS", "").strip()
    superuser_reserved = 0
    try:
        pool_size, database_url = _pool_size_and_url()
        if raw_max:
            max_connections = int(raw_max)
        else:
            max_connections, superuser_reserved = asyncio.run(_ask_database(database_url))
    except Exception as exc:  # a check that must never stop the server from starting
        server.log.warning("database connection budget not checked: %s", exc)
        return
    message = connection_budget_warning(
        workers=server.num_workers,
        pool_size=pool_size,
        max_overflow=max_overflow,
        max_connections=max_connections,
        reserved=reserved + superuser_reserved,
    )
    if message:
        server.log.warning(message)


def connection_budget_warning(
    *, workers: int, pool_size: int, max_overflow: int, max_connections: int, reserved: int
) -> str | None:
    """The warning to log when this instance's pools could exhaust the database, else None."""
    wanted = workers * (pool_size + max_overflow)
    allowed = max_connections - reserved
    if wanted <= allowed:
        return None
    return (
        f"database connection budget exceeded: workers={workers} x (pool_size={pool_size} + "
        f"max_overflow={max_overflow}) = {wanted} > max_connections={max_connections} - "
        f"reserved={reserved} = {allowed}; lower WEB_CONCURRENCY or DB_POOL_MAX_SIZE, or raise "
        "max_connections (and remember every replica multiplies this)"
    )


def _pool_size_and_url() -> tuple[int, str]:
    try:
        from keel.settings import get_settings
    except ImportError:
        return _env_int("DB_POOL_MAX_SIZE", 16), os.environ.get("DATABASE_URL", "")
    settings = get_settings()
    return settings.db_pool_max_size, settings.database_url


async def _ask_database(database_url: str) -> tuple[int, int]:
    import asyncpg

    if not database_url:
        raise RuntimeError("DATABASE_URL is not set")
    connection = await asyncpg.connect(database_url, timeout=2.0)
    try:
        max_connections = await connection.fetchval("SHOW max_connections", timeout=2.0)
        superuser = await connection.fetchval("SHOW superuser_reserved_connections", timeout=2.0)
    finally:
        await connection.close(timeout=2.0)
    return int(max_connections), int(superuser)
