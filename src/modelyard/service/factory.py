"""Build a ready-to-use registry service from settings (no import-time side effects)."""

from __future__ import annotations

from modelyard.service.destinations import DestinationGuard
from modelyard.service.registry import RegistryService
from modelyard.service.validation import Limits
from modelyard.service.webhooks import WebhookPolicy, WebhookService
from modelyard.settings import Settings
from modelyard.store.blobs import open_blob_store
from modelyard.store.metadata import migrate
from modelyard.store.metadata.engine import create_engine
from modelyard.store.metadata.repository import MetadataStore


def build_registry(settings: Settings) -> RegistryService:
    """Open the stores named by ``settings``, migrate if allowed, ensure ``default``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url(), pool_size=settings.db_pool_size)
    if settings.auto_migrate and not migrate.is_up_to_date(engine):
        migrate.upgrade(engine)
    blobs = open_blob_store(settings.blob_store_url())
    blobs.clean_stale_uploads()
    service = RegistryService(
        MetadataStore(engine),
        blobs,
        max_files_per_version=settings.max_files_per_version,
        limits=Limits(
            max_map_keys=settings.max_map_keys,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_metadata_depth=settings.max_metadata_depth,
        ),
    )
    service.ensure_namespace()
    return service


def build_webhook_service(settings: Settings, db: MetadataStore) -> WebhookService:
    """The webhook service on an open metadata store, with the settings' SSRF and retry rules."""
    return WebhookService(
        db, DestinationGuard(settings.webhook_allow), WebhookPolicy.from_settings(settings)
    )
