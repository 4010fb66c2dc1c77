"""The composition root: every service built once, from settings, in one place.

The server (``api/app.py`` ``create_app``), the embedded SDK
(``client/backends.py`` ``EmbeddedBackend``), the CLI and the tests all build
their object graph here, so they all run the same one::

    Settings
     └─ build_services(settings) -> Services
          metadata    MetadataStore      engine of settings.database_url(), migrated
                                         (auto_migrate); on SQLite its writer lock,
                                         checkpointer and group committer
          blobs       BlobStore          settings.blob_store_url(); stale uploads swept
          registry    RegistryService    (metadata, blobs): namespaces, models,
                                         versions, aliases, search; ``default`` ensured
          governance  GovernanceService  (registry)
          approvals   ApprovalService    (registry)
          identity    IdentityService    (registry, auth_cache_seconds): users, tokens,
                                         roles; kept in step across replicas by
                                         events.cachesync.CacheSync (servers only)
          blob_service BlobService       (registry, max_blob_size): upload and download rules
          tracking    TrackingService    (registry): experiments, runs, logged models;
                                         the ``Default`` experiment (id 0) ensured
          artifacts   ArtifactService    (metadata, blob_service): run/model artifact trees
          gc          GcService          (registry): garbage collection of the blob store
          fsck        FsckService        (registry): integrity check, repair from a backup
          backup      BackupService      (registry): backups into a directory or S3 prefix
          webhooks    WebhookService     (metadata, DestinationGuard(webhook_allow),
                                         WebhookPolicy(settings))
     ├─ build_dispatcher(services) -> Dispatcher   (server processes only)
     └─ build_verifier(services) -> BlobVerifier   (server processes only)
    open_backup(settings, url) -> BackupArea        a backup's directory or S3 prefix
    restore_registry(settings, url) -> RestoreReport a backup into an empty database

Nothing here runs at import; nothing else builds a store or a service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelyard.domain.errors import NotFound
from modelyard.domain.webhooks import AttemptOutcome
from modelyard.events.dispatcher import Dispatcher
from modelyard.events.sender import WebhookSender
from modelyard.events.verifier import BlobVerifier
from modelyard.service.approvals import ApprovalService
from modelyard.service.artifacts import ArtifactService
from modelyard.service.backup import BackupService, BlobCopy, read_manifest
from modelyard.service.blobs import BlobService
from modelyard.service.destinations import DestinationGuard
from modelyard.service.fsck import FsckService
from modelyard.service.gc import GcService
from modelyard.service.governance import GovernanceService
from modelyard.service.identity import IdentityService
from modelyard.service.registry import RegistryService
from modelyard.service.tracking import TrackingService
from modelyard.service.validation import Limits
from modelyard.service.webhooks import WebhookPolicy, WebhookService
from modelyard.settings import Settings
from modelyard.store.blobs import BackupArea, BlobStore, S3Options, open_blob_store
from modelyard.store.metadata import migrate
from modelyard.store.metadata.engine import create_engine
from modelyard.store.metadata.repository import MetadataStore


@dataclass(eq=False, slots=True)
class Services:
    """The object graph of one process: the stores and every service on them.

    Close it (or use it as a context manager) to stop the SQLite checkpoint
    thread and release the database connections.
    """

    settings: Settings
    metadata: MetadataStore
    blobs: BlobStore
    registry: RegistryService
    governance: GovernanceService
    approvals: ApprovalService
    identity: IdentityService
    webhooks: WebhookService
    blob_service: BlobService
    tracking: TrackingService
    artifacts: ArtifactService
    gc: GcService
    fsck: FsckService
    backup: BackupService

    def close(self) -> None:
        """Release the database engine and its threads."""
        self.metadata.dispose()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_metadata_store(settings: Settings) -> MetadataStore:
    """The metadata store named by ``settings``, its schema upgraded if allowed."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url(), pool_size=settings.db_pool_size)
    if settings.auto_migrate and not migrate.is_up_to_date(engine):
        migrate.upgrade(engine)
    return MetadataStore(engine)


def _s3_options(settings: Settings) -> S3Options:
    return S3Options(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        addressing_style=settings.s3_addressing_style,
        part_size=settings.s3_part_size,
        direct_multipart_threshold=settings.s3_direct_multipart_threshold,
    )


def open_blob_store_of(settings: Settings) -> BlobStore:
    """The blob store named by ``settings`` (its S3 options, if it is one)."""
    return open_blob_store(settings.blob_store_url(), s3=_s3_options(settings))


def open_backup(settings: Settings, url: str, *, create: bool = True) -> BackupArea:
    """The backup area at ``url`` (a directory or ``s3://bucket/prefix``, reached
    with the S3 options of ``settings``); ``create=False`` for one that must exist."""
    from modelyard.store.blobs.archive import open_backup_area

    return open_backup_area(url, s3=_s3_options(settings), create=create)


def build_services(settings: Settings) -> Services:
    """Open the stores named by ``settings`` and build every service on them.

    Migrates the database if ``auto_migrate`` allows, sweeps stale uploads out
    of the blob store and ensures the ``default`` namespace.
    """
    metadata = open_metadata_store(settings)
    try:
        blobs = open_blob_store_of(settings)
        blobs.clean_stale_uploads()
        registry = RegistryService(
            metadata,
            blobs,
            max_files_per_version=settings.max_files_per_version,
            limits=Limits(
                max_map_keys=settings.max_map_keys,
                max_metadata_bytes=settings.max_metadata_bytes,
                max_metadata_depth=settings.max_metadata_depth,
            ),
        )
        registry.deployment_stale_seconds = settings.deployment_stale_seconds
        registry.ensure_namespace()
        tracking = TrackingService(registry)
        tracking.ensure_default_experiment()
    except BaseException:
        metadata.dispose()
        raise
    blob_service = BlobService(
        registry,
        max_blob_size=settings.max_blob_size,
        direct_transfers=settings.direct_transfers,
        url_ttl=settings.direct_url_ttl,
        verify_in_background=settings.direct_verify == "background",
    )
    return Services(
        settings=settings,
        metadata=metadata,
        blobs=blobs,
        registry=registry,
        governance=GovernanceService(registry),
        approvals=ApprovalService(registry),
        identity=IdentityService(registry, cache_seconds=settings.auth_cache_seconds),
        webhooks=WebhookService(
            metadata,
            DestinationGuard(settings.webhook_allow),
            WebhookPolicy.from_settings(settings),
        ),
        blob_service=blob_service,
        tracking=tracking,
        artifacts=ArtifactService(metadata, blob_service),
        gc=GcService(registry),
        fsck=FsckService(registry),
        backup=BackupService(registry),
    )


def build_dispatcher(
    services: Services, *, on_attempt: Callable[[AttemptOutcome], None] | None = None
) -> Dispatcher:
    """The webhook dispatcher of a server process (not started), with its sender."""
    settings = services.settings
    hooks = services.webhooks
    return Dispatcher(
        hooks,
        WebhookSender(
            hooks.guard, timeout=settings.webhook_timeout, ca_bundle=settings.webhook_ca_bundle
        ),
        interval=settings.dispatcher_interval,
        concurrency=settings.webhook_concurrency,
        on_attempt=on_attempt,
    )


def build_verifier(services: Services) -> BlobVerifier:
    """The background verifier of direct uploads of a server process (not started)."""
    return BlobVerifier(services.blob_service, interval=services.settings.blob_verifier_interval)


def migrate_database(settings: Settings) -> tuple[str | None, str | None]:
    """Upgrade the schema of the database named by ``settings``: (before, after) revisions."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url())
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        return before, migrate.current_revision(engine)
    finally:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a restore brought back: from which backup, into which stores."""

    source: str
    stamp: str
    database_from: str
    revision_from: str | None
    database: str
    store: str
    blobs: BlobCopy

    def to_dict(self) -> dict[str, object]:
        """The report as JSON (the CLI's ``--json``)."""
        return {
            "source": self.source,
            "stamp": self.stamp,
            "database_from": self.database_from,
            "schema_revision_from": self.revision_from,
            "database": self.database,
            "store": self.store,
            "blobs_listed": self.blobs.considered,
            "blobs_copied": self.blobs.copied,
            "bytes_copied": self.blobs.bytes,
            "blobs_failed": self.blobs.failed,
        }


def restore_registry(settings: Settings, url: str, *, stamp: str | None = None) -> RestoreReport:
    """Bring the backup at ``url`` (its latest snapshot, or ``stamp``) back into
    the stores ``settings`` name: the metadata into an empty database (any
    kind a SQLite snapshot, PostgreSQL a PostgreSQL one), then every blob it
    lists into the blob store (any backend), verified as it lands."""
    import tempfile
    from pathlib import Path

    from modelyard.domain.identity import Principal
    from modelyard.store.metadata.engine import normalize_url
    from modelyard.store.metadata.snapshot import load_snapshot

    area = open_backup(settings, url, create=False)
    manifest = read_manifest(area, stamp)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelyard-restore-") as tmp:
        snap = Path(tmp) / "metadata"
        if not area.get_file(str(manifest["metadata"]), snap):
            raise NotFound(
                "the backup's metadata snapshot is missing",
                code="BACKUP_NOT_FOUND",
                details={"file": manifest["metadata"]},
            )
        load_snapshot(manifest["database"], snap, settings.database_url(), pg_bin=settings.pg_bin)
    with build_services(settings) as services:
        copied = services.backup.restore_blobs(area.blobs, actor=Principal.local("restore"))
    return RestoreReport(
        source=area.url,
        stamp=str(manifest["stamp"]),
        database_from=str(manifest["database"]),
        revision_from=manifest.get("schema_revision"),
        database=normalize_url(settings.database_url()).split(":", 1)[0].split("+", 1)[0],
        store=settings.blob_store_url().split(":", 1)[0],
        blobs=copied,
    )
