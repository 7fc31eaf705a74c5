"""`OptionalUser`: anonymous without a credential, the user with a valid one, 401 otherwise."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from keel.api.deps import OptionalUser
from keel.kit.routing import include_flat
from tests.auth.accounts import Account

PATH = "/test-optional/whoami"


@pytest.fixture
def public_read(app: FastAPI) -> None:
    router = APIRouter()

    @router.get(PATH)
    async def whoami(user: OptionalUser) -> dict[str, str | None]:
        return {"user": str(user.user_id) if user is not None else None}

    include_flat(app, router)


@pytest.mark.usefixtures("public_read")
async def test_no_credential_is_anonymous(client: httpx.AsyncClient) -> None:
    response = await client.get(PATH)
    assert response.status_code == 200
    assert response.json() == {"user": None}


@pytest.mark.usefixtures("public_read")
async def test_a_valid_token_is_the_user(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get(PATH, headers=account.headers)
    assert response.json() == {"user": str(account.id)}


@pytest.mark.usefixtures("public_read")
@pytest.mark.parametrize("authorization", ["Bearer not-a-jwt", "Bearer ", "Basic dXNlcjpw", ""])
async def test_a_present_but_unusable_credential_is_a_401_never_anonymous(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.get(PATH, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.usefixtures("public_read")
async def test_a_revoked_session_is_a_401(client: httpx.AsyncClient, account: Account) -> None:
    assert (await client.post("/api/v1/auth/logout", headers=account.headers)).status_code == 204
    response = await client.get(PATH, headers=account.headers)
    assert response.status_code == 401
