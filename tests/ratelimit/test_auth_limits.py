"""Issue 17, item 1: the auth and account-change routes count the client IP whatever bearer
token is sent. (Login is also bounded per target account: tests/auth/test_login_backoff.py.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI

from tests.auth.accounts import PASSWORD, REGISTER, Account, make_account
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
