"""The one settings object. Environment ``MODELYARD_*``, overridden by CLI flags.

Defaults run with nothing but the package: a SQLite file and a blob directory
under one data directory.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server and embedded-registry settings."""

    model_config = SettingsConfigDict(env_prefix="MODELYARD_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the server binds to.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port the server listens on.")
    data_dir: Path = Field(
        Path(".modelyard"), description="Directory for the default database and blobs."
    )
    workers: int = Field(1, ge=1, le=64, description="Server worker processes (pre-forked).")
    db: str | None = Field(
        None, description="Metadata database URL (default: SQLite in the data directory)."
    )
    store: str | None = Field(
        None, description="Blob store URL (default: a directory in the data directory)."
    )
    max_json_body: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest JSON request body in bytes."
    )
    max_blob_size: int = Field(1 << 40, ge=1, description="Largest single uploaded file in bytes.")
    max_files_per_version: int = Field(
        100_000, ge=1, description="Most files one version may hold."
    )
    db_pool_size: int = Field(8, ge=1, description="Database connection pool size per process.")
    auto_migrate: bool = Field(True, description="Upgrade the database schema at start-up.")
    log_level: str = Field("info", description="Server log level.")
    auth: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Require API tokens: auto = on whenever the server binds beyond loopback.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Token of the bootstrap 'admin' user, created on first start with auth on "
        "(default: a generated one, printed once).",
    )

    def auth_enabled(self) -> bool:
        """Whether requests need a token: ``auto`` is off only on a loopback address."""
        if self.auth == "auto":
            return not is_loopback(self.host)
        return self.auth == "on"

    def database_url(self) -> str:
        """The metadata database URL, defaulting to SQLite under ``data_dir``."""
        if self.db:
            return self.db
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    def blob_store_url(self) -> str:
        """The blob store URL, defaulting to ``data_dir/blobs``."""
        if self.store:
            return self.store
        return f"file://{(self.data_dir / 'blobs').resolve()}"


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
