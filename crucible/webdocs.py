"""API docs that work without internet access: `/docs` (Swagger UI) and `/redoc` (ReDoc) load their
JavaScript and CSS from this Python environment (the distributions the `fastapi-offline` package ships,
MIT; Swagger UI is Apache-2.0, ReDoc MIT), never from a CDN.

FastAPI's own pages load both from a CDN: on a cluster without internet they stay blank. Shared by the
inference server and the console.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

STATIC_PATH = "/static-offline-docs"
FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
}
# ReDoc's sidebar shows a badge whose image it loads from its maker's CDN: a small local drawing instead.
REDOC_REMOTE_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
LOCAL_LOGO = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Ccircle cx='8' cy='8' r='7' fill='%23d32f2f'/%3E%3C/svg%3E"
)


@functools.cache
def asset(name: str) -> bytes:
    """One of the docs' files, as served (read once)."""
    data = resources.files("fastapi_offline").joinpath("static", name).read_bytes()
    if name == "redoc.standalone.js":
        data = data.replace(REDOC_REMOTE_LOGO.encode(), LOCAL_LOGO.encode())
    return data


def install_offline_docs(app: FastAPI, favicon_path: str = "/favicon.svg") -> None:
    """Add `/docs`, `/redoc` and their files to an app built with `docs_url=None, redoc_url=None`."""
    if app.docs_url or app.redoc_url:
        raise ValueError("build the app with docs_url=None and redoc_url=None: these pages replace them")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title}: API",
            swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{favicon_path}",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title}: API",
            redoc_js_url=f"{root}{STATIC_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{favicon_path}",
            with_google_fonts=False,
        )

    @app.get(STATIC_PATH + "/{name}", include_in_schema=False)
    async def docs_file(name: str) -> Response:
        if name not in FILES:
            return Response(status_code=404)
        return Response(asset(name), media_type=FILES[name], headers={"Cache-Control": "max-age=86400"})
