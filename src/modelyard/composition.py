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
          webhooks    WebhookService     (metadata, DestinationGuard(webhook_allow),
                                         WebhookPolicy(settings))
     └─ build_dispatcher(services) -> Dispatcher   (server processes only)

Nothing here runs at import; nothing else builds a store or a service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelyard.domain.webhooks import AttemptOutcome
from modelyard.events.dispatcher import Dispatcher
from modelyard.events.sender import WebhookSender
from modelyard.service.approvals import ApprovalService
from modelyard.service.artifacts import ArtifactService
from modelyard.service.blobs import BlobService
from modelyard.service.destinations import DestinationGuard
from modelyard.service.gc import GcService
from modelyard.service.governance import GovernanceService
from modelyard.service.identity import IdentityService
from modelyard.service.registry import RegistryService
from modelyard.service.tracking import TrackingService
from modelyard.service.validation import Limits
from modelyard.service.webhooks import WebhookPolicy, WebhookService
from modelyard.settings import Settings
from modelyard.store.blobs import BlobStore, S3Options, open_blob_store
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


def open_blob_store_of(settings: Settings) -> BlobStore:
    """The blob store named by ``settings`` (its S3 options, if it is one)."""
    return open_blob_store(
        settings.blob_store_url(),
        s3=S3Options(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            addressing_style=settings.s3_addressing_style,
            part_size=settings.s3_part_size,
        ),
    )


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
