"""The API's ``/docs`` page (Swagger UI) served from files the package carries: no CDN.

FastAPI's own ``/docs`` loads Swagger UI's script and style from a CDN, which fails on a
machine with no internet and lets a third party run script on the API's origin. Here the
files of ``swagger-ui-dist`` (vendored at a pinned version from npm, with its licence:
``ingestion/static/vendor/VENDOR.md``) are served under ``/static/vendor/`` and the page
points at them. ReDoc is off (it would need a bundle of its own); ``/openapi.json`` stays.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
SWAGGER_UI = "swagger-ui-dist-5.36.0"  # the folder under static/vendor/
STATIC_PATH = "/static"


def serve_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and the static files it loads; ``app`` was made with ``docs_url=None``
    and ``redoc_url=None``."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC), name="static")
    vendor = f"{STATIC_PATH}/vendor/{SWAGGER_UI}"

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # behind a proxy's path prefix
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} — API reference",
            swagger_js_url=f"{root}{vendor}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{vendor}/swagger-ui.css",
            swagger_favicon_url=f"{root}{vendor}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
        )
