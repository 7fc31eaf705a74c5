"""Auth settings are validated at start: weak or mismatched keys are refused in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from keel.settings import DEV_SECRET_KEY, Environment, Settings, describe_validation_error
from tests.auth.test_tokens import _write_pair, write_rsa_keys
from tests.test_settings import STRONG_SECRET


def make(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def refusal(**values: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        make(**values)
    return describe_validation_error(raised.value)


def test_hmac_secret_shorter_than_the_hash_is_refused_everywhere() -> None:
    assert "at least 32 bytes" in refusal(jwt_secret_key="x" * 31)
    assert "at least 64 bytes" in refusal(jwt_algorithm="HS512", jwt_secret_key="x" * 63)
    assert make(jwt_algorithm="HS512", jwt_secret_key="x" * 64).jwt_algorithm == "HS512"


def test_production_refuses_the_development_jwt_secret() -> None:
    message = refusal(
        environment=Environment.PRODUCTION,
        secret_key=STRONG_SECRET,
        jwt_secret_key=DEV_SECRET_KEY,
    )
    assert message.startswith("JWT_SECRET_KEY")
    assert make(
        environment=Environment.PRODUCTION,
        secret_key=STRONG_SECRET,
        jwt_secret_key=STRONG_SECRET[::-1],
    ).is_production


def test_asymmetric_algorithms_need_fitting_key_files(tmp_path: Path) -> None:
    assert "JWT_PRIVATE_KEY_FILE and JWT_PUBLIC_KEY_FILE" in refusal(jwt_algorithm="RS256")
    missing = refusal(
        jwt_algorithm="RS256",
        jwt_private_key_file=tmp_path / "nope.pem",
        jwt_public_key_file=tmp_path / "nope.pub",
    )
    assert "cannot read" in missing

    small = tmp_path / "small"
    small.mkdir()
    private, public = _write_pair(
        small,
        rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505
    )
    too_small = refusal(
        jwt_algorithm="RS256", jwt_private_key_file=private, jwt_public_key_file=public
    )
    assert "at least 2048 bits" in too_small

    curve = tmp_path / "ec"
    curve.mkdir()
    ec_private, ec_public = _write_pair(curve, ec.generate_private_key(ec.SECP256R1()))
    wrong_kind = refusal(
        jwt_algorithm="RS256", jwt_private_key_file=ec_private, jwt_public_key_file=ec_public
    )
    assert "needs an RSA key" in wrong_kind
    assert (
        make(
            jwt_algorithm="ES256", jwt_private_key_file=ec_private, jwt_public_key_file=ec_public
        ).jwt_algorithm
        == "ES256"
    )

    good = tmp_path / "good"
    good.mkdir()
    rsa_private, rsa_public = write_rsa_keys(good)
    assert (
        make(
            jwt_algorithm="RS256", jwt_private_key_file=rsa_private, jwt_public_key_file=rsa_public
        ).jwt_algorithm
        == "RS256"
    )


def test_page_limits_are_consistent() -> None:
    assert "PAGE_DEFAULT_LIMIT" in refusal(page_default_limit=50, page_max_limit=10)
