"""File transfers: through the API vs straight to the storage, and the API's memory meanwhile.

    make bench                        # with every other scenario
    .venv/bin/python -m bench.files   # this one alone (BENCH_QUICK=1: smaller files)

Upload: the same bytes (a PNG header, then random bytes, generated 1 MiB at a time as they are
sent) as a raw-body POST to /api/v1/items/{id}/attachments, which streams them on to the
storage in FILE_PART_SIZE parts while hashing them, vs a presigned PUT straight to the storage.
Download: GET .../content (streamed from the storage through the API) vs the presigned URL of
GET .../link. One client (httpx, Content-Length set, one connection) for all four, so the
ratio API/direct is the cost of the extra hop through Python. The variants alternate A-B, B-A
over the passes; each figure is the median MiB/s, each ratio the median of the passes' ratios.

Memory: the API process's RSS, sampled every 10 ms, during one 200 MB upload and one 1 GiB
upload (256 MiB with BENCH_QUICK), each in a fresh process after a small warm-up upload; the
growth is the peak minus the RSS just before. The limit (issue 21): < 30 MB for 200 MB.

The API runs under uvicorn (uvloop, httptools, one process), not pinned: the client, the
storage server and the API share the machine's cores on both paths. Storage: BENCH_S3_ENDPOINT_URL
with BENCH_S3_ACCESS_KEY_ID / BENCH_S3_SECRET_ACCESS_KEY, else an embedded SeaweedFS
(keel_dev.embedded) in the run's scratch directory; the bucket keel-bench-files is emptied at
the end. Every object is deleted once measured, so the storage holds at most two files at once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from botocore.exceptions import BotoCoreError, ClientError

from bench import harness
from bench.harness import Figure, Run, Scenario
from keel_dev.embedded import EmbeddedS3, create_s3_bucket, s3_client

MIB = 1024 * 1024
MB = 1_000_000
CHUNK = MIB
T = TypeVar("T")
PNG = b"\x89PNG\r\n\x1a\n"  # the content sniffing accepts the file as image/png
BUCKET = "keel-bench-files"
PASSWORD = "benchmark password 0123"  # noqa: S105
# Issue 21: a 200 MB upload grows the API process by less than 30 MB.
RSS_CHECK_SIZE = 200 * MB
RSS_LIMIT = 30 * MB
API = "through the API"
DIRECT = "direct to storage"
# A transfer that has not finished by then has stalled: the pass fails instead of waiting.
TIMEOUT = httpx.Timeout(120.0, connect=5.0)


@dataclass(frozen=True)
class Sizes:
    transfer: int  # bytes of each timed upload and download
    passes: int
    large: int  # the upload whose memory growth is measured, next to the 200 MB one


def sizes() -> Sizes:
    if harness.quick():
        return Sizes(transfer=64 * MIB, passes=3, large=256 * MIB)
    return Sizes(transfer=200 * MIB, passes=5, large=1024 * MIB)


# --- the storage ---


@dataclass(frozen=True)
class Storage:
    endpoint: str
    access_key_id: str
    secret_access_key: str

    def client(self) -> Any:
        return s3_client(self.endpoint, self.access_key_id, self.secret_access_key, 60.0)

    def app_env(self, max_size: int) -> dict[str, str]:
        return {
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_ACCESS_KEY_ID": self.access_key_id,
            "S3_SECRET_ACCESS_KEY": self.secret_access_key,
            "S3_BUCKET": BUCKET,
            "FILE_MAX_SIZE": str(max_size),
            # Every upload of the run is recorded for the bench's one user (objects go, rows stay).
            "FILE_QUOTA_BYTES": str(2**50),
        }


@contextlib.contextmanager
def storage(scratch: Path) -> Iterator[Storage]:
    """The configured S3 server or an embedded one, with the bench's bucket, emptied at the end."""
    with contextlib.ExitStack() as stack:
        configured = os.environ.get("BENCH_S3_ENDPOINT_URL")
        if configured:
            found = Storage(
                configured,
                os.environ["BENCH_S3_ACCESS_KEY_ID"],
                os.environ["BENCH_S3_SECRET_ACCESS_KEY"],
            )
        else:
            server = stack.enter_context(EmbeddedS3(scratch / "s3"))
            found = Storage(server.url, server.access_key_id, server.secret_access_key)
        create_s3_bucket(found.client(), BUCKET)
        try:
            yield found
        finally:
            empty_bucket(found.client())


def empty_bucket(client: Any) -> None:
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=BUCKET):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})


# --- transfers ---


def content(size: int) -> Iterator[bytes]:
    """`size` bytes starting as a PNG, generated as they are sent: the client holds 1 MiB."""
    block = PNG + os.urandom(CHUNK - len(PNG))
    sent = 0
    while sent < size:
        chunk = block if size - sent >= CHUNK else block[: size - sent]
        sent += len(chunk)
        yield chunk


def timed_upload(
    client: httpx.Client, method: str, url: str, size: int, headers: dict[str, str], status: int
) -> tuple[float, httpx.Response]:
    """(seconds, response) of one upload of `size` generated bytes."""
    # Content-Length set: no chunked encoding on either path (the storage wants a length).
    headers = {**headers, "Content-Type": "image/png", "Content-Length": str(size)}
    started = time.perf_counter()
    response = client.request(method, url, content=content(size), headers=headers)
    seconds = time.perf_counter() - started
    if response.status_code != status:
        raise RuntimeError(f"{method} answered {response.status_code}: {response.text[:300]}")
    return seconds, response


def timed_download(client: httpx.Client, url: str, size: int, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    received = 0
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"GET answered {response.status_code}: {response.read()[:300]!r}")
        for chunk in response.iter_raw():
            received += len(chunk)
    seconds = time.perf_counter() - started
    if received != size:
        raise RuntimeError(f"GET gave {received} bytes, expected {size}")
    return seconds


def transfer_run(size: int, seconds: float) -> Run:
    """One transfer as a harness Run: MiB/s where the others have req/s, its time as p50/p99."""
    return Run(size / MIB / seconds, seconds * 1000, seconds * 1000, 1, 0, 0, False)


@dataclass(frozen=True)
class Session:
    base: str
    auth: dict[str, str]
    item: str

    @property
    def attachments(self) -> str:
        return f"{self.base}/api/v1/items/{self.item}/attachments"


def sign_in(client: httpx.Client, base: str) -> Session:
    """A new user, logged in, with one item to attach files to."""
    email = f"bench-files-{uuid.uuid4().hex[:8]}@example.com"
    client.post(
        f"{base}/api/v1/auth/register", json={"email": email, "password": PASSWORD}
    ).raise_for_status()
    tokens = client.post(
        f"{base}/api/v1/auth/token", data={"username": email, "password": PASSWORD}
    )
    tokens.raise_for_status()
    auth = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    item = client.post(f"{base}/api/v1/items", json={"title": "files"}, headers=auth)
    item.raise_for_status()
    return Session(base, auth, item.json()["id"])


def api_upload(client: httpx.Client, session: Session, size: int) -> tuple[float, str]:
    """(seconds, object key) of one upload through the API."""
    seconds, response = timed_upload(
        client, "POST", session.attachments, size, session.auth, status=201
    )
    return seconds, f"attachments/{response.json()['id']}"


def direct_upload(client: httpx.Client, s3: Any, size: int) -> tuple[float, str]:
    """(seconds, object key) of one presigned PUT straight to the storage."""
    key = f"direct/{uuid.uuid4()}"
    url = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": BUCKET, "Key": key, "ContentType": "image/png"},
        ExpiresIn=600,
    )
    seconds, _ = timed_upload(client, "PUT", url, size, {}, status=200)
    return seconds, key


# --- throughput ---


def transfer_scenario(name: str, title: str) -> Scenario:
    return Scenario(
        name,
        title,
        reference=DIRECT,
        figures=[Figure(API), Figure(DIRECT)],
        unit="MiB/s",
        notes=["p50/p99: the one transfer's time per pass (ms)."],
    )


def throughput(
    env: dict[str, str], store: Storage, plan: Sizes, upload: Scenario, download: Scenario
) -> None:
    s3 = store.client()
    server = harness.start_uvicorn(
        "keel files", "keel.main:create_app", env, factory=True, pin=False
    )
    with harness.running(server, "/readyz"), httpx.Client(timeout=TIMEOUT) as client:
        session = sign_in(client, server.base)
        _, kept = api_upload(client, session, plan.transfer)  # warm-up; downloads read it

        def measure_upload(name: str) -> Run:
            if name == API:
                seconds, key = api_upload(client, session, plan.transfer)
            else:
                seconds, key = direct_upload(client, s3, plan.transfer)
            forget(s3, key)
            return transfer_run(plan.transfer, seconds)

        def measure_download(name: str) -> Run:
            attachment = f"{session.attachments}/{kept.rsplit('/', 1)[1]}"
            if name == API:
                seconds = timed_download(
                    client, f"{attachment}/content", plan.transfer, session.auth
                )
            else:
                link = client.get(f"{attachment}/link", headers=session.auth)
                link.raise_for_status()
                seconds = timed_download(client, link.json()["url"], plan.transfer, {})
            return transfer_run(plan.transfer, seconds)

        harness.alternate(upload, plan.passes, measure_upload)
        harness.alternate(download, plan.passes, measure_download)
        forget(s3, kept)


def forget(s3: Any, key: str) -> None:
    """Delete a measured object; if that fails it stays until the bucket is emptied."""
    with contextlib.suppress(BotoCoreError, ClientError):
        s3.delete_object(Bucket=BUCKET, Key=key)


# --- memory ---


def peak_growth(pid: int, action: Callable[[], T]) -> tuple[int, T]:
    """(bytes the process's RSS rose above its value before `action` at its highest while
    `action` ran, sampled every 10 ms on a thread: the peak, not the RSS at the end; what
    `action` returned)."""
    process = psutil.Process(pid)
    before = process.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            with contextlib.suppress(psutil.Error):
                peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = action()
    finally:
        done.set()
        sampler.join()
    return peak - before, result


def rss_growth(env: dict[str, str], s3: Any, size: int) -> int:
    """Bytes the API process's RSS grew by during one upload of `size` bytes, in a fresh process
    warmed up by a small upload (the storage client's first call, the route's first run)."""
    server = harness.start_uvicorn("keel rss", "keel.main:create_app", env, factory=True, pin=False)
    with harness.running(server, "/readyz"), httpx.Client(timeout=TIMEOUT) as client:
        session = sign_in(client, server.base)
        api_upload(client, session, 64 * 1024)
        growth, (_, key) = peak_growth(
            server.process.pid, lambda: api_upload(client, session, size)
        )
    # Deleted once measured: the storage keeps no 1 GiB file for the rest of the run.
    forget(s3, key)
    return growth


# --- the scenario ---


def run(keel_env: dict[str, str], store: Storage) -> list[Scenario]:
    """Both throughput scenarios, the memory figures in the upload's notes and extras."""
    plan = sizes()
    env = {**keel_env, **store.app_env(max(plan.large, RSS_CHECK_SIZE) + MIB)}
    mib = plan.transfer // MIB
    upload = transfer_scenario(
        "file_upload",
        f"Upload of {mib} MiB: raw-body POST through the API vs presigned PUT to the storage",
    )
    download = transfer_scenario(
        "file_download",
        f"Download of {mib} MiB: GET .../content through the API vs the presigned URL of .../link",
    )
    try:
        throughput(env, store, plan, upload, download)
    except (RuntimeError, httpx.HTTPError, BotoCoreError, ClientError) as error:
        fail_unmeasured([upload, download], error)
    for scenario in (upload, download):
        api = scenario.ratio(API)
        shown = "FAILED" if api is None else f"{api:.2f}x"
        print(f"  {scenario.name:<13} API / direct: {shown}", flush=True)
    add_memory(env, store, plan, upload)
    return [upload, download]


def fail_unmeasured(scenarios: list[Scenario], error: Exception) -> None:
    """The server or the setup failed: every variant without a run yet is FAILED."""
    failed = harness.failed_run(error)
    for scenario in scenarios:
        for figure in scenario.figures:
            figure.runs = figure.runs or [failed]


def add_memory(env: dict[str, str], store: Storage, plan: Sizes, upload: Scenario) -> None:
    try:
        memory = memory_figures(env, store, plan)
    except (RuntimeError, httpx.HTTPError, BotoCoreError, ClientError) as error:
        harness.failed_run(error)
        upload.notes.append("Memory during uploads: FAILED (see the log).")
        return
    upload.figure(API).extra.update(memory)
    upload.notes += memory_notes(memory)
    for line in memory_notes(memory):
        print(f"  {line}", flush=True)


def memory_figures(env: dict[str, str], store: Storage, plan: Sizes) -> dict[str, float]:
    s3 = store.client()
    check = rss_growth(env, s3, RSS_CHECK_SIZE)
    large = rss_growth(env, s3, plan.large)
    return {
        "rss_growth_200mb_upload_mb": check / MB,
        "rss_limit_200mb_upload_mb": RSS_LIMIT / MB,
        "large_upload_mib": plan.large / MIB,
        "rss_growth_large_upload_mb": large / MB,
        "rss_growth_large_upload_share": large / plan.large,
    }


def memory_notes(memory: dict[str, float]) -> list[str]:
    check = memory["rss_growth_200mb_upload_mb"]
    verdict = "holds" if check < memory["rss_limit_200mb_upload_mb"] else "MISSED"
    return [
        f"API process RSS growth during a 200 MB upload: {check:.1f} MB "
        f"(limit < {memory['rss_limit_200mb_upload_mb']:g} MB: {verdict}).",
        f"API process RSS growth during a {memory['large_upload_mib']:g} MiB upload: "
        f"{memory['rss_growth_large_upload_mb']:.1f} MB "
        f"({memory['rss_growth_large_upload_share']:.1%} of the file).",
    ]


def main() -> int:
    """This scenario alone, on the backing services `make bench` uses."""
    from bench.run import Env, backing_services, bench_settings

    with (
        tempfile.TemporaryDirectory(prefix="keel-bench-files-") as scratch,
        backing_services(Path(scratch)) as (database, redis),
        storage(Path(scratch)) as store,
    ):
        env = Env(database, redis, bench_settings().pool, harness.free_port())
        scenarios = run(env.keel(), store)
    for scenario in scenarios:
        harness.save(scenario)
        harness.print_scenario(scenario)
    return 0 if not any(s.figure(API).failed or s.figure(DIRECT).failed for s in scenarios) else 1


if __name__ == "__main__":
    raise SystemExit(main())
