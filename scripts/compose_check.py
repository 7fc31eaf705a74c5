"""`make compose-check`: run both compose stacks for real and check what a user relies on.

    python -m scripts.compose_check            (needs Docker Compose v2 and Docker or podman)

On a copy of the repository (the working tree is never edited), with the image built from it:
1. the dev stack (docker-compose.yml): every healthcheck passes, then a route's source file is
   changed on the host and the running API must answer with the change within 5 s;
2. the production variant (+ compose.prod.yml): migrate exits 0, /readyz is ready,
   register/login/read work (and, with the example domain, create/read an item), the worker's
   own check passes (with a worker), every healthcheck passes, every Prometheus target is up,
   every Grafana dashboard query returns data from that Prometheus after the traffic, and
   SIGTERM drains every service to exit status 0.
A service whose image is not on the machine is skipped and named (on these build machines no
Grafana image exists: its provisioning is checked by tests/deploy instead). Ports 8000 and 9090
on 127.0.0.1 must be free. Exit 0: all passed; 1: a check failed; 3: no engine here.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from scripts.compose_config import variant
from scripts.compose_engine import NOT_AVAILABLE, Engine, EngineUnavailable, HealthcheckDriver

ROOT = Path(__file__).resolve().parents[1]
API = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
IMAGE = "keel:local"
FILES = {"dev": ["docker-compose.yml"], "prod": ["docker-compose.yml", "compose.prod.yml"]}
RELOAD_LIMIT = 5.0
# What Grafana makes of $__rate_interval with a 15 s scrape interval: four scrapes.
RATE_INTERVAL = "1m"
# What SIGTERM must drain to exit status 0.
DRAINED = (
    "api",
    "worker",  # feature: worker
)


class CheckFailed(AssertionError):
    pass


def wait_for(what: str, probe: Callable[[], bool], seconds: float, every: float = 1.0) -> float:
    """Poll `probe` until it holds; the seconds it took, or CheckFailed naming `what`."""
    started = time.monotonic()
    while True:
        try:
            if probe():
                return time.monotonic() - started
        except (httpx.HTTPError, subprocess.CalledProcessError, ValueError, KeyError):
            pass
        if time.monotonic() - started > seconds:
            raise CheckFailed(f"{what}: not within {seconds:.0f} s")
        time.sleep(every)


def passed(message: str) -> None:
    print(f"  ok  {message}", flush=True)


class Stack:
    """One compose project on a copy of the repository."""

    def __init__(self, engine: Engine, workdir: Path, name: str) -> None:
        self.engine = engine
        self.workdir = workdir
        self.name = name
        self.files = FILES[name]
        self.project = f"keel-check-{name}"
        self.env = dict(engine.env, SECRET_KEY=secrets.token_urlsafe(48))

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "-p", self.project]
        for file in self.files:
            command += ["-f", file]
        return subprocess.run(
            [*command, *args], cwd=self.workdir, env=self.env, text=True, capture_output=True,
            check=check,
        )  # fmt: skip

    def services(self) -> list[str]:
        """The default services (no profile); under podman, only those whose image is here
        (podman is used where no registry can be reached: nothing is pulled)."""
        runnable = []
        for service, spec in variant(self.name)["services"].items():
            if spec.get("profiles"):
                continue
            image = spec["image"]
            if self.engine.podman and image != IMAGE and not self.engine.has_image(image):
                print(f"  --  {service}: skipped, image {image} not on this machine")
                continue
            runnable.append(service)
        return runnable

    def container(self, service: str) -> str:
        return self.compose("ps", "-a", "-q", service).stdout.split()[0]

    @contextmanager
    def running(self) -> Iterator[list[str]]:
        services = self.services()
        started = time.monotonic()
        pull = "never" if self.engine.podman else "missing"
        self.compose("up", "-d", "--no-build", "--pull", pull, *services)
        print(f"  ..  {self.name}: `compose up` returned in {time.monotonic() - started:.1f} s")
        try:
            yield services
        finally:
            self.compose("down", "-v", "--timeout", "45", check=False)

    def healthy(self, services: list[str]) -> None:
        with_healthcheck = [s for s in services if self._health(s) not in ("", "none")]

        def all_healthy() -> bool:
            return all(self._health(service) == "healthy" for service in with_healthcheck)

        took = wait_for(f"{self.name}: healthchecks of {with_healthcheck}", all_healthy, 180, 2)
        passed(f"{self.name}: healthy after {took:.0f} s: {', '.join(with_healthcheck)}")

    def _health(self, service: str) -> str:
        template = "{{if .State.Health}}{{.State.Health.Status}}{{end}}"
        return self.engine.inspect(self.container(service), template)


def ready(client: httpx.Client) -> bool:
    return client.get("/readyz").status_code == 200


def check_dev(stack: Stack) -> None:
    with stack.running() as services, httpx.Client(base_url=API, timeout=5) as client:
        took = wait_for("dev: /readyz 200", lambda: ready(client), 180)
        passed(
            f"dev: /readyz ready {took:.0f} s after `up`; /docs: {client.get('/docs').status_code}"
        )
        stack.healthy(services)
        check_reload(stack, client)


def check_reload(stack: Stack, client: httpx.Client) -> None:
    """Edit a route's summary on the host: the reloaded API's OpenAPI document must show it,
    and the worker must restart."""
    marker = f"edited {uuid.uuid4().hex[:8]}"
    source = stack.workdir / "src" / "keel" / "api" / "health.py"
    text = source.read_text()
    if 'summary="Liveness probe"' not in text:
        raise CheckFailed("reload: the route to edit is gone from src/keel/api/health.py")
    source.write_text(text.replace('summary="Liveness probe"', f'summary="Liveness ({marker})"'))

    def changed() -> bool:
        return marker in client.get("/openapi.json").text

    took = wait_for("dev: the edited route served", changed, 30, 0.1)
    if took > RELOAD_LIMIT:
        raise CheckFailed(f"dev: the edit was served after {took:.1f} s (limit {RELOAD_LIMIT} s)")
    passed(f"dev: a route edited on the host was served {took:.1f} s later")
    # feature: worker

    def restarted() -> bool:
        logs = stack.compose("logs", "worker")
        return "restarting the worker" in logs.stdout + logs.stderr

    took = wait_for("dev: the worker restarted on the edit", restarted, 30)
    passed(f"dev: the worker restarted on the same edit (seen {took:.0f} s after the API)")
    # end feature: worker


def check_prod(stack: Stack) -> None:
    with stack.running() as services, httpx.Client(base_url=API, timeout=5) as client:
        took = wait_for("prod: /readyz 200", lambda: ready(client), 180)
        passed(f"prod: /readyz ready {took:.0f} s after `up`")
        status = stack.engine.inspect(stack.container("migrate"), "{{.State.ExitCode}}")
        if status != "0":
            raise CheckFailed(f"prod: migrate exited {status}")
        passed("prod: migrate exited 0")
        user_round_trip(client)
        # feature: worker
        stack.compose("exec", "-T", "worker", "keel", "worker", "--check")
        passed("prod: `keel worker --check` exits 0 in the worker container")
        # end feature: worker
        stack.healthy(services)
        check_prometheus()
        drain(stack)


def user_round_trip(client: httpx.Client) -> None:
    email, password = f"check-{uuid.uuid4().hex[:12]}@example.com", secrets.token_urlsafe(18)
    answer = client.post("/api/v1/auth/register", json={"email": email, "password": password})
    expect(answer, 201, "register")
    answer = client.post("/api/v1/auth/token", data={"username": email, "password": password})
    expect(answer, 200, "login")
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    for _ in range(20):  # traffic for the dashboard's rates and latency quantiles
        expect(client.get("/api/v1/users/me", headers=headers), 200, "read my account")
    passed("prod: register, log in, read my account (20 times)")
    # feature: items
    answer = client.post("/api/v1/items", json={"title": "compose check"}, headers=headers)
    expect(answer, 201, "create an item")
    item = answer.json()["id"]
    for _ in range(20):
        expect(client.get(f"/api/v1/items/{item}", headers=headers), 200, "read the item")
    expect(client.get("/api/v1/items/not-an-id", headers=headers), 404, "read a bad id")
    passed("prod: create an item, read it back (20 times)")
    # end feature: items


def expect(answer: httpx.Response, status: int, what: str) -> None:
    if answer.status_code != status:
        raise CheckFailed(f"prod: {what}: {answer.status_code} {answer.text[:300]}")


def check_prometheus() -> None:
    with httpx.Client(base_url=PROMETHEUS, timeout=5) as client:

        def targets_up() -> bool:
            targets = client.get("/api/v1/targets").json()["data"]["activeTargets"]
            return bool(targets) and all(target["health"] == "up" for target in targets)

        took = wait_for("prod: every Prometheus target up", targets_up, 90, 2)
        passed(f"prod: every Prometheus target up ({took:.0f} s)")
        for title, expr in dashboard_queries():
            query = expr.replace("$__rate_interval", RATE_INTERVAL)
            wait_for(f"prod: panel {title!r}: {query}", answers(client, query), 90, 3)
        passed(f"prod: all {len(dashboard_queries())} dashboard queries return data")


def answers(client: httpx.Client, query: str) -> Callable[[], bool]:
    """A probe: does the query return at least one series now?"""

    def has_data() -> bool:
        answer: dict[str, Any] = client.get("/api/v1/query", params={"query": query}).json()
        return answer["status"] == "success" and bool(answer["data"]["result"])

    return has_data


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((ROOT / "grafana" / "dashboards" / "overview.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def drain(stack: Stack) -> None:
    """SIGTERM (compose stop), then the exit status: 0 is a drain, 137 a SIGKILL."""
    for service in DRAINED:
        started = time.monotonic()
        stack.compose("stop", "--timeout", "45", service)
        status = stack.engine.inspect(stack.container(service), "{{.State.ExitCode}}")
        if status != "0":
            raise CheckFailed(f"prod: {service} exited {status} after SIGTERM")
        passed(f"prod: {service} drained on SIGTERM, exit 0 in {time.monotonic() - started:.1f} s")


def copy_repository(target: Path) -> Path:
    """The tracked files, plus the working tree's edits to them: what would be committed."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def run(engine: Engine, workdir: Path) -> None:
    started = time.monotonic()
    engine.build_image(copy_repository(workdir), IMAGE)
    passed(f"image {IMAGE} built in {time.monotonic() - started:.0f} s")
    with HealthcheckDriver(engine):
        for name, check in (("dev", check_dev), ("prod", check_prod)):
            print(f"== {name}: {' + '.join(FILES[name])}", flush=True)
            check(Stack(engine, workdir, name))


def main() -> int:
    try:
        engine = Engine.start()
    except EngineUnavailable as error:
        print(f"compose-check: not run: {error} (docs/deployment.md, 'Checking the stack')")
        return NOT_AVAILABLE
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="keel-compose-check-") as workdir:
            run(engine, Path(workdir))
    except (CheckFailed, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None) or ""
        print(f"compose-check: FAILED: {error}\n{detail}")
        return 1
    finally:
        engine.stop()
    print(f"compose-check: passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
