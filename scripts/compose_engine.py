"""A container engine for `make compose-check`: Docker, or podman behind its Docker API.

podman differs in three ways that matter here, each handled in one place:
- its Docker-compatible socket is a service somebody has to start (`Engine.start`);
- `podman build` drops HEALTHCHECK unless it writes the Docker image format (`build_image`);
- it schedules healthchecks with systemd timers, which a machine without systemd lacks, so a
  thread runs each container's healthcheck every 2 s instead (`HealthcheckDriver`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PODMAN_SOCKET = "unix:///run/podman/podman.sock"
NOT_AVAILABLE = 3  # exit status: this machine cannot run the check (as `make test-python`)


class EngineUnavailable(RuntimeError):
    """No Docker Compose v2 or no engine to run it against."""


def _answers(command: list[str], env: dict[str, str]) -> bool:
    try:
        result = subprocess.run(command, env=env, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@dataclass
class Engine:
    """Where `docker compose` sends its calls, and the podman service started for it, if any."""

    podman: bool
    env: dict[str, str]
    service: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls) -> Engine:
        env = dict(os.environ, DOCKER_BUILDKIT="0", COMPOSE_BAKE="false")
        if not _answers(["docker", "compose", "version"], env):
            raise EngineUnavailable("`docker compose` (Compose v2) is not installed")
        podman = shutil.which("podman") is not None
        if "DOCKER_HOST" not in env and _answers(["docker", "info"], env):
            return cls(podman=False, env=env)
        if not podman:
            raise EngineUnavailable("no Docker engine answers and podman is not installed")
        env.setdefault("DOCKER_HOST", PODMAN_SOCKET)
        engine = cls(podman=True, env=env)
        if not _answers(["docker", "info"], env):
            socket = env["DOCKER_HOST"].removeprefix("unix://")
            Path(socket).parent.mkdir(parents=True, exist_ok=True)  # /run is a fresh tmpfs
            engine.service = subprocess.Popen(
                ["podman", "system", "service", "--time=0", env["DOCKER_HOST"]],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            engine.wait_until_answering()
        return engine

    def wait_until_answering(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not _answers(["docker", "info"], self.env):
            if time.monotonic() > deadline:
                raise EngineUnavailable("podman's Docker API did not come up")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.service is not None:
            self.service.terminate()
            self.service.wait(timeout=10)

    def has_image(self, image: str) -> bool:
        return _answers(["docker", "image", "inspect", image], self.env)

    def build_image(self, context: Path, tag: str) -> None:
        if self.podman:
            command = ["podman", "build", "--format", "docker", "-t", tag, str(context)]
        else:
            command = ["docker", "build", "-t", tag, str(context)]
        subprocess.run(command, env=self.env, check=True, stdout=subprocess.DEVNULL)

    def inspect(self, container: str, template: str) -> str:
        result = subprocess.run(
            ["docker", "inspect", "--format", template, container],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()


class HealthcheckDriver:
    """Runs every running container's healthcheck every 2 s, as an engine's timers would."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthcheckDriver:
        if self._engine.podman:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopped.wait(2):
            names = subprocess.run(
                ["podman", "ps", "--format", "{{.Names}}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            for name in names:
                # Exit 125 for a container without a healthcheck: nothing to run, no harm.
                subprocess.run(
                    ["podman", "healthcheck", "run", name],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
