"""Two suites on one server keep to their own data: databases, Redis databases, buckets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path  # feature: files

import pytest  # feature: files
from redis import Redis

from tests.helpers import storage  # feature: files
from tests.helpers.servers import (
    CLAIM_KEY,
    RUN_ID,
    claimed_redis_db,
    run_database_name,
    with_redis_db,
)


def test_each_holder_gets_its_own_redis_database_until_it_lets_go(redis_url: str) -> None:
    with claimed_redis_db(redis_url) as first, claimed_redis_db(redis_url) as second:
        assert first != second
        assert {first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]} <= {str(n) for n in range(1, 16)}
        with claimed_redis_db(redis_url) as third:
            assert third not in {first, second}
    # Released: the same database is free for the next run.
    with claimed_redis_db(redis_url) as again:
        assert again == first


def test_a_claim_survives_a_flush_of_the_claimed_database(redis_url: str) -> None:
    with claimed_redis_db(redis_url) as claimed:
        client = Redis.from_url(claimed)
        try:
            client.flushdb()  # what the `redis` fixture does before every test
        finally:
            client.close()
        with claimed_redis_db(redis_url) as other:
            assert other != claimed
        db = int(claimed.rsplit("/", 1)[1])
        zero = Redis.from_url(with_redis_db(redis_url, 0))
        try:
            ttl = zero.ttl(CLAIM_KEY.format(db=db))
            assert isinstance(ttl, int)
            assert ttl > 0  # a killed run's claim expires
        finally:
            zero.close()


def in_another_run(code: str) -> str:
    """What `code` prints in a new Python process: another test run, with its own RUN_ID."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def test_database_names_differ_between_runs() -> None:
    name = run_database_name("test")
    assert name.endswith(RUN_ID)
    other = in_another_run(
        "from tests.helpers.servers import run_database_name; print(run_database_name('test'))"
    )
    assert other.startswith("keel_test_")
    assert other != name


# feature: files
def test_bucket_names_are_valid_and_differ_between_runs_and_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = storage.run_bucket_name()
    assert storage.BUCKET_NAME.match(name), name
    assert name.startswith("keel-test-")
    assert name.endswith(RUN_ID)
    long = storage.run_bucket_name("Attachments_Of_Items " * 5)
    assert storage.BUCKET_NAME.match(long), long
    assert long.endswith(RUN_ID)
    other = in_another_run(
        "from tests.helpers.storage import run_bucket_name; print(run_bucket_name())"
    )
    assert other.startswith("keel-test-")
    assert other != name
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw7")
    assert storage.run_bucket_name() != name


@pytest.mark.slow
def test_buckets_are_emptied_and_deleted_including_unfinished_uploads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_S3_ENDPOINT_URL", raising=False)
    name = storage.run_bucket_name("helpers")
    with storage.s3_server(tmp_path) as server:
        storage.create_bucket(server, name)
        storage.create_bucket(server, name)  # idempotent
        client = server.client()
        for number in range(3):
            client.put_object(Bucket=name, Key=f"dir/object-{number}", Body=b"x")
        client.create_multipart_upload(Bucket=name, Key="unfinished")
        storage.empty_bucket(server, name)
        assert client.list_objects_v2(Bucket=name).get("Contents", []) == []
        assert client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
        client.put_object(Bucket=name, Key="again", Body=b"x")
        storage.delete_bucket(server, name)  # empties it first
        assert name not in {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}
        storage.delete_bucket(server, name)  # gone already: nothing to do


def test_a_configured_s3_server_is_used_as_is_and_needs_its_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("TEST_S3_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("TEST_S3_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(RuntimeError, match="TEST_S3_ACCESS_KEY_ID"), storage.s3_server(tmp_path):
        pass
    monkeypatch.setenv("TEST_S3_ACCESS_KEY_ID", "ci")
    monkeypatch.setenv("TEST_S3_SECRET_ACCESS_KEY", "ci-secret")
    with storage.s3_server(tmp_path) as server:
        assert (server.endpoint_url, server.access_key_id) == ("http://127.0.0.1:9", "ci")
        assert server.secret_access_key == "ci-secret"
    assert list(tmp_path.iterdir()) == []  # nothing embedded was started


# end feature: files
