"""Use cases. The only place where rules are enforced and events are written."""

from modelyard.service.registry import RegistryService, VersionSpec

__all__ = ["RegistryService", "VersionSpec"]
