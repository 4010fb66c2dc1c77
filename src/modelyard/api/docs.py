"""``/docs`` (Swagger UI) and ``/redoc`` served with their assets from this server.

FastAPI's own pages load Swagger UI and ReDoc from a CDN and render blank
offline (issue 9). The assets come from the ``fastapi-offline`` package
(Swagger UI's bundle and stylesheet, ReDoc's standalone bundle, a favicon),
served here under ``/docs/assets/`` from a fixed table of names, so a
request can never name another file. Every page and asset is public, as the
OpenAPI document itself is.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from modelyard.api.access import access
from modelyard.domain.errors import NotFound

ASSETS_PATH: Final = "/docs/assets"
# name -> media type; nothing outside this table is ever served.
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}


def assets_dir() -> Path:
    """Where the installed ``fastapi-offline`` package keeps the assets."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and their assets.

    Build the app with ``docs_url=None, redoc_url=None`` so that FastAPI's
    CDN-backed pages are not added too.
    """
    directory = assets_dir()
    title = app.title
    oauth2_redirect = "/docs/oauth2-redirect"

    def prefix(request: Request) -> str:
        # Behind a proxy that mounts us under a prefix, as FastAPI's pages do.
        return str(request.scope.get("root_path", "")).rstrip("/")

    def openapi_url(request: Request) -> str:
        return prefix(request) + (app.openapi_url or "")

    def asset_url(request: Request, name: str) -> str:
        return prefix(request) + f"{ASSETS_PATH}/{name}"

    @access("public", "OpenAPI viewer.")
    async def swagger_ui(request: Request) -> Response:
        return get_swagger_ui_html(
            openapi_url=openapi_url(request),
            title=f"{title} - Swagger UI",
            swagger_js_url=asset_url(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset_url(request, "swagger-ui.css"),
            swagger_favicon_url=asset_url(request, "favicon.png"),
            oauth2_redirect_url=prefix(request) + oauth2_redirect,
        )

    @access("public", "OpenAPI viewer.")
    async def swagger_ui_redirect(_: Request) -> Response:
        return get_swagger_ui_oauth2_redirect_html()

    @access("public", "OpenAPI viewer.")
    async def redoc(request: Request) -> Response:
        return get_redoc_html(
            openapi_url=openapi_url(request),
            title=f"{title} - ReDoc",
            redoc_js_url=asset_url(request, "redoc.standalone.js"),
            redoc_favicon_url=asset_url(request, "favicon.png"),
            with_google_fonts=False,
        )

    @access("public", "Assets of the OpenAPI viewers.")
    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no docs asset {name!r}", code="ASSET_NOT_FOUND")
        # The files change only with the installed package: let browsers keep
        # them for a day and revalidate by ETag after that.
        return FileResponse(
            directory / name, media_type=media_type, headers={"Cache-Control": "max-age=86400"}
        )

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route(oauth2_redirect, swagger_ui_redirect, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    app.add_route(ASSETS_PATH + "/{name}", asset, methods=["GET", "HEAD"], include_in_schema=False)
