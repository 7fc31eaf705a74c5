from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from keel.settings import DEV_SECRET_KEY, Environment, Settings, describe_validation_error

STRONG_SECRET = "s" * 48


def production(**overrides: Any) -> Settings:
    return Settings(_env_file=None, environment=Environment.PRODUCTION, **overrides)


def test_production_refuses_the_development_secret() -> None:
    with pytest.raises(ValidationError) as raised:
        production()
    assert describe_validation_error(raised.value).startswith("SECRET_KEY must be set")


def test_production_refuses_a_short_secret() -> None:
    with pytest.raises(ValidationError) as raised:
        production(secret_key="x" * 31)
    assert "SECRET_KEY must be at least 32 characters" in describe_validation_error(raised.value)


def test_production_accepts_a_strong_secret_and_turns_docs_off() -> None:
    settings = production(secret_key=STRONG_SECRET)
    assert settings.docs_on is False
    assert production(secret_key=STRONG_SECRET, docs_enabled=True).docs_on is True


def test_development_defaults_keep_docs_on() -> None:
    settings = Settings(_env_file=None)
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.secret_key.get_secret_value() == DEV_SECRET_KEY
    assert settings.docs_on is True


def test_wildcard_cors_with_credentials_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, cors_origins="*", cors_allow_credentials=True)
    assert "CORS_ORIGINS" in describe_validation_error(raised.value)


def test_cors_origins_read_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings(_env_file=None).cors_origins == ["https://a.example", "https://b.example"]


def test_secret_never_appears_in_repr() -> None:
    settings = production(secret_key=STRONG_SECRET)
    assert STRONG_SECRET not in repr(settings)


def test_production_without_secret_exits_nonzero_naming_it(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "ENVIRONMENT": "production"}
    result = subprocess.run(
        [sys.executable, "-m", "keel.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,  # away from any developer's .env
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "SECRET_KEY" in lines[0]
