"""The page and the API docs over plain HTTP (the browser tests in tests/web go further): served
by the service itself with every asset they name, nothing from elsewhere, outside the API."""

from __future__ import annotations

import re

import pytest

from tests.service.support import make_settings, serving

pytestmark = pytest.mark.anyio

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


async def test_the_page_and_every_asset_it_names_are_served(client):
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = [url for url in ASSET.findall(page.text) if url.startswith("/static/")]
    assert "/static/js/main.js" in assets and "/static/style.css" in assets
    for url in assets:
        assert (await client.get(url)).status_code == 200, url
    modules = await client.get("/static/js/main.js")
    assert modules.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_api_docs_name_only_assets_of_the_service(client, path):
    docs = await client.get(path)
    assert docs.status_code == 200
    assert "http://" not in docs.text and "https://" not in docs.text
    assets = ASSET.findall(docs.text)
    assert assets and all(url.startswith("/static/") for url in assets)
    for url in assets:
        assert (await client.get(url)).status_code == 200, url


async def test_the_page_and_docs_are_not_api_operations(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not {"/", "/docs", "/redoc"} & set(paths)
    assert not any(path.startswith("/static") for path in paths)


async def test_with_an_api_key_the_page_is_open_and_the_api_is_not():
    async with serving(make_settings(api_key="page-key")) as keyed:
        for path in ("/", "/docs", "/redoc", "/static/js/api.js", "/openapi.json"):
            assert (await keyed.get(path)).status_code == 200, path
        assert (await keyed.get("/models")).status_code == 401
        assert (await keyed.get("/models", headers={"X-API-Key": "page-key"})).status_code == 200
