"""modelyard: a self-hosted unified model center.

The public entry point is :class:`modelyard.client.Registry`, re-exported here
lazily so that ``import modelyard`` stays cheap for the CLI and the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from modelyard.client import Registry

__all__ = ["Registry", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Registry":
        from modelyard.client import Registry

        return Registry
    raise AttributeError(name)
