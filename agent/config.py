"""Settings, read from the environment (prefix ``MUSE_``) and validated at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MUSE_", extra="forbid")

    data_dir: Path = Field(Path(".muse"), description="event store, Chroma store and fitted models")
    chroma_url: str | None = Field(
        None, description="http(s)://host:port of a Chroma server; unset = local store in data_dir"
    )
    database_url: str | None = Field(
        None, description="event store; unset = SQLite file in data_dir (the only backend today)"
    )
    seed: int = Field(0, description="seed for model training")

    @field_validator("chroma_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"MUSE_CHROMA_URL must start with http:// or https://, got {value!r}")
        return value or None

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, value: str | None) -> str | None:
        if value and not value.startswith("sqlite:///"):
            raise ValueError(
                f"MUSE_DATABASE_URL {value!r}: only sqlite:///PATH is implemented; a server "
                "database plugs in behind agent.store.EventStore"
            )
        return value or None

    @property
    def db_path(self) -> Path:
        if self.database_url:
            return Path(self.database_url.removeprefix("sqlite:///"))
        return self.data_dir / "muse.db"

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "model"
