"""The UI's own assets (stylesheet, icon, the live-update script), served from the package.

A fixed table of names: a request can never name another file. Public, like
the pages' markup they style.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import APIRouter
from starlette.responses import FileResponse, Response

from modelyard.domain.access import access
from modelyard.domain.errors import NotFound

router = APIRouter(include_in_schema=False)

# name -> media type; nothing outside this table is ever served.
ASSETS: Final = {
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
    "live.js": "text/javascript; charset=utf-8",
}


def asset_dir() -> Path:
    """Where the installed package keeps the assets."""
    return Path(str(files("modelyard.web") / "static"))


@router.get("/static/{name}")
@access("public", "The UI's stylesheet, icon and script.")
async def asset(name: str) -> Response:
    """One asset by name (cached for an hour)."""
    media = ASSETS.get(name)
    if media is None:
        raise NotFound(f"no asset {name!r}", code="ROUTE_NOT_FOUND")
    return FileResponse(
        asset_dir() / name, media_type=media, headers={"Cache-Control": "public, max-age=3600"}
    )
