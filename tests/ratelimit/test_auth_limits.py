"""Issue 17, item 1: the auth and account-change routes count the client IP whatever bearer
token is sent, and login is also bounded per target account, from any IP, with backoff."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI

from keel.auth.throttle import CLOSED
from tests.auth.accounts import PASSWORD, REGISTER, Account, login, make_account
from tests.ratelimit.test_limits_api import ME, assert_too_many

ATTACKER = "198.51.100.7"
ClientFrom = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def client_from(app: FastAPI) -> AsyncIterator[ClientFrom]:
    """`client_from(ip)`: a client of the suite's app (default limits) whose requests come
    from that IP, as the TCP peer."""
    async with AsyncExitStack() as stack:

        def make(ip: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(
                app=app.state.asgi_with_lifespan_state,
                raise_app_exceptions=False,
                client=(ip, 50_000),
            )
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            stack.push_async_callback(client.aclose)
            return client

        yield make


@pytest.fixture
async def tokens(client_from: ClientFrom) -> list[Account]:
    """Three throw-away accounts, made from another IP than the attacker's."""
    helper = client_from("203.0.113.50")
    return [await make_account(helper) for _ in range(3)]


def unknown_email() -> str:
    return f"victim-{uuid.uuid4().hex[:10]}@example.com"


async def test_the_11th_login_from_one_ip_is_429_whatever_tokens_are_sent(
    client_from: ClientFrom, tokens: list[Account]
) -> None:
    attacker = client_from(ATTACKER)
    answers = [
        await attacker.post(
            "/api/v1/auth/token",
            data={"username": unknown_email(), "password": "wrong password 1"},
            headers=tokens[n % len(tokens)].headers,  # a different valid token each time
        )
        for n in range(12)
    ]
    assert [answer.status_code for answer in answers] == [401] * 10 + [429] * 2
    assert_too_many(answers[-1], limit=10)  # RATE_LIMIT_LOGIN's default


async def test_register_counts_the_ip_whatever_tokens_are_sent(
    client_from: ClientFrom, tokens: list[Account]
) -> None:
    attacker = client_from(ATTACKER)
    answers = [
        await attacker.post(
            REGISTER,
            json={"email": unknown_email(), "password": PASSWORD},
            headers=tokens[n % len(tokens)].headers,
        )
        for n in range(7)
    ]
    assert [answer.status_code for answer in answers] == [201] * 5 + [429] * 2
    assert_too_many(answers[-1], limit=5)  # RATE_LIMIT_REGISTER's default


async def test_refresh_counts_the_ip_whatever_tokens_are_sent(
    client_from: ClientFrom, tokens: list[Account]
) -> None:
    attacker = client_from(ATTACKER)
    answers = [
        await attacker.post(
            "/api/v1/auth/refresh",
            json={"refresh_token": f"rt_guess_{n}"},
            headers=tokens[n % len(tokens)].headers,
        )
        for n in range(31)
    ]
    assert {answer.status_code for answer in answers[:30]} == {401}
    assert_too_many(answers[30], limit=30)  # RATE_LIMIT_REFRESH's default


async def test_profile_changes_are_limited_like_login_per_ip(
    client_from: ClientFrom, tokens: list[Account]
) -> None:
    """Each 409 tells whether an email is taken: as strict as login, whatever token."""
    attacker = client_from(ATTACKER)
    answers = [
        await attacker.patch(
            ME, json={"email": unknown_email()}, headers=tokens[n % len(tokens)].headers
        )
        for n in range(11)
    ]
    assert {answer.status_code for answer in answers[:10]} == {200}
    assert_too_many(answers[10], limit=10)


async def test_password_changes_are_limited_like_login_per_ip(
    client_from: ClientFrom, tokens: list[Account]
) -> None:
    """Each wrong current password is a guess: as strict as login, whatever token."""
    attacker = client_from(ATTACKER)
    answers = [
        await attacker.post(
            f"{ME}/password",
            json={"current_password": f"guess number {n}", "new_password": "a new passphrase"},
            headers=tokens[n % len(tokens)].headers,
        )
        for n in range(11)
    ]
    assert {answer.status_code for answer in answers[:10]} == {422}
    assert_too_many(answers[10], limit=10)


@pytest.mark.app_settings(
    rate_limit_trusted_proxies="127.0.0.1",  # each request names its client IP below
    login_free_failures=2,
    login_backoff_base_seconds=60,
)
async def test_failed_logins_at_one_account_from_many_ips_close_its_logins(
    tuned: list[httpx.AsyncClient],
) -> None:
    [client] = tuned
    victim = await make_account(client)
    bystander = await make_account(client)

    async def attempt(n: int, email: str, password: str) -> httpx.Response:
        return await client.post(
            "/api/v1/auth/token",
            data={"username": email, "password": password},
            headers={"X-Forwarded-For": f"192.0.2.{n}"},  # a new IP each time
        )

    failures = [await attempt(n, victim.email, "wrong password 1") for n in range(1, 4)]
    assert [answer.status_code for answer in failures] == [401] * 3
    # The third failure closed the account for 60 s: even the right password waits.
    closed = await attempt(10, victim.email.upper(), victim.password)
    assert closed.status_code == 429, closed.text
    assert closed.json()["detail"] == CLOSED
    assert 55 <= int(closed.headers["retry-after"]) <= 60
    assert (await attempt(11, bystander.email, bystander.password)).status_code == 200


@pytest.mark.app_settings(login_free_failures=2, login_backoff_base_seconds=60)
async def test_a_successful_login_forgets_the_failures(tuned: list[httpx.AsyncClient]) -> None:
    [client] = tuned
    account = await make_account(client)

    async def statuses(*passwords: str) -> list[int]:
        return [
            (await login(client, account.email, password)).status_code for password in passwords
        ]

    wrong, right = "wrong password 1", account.password
    # Two failures, a success, two failures: never past the two free ones in a row.
    assert await statuses(wrong, wrong, right, wrong, wrong) == [401, 401, 200, 401, 401]
    # The third in a row closes the account.
    assert await statuses(wrong, right) == [401, 429]


@pytest.mark.app_settings(login_free_failures=2, login_backoff_base_seconds=60)
async def test_wrong_current_passwords_count_towards_the_accounts_backoff(
    tuned: list[httpx.AsyncClient],
) -> None:
    """A stolen token is no way around the backoff: guessing the current password closes the
    account's password checks, the login's included."""
    [client] = tuned
    account = await make_account(client)

    async def change(current: str) -> httpx.Response:
        return await client.post(
            f"{ME}/password",
            json={"current_password": current, "new_password": "a new passphrase"},
            headers=account.headers,
        )

    guesses = [await change(f"guess number {n}") for n in range(3)]
    assert [answer.status_code for answer in guesses] == [422] * 3
    closed = await change(account.password)
    assert closed.status_code == 429, closed.text
    assert closed.json()["detail"] == CLOSED
    assert (await login(client, account.email, account.password)).status_code == 429
