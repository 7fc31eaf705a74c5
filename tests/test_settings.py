from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from keel.settings import DEV_SECRET_KEY, Environment, Settings, describe_validation_error

# Random (secrets.token_urlsafe), made for these tests only.
STRONG_SECRET = "Zq3v9L0xR2mT8wKc4YhB7nJp1sFd6GuA5eXoVi0Lr9QtWm2N"
REPO = Path(__file__).resolve().parents[1]


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


def refusal(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        production(**overrides)
    message = describe_validation_error(raised.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "weak",
    ["a" * 32, "changeme" * 4, "changeme" * 4 + "!", "abcdefghijklmnop" * 3, "0123456789" * 4],
)
def test_production_refuses_low_entropy_secrets_in_one_line(weak: str) -> None:
    assert refusal(secret_key=weak).startswith("SECRET_KEY is too predictable")
    assert refusal(secret_key=STRONG_SECRET, jwt_secret_key=weak).startswith(
        "JWT_SECRET_KEY is too predictable"
    )


# `SECRET_KEY: value`, `SECRET_KEY=value`, `JWT_SECRET = "value"` in any text the repository
# publishes (compose, .env.example, k8s, docs, the benchmarks, the code).
PUBLISHED_ASSIGNMENT = re.compile(
    r"""\b(?:JWT_)?SECRET(?:_KEY)?\b["']?[ \t]*[:=][ \t]*["']?([^\s"'#,)}\]]+)"""
)
SKIPPED_DIRECTORIES = {".git", ".venv", ".venv-lowest", ".tools", ".keel", "tests", "__pycache__"}
PUBLISHED_FILES = {".yml", ".yaml", ".md", ".example", ".py", ".toml", ".ini", ".sh", ".cfg"}


def published_secrets() -> set[str]:
    found: set[str] = set()
    for path in REPO.rglob("*"):
        relative = path.relative_to(REPO)
        if SKIPPED_DIRECTORIES & set(relative.parts) or not path.is_file():
            continue
        if path.suffix in PUBLISHED_FILES or path.name in {"Dockerfile", "Makefile"}:
            for value in PUBLISHED_ASSIGNMENT.findall(path.read_text(errors="replace")):
                if not value.startswith("$"):  # taken from the environment
                    found.add(value)
    return found


def test_production_refuses_every_secret_published_in_the_repository() -> None:
    published = published_secrets()
    assert "REPLACE_ME" in published  # it reads (k8s/overlays/dev/secret.example.yaml)
    # feature: template
    assert "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz" in published
    # end feature: template
    # Published in docker-compose.yml until the key moved to the environment: still public.
    published.add("local-only-secret-key-not-for-any-real-deployment-0001")
    for value in published:
        assert refusal(secret_key=value).startswith("SECRET_KEY "), value
        assert refusal(secret_key=STRONG_SECRET, jwt_secret_key=value).startswith(
            "JWT_SECRET_KEY "
        ), value
    assert "published in the Keel repository" in refusal(
        secret_key="local-only-secret-key-not-for-any-real-deployment-0001"
    )
    # Refusing is not all it does: random keys of the minimum length pass.
    for _ in range(200):
        production(secret_key=secrets.token_hex(16), jwt_secret_key=secrets.token_urlsafe(24))


def test_compose_takes_the_secret_key_from_the_environment() -> None:
    # The production-like variant requires one from the shell; the dev loop names none (its
    # development default is refused by production settings anyway).
    production = (REPO / "compose.prod.yml").read_text()
    assert re.search(r"^  SECRET_KEY: \$\{SECRET_KEY:\?", production, re.MULTILINE)
    assert "SECRET_KEY:" not in (REPO / "docker-compose.yml").read_text()


@pytest.mark.parametrize("origins", ["null", "https://a.example,null", "NULL"])
def test_null_cors_origin_with_credentials_is_refused_like_a_wildcard(origins: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, cors_origins=origins, cors_allow_credentials=True)
    assert describe_validation_error(raised.value).startswith("CORS_ORIGINS must list explicit")
    assert Settings(_env_file=None, cors_origins=origins).cors_origins


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://app:pw@db.internal:5432/app",
        "postgresql+psycopg://app:pw@db.internal:5432/app",
        "postgres://app:pw@db.internal:5432/app",
    ],
)
def test_sqlalchemy_database_urls_are_normalized_for_asyncpg(url: str) -> None:
    settings = Settings(_env_file=None, database_url=url)
    assert settings.database_url == "postgresql://app:pw@db.internal:5432/app"


def test_a_database_url_of_another_kind_is_refused_in_one_line_without_its_password() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, database_url="mysql://app:hunter2-secret@db:3306/app")
    message = describe_validation_error(raised.value)
    assert message.startswith("DATABASE_URL: must be a PostgreSQL URL")
    assert "hunter2" not in message
