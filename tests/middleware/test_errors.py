from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from keel.settings import Settings
from tests.helpers.environment import settings_env
from tests.middleware.asgi import call, http_scope
from tests.middleware.conftest import Edge, Logs
from tests.middleware.rawhttp import ConnectionLost, KeepAliveConnection

ROOT = Path(__file__).resolve().parents[2]


async def test_unhandled_error_is_a_generic_500_problem(edge: Edge, logs: Logs) -> None:
    response = await edge.client.get("/t/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "boom-1"
    # The layers above the error layer still ran.
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body == {
        "type": "/problems/internal-error",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "An unexpected error occurred.",
        "instance": "/t/boom",
        "request_id": "boom-1",
    }
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    [error] = [line for line in logs if line["event"] == "unhandled exception"]
    assert error["request_id"] == "boom-1"
    assert error["log_level"] == "error"
    assert isinstance(error["exc_info"], RuntimeError)
    assert str(error["exc_info"]) == "secret internal detail"


async def test_an_error_after_the_response_started_is_re_raised() -> None:
    from keel.middleware.errors import UnhandledErrorMiddleware

    async def half_sent(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        raise RuntimeError("mid-stream")

    with pytest.raises(RuntimeError, match="mid-stream"):
        await call(UnhandledErrorMiddleware(half_sent), http_scope())


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[int]:
    """uvicorn (uvloop, httptools) on a loopback socket it inherits, serving served_app."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it; uvloop sets it only on listeners it creates itself.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    env = {**settings_env(settings), "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    # A file, not a pipe: 500 tracebacks would fill an unread pipe and stall the server.
    log = (tmp_path / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.middleware.served_app:create",
            "--factory",
            "--fd",
            str(listener.fileno()),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--timeout-keep-alive",
            "30",
        ],
        cwd=ROOT,
        env=env,
        pass_fds=[listener.fileno()],
        stdout=log,
        stderr=log,
    )
    listener.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                probe = KeepAliveConnection(port, timeout=2)
            except OSError:
                status = 0
            else:
                try:
                    status, _, _ = probe.request("GET", "/livez")
                except ConnectionLost:
                    status = 0
                finally:
                    probe.close()
            if status == 200:
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.slow
def test_unhandled_errors_do_not_kill_the_keep_alive_connection(served: int) -> None:
    """1,000 alternating requests to a failing route and /livez on ONE connection.

    With Starlette's ServerErrorMiddleware handling the error, uvicorn closes the socket after
    the first 500 and the second request fails.
    """
    connection = KeepAliveConnection(served)
    socket_errors = 0
    statuses: dict[int, int] = {}
    try:
        for number in range(1000):
            path = "/fail" if number % 2 == 0 else "/livez"
            try:
                status, headers, body = connection.request("GET", path)
            except ConnectionLost:
                socket_errors += 1
                connection.close()
                connection = KeepAliveConnection(served)
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if status == 500:
                problem = orjson.loads(body)
                assert problem["request_id"] == headers["x-request-id"]
                assert headers.get("connection", "keep-alive") != "close"
    finally:
        connection.close()
    assert socket_errors == 0
    assert statuses == {500: 500, 200: 500}
