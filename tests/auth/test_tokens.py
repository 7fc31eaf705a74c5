"""Access-token verification: every malformed, forged or stale token is a 401.

Each negative test starts from the claims of a real token, changes one thing and checks that
the same claims re-signed correctly are accepted: the 401 comes from that one thing only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from keel.settings import Settings
from tests.auth.accounts import Account, AccountFactory, make_account
from tests.auth.apps import client_for, derive_settings

ME = "/api/v1/users/me"
OTHER_SECRET = "another-secret-that-is-long-enough-for-hs256-0123456789"


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def sign(settings: Settings, claims: dict[str, Any], **header: Any) -> str:
    key = settings.jwt_signing_secret.get_secret_value()
    return jwt.encode(claims, key, algorithm="HS256", headers={"typ": "at+jwt", **header})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """A JWT built without PyJWT, as an attacker would (PyJWT refuses to make these)."""
    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}"
    signature = (
        b""
        if hmac_key is None
        else hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{b64(signature)}"


async def status_with(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get(ME, headers={"Authorization": f"Bearer {token}"})).status_code


async def test_control_resigned_claims_are_accepted(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    assert await status_with(client, account.access_token) == 200
    assert await status_with(client, sign(settings, claims_of(account.access_token))) == 200


async def test_leeway_accepts_a_token_expired_seconds_ago(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    now = int(time.time())
    claims = {**claims_of(account.access_token), "iat": now - 600, "nbf": now - 600}
    claims["exp"] = now - settings.jwt_leeway_seconds // 2
    assert await status_with(client, sign(settings, claims)) == 200


def _expired(claims: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    return {**claims, "iat": now - 3600, "nbf": now - 3600, "exp": now - 60}


def _future_nbf(claims: dict[str, Any]) -> dict[str, Any]:
    return {**claims, "nbf": int(time.time()) + 300}


def _without(name: str) -> Any:
    return lambda claims: {key: value for key, value in claims.items() if key != name}


CLAIM_CHANGES = {
    "expired": _expired,
    "missing exp": _without("exp"),
    "missing iat": _without("iat"),
    "missing sub": _without("sub"),
    "missing iss": _without("iss"),
    "missing aud": _without("aud"),
    "missing sid": _without("sid"),
    "future nbf": _future_nbf,
    "wrong aud": lambda claims: {**claims, "aud": "someone-else"},
    "wrong iss": lambda claims: {**claims, "iss": "https://evil.example"},
    "sub not a uuid": lambda claims: {**claims, "sub": "admin"},
}


@pytest.mark.parametrize("change", CLAIM_CHANGES.values(), ids=CLAIM_CHANGES.keys())
async def test_bad_claims_are_refused(
    client: httpx.AsyncClient, account: Account, settings: Settings, change: Any
) -> None:
    token = sign(settings, change(claims_of(account.access_token)))
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"


async def test_alg_none_is_refused(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    claims = claims_of(account.access_token)
    assert await status_with(client, sign(settings, claims)) == 200
    for alg in ("none", "None", "NONE"):
        token = hand_made({"alg": alg, "typ": "at+jwt"}, claims, hmac_key=None)
        assert await status_with(client, token) == 401


async def test_wrong_key_is_refused(client: httpx.AsyncClient, account: Account) -> None:
    claims = claims_of(account.access_token)
    forged = jwt.encode(claims, OTHER_SECRET, algorithm="HS256", headers={"typ": "at+jwt"})
    assert await status_with(client, forged) == 401


async def test_other_token_type_is_refused(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    claims = claims_of(account.access_token)
    assert await status_with(client, sign(settings, claims, typ="JWT")) == 401


async def test_tampered_payload_is_refused(
    client: httpx.AsyncClient, account_factory: AccountFactory
) -> None:
    victim = await account_factory()
    attacker = await account_factory()
    header, _, signature = attacker.access_token.split(".")
    claims = {**claims_of(attacker.access_token), "sub": str(victim.id)}
    tampered = f"{header}.{b64(orjson.dumps(claims))}.{signature}"
    assert await status_with(client, tampered) == 401
    # Flipping one signature bit is caught as well.
    flipped = attacker.access_token[:-2] + ("A" if attacker.access_token[-2] != "A" else "B")
    flipped += attacker.access_token[-1]
    assert await status_with(client, flipped) == 401


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer a.b.c"]
)
async def test_missing_or_garbage_credentials_are_refused(
    client: httpx.AsyncClient, header: str
) -> None:
    headers = {"Authorization": header} if header else {}
    response = await client.get(ME, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_token_of_a_deactivated_user_stops_working_at_once(
    client: httpx.AsyncClient, account_factory: AccountFactory
) -> None:
    admin = await account_factory(admin=True)
    user = await account_factory()
    assert await status_with(client, user.access_token) == 200  # the session is now cached
    deactivated = await client.post(
        f"/api/v1/admin/users/{user.id}/deactivate", headers=admin.headers
    )
    assert deactivated.status_code == 200
    assert deactivated.json()["is_active"] is False
    assert await status_with(client, user.access_token) == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}
    )
    assert refreshed.status_code == 401


# --- Asymmetric keys: RS256 and EdDSA by configuration, and algorithm confusion ---


def write_rsa_keys(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _write_pair(folder, key)


def _write_pair(folder: Path, key: Any) -> tuple[Path, Path]:
    private = folder / "private.pem"
    public = folder / "public.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture
async def rs256(
    settings: Settings, db_connection: asyncpg.Connection, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Account, Path]]:
    private, public = await asyncio.to_thread(write_rsa_keys, tmp_path)
    rs_settings = derive_settings(
        settings, jwt_algorithm="RS256", jwt_private_key_file=private, jwt_public_key_file=public
    )
    async with client_for(rs_settings, db_connection) as client:
        yield client, await make_account(client), public


async def test_rs256_tokens_work_by_configuration(
    rs256: tuple[httpx.AsyncClient, Account, Path],
) -> None:
    client, account, _ = rs256
    assert jwt.get_unverified_header(account.access_token)["alg"] == "RS256"
    assert await status_with(client, account.access_token) == 200


async def test_hs256_signed_with_the_rsa_public_key_is_refused(
    rs256: tuple[httpx.AsyncClient, Account, Path],
) -> None:
    """The classic confusion: the public key (known to everyone) used as an HMAC secret."""
    client, account, public = rs256
    claims = claims_of(account.access_token)
    forged = hand_made({"alg": "HS256", "typ": "at+jwt"}, claims, hmac_key=public.read_bytes())
    assert await status_with(client, forged) == 401


async def test_rs256_token_is_refused_by_an_hs256_service(
    client: httpx.AsyncClient, account: Account
) -> None:
    attacker_key = await asyncio.to_thread(
        rsa.generate_private_key, public_exponent=65537, key_size=2048
    )
    claims = claims_of(account.access_token)
    forged = jwt.encode(claims, attacker_key, algorithm="RS256", headers={"typ": "at+jwt"})
    assert await status_with(client, forged) == 401


@pytest.fixture
async def eddsa_client(
    settings: Settings, db_connection: asyncpg.Connection, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    private, public = _write_pair(tmp_path, ed25519.Ed25519PrivateKey.generate())
    ed_settings = derive_settings(
        settings, jwt_algorithm="EdDSA", jwt_private_key_file=private, jwt_public_key_file=public
    )
    async with client_for(ed_settings, db_connection) as client:
        yield client


async def test_eddsa_tokens_work_by_configuration(eddsa_client: httpx.AsyncClient) -> None:
    account = await make_account(eddsa_client, email=f"ed-{uuid.uuid4().hex[:8]}@example.com")
    assert jwt.get_unverified_header(account.access_token)["alg"] == "EdDSA"
    assert await status_with(eddsa_client, account.access_token) == 200
