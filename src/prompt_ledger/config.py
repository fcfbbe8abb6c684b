"""Settings: one typed object, read from the environment and ``.env`` (SPEC §2)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

API_KEY_FILE = "api_key"
# Keys that appear in docs, examples and the original task list: never accepted.
_REFUSED_KEYS = frozenset({"", "changeme", "change-me", "your-api-key", "dev-api-key", "secret"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = None
    # Connections per process (and as many again in overflow); mind PostgreSQL's
    # max_connections across API processes and workers.
    database_pool_size: int = Field(default=10, ge=1)
    redis_url: str | None = None
    api_key: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    provider_timeout_s: float = Field(default=60.0, gt=0)
    execution_retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0]
    )
    recovery_timeout_s: float = Field(default=300.0, gt=0)
    promptledger_home: Path = Path(".promptledger")
    max_request_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    render_timeout_s: float = Field(default=2.0, gt=0)
    sweep_interval_s: float = Field(default=15.0, gt=0)
    # Provider calls one `promptledger worker` process keeps in flight.
    worker_max_in_flight: int = Field(
        default=500, ge=1, validation_alias="PROMPTLEDGER_WORKER_MAX_IN_FLIGHT"
    )
    # Signs the web UI's session cookies. Unset: a random secret per process (``serve`` draws
    # one for all its workers), so a restart signs everyone out and replicas need it set.
    ui_session_secret: SecretStr | None = None
    ui_session_max_age_s: int = Field(default=12 * 3600, gt=0)
    debug: bool = False

    @field_validator("api_key", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("api_key")
    @classmethod
    def _refuse_builtin_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            if key.get_secret_value().lower() in _REFUSED_KEYS:
                raise ValueError("API_KEY holds a well-known placeholder; set a random key")
        return keys

    @field_validator("execution_retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(v) for v in value.split(",") if v.strip()]
        return value

    @field_validator("execution_retry_delays")
    @classmethod
    def _non_negative(cls, delays: list[float]) -> list[float]:
        if any(d < 0 for d in delays):
            raise ValueError("EXECUTION_RETRY_DELAYS must be non-negative seconds")
        return delays

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or the SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.promptledger_home / 'promptledger.db').resolve()}"

    @property
    def api_key_path(self) -> Path:
        return self.promptledger_home / API_KEY_FILE

    def accepted_api_keys(self) -> list[str]:
        """Configured keys, else the key stored in the data folder; empty when neither exists."""
        if self.api_key:
            return [k.get_secret_value() for k in self.api_key]
        if self.api_key_path.is_file():
            stored = self.api_key_path.read_text().strip()
            return [stored] if stored else []
        return []

    def ensure_api_key(self) -> tuple[str, bool]:
        """Return a usable key, creating and storing a random one if none is configured.

        Returns the key and whether it was generated (so ``serve`` can print it).
        """
        keys = self.accepted_api_keys()
        if keys:
            return keys[0], False
        self.promptledger_home.mkdir(parents=True, exist_ok=True)
        key = "pl_" + secrets.token_urlsafe(32)
        # O_EXCL: two replicas starting at once must agree on one key.
        try:
            with self.api_key_path.open("x") as fh:
                fh.write(key + "\n")
            self.api_key_path.chmod(0o600)
        except FileExistsError:
            return self.accepted_api_keys()[0], False
        return key, True


@lru_cache
def get_settings() -> Settings:
    return Settings()
