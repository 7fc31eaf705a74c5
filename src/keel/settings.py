"""One settings class, read from the environment (12-factor) and validated at start."""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Development default: usable locally, refused in production by `_refuse_weak_production`.
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me-0123456789abcdef"  # noqa: S105
MIN_SECRET_KEY_LENGTH = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SettingsError(ValueError):
    """A setting breaks a rule; the message is one line naming the variable and the rule."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    environment: Environment = Environment.DEVELOPMENT
    service_name: str = "keel"

    # --- PostgreSQL (asyncpg pool) ---
    database_url: str = "postgresql://postgres@127.0.0.1:5432/keel"
    db_pool_min_size: int = Field(default=2, ge=0)
    # asyncpg has no overflow: size the pool to the request concurrency of one worker.
    db_pool_max_size: int = Field(default=16, ge=1)
    db_connect_timeout: float = Field(default=2.0, gt=0)
    db_acquire_timeout: float = Field(default=1.0, gt=0)
    db_command_timeout: float = Field(default=5.0, gt=0)
    db_statement_timeout_ms: int = Field(default=5_000, ge=0)
    db_idle_in_transaction_timeout_ms: int = Field(default=10_000, ge=0)
    db_statement_cache_size: int = Field(default=256, ge=0)

    # --- Redis ---
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_socket_timeout: float = Field(default=1.0, gt=0)
    redis_connect_timeout: float = Field(default=1.0, gt=0)
    redis_retries: int = Field(default=2, ge=0)
    redis_max_connections: int = Field(default=64, ge=1)

    # --- Outbound HTTP (one shared httpx.AsyncClient) ---
    http_connect_timeout: float = Field(default=3.0, gt=0)
    http_read_timeout: float = Field(default=10.0, gt=0)
    http_write_timeout: float = Field(default=10.0, gt=0)
    http_pool_timeout: float = Field(default=3.0, gt=0)
    http_max_connections: int = Field(default=100, ge=1)
    http_max_keepalive_connections: int = Field(default=20, ge=0)

    # --- Health ---
    readiness_timeout: float = Field(default=1.0, gt=0)

    # --- Security and edge ---
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False
    docs_enabled: bool | None = None
    public_base_url: AnyHttpUrl | None = None

    # --- Logging ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool | None = None

    # --- Worker (ARQ) ---
    arq_queue_name: str = "keel:queue"

    @model_validator(mode="before")
    @classmethod
    def _parse_csv_lists(cls, data: object) -> object:
        if isinstance(data, dict) and "cors_origins" in data:
            data = {**data, "cors_origins": _split_csv(data["cors_origins"])}
        return data

    @model_validator(mode="after")
    def _refuse_weak_production(self) -> Self:
        if self.environment is not Environment.PRODUCTION:
            return self
        secret = self.secret_key.get_secret_value()
        if secret == DEV_SECRET_KEY:
            raise SettingsError(
                "SECRET_KEY must be set in production (the development default is refused)"
            )
        if len(secret) < MIN_SECRET_KEY_LENGTH:
            raise SettingsError(
                f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters in production"
            )
        return self

    @model_validator(mode="after")
    def _refuse_wildcard_cors_with_credentials(self) -> Self:
        # Starlette would reflect any Origin back with credentials allowed: a CSRF hole.
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise SettingsError(
                "CORS_ORIGINS must list explicit origins when CORS_ALLOW_CREDENTIALS is true"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION

    @property
    def log_as_json(self) -> bool:
        """JSON lines in production (for the log pipeline), console output elsewhere."""
        if self.log_json is None:
            return self.is_production
        return self.log_json

    @property
    def docs_on(self) -> bool:
        """Docs are on outside production; in production only when DOCS_ENABLED=true."""
        if self.docs_enabled is None:
            return not self.is_production
        return self.docs_enabled


def describe_validation_error(error: ValidationError) -> str:
    """One line per broken rule: `VARIABLE: rule`, the way an operator reads it."""
    lines = []
    for problem in error.errors():
        variable = "_".join(str(part) for part in problem["loc"]).upper()
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{variable}: {message}" if variable else message)
    return "; ".join(lines)


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once (tests build their own `Settings(...)` instead)."""
    return Settings()
