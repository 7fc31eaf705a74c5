"""Remembering verified tokens must never widen what is accepted: expiry and key still rule."""

from __future__ import annotations

import time
import uuid

import pytest

from keel.auth.tokens import decode_access_token, issue_access_token
from keel.errors import Unauthorized
from keel.settings import Settings

SECRET_A = "first-secret-that-is-long-enough-for-hs256-0123456789"
SECRET_B = "second-secret-that-is-long-enough-for-hs256-0123456789"


def settings_with(secret: str) -> Settings:
    return Settings(_env_file=None, jwt_secret_key=secret, jwt_leeway_seconds=0)


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_with(SECRET_A)
    user, session = uuid.uuid4(), uuid.uuid4()
    token = issue_access_token(settings, user, session)
    assert decode_access_token(settings, token).user_id == user
    assert decode_access_token(settings, token).user_id == user  # now from the cache

    later = time.time() + settings.access_token_ttl_seconds + 1
    monkeypatch.setattr(time, "time", lambda: later)  # the clock tokens.py reads
    with pytest.raises(Unauthorized):
        decode_access_token(settings, token)


def test_a_token_remembered_under_one_key_is_refused_under_another() -> None:
    token = issue_access_token(settings_with(SECRET_A), uuid.uuid4(), uuid.uuid4())
    decode_access_token(settings_with(SECRET_A), token)
    with pytest.raises(Unauthorized):
        decode_access_token(settings_with(SECRET_B), token)


def test_a_refused_token_is_never_remembered() -> None:
    token = issue_access_token(settings_with(SECRET_B), uuid.uuid4(), uuid.uuid4())
    for _ in range(2):
        with pytest.raises(Unauthorized):
            decode_access_token(settings_with(SECRET_A), token)
