"""Access tokens: short-lived JWTs, verified with one allowed algorithm and required claims.

Claims: `sub` (user id), `sid` (the session, i.e. the refresh-token family), `iat`, `nbf`,
`exp`, `iss`, `aud`, `jti`. The header carries `typ: at+jwt` (RFC 9068) and the check refuses
any other type, so no other JWT signed with the same key passes as an access token.
Whether the session is still valid is a separate check (`keel.auth.sessions`).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from keel.errors import Unauthorized
from keel.settings import Settings
from keel.token_keys import load_keys

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "sid"]
INVALID_TOKEN = "The access token is invalid or has expired."  # noqa: S105


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    # The canonical text of both, made once per verified token: the session check uses them
    # (Redis key, stored owner) on every request that presents the token.
    user_text: str
    session_text: str


def issue_access_token(
    settings: Settings, user_id: uuid.UUID, session_id: uuid.UUID, now: int | None = None
) -> str:
    issued_at = int(time.time()) if now is None else now
    keys = load_keys(*settings.jwt_key_source)
    payload = {
        "sub": str(user_id),
        "sid": str(session_id),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + settings.access_token_ttl_seconds,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(
        payload, keys.signing_key, algorithm=keys.algorithm, headers={"typ": ACCESS_TOKEN_TYPE}
    )


# Tokens this process has verified: signature, type, issuer, audience and the required claims
# never change for a given token string and key, so each is checked once (~130 us of PyJWT per
# request here) and only expiry is checked again on later uses. Bounded; emptied when full.
_VERIFIED_CAPACITY = 10_000
_verified: dict[tuple[int, str, str, str], tuple[AccessClaims, float]] = {}


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verify signature, algorithm, type and claims; any failure is the same 401."""
    keys = load_keys(*settings.jwt_key_source)
    # load_keys is cached for the process, so id(keys) names one key configuration.
    cache_key = (id(keys), settings.jwt_issuer, settings.jwt_audience, token)
    remembered = _verified.get(cache_key)
    if remembered is not None:
        claims, expires_at = remembered
        # PyJWT's own rule: expired once exp <= now - leeway.
        if expires_at > time.time() - settings.jwt_leeway_seconds:
            return claims
        _verified.pop(cache_key, None)
        raise Unauthorized(INVALID_TOKEN)
    claims, expires_at = _verify(settings, keys.verifying_key, keys.algorithm, token)
    if len(_verified) >= _VERIFIED_CAPACITY:
        _verified.clear()
    _verified[cache_key] = (claims, expires_at)
    return claims


def _verify(
    settings: Settings, verifying_key: object, algorithm: str, token: str
) -> tuple[AccessClaims, float]:
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != ACCESS_TOKEN_TYPE:
            raise Unauthorized(INVALID_TOKEN)
        claims = jwt.decode(
            token,
            verifying_key,  # type: ignore[arg-type]
            algorithms=[algorithm],  # the allow-list: exactly the configured algorithm
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
            options={"require": REQUIRED_CLAIMS, "verify_signature": True},
        )
        user_id, session_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
        access = AccessClaims(user_id, session_id, str(user_id), str(session_id))
        return access, float(claims["exp"])
    except (jwt.InvalidTokenError, ValueError, TypeError, AttributeError) as error:
        raise Unauthorized(INVALID_TOKEN) from error
