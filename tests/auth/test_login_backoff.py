"""Login is bounded per target account, whatever client, IP or token the guesses come with:
after LOGIN_FREE_FAILURES failures its logins (and password checks) answer 429 for a delay
that doubles per failure (keel.auth.throttle)."""

from __future__ import annotations

import httpx
import pytest

from keel.auth.throttle import CLOSED
from tests.auth.accounts import login, make_account

ME = "/api/v1/users/me"


@pytest.mark.app_settings(login_free_failures=2, login_backoff_base_seconds=60)
async def test_failed_logins_close_the_accounts_logins_not_the_clients(
    tuned: list[httpx.AsyncClient],
) -> None:
    [client] = tuned
    victim = await make_account(client)
    bystander = await make_account(client)

    failures = [await login(client, victim.email, "wrong password 1") for _ in range(3)]
    assert [answer.status_code for answer in failures] == [401] * 3
    # The third failure closed the account for 60 s: even the right password waits.
    closed = await login(client, victim.email.upper(), victim.password)
    assert closed.status_code == 429, closed.text
    assert closed.json()["detail"] == CLOSED
    assert 55 <= int(closed.headers["retry-after"]) <= 60
    # The same client logs in to another account: the account is closed, not the client.
    assert (await login(client, bystander.email, bystander.password)).status_code == 200


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
