"""The page for people at `/`, its static files, and API docs that render with no network.

FastAPI's own `/docs` and `/redoc` load Swagger UI and ReDoc from a CDN, so they stay blank
wherever the service has no internet access. Here they load pinned copies vendored from the
npm registry into `static/vendor` by `scripts/vendor_docs_assets.sh` (which also swaps the one
image ReDoc fetches from the internet, Redocly's logo, for an empty one). None of these routes is
part of the API: they are left out of the OpenAPI document and never ask for the API key (the
page sends the key the user enters with its own API requests).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
SWAGGER_UI = f"{STATIC_URL}/vendor/swagger-ui-dist-5.35.0"
REDOC = f"{STATIC_URL}/vendor/redoc-2.5.4"
FAVICON = f"{STATIC_URL}/favicon.svg"


def install_web(app: FastAPI) -> None:
    """Serve the page at `/`, the static files, and offline `/docs` and `/redoc`. The app must
    be created with `docs_url=None, redoc_url=None` so these replace FastAPI's own."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=FAVICON,
            # No online validator badge: it would send the API description to swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{REDOC}/redoc.standalone.js",
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )
