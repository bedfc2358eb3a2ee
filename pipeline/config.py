"""One place for configuration: environment variables prefixed ``VERDICTS_`` or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The secret the demo and tests run with; `verdicts` warns when it is used elsewhere.
DEV_SECRET_KEY = "dev-only-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERDICTS_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./verdicts.db"
    provider: Literal["outbox"] = "outbox"
    provider_base_url: str | None = None
    outbox_dir: Path = Path("./outbox")

    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    base_url: str = "https://verdicts.example.com"
    from_email: str = "newsletter@verdicts.example.com"
    from_name: str = "Weekly AI Tool Verdicts"
    unsubscribe_mailto: str = "unsubscribe@verdicts.example.com"
    postal_address: str = "Weekly AI Tool Verdicts, 548 Market St #12345, San Francisco, CA 94104, USA"
    list_id: str = "weekly.verdicts.example.com"

    schedule: str = "0 9 * * mon"
    timezone: str = "UTC"
    misfire_grace_seconds: int = Field(default=3600, ge=1)
    max_comparisons: int = Field(default=5, ge=1, le=50)
    require_approval: bool = True

    batch_size: int = Field(default=100, ge=1, le=10_000)
    rate_per_second: float = Field(default=0.0, ge=0.0, description="0 = as fast as the provider allows")
    claim_lease_seconds: float = Field(default=300.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from None
        return value

    @field_validator("base_url")
    @classmethod
    def _https_base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (the public URL of the web app)")
        return value.rstrip("/")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@lru_cache
def get_settings() -> Settings:
    return Settings()
