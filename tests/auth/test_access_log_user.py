"""The access log names the authenticated user (issue 4: "user id when known")."""

from __future__ import annotations

import httpx
import structlog

from keel.observability.logging import CONTEXT_PROCESSORS
from tests.auth.accounts import Account


async def test_the_access_log_line_and_the_request_logs_name_the_user(
    client: httpx.AsyncClient, account: Account
) -> None:
    with structlog.testing.capture_logs(processors=list(CONTEXT_PROCESSORS)) as captured:
        response = await client.get("/api/v1/users/me", headers=account.headers)
    assert response.status_code == 200
    access = [line for line in captured if line["event"] == "request"]
    assert len(access) == 1
    assert access[0]["user_id"] == str(account.id)


async def test_an_anonymous_request_names_no_user(client: httpx.AsyncClient) -> None:
    with structlog.testing.capture_logs(processors=list(CONTEXT_PROCESSORS)) as captured:
        response = await client.get("/api/v1/users/me")
    assert response.status_code == 401
    access = [line for line in captured if line["event"] == "request"]
    assert len(access) == 1
    assert "user_id" not in access[0]
