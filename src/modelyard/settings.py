"""The one settings object. Environment ``MODELYARD_*``, overridden by CLI flags.

Defaults run with nothing but the package: a SQLite file and a blob directory
under one data directory.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
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
        None,
        description="Blob store URL: file:///dir, a path, or s3://bucket/prefix "
        "(default: a directory in the data directory).",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="Endpoint of an S3-compatible store (MinIO, Ceph, R2, ...); default: "
        "the standard AWS configuration (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, ~/.aws/config).",
    )
    s3_region: str | None = Field(
        None, description="Region of the S3 store (default: the standard AWS configuration)."
    )
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="S3 bucket addressing: path-style suits most self-hosted stores."
    )
    direct_transfers: bool = Field(
        True,
        description="Hand clients presigned URLs to move blob bytes straight to and from "
        "the store, where it gives them (S3); false: every byte goes through the server.",
    )
    direct_url_ttl: int = Field(
        3600, ge=60, le=7 * 86400, description="Seconds a presigned URL stays valid."
    )
    direct_verify: Literal["background", "inline"] = Field(
        "background",
        description="How a direct upload's SHA-256 is checked by reading it back once: in the "
        "background verifier (the client polls; no request waits on the read) or inline in "
        "the request that completes the upload.",
    )
    blob_verifier: bool = Field(
        True,
        description="Run the background verifier of direct uploads in each server process "
        "(replicas share the work through leases).",
    )
    blob_verifier_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between the verifier's rounds when idle."
    )
    s3_part_size: int = Field(
        8 << 20,
        ge=5 << 20,
        le=5 << 30,
        description="Bytes per multipart-upload part to the S3 store (grows for huge blobs).",
    )
    s3_direct_multipart_threshold: int = Field(
        5 << 30,
        ge=5 << 20,
        le=5 << 30,
        description="Direct uploads bigger than this go to the S3 store as presigned "
        "multipart uploads, one URL per part (S3's largest single PUT is 5 GiB).",
    )
    pg_bin: Path | None = Field(
        None,
        description="Directory of the PostgreSQL client programs (pg_dump, pg_restore) that "
        "backup and restore run; default: the PATH.",
    )
    max_json_body: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest JSON request body in bytes."
    )
    max_blob_size: int = Field(1 << 40, ge=1, description="Largest single uploaded file in bytes.")
    max_files_per_version: int = Field(
        100_000, ge=1, description="Most files one version may hold."
    )
    max_map_keys: int = Field(
        1000,
        ge=1,
        description="Most entries in one tags, metrics or params map, keys in one metadata "
        "object, and items in delete_tags or datasets.",
    )
    max_metadata_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Largest metadata, signature or datasets value, as compact JSON, in bytes.",
    )
    max_metadata_depth: int = Field(
        32,
        ge=1,
        le=128,
        description="Deepest nesting of objects and arrays in metadata, signature or datasets "
        "(the JSON encoder stops at 255; events nest the value a few levels deeper).",
    )
    db_pool_size: int = Field(8, ge=1, description="Database connection pool size per process.")
    auto_migrate: bool = Field(True, description="Upgrade the database schema at start-up.")
    log_level: str = Field("info", description="Server log level.")
    auth: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Require API tokens: auto = on whenever the server binds beyond loopback.",
    )
    auth_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=86_400,
        description="Seconds a server process keeps a token lookup (its user and roles) "
        "in memory; changes reach it sooner through the outbox (auth_sync_interval).",
    )
    auth_sync_interval: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Seconds between a server process's outbox reads for token, user and "
        "role changes made through other replicas (they then apply there).",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Token of the bootstrap 'admin' user, created on first start with auth on "
        "(default: a generated one, printed once).",
    )

    # -- the SDK and CLI (issue 9): where they connect and cache by default --
    url: str = Field(
        "http://127.0.0.1:8080",
        description="Registry the CLI talks to: http(s)://host:port (a bare host:port "
        "means http://) or a data directory for embedded use.",
    )
    upload_concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Parts of one big presigned multipart upload the SDK/CLI sends at once "
        "(each part is held in memory while it is sent).",
    )
    cache_dir: Path | None = Field(
        None,
        description="SDK/CLI download cache (default: $XDG_CACHE_HOME/modelyard, "
        "else ~/.cache/modelyard).",
    )

    def auth_enabled(self) -> bool:
        """Whether requests need a token: ``auto`` is off only on a loopback address."""
        if self.auth == "auto":
            return not is_loopback(self.host)
        return self.auth == "on"

    # -- the MLflow door (issue 10) --
    mlflow_namespace: str = Field(
        "default",
        description="Namespace the MLflow door (/api/2.0/mlflow) registers and finds "
        "models in: MLflow model names carry no namespace.",
    )
    mlflow_multipart_uploads: bool = Field(
        False,
        description="Tell MLflow clients (/api/3.0/mlflow/server-info) that the artifact "
        "proxy takes multipart uploads. Parts can be retried one by one, but every byte is "
        "written and hashed twice (the parts, then the joined file); off, a large file "
        "streams in one PUT, hashed once as it arrives (1 GiB: 1.85 s of server CPU against "
        "3.85 s in parts). The multipart endpoints are served either way.",
    )

    # -- events and webhooks (issue 4) --
    dispatcher: bool = Field(True, description="Run the webhook dispatcher in each server process.")
    dispatcher_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between dispatcher polls of the outbox when idle."
    )
    delivery_retention_days: float = Field(
        30.0,
        ge=0,
        le=36500,
        description="Days a finished webhook delivery (with its attempts) is kept; pending "
        "ones stay until done. 0 keeps them forever. Pruned by the dispatcher hourly.",
    )
    webhook_allow: str = Field(
        "",
        description="Comma-separated CIDRs, IPs or host names webhooks may reach although "
        "private, loopback or link-local (e.g. '10.0.0.0/8,127.0.0.1,hooks.internal').",
    )
    webhook_timeout: float = Field(
        10.0, gt=0, le=120, description="Seconds a webhook endpoint has to answer."
    )
    deployment_stale_seconds: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Seconds after its last heartbeat that a model server (deployment "
        "replica) shows as stale; computed when read.",
    )
    webhook_ca_bundle: Path | None = Field(
        None,
        description="PEM file of extra certificate authorities trusted for https webhooks "
        "(an internal CA); the public ones stay trusted.",
    )
    webhook_concurrency: int = Field(
        4, ge=1, le=64, description="Deliveries sent in parallel by one process."
    )
    webhook_lease: float = Field(
        120.0,
        gt=0,
        description="Seconds a claimed delivery stays reserved for the process that claimed "
        "it; a crashed process's claims are retried after this.",
    )
    webhook_retry_base: float = Field(
        5.0, gt=0, description="First retry delay ceiling in seconds (doubles per failure)."
    )
    webhook_retry_cap: float = Field(
        6 * 3600.0, gt=0, description="Largest retry delay ceiling in seconds."
    )
    webhook_max_attempts: int = Field(
        16, ge=1, le=100, description="Attempts before a delivery is marked failed."
    )
    webhook_retry_after_cap: float = Field(
        3600.0, ge=0, description="Longest Retry-After (429/503) honoured, in seconds."
    )
    webhook_disable_after: float = Field(
        5 * 86400.0,
        gt=0,
        description="Seconds of continuous failure after which a webhook is disabled.",
    )
    webhook_secret_overlap: float = Field(
        86400.0, ge=0, description="Seconds the old secret keeps signing after a rotation."
    )
    sse_heartbeat: float = Field(
        15.0, gt=0, le=300, description="Seconds between heartbeat comments on the event stream."
    )
    events_poll_interval: float = Field(
        0.5, gt=0, le=60, description="Seconds between outbox polls of an idle event stream."
    )

    @model_validator(mode="after")
    def _lease_outlives_timeout(self) -> Settings:
        # A lease shorter than a delivery would let a second process send it too.
        if self.webhook_lease <= self.webhook_timeout + 1:
            raise ValueError("webhook_lease must exceed webhook_timeout by more than 1 s")
        return self

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
