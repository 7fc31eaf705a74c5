"""`keel healthcheck`, the probe the Dockerfile HEALTHCHECK and compose run in the container,
and `keel serve` as the compose dev loop runs it."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from keel.cli import main


@contextmanager
def probe_server(status: int) -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on 127.0.0.1 answering every GET with `status`; yields (port, paths)."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_exit_0_when_the_probe_answers_200(path: str) -> None:
    with probe_server(200) as (port, paths):
        assert main(["healthcheck", f"--path={path}", f"--port={port}"]) == 0
    assert paths == [path]


def test_exit_1_on_any_other_status(capsys: pytest.CaptureFixture[str]) -> None:
    with probe_server(503) as (port, _):
        assert main(["healthcheck", "--path=/readyz", f"--port={port}"]) == 1
    assert capsys.readouterr().err.strip() == "keel healthcheck: GET /readyz: HTTP 503"


def test_exit_1_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        assert main(["healthcheck", f"--port={port}"]) == 1
    assert capsys.readouterr().err.startswith("keel healthcheck: GET /livez: ")


def test_a_server_that_never_answers_fails_within_the_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # accepts into the backlog, never reads or answers
        started = time.monotonic()
        assert main(["healthcheck", f"--port={sock.getsockname()[1]}", "--timeout=0.5"]) == 1
        assert time.monotonic() - started < 2.0


def test_default_port_is_the_port_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with probe_server(200) as (port, paths):
        monkeypatch.setenv("PORT", str(port))
        assert main(["healthcheck"]) == 0
    assert paths == ["/livez"]


def test_only_the_probe_paths_are_accepted() -> None:
    # Not a generic HTTP client: anything but the two probes is a usage error.
    with pytest.raises(SystemExit) as exit_info:
        main(["healthcheck", "--path=/admin"])
    assert exit_info.value.code == 2


def test_serve_runs_without_the_images_multiprocess_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The dev compose loop runs `keel serve` in the image, whose ENV names a multiprocess
    # directory that only gunicorn creates: prometheus-client would write there and fail.
    import uvicorn

    seen: dict[str, str | None] = {}

    def fake_run(*_args: object, **_kwargs: object) -> None:
        seen["dir"] = os.environ.get("PROMETHEUS_MULTIPROC_DIR")

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/prometheus")  # noqa: S108
    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert main(["serve"]) == 0
    assert seen == {"dir": None}
