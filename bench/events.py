"""Real-time events: Keel's stream vs a minimal Starlette + Redis pub/sub reference.

    make bench                         # with every other scenario
    .venv/bin/python -m bench.events   # this one alone (BENCH_QUICK=1: smaller N, < 2 minutes)

Servers: one uvicorn process at a time (uvloop, httptools, `--ws websockets-sansio`), pinned to
the server core: the reference (bench/apps/events_reference.py) or Keel (keel.main:create_app
with REALTIME_MAX_CONNECTIONS_PER_PROCESS/_PER_USER raised to 20000, and one `keel worker`
process next to it, unpinned: it relays Keel's events). Each measurement starts a fresh server.
The load is bench/events_load.py in a process of its own, pinned to the load core; it talks to
this module over its stdin/stdout, and everything is measured from outside:

* memory: the server's RSS (psutil) with a few warm-up streams open, then with N idle streams
  more: KB per stream. WebSocket with the client offering permessage-deflate (as browsers do):
  the reference with uvicorn's default deflate (on), then without; Keel as it ships (without,
  keel.gunicorn_worker) in both; SSE.
* fan-out: N WebSockets of one user, events caused one at a time (Keel: POST /api/v1/items;
  the reference: POST /publish) and awaited on every stream: commit-to-receipt latency (receipt
  wall time minus the frame's occurred_at), p50/p99 over every delivery.
* burst: R events/s for D s to N WebSockets: deliveries, streams closed with 1013 (the
  slow-consumer policy) and the API process's CPU time (user + system) per delivery.

The variants alternate A-B, B-A over the passes; figures are medians over the passes, ratios
(Keel / reference: lower is better for all three) the median of each pass's ratio. The issue's
targets are reported as holds / MISSED in the burst scenario's notes, never asserted.

Sizes: 10,000 idle streams per variant, fan-out to 1,000 and 5,000 streams (20 events), a burst
of 100 events/s for 10 s to 1,000 streams, 3 passes. BENCH_QUICK=1: 1,000 idle streams, fan-out
to 500 and 1,000 (10 events), a 3 s burst, 1 pass. The soft RLIMIT_NOFILE of this process is
raised to fit (the servers and the client inherit it); the hard limit must allow it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

from bench import harness
from bench.events_load import FD_HEADROOM, raise_nofile
from bench.harness import Figure, Run, Scenario

REFERENCE_APP = "bench.apps.events_reference:app"
KEEL_APP = "keel.main:create_app"
REFERENCE = "reference"
KEEL = "Keel"
KEEL_EVENTS_ENV = {
    # Every stream of the bench is one user's: Keel's per-user and per-process caps allow it.
    "REALTIME_MAX_CONNECTIONS_PER_PROCESS": "20000",
    "REALTIME_MAX_CONNECTIONS_PER_USER": "20000",
    # No metrics listener for the worker: nothing scrapes it, and its fixed port may be taken.
    "WORKER_METRICS_PORT": "0",
}
TRIGGER_BODY = json.dumps({"title": "event bench", "description": "fan-out"})
# The targets: KB per idle stream, fan-out p99 by N (ms), Keel / reference ratios.
KB_PER_WS = 36.0
KB_PER_SSE = 30.0
IDLE_WS_10K_MB = 400.0
FANOUT_P99_MS = {1000: 100.0, 5000: 300.0}
MAX_RATIO = 1.5
# RSS is read this long after the streams are open: buffers freed, the loop idle again.
SETTLE_SECONDS = 1.0
CLIENT_NOTE = (
    "One Python client process on the load core decompresses and parses every frame in turn: "
    "with thousands of streams a good part of each latency is the client's own queue (the same "
    "for both servers)."
)
# The client's phases arrive within its own --timeout; this much more, then it is killed.
CLIENT_GRACE = 30.0


@dataclass(frozen=True)
class Plan:
    idle: int  # idle streams whose memory is measured
    warm: int  # streams open before the baseline RSS is read
    fanout: tuple[int, ...]
    fanout_events: int
    burst_streams: int
    burst_rate: float
    burst_seconds: float
    passes: int


def plan() -> Plan:
    if harness.quick():
        return Plan(1000, 20, (500, 1000), 10, 1000, 100.0, 3.0, 1)
    return Plan(10_000, 50, (1000, 5000), 20, 1000, 100.0, 10.0, 3)


# --- servers ---


@dataclass
class Served:
    """A running variant: its API process, Keel's worker, and how to cause one event."""

    api: harness.Server
    worker: harness.Server | None
    token: str
    trigger_path: str

    def client_args(self) -> list[str]:
        return [
            "--url", self.api.base, "--token", self.token,
            "--trigger-url", self.api.base + self.trigger_path,
            "--trigger-header", f"Authorization: Bearer {self.token}",
            "--trigger-body", TRIGGER_BODY,
        ]  # fmt: skip


def start_api(name: str, target: str, env: dict[str, str], *, deflate: bool) -> harness.Server:
    """uvicorn as harness.start_uvicorn starts it, with the WebSocket options of this bench."""
    port = harness.free_port()
    args = [
        target, "--host", harness.HOST, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
        "--ws", "websockets-sansio", "--ws-per-message-deflate", str(deflate).lower(),
    ]  # fmt: skip
    if target == KEEL_APP:
        args.append("--factory")
    return harness.start_module(name, "uvicorn", args, env, port)


@dataclass(frozen=True)
class Setup:
    keel_env: dict[str, str]
    token: str

    def reference_env(self) -> dict[str, str]:
        return {"REDIS_URL": self.keel_env["REDIS_URL"]}


@contextlib.contextmanager
def serving(setup: Setup, variant: str, *, deflate: bool = True) -> Iterator[Served]:
    """One fresh server of `variant` (and Keel's worker), stopped on the way out."""
    worker = None
    if variant == KEEL:
        env = {**setup.keel_env, **KEEL_EVENTS_ENV}
        # As Keel ships (keel.gunicorn_worker, `keel serve`): no per-message deflate, whatever
        # the reference runs with.
        api = start_api("keel events", KEEL_APP, env, deflate=False)
        # The worker has no port: harness.start_module only needs one to name the server.
        worker = harness.start_module("keel worker", "keel.cli", ["worker"], env, 0, pin=False)
        served = Served(api, worker, setup.token, "/api/v1/items")
    else:
        api = start_api("reference events", REFERENCE_APP, setup.reference_env(), deflate=deflate)
        served = Served(api, None, "unused", "/publish")
    try:
        harness.wait_status(api, "/readyz" if variant == KEEL else "/livez")
        if worker is not None and worker.process.poll() is not None:
            raise RuntimeError(f"keel worker exited at start:\n{worker.log_tail()}")
        yield served
    finally:
        if worker is not None:
            harness.stop(worker)
        harness.stop(api)


# --- the load client ---


class LoadClient:
    """bench.events_load in its own process, pinned to the load core, gated by stdin lines."""

    def __init__(self, args: list[str], timeout: float) -> None:
        command = [
            "taskset", "-c", harness.LOAD_CPU, sys.executable, "-m", "bench.events_load",
            *args, "--gated", "--timeout", f"{timeout:g}",
        ]  # fmt: skip
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.process = subprocess.Popen(
            command,
            cwd=harness.ROOT,
            env={**os.environ, "PYTHONPATH": f"{harness.ROOT}:{harness.ROOT / 'src'}"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.deadline = time.monotonic() + timeout + CLIENT_GRACE
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, phase: str) -> dict[str, Any]:
        """The client's next `phase` message (earlier phases are skipped)."""
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, self.deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"the load client did not report {phase!r} in time") from None
            if line is None:
                raise RuntimeError(f"the load client exited before {phase!r}: {self.tail()}")
            message: dict[str, Any] = json.loads(line)
            if message["phase"] == "error":
                raise RuntimeError(f"load client: {message['error']}")
            if message["phase"] == phase:
                return message

    def go(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("go\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise RuntimeError(f"the load client is gone: {self.tail()}") from None

    def tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-1500:]

    def close(self) -> None:
        """Its figures are in (or the measurement failed): what it still does is not needed."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        self.stderr.close()


@contextlib.contextmanager
def load_client(args: list[str], timeout: float) -> Iterator[LoadClient]:
    client = LoadClient(args, timeout)
    try:
        yield client
    finally:
        client.close()


# --- measurements ---


def rss(server: harness.Server) -> int:
    time.sleep(SETTLE_SECONDS)
    return int(psutil.Process(server.process.pid).memory_info().rss)


def cpu_seconds(server: harness.Server | None) -> float:
    if server is None:
        return 0.0
    times = psutil.Process(server.process.pid).cpu_times()
    return float(times.user + times.system)


def idle_memory(served: Served, streams: int, warm: int, transport: str) -> Run:
    """KB of the server's RSS per idle stream, above a baseline with `warm` streams open."""
    args = [
        *served.client_args(), "--mode", "idle", "--transport", transport,
        "--connections", str(streams), "--warmup-connections", str(warm),
    ]  # fmt: skip
    with load_client(args, timeout=60 + streams / 100) as client:
        client.expect("warm")
        before = rss(served.api)
        client.go()
        ready = client.expect("ready")
        if ready["opened"] != streams:
            raise RuntimeError(f"{ready['failed']} streams failed: {ready['failures']}")
        after = rss(served.api)
        client.go()
        client.expect("result")
    per_stream_kb = (after - before) / streams / 1024
    # KB per stream as the figure; the process's whole RSS (MB) rides along as `requests`.
    return Run(per_stream_kb, 0.0, 0.0, round(after / 2**20), 0, 0, False)


def fanout_latency(served: Served, streams: int, events: int) -> Run:
    """p99 commit-to-receipt latency (ms) as the figure, p50/p99 next to it."""
    args = [
        *served.client_args(), "--mode", "fanout",
        "--connections", str(streams), "--events", str(events),
    ]  # fmt: skip
    with load_client(args, timeout=60 + streams / 100 + (events + 1) * 30) as client:
        client.expect("ready")
        client.go()
        result = client.expect("result")
    missing = int(result["missing"])
    note = f"{missing} deliveries missing" if missing else ""
    return Run(
        result["p99_ms"], result["p50_ms"], result["p99_ms"],
        int(result["deliveries"]), missing, 0, bool(missing), note,
    )  # fmt: skip


def burst_cost(served: Served, cfg: Plan, details: dict[str, list[float]]) -> Run:
    """The API process's CPU µs per delivery over a burst; its latency as p50/p99."""
    args = [
        *served.client_args(), "--mode", "burst", "--connections", str(cfg.burst_streams),
        "--rate", f"{cfg.burst_rate:g}", "--seconds", f"{cfg.burst_seconds:g}",
    ]  # fmt: skip
    timeout = 90 + cfg.burst_streams / 100 + cfg.burst_seconds
    with load_client(args, timeout=timeout) as client:
        client.expect("ready")
        api_before, worker_before = cpu_seconds(served.api), cpu_seconds(served.worker)
        client.go()
        result = client.expect("result")
        api_cpu = cpu_seconds(served.api) - api_before
        worker_cpu = cpu_seconds(served.worker) - worker_before
    deliveries = int(result["deliveries"])
    if not deliveries:
        raise RuntimeError(f"no deliveries in the burst: {result}")
    details["closed_1013"].append(result["closed_1013"])
    details["delivered_share"].append(deliveries / max(1, int(result["expected"])))
    details["worker_cpu_us_per_delivery"].append(worker_cpu / deliveries * 1e6)
    failures = sum(result["post_failures"].values())
    note = f"{failures} trigger POSTs failed: {result['post_failures']}" if failures else ""
    return Run(
        api_cpu / deliveries * 1e6, result["p50_ms"], result["p99_ms"],
        deliveries, 0, failures, bool(failures), note,
    )  # fmt: skip


# --- scenarios ---


def alternate(scenario: Scenario, passes: int, measure: Callable[[str], Run]) -> Scenario:
    """harness.alternate's order, one line per run in this scenario's units."""
    for number in range(1, passes + 1):
        for name in harness.pass_order([figure.name for figure in scenario.figures], number):
            try:
                run = measure(name)
            except (RuntimeError, OSError, subprocess.SubprocessError, httpx.HTTPError) as error:
                run = harness.failed_run(error)
            scenario.figure(name).runs.append(run)
            state = f"FAILED ({run.note})" if run.failed else ""
            print(
                f"  {scenario.name:<22} pass {number} {name:<10} {run.rps:>9.2f} "
                f"{scenario.unit}  p50 {run.p50_ms:8.2f} ms  p99 {run.p99_ms:8.2f} ms  {state}",
                flush=True,
            )
    return scenario


def memory_scenarios(setup: Setup, cfg: Plan) -> list[Scenario]:
    kinds = {
        "events_idle_ws": ("ws", True, "WebSocket, reference with uvicorn's default deflate"),
        "events_idle_ws_plain": ("ws", False, "WebSocket, reference without deflate"),
        "events_idle_sse": ("sse", True, "SSE"),
    }
    scenarios = []
    for key, (transport, deflate, label) in kinds.items():
        scenario = Scenario(
            key,
            f"Idle streams: KB of server RSS per stream, {cfg.idle:,} x {label}",
            reference=REFERENCE,
            figures=[Figure(REFERENCE), Figure(KEEL)],
            unit="KB/stream",
            notes=[
                f"The client offers permessage-deflate; RSS read {SETTLE_SECONDS:g} s after "
                f"the last stream is ready, above a baseline with {cfg.warm} streams open. "
                "`requests`: the process's whole RSS (MB); p50/p99: not applicable."
            ],
        )

        def measure(name: str, transport: str = transport, deflate: bool = deflate) -> Run:
            with serving(setup, name, deflate=deflate) as served:
                return idle_memory(served, cfg.idle, cfg.warm, transport)

        scenarios.append(alternate(scenario, cfg.passes, measure))
    return scenarios


def fanout_scenarios(setup: Setup, cfg: Plan) -> list[Scenario]:
    scenarios = []
    for streams in cfg.fanout:
        scenario = Scenario(
            f"events_fanout_{streams}",
            f"Fan-out to {streams:,} WebSockets of one user: commit-to-receipt p99",
            reference=REFERENCE,
            figures=[Figure(REFERENCE), Figure(KEEL)],
            unit="ms p99",
            notes=[
                f"{cfg.fanout_events} events one at a time, each awaited on every stream; "
                "latency = receipt wall time - the frame's occurred_at, over every delivery. "
                "Keel: POST /api/v1/items, relayed by its worker; the reference: POST /publish.",
                CLIENT_NOTE,
            ],
        )

        def measure(name: str, streams: int = streams) -> Run:
            with serving(setup, name) as served:
                return fanout_latency(served, streams, cfg.fanout_events)

        scenarios.append(alternate(scenario, cfg.passes, measure))
    return scenarios


def burst_scenario(setup: Setup, cfg: Plan) -> Scenario:
    scenario = Scenario(
        "events_burst",
        f"Burst: {cfg.burst_rate:g} events/s for {cfg.burst_seconds:g} s to "
        f"{cfg.burst_streams:,} WebSockets: API process CPU per delivery",
        reference=REFERENCE,
        figures=[Figure(REFERENCE), Figure(KEEL)],
        unit="CPU us/delivery",
        notes=[
            "p50/p99: commit-to-receipt latency during the burst; `requests`: deliveries.",
            CLIENT_NOTE,
        ],
    )
    details: dict[str, dict[str, list[float]]] = {
        name: {"closed_1013": [], "delivered_share": [], "worker_cpu_us_per_delivery": []}
        for name in (REFERENCE, KEEL)
    }

    def measure(name: str) -> Run:
        with serving(setup, name) as served:
            return burst_cost(served, cfg, details[name])

    alternate(scenario, cfg.passes, measure)
    for name, values in details.items():
        scenario.figure(name).extra = {
            key: statistics.median(found) for key, found in values.items() if found
        }
    return scenario


# --- verdicts ---


@dataclass
class Verdicts:
    lines: list[str] = field(default_factory=list)

    def add(self, label: str, value: float | None, limit: float, unit: str) -> None:
        if value is None:
            self.lines.append(f"{label}: FAILED (target <= {limit:g}{unit})")
            return
        verdict = "holds" if value <= limit else "MISSED"
        self.lines.append(f"{label}: {value:.2f}{unit} (target <= {limit:g}{unit}): {verdict}")


def keel_median(scenario: Scenario, attribute: str = "rps") -> float | None:
    figure = scenario.figure(KEEL)
    return figure.median(attribute) if figure.good() else None


def memory_verdicts(verdicts: Verdicts, memory: list[Scenario], cfg: Plan) -> None:
    _, ws_plain, sse = memory
    # Keel runs as it ships (no deflate) in both WebSocket scenarios: the second is its figure.
    verdicts.add("Keel KB per idle WebSocket", keel_median(ws_plain), KB_PER_WS, "")
    verdicts.add("Keel KB per idle SSE stream", keel_median(sse), KB_PER_SSE, "")
    for scenario, what in ((ws_plain, "as shipped"),):
        figure = scenario.figure(KEEL)
        total = figure.median("requests") if figure.good() else None
        if total is not None and cfg.idle < 10_000:
            # Fewer streams than the target's 10,000: the RSS at 10,000 at the measured rate.
            per_stream = figure.median("rps")
            total += (10_000 - cfg.idle) * per_stream / 1024
            what += f", projected from {cfg.idle:,}"
        verdicts.add(f"Keel RSS with 10,000 idle WebSockets ({what})", total, IDLE_WS_10K_MB, " MB")


def ratio_verdicts(verdicts: Verdicts, fanout: list[Scenario], burst: Scenario) -> None:
    for scenario in fanout:
        streams = int(scenario.name.rsplit("_", 1)[1])
        if streams in FANOUT_P99_MS:
            verdicts.add(
                f"Keel fan-out p99 @{streams:,}",
                keel_median(scenario),
                FANOUT_P99_MS[streams],
                " ms",
            )
        verdicts.add(
            f"Keel / reference fan-out p99 @{streams:,}", scenario.ratio(KEEL), MAX_RATIO, "x"
        )
    verdicts.add("Keel / reference burst CPU per delivery", burst.ratio(KEEL), MAX_RATIO, "x")


def burst_details(burst: Scenario) -> list[str]:
    lines = []
    for name in (REFERENCE, KEEL):
        extra = burst.figure(name).extra
        if extra:
            lines.append(
                f"{name} burst: {extra['delivered_share']:.1%} of the deliveries arrived, "
                f"{extra['closed_1013']:g} streams closed with 1013, worker CPU "
                f"{extra['worker_cpu_us_per_delivery']:.2f} us/delivery (not in the figure)."
            )
    return lines


# --- the scenario ---


def run(keel_env: dict[str, str], token: str) -> list[Scenario]:
    """Every real-time scenario; the targets' verdicts go to the last one's notes."""
    cfg = plan()
    # Inherited by the servers and the load clients: 10,000 streams need 10,000 descriptors.
    needed = max(cfg.idle, *cfg.fanout, cfg.burst_streams) + cfg.warm + FD_HEADROOM
    if not raise_nofile(needed):
        print(f"  the hard RLIMIT_NOFILE is below {needed}: the largest runs will fail", flush=True)
    setup = Setup(keel_env, token)
    memory = memory_scenarios(setup, cfg)
    fanout = fanout_scenarios(setup, cfg)
    burst = burst_scenario(setup, cfg)
    verdicts = Verdicts()
    memory_verdicts(verdicts, memory, cfg)
    ratio_verdicts(verdicts, fanout, burst)
    burst.notes += burst_details(burst) + verdicts.lines
    for line in burst_details(burst) + verdicts.lines:
        print(f"  {line}", flush=True)
    return [*memory, *fanout, burst]


def main() -> int:
    """This scenario alone, on the backing services `make bench` uses."""
    from bench.run import Env, backing_services, bench_settings, seed

    with (
        tempfile.TemporaryDirectory(prefix="keel-bench-events-") as scratch,
        backing_services(Path(scratch)) as (database, redis),
    ):
        env = Env(database, redis, bench_settings().pool, harness.free_port())
        scenarios = run(env.keel(), seed(env).token)
    for scenario in scenarios:
        harness.save(scenario)
        harness.print_scenario(scenario)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
