"""The shared benchmark harness: servers, CPU pinning, wrk runs, A/B alternation, results.

Everything here is bounded and local: servers bind 127.0.0.1, every wrk run has a duration and a
subprocess timeout, every wait has a deadline. A run with socket errors or unexpected statuses is
marked failed and left out of the medians (and the figure that depends on it says FAILED).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SERVER_CPU = "0"
LOAD_CPU = "1"
LIBRARIES = (
    "fastapi", "starlette", "pydantic", "pydantic-core", "uvicorn", "uvloop", "httptools",
    "gunicorn", "asyncpg", "sqlalchemy", "redis", "arq", "opentelemetry-sdk", "psutil",
)  # fmt: skip

# wrk's Lua hooks: the request (method, body, headers) and a `done` hook printing one JSON line
# with the latency percentiles and every error counter wrk keeps. wrk counts a status >= 400 in
# errors.status; the harness checks each endpoint's exact status once before loading it.
_LUA = """
wrk.method = %(method)s
wrk.body = %(body)s
%(headers)s
-- Which statuses other than the expected one came back (a failed run says which).
unexpected = {}
response = function(status, headers, body)
  if status ~= %(status)d then unexpected[status] = (unexpected[status] or 0) + 1 end
end
threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local e = summary.errors
  local seen = ""
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("unexpected")) do
      seen = seen .. string.format("%%d:%%d ", status, count)
    end
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d,' ..
    '"unexpected":"%%s"}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    seen))
end
"""


def quick() -> bool:
    return os.environ.get("BENCH_QUICK", "") not in ("", "0", "false")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


# --- machine and tools ---


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    if base.count("/") > 2:
        base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


def with_redis_db(url: str, db: int) -> str:
    base, _, query = url.partition("?")
    if re.search(r"/\d+$", base):
        base = base.rsplit("/", 1)[0]
    return f"{base}/{db}" + (f"?{query}" if query else "")


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        probe = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
        wrk_version = (probe.stdout + probe.stderr).strip().splitlines()[0]
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "libraries": versions,
        "wrk": wrk_version,
        # Other processes on the same cores skew every figure: note how busy the machine was.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "quick": quick(),
    }


def ensure_wrk() -> str:
    """wrk's path; installed from Debian's packages when missing and running as root."""
    return ensure_debian_tool("wrk", "wrk")


def ensure_debian_tool(command: str, package: str) -> str:
    """`command`'s path; `package` installed with apt-get when missing and running as root."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(
            f"{command} is not installed and cannot be installed here (needs root and apt-get): "
            f"install the `{package}` package (Debian/Ubuntu: apt-get install {package}) and run "
            "again"
        )
    print(f"{command} is missing: apt-get install -y {package}", flush=True)
    for step in (["apt-get", "update"], ["apt-get", "install", "-y", package]):
        subprocess.run(step, capture_output=True, check=False, timeout=600)
    found = shutil.which(command)
    if not found:
        raise SystemExit(f"apt-get install {package} failed: install {command} and run again")
    return found


# --- servers ---


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]


def start_uvicorn(
    name: str, target: str, env: dict[str, str], *, factory: bool = False, pin: bool = True
) -> Server:
    """One uvicorn process (uvloop, httptools, no access log), pinned to SERVER_CPU."""
    port = free_port()
    args = [
        target, "--host", HOST, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    if factory:
        args.append("--factory")
    return start_module(name, "uvicorn", args, env, port, pin=pin)


def start_module(
    name: str, module: str, args: list[str], env: dict[str, str], port: int, *, pin: bool = True
) -> Server:
    """`python -m module args...`, a server that listens on `port`, pinned to SERVER_CPU."""
    command = [sys.executable, "-m", module, *args]
    if pin:
        command[:0] = ["taskset", "-c", SERVER_CPU]
    return _spawn(name, command, env, port)


def start_gunicorn(name: str, workers: int, env: dict[str, str]) -> Server:
    """Keel under gunicorn.conf.py (KeelUvicornWorker: uvloop + httptools), not pinned."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
        "keel.main:create_app()",
    ]  # fmt: skip
    env = {
        **env,
        "BIND": f"{HOST}:{port}",
        "WEB_CONCURRENCY": str(workers),
        "LOG_LEVEL": "WARNING",
        "MAX_REQUESTS": "0",
    }
    return _spawn(name, command, env, port)


def _spawn(name: str, command: list[str], env: dict[str, str], port: int) -> Server:
    # Output goes to a file, never to an unread pipe: a full pipe would block the server.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Server(name, port, process, log, started)


def wait_status(server: Server, path: str, status: int = 200, timeout: float = 60.0) -> float:
    """Poll until `path` answers `status`; seconds since the process was started."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited at start:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(server.base + path).status_code == status:
                    return time.monotonic() - server.started
            time.sleep(0.02)
    stop(server)
    raise RuntimeError(f"{server.name}: {path} did not answer {status} within {timeout:.0f} s")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
    if os.environ.get("BENCH_SERVER_LOGS"):
        print(f"# {server.name} log tail:\n{server.log_tail()}")
    server.log.close()


@contextlib.contextmanager
def running(server: Server, ready_path: str = "/livez") -> Iterator[Server]:
    try:
        wait_status(server, ready_path)
        yield server
    finally:
        stop(server)


# --- load ---


@dataclass(frozen=True)
class Request:
    """One endpoint under load: the method, path, headers, body and the status it must answer."""

    path: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    status: int = 200


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    status_errors: int
    failed: bool
    note: str = ""


def _lua_string(value: str | None) -> str:
    return "nil" if value is None else json.dumps(value)


def check(base: str, request: Request) -> None:
    """One request before the load: the endpoint answers exactly the expected status."""
    headers = dict(request.headers)
    if request.body is not None:
        headers["Content-Type"] = "application/json"
    response = httpx.request(
        request.method,
        base + request.path,
        headers=headers,
        content=request.body.encode() if request.body is not None else None,
        timeout=10.0,
    )
    if response.status_code != request.status:
        raise RuntimeError(
            f"{request.method} {request.path} answered {response.status_code}, "
            f"expected {request.status}: {response.text[:300]}"
        )


def wrk(base: str, request: Request, *, duration: float, connections: int, pin: bool = True) -> Run:
    headers = "\n".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in request.headers.items()
    )
    if request.body is not None:
        headers += '\nwrk.headers["Content-Type"] = "application/json"'
    script = _LUA % {
        "method": _lua_string(request.method),
        "body": _lua_string(request.body),
        "headers": headers,
        "status": request.status,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    try:
        command = [
            shutil.which("wrk") or "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
            "--timeout", "5s", "-s", lua.name, base + request.path,
        ]  # fmt: skip
        if pin:
            command[:0] = ["taskset", "-c", LOAD_CPU]
        completed = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=duration + 60
        )
    finally:
        Path(lua.name).unlink()
    found = re.search(r"BENCH_JSON (\{.*\})", completed.stdout)
    if not found:
        return Run(0, 0, 0, 0, 0, 0, True, f"wrk said: {completed.stdout}{completed.stderr}"[:500])
    data = json.loads(found.group(1))
    socket_errors = sum(data[k] for k in ("connect", "read", "write", "timeout"))
    unexpected = {
        int(status): int(count)
        for status, _, count in (pair.partition(":") for pair in data["unexpected"].split())
    }
    # wrk counts only statuses >= 400; a 200 where a 201 was expected is as wrong.
    status_errors = max(int(data["status"]), sum(unexpected.values()))
    rps = data["requests"] / (data["duration_us"] / 1e6)
    failed = socket_errors > 0 or status_errors > 0 or data["requests"] == 0
    note = ""
    if failed:
        seen = ", ".join(f"{count} x {status}" for status, count in sorted(unexpected.items()))
        note = f"{socket_errors} socket errors, {status_errors} bad statuses ({seen or 'none'})"
    return Run(
        rps,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        int(data["requests"]),
        socket_errors,
        status_errors,
        failed,
        note,
    )


# --- scenarios: variants measured in alternation ---


@dataclass
class Figure:
    """One variant of a scenario: its runs (one per pass) and the medians of the good ones."""

    name: str
    runs: list[Run] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)

    def good(self) -> list[Run]:
        return [run for run in self.runs if not run.failed]

    @property
    def failed(self) -> bool:
        return not self.runs or any(run.failed for run in self.runs)

    def median(self, attribute: str) -> float:
        values = [getattr(run, attribute) for run in self.good()]
        return statistics.median(values) if values else 0.0

    @property
    def errors(self) -> int:
        return sum(run.socket_errors + run.status_errors for run in self.runs)


@dataclass
class Scenario:
    name: str
    title: str
    reference: str  # the variant every ratio is computed against
    figures: list[Figure]
    unit: str = "req/s"
    # (variant, reference, minimum ratio): reported as holds / MISSED, never asserted
    targets: list[tuple[str, str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)

    def pass_ratios(self, name: str, reference: str | None = None) -> list[float | None]:
        """The ratio to the reference within each pass (None where either run failed)."""
        ratios: list[float | None] = []
        refs = self.figure(reference or self.reference).runs
        for mine, ref in zip(self.figure(name).runs, refs, strict=False):
            ok = not mine.failed and not ref.failed and ref.rps > 0
            ratios.append(mine.rps / ref.rps if ok else None)
        return ratios

    def ratio(self, name: str, reference: str | None = None) -> float | None:
        values = [r for r in self.pass_ratios(name, reference) if r is not None]
        return statistics.median(values) if values else None

    def verdicts(self, name: str) -> list[dict[str, Any]]:
        out = []
        for variant, reference, minimum in self.targets:
            if variant != name:
                continue
            ratio = self.ratio(name, reference)
            failed = self.figure(name).failed or self.figure(reference).failed
            held = ratio is not None and ratio >= minimum and not failed
            out.append({"reference": reference, "minimum": minimum, "ratio": ratio, "holds": held})
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "reference": self.reference,
            "unit": self.unit,
            "notes": self.notes,
            "variants": [
                {
                    "name": f.name,
                    "failed": f.failed,
                    "rps_median": f.median("rps"),
                    "p50_ms_median": f.median("p50_ms"),
                    "p99_ms_median": f.median("p99_ms"),
                    "errors": f.errors,
                    "ratio_median": self.ratio(f.name),
                    "ratio_per_pass": self.pass_ratios(f.name),
                    "targets": self.verdicts(f.name),
                    "extra": f.extra,
                    "runs": [asdict(run) for run in f.runs],
                }
                for f in self.figures
            ],
        }


def record(scenario: Scenario, name: str, number: int, run: Run) -> None:
    scenario.figure(name).runs.append(run)
    state = f"FAILED ({run.note})" if run.failed else ""
    print(
        f"  {scenario.name:<9} pass {number} {name:<22} {run.rps:>9.0f} {scenario.unit}  "
        f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  {state}",
        flush=True,
    )


def failed_run(error: Exception) -> Run:
    print(f"  FAILED: {error}", flush=True)
    return Run(0, 0, 0, 0, 0, 0, True, str(error)[:500])


def pass_order(names: Sequence[str], number: int) -> list[str]:
    """The variants of pass `number` (1-based): A-B, then B-A, and so on. A drift of the
    machine's speed over a pass then favours no variant across a pair of passes, and the
    variants compared by a ratio run close together in time."""
    return list(names) if number % 2 == 1 else list(reversed(names))


def alternate(scenario: Scenario, passes: int, measure: Callable[[str], Run]) -> Scenario:
    """Every pass measures each variant once before the next pass (order: `pass_order`)."""
    for number in range(1, passes + 1):
        for name in pass_order([figure.name for figure in scenario.figures], number):
            try:
                run = measure(name)
            except (RuntimeError, subprocess.SubprocessError, httpx.HTTPError) as error:
                run = failed_run(error)
            record(scenario, name, number, run)
    return scenario


# --- reporting ---


def table(scenario: Scenario) -> list[str]:
    unit = scenario.unit
    lines = [
        f"### {scenario.title}",
        "",
        f"| variant | {unit} | p50 ms | p99 ms | errors | ratio to {scenario.reference} "
        "| per pass | target |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for f in scenario.figures:
        ratio = scenario.ratio(f.name)
        per_pass = ", ".join(
            "FAILED" if r is None else f"{r:.2f}" for r in scenario.pass_ratios(f.name)
        )
        verdict = "; ".join(
            f"{'-' if v['ratio'] is None else format(v['ratio'], '.2f')}x of {v['reference']} "
            f"(>= {v['minimum']:g}x): {'holds' if v['holds'] else 'MISSED'}"
            for v in scenario.verdicts(f.name)
        )
        rps = "FAILED" if f.failed and not f.good() else f"{f.median('rps'):,.0f}"
        if f.failed and f.good():
            rps += " (some runs FAILED)"
        lines.append(
            f"| {f.name} | {rps} | {f.median('p50_ms'):.2f} | {f.median('p99_ms'):.2f} "
            f"| {f.errors} | {'-' if ratio is None else f'{ratio:.2f}x'} | {per_pass} | {verdict} |"
        )
    lines += [f"- {note}" for note in scenario.notes]
    return [*lines, ""]


def print_scenario(scenario: Scenario) -> None:
    print()
    print("\n".join(table(scenario)), flush=True)


def save(scenario: Scenario) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{scenario.name}.json"
    path.write_text(json.dumps(scenario.to_json(), indent=2) + "\n")
    return path


def plot(scenarios: Sequence[Scenario], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in scenarios if s.unit == "req/s"]
    fig, axes = plt.subplots(
        len(shown), 1, figsize=(9, 2.0 + 1.1 * sum(len(s.figures) for s in shown) / 2)
    )
    if len(shown) == 1:
        axes = [axes]
    for ax, scenario in zip(axes, shown, strict=True):
        names = [f.name for f in scenario.figures]
        values = [f.median("rps") for f in scenario.figures]
        colors = [
            "#c0392b" if f.failed else "#2c7fb8" if f.name.startswith("Keel") else "#999999"
            for f in scenario.figures
        ]
        bars = ax.barh(names, values, color=colors)
        for bar, f in zip(bars, scenario.figures, strict=True):
            ratio = scenario.ratio(f.name)
            label = f"{bar.get_width():,.0f}"
            if ratio is not None and f.name != scenario.reference:
                label += f"  ({ratio:.2f}x)"
            if f.failed:
                label += "  FAILED"
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                " " + label,
                va="center",
                fontsize=8,
            )
        ax.invert_yaxis()
        ax.set_title(scenario.title, fontsize=10, loc="left")
        ax.set_xlabel(
            "requests/s (median of passes; ratio to the reference in brackets)", fontsize=8
        )
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, max([*values, 1]) * 1.35)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
