"""Two suites on one PostgreSQL and one Redis server keep to their own data."""

from __future__ import annotations

import subprocess
import sys

from redis import Redis

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


def test_database_names_differ_between_runs() -> None:
    name = run_database_name("test")
    assert name.endswith(RUN_ID)
    code = "from tests.helpers.servers import run_database_name; print(run_database_name('test'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert other.startswith("keel_test_")
    assert other != name
