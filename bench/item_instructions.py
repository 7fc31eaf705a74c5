"""The item GET in CPU instructions: Keel vs FastAPI's own floor vs Starlette + asyncpg.

    .venv/bin/python -m bench.item_instructions      # ~15 minutes; needs valgrind (apt-get)
    .venv/bin/python -m bench.item_instructions --identity   # without Accept-Encoding: gzip
    .venv/bin/python -m bench.item_instructions --stock-routing   # + Keel on FastAPI's routing
    .venv/bin/python -m bench.item_instructions --against REV     # Keel here vs Keel at REV

Requests/s on a shared 2-core VM swing by +-20% from run to run (other jobs, caches), and the
item GET's ratio to the Starlette reference with them (0.27x-0.41x measured on one day with the
same code). This is the deterministic figure beside it: each server is one uvicorn process
(uvloop, httptools, no access log, the bench settings of bench/run.py) run under callgrind; a
client sends N authenticated `GET .../items/{id}` over 8 keep-alive connections, then the server
is stopped. The difference of the instruction totals for N = 200 and N = 800, / 600, is the
server's instructions per request through the whole stack: HTTP parsing and writing, routing,
middleware, auth, the asyncpg read, serialization. Start-up, warm-up and shutdown cancel out.

* Starlette + asyncpg (bench/apps/starlette_asyncpg_item.py): the ceiling, as in bench/run.py.
* FastAPI + asyncpg (bench/apps/fastapi_asyncpg_item.py): one dependency and a response model,
  nothing else: what FastAPI itself costs for a route of this shape.
* Keel: the full stack (auth with the revocation check, middleware, access log, rate limit).
* `--against REV` counts only Keel, the item GET and `/livez`, in this working tree and at a git
  revision (checked out in a temporary worktree), side by side in one run: what a change costs
  per request, free of the drift between runs taken at different times.
* `--stock-routing` adds Keel with FastAPI's own routing (bench/apps/keel_stock_routing.py):
  routers included nested and dependencies solved by FastAPI's solver, which shows what
  keel.kit.routing's flat route table and compiled dependency plans save.

The client is httpx, which sends `Accept-Encoding: gzip, deflate` as browsers and most clients
do; `--identity` sends `Accept-Encoding: identity` instead, the same as wrk in bench/run.py,
which sends none (Keel's gzip responder then never runs; the references have none either way).

On a CPU-bound server, requests/s go as the inverse of instructions per request to within the
difference in instructions per cycle, and that difference is not small: measured side by side
under wrk, Keel ran ~20% fewer instructions per CPU second than the Starlette reference (a larger
working set), so the requests/s ratio comes out below the instruction ratio. The instruction
ratio is the figure without the machine's noise, not the requests/s figure itself. PostgreSQL
and Redis as bench/run.py finds them; only 127.0.0.1 traffic; every run is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench import harness
from bench import run as bench_run

LOW, HIGH = 200, 800
CONNECTIONS = 8
STARLETTE = "Starlette + asyncpg"
FASTAPI = "FastAPI + asyncpg"
KEEL = "Keel"
KEEL_STOCK = "Keel, stock routing"
TARGET = 0.35  # the requests/s target for Keel / Starlette + asyncpg (docs/performance.md)


def count(
    target: str,
    env: dict[str, str],
    *,
    factory: bool,
    url: str,
    headers: dict[str, str],
    n: int,
    root: Path = harness.ROOT,
) -> int:
    """Instructions the server executed in its whole life while serving `n` requests, with the
    code of the checkout at `root`."""
    port = harness.free_port()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, "-m", "uvicorn", target, "--host", harness.HOST, "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        if factory:
            command.append("--factory")
        paths = f"{root}:{root / 'src'}"
        with (Path(scratch) / "server.log").open("wb") as log:
            server = subprocess.Popen(
                command,
                cwd=root,
                env={**os.environ, **env, "PYTHONPATH": paths, "PYTHONHASHSEED": "0"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                base = f"http://{harness.HOST}:{port}"
                wait_ready(server, base + url, headers)
                asyncio.run(load(base + url, headers, n))
            finally:
                server.terminate()
                server.wait(timeout=600)
        found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            raise RuntimeError("no instruction total in the callgrind output")
        return int(found.group(1))


def wait_ready(server: subprocess.Popen[bytes], url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 900  # start-up under callgrind is ~50x slower
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(url, headers=headers, timeout=60).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError("the server did not answer 200 in time")


async def load(url: str, headers: dict[str, str], n: int) -> None:
    limits = httpx.Limits(max_connections=CONNECTIONS)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def connection(requests: int) -> None:
            for _ in range(requests):
                response = await client.get(url, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}")

        await asyncio.gather(*(connection(n // CONNECTIONS) for _ in range(CONNECTIONS)))


@contextlib.contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """`revision` in a temporary git worktree, removed afterwards."""
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        git = ["git", "-C", str(harness.ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", str(tree), revision], check=True)
        try:
            yield tree
        finally:
            subprocess.run([*git, "remove", "--force", str(tree)], check=False)


def against(
    revision: str, env: bench_run.Env, data: bench_run.Seed, encoding: dict[str, str]
) -> None:
    """Keel's item GET and /livez here and at `revision`, alternating, in one run."""
    auth = {"Authorization": f"Bearer {data.token}", **encoding}
    routes = {"item GET": (f"/api/v1/items/{data.item}", auth), "/livez": ("/livez", encoding)}
    with checkout(revision) as tree:
        roots = {revision: tree, "this tree": harness.ROOT}
        for route, (url, headers) in routes.items():
            per_request = {}
            for label, root in roots.items():
                low, high = (
                    count("keel.main:create_app", env.keel(), factory=True, url=url,
                          headers=headers, n=n, root=root)
                    for n in (LOW, HIGH)
                )  # fmt: skip
                per_request[label] = (high - low) / (HIGH - LOW)
                print(f"  {route:<9} {label:<14} {per_request[label] / 1000:8.1f}k", flush=True)
            change = per_request["this tree"] / per_request[revision] - 1
            print(f"{route}: this tree vs {revision}: {change:+.1%} instructions per request")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--identity", action="store_true", help="send Accept-Encoding: identity (as wrk does)"
    )
    parser.add_argument(
        "--stock-routing",
        action="store_true",
        help="also count Keel with FastAPI's stock routing and dependency solver",
    )
    parser.add_argument("--against", metavar="REV", help="Keel here vs Keel at git revision REV")
    arguments = parser.parse_args()
    encoding = {"Accept-Encoding": "identity"} if arguments.identity else {}
    harness.ensure_debian_tool("valgrind", "valgrind")
    with (
        tempfile.TemporaryDirectory() as scratch,
        bench_run.backing_services(Path(scratch)) as (database, redis),
    ):
        env = bench_run.Env(database, redis, 20, harness.free_port())
        data = bench_run.seed(env)
        reference = env.reference(data.owner)
        if arguments.against:
            against(arguments.against, env, data, encoding)
            return 0
        auth = {"Authorization": f"Bearer {data.token}"}
        apps = {
            STARLETTE: ("bench.apps.starlette_asyncpg_item:app", reference, False, "/items", {}),
            FASTAPI: ("bench.apps.fastapi_asyncpg_item:app", reference, False, "/items", {}),
            KEEL: ("keel.main:create_app", env.keel(), True, "/api/v1/items", auth),
        }
        if arguments.stock_routing:
            stock = "bench.apps.keel_stock_routing:create_app"
            apps[KEEL_STOCK] = (stock, env.keel(), True, "/api/v1/items", auth)
        per_request: dict[str, float] = {}
        for name, (target, app_env, factory, prefix, headers) in apps.items():
            url = f"{prefix}/{data.item}"
            low, high = (
                count(
                    target, app_env, factory=factory, url=url, headers={**headers, **encoding}, n=n
                )
                for n in (LOW, HIGH)
            )
            per_request[name] = (high - low) / (HIGH - LOW)
            print(f"  {name:<22} {per_request[name] / 1000:8.1f}k instructions per GET", flush=True)
    starlette = per_request[STARLETTE]
    print(f"item GET, server instructions per request ({HIGH} - {LOW} requests, callgrind):")
    for name, value in per_request.items():
        ratio = starlette / value
        print(f"  {name:<22} {value / 1000:8.1f}k   Starlette + asyncpg / it: {ratio:.3f}x")
    ratio = starlette / per_request[KEEL]
    verdict = "holds" if ratio >= TARGET else "MISSED"
    print(
        f"Keel in instructions: {ratio:.3f}x of Starlette + asyncpg (target {TARGET}x): {verdict}"
    )
    if KEEL_STOCK in per_request:
        saved = per_request[KEEL_STOCK] - per_request[KEEL]
        print(f"keel.kit.routing saves {saved / 1000:.1f}k instructions per GET")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
