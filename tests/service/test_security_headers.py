"""CORS (off unless origins are configured), `X-Content-Type-Options: nosniff` and a request id
on every response, and the request id in the answer and log line of an unexpected error."""

from __future__ import annotations

import contextvars
import json
import logging
import re

import httpx
import pytest
from pydantic import ValidationError

from service.logs import REQUEST_ID, JSONFormatter
from service.settings import Settings
from tests.service.support import make_settings, serving

pytestmark = pytest.mark.anyio

ALLOWED = "https://app.example.com"
FOREIGN = "https://elsewhere.example.org"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
PIXELS = {"pixels": [[[0] * 28] * 10 + [[0] * 10 + [255] * 8 + [0] * 10] * 8 + [[0] * 28] * 10]}
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type, x-api-key",
}


@pytest.fixture(scope="module")
async def cors_client(anyio_backend):
    async with serving(make_settings(models=["lenet"], cors_origins=[ALLOWED])) as client:
        yield client


# --- CORS ---------------------------------------------------------------------------------


async def test_cors_is_off_by_default(client):
    simple = await client.get("/models", headers={"Origin": ALLOWED})
    assert simple.status_code == 200
    assert not [name for name in simple.headers if name.startswith("access-control-")]
    preflight = await client.options("/classify", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code == 405  # no CORS middleware: OPTIONS is just a wrong method


async def test_a_configured_origin_passes_preflight_and_reads_the_answer(cors_client):
    preflight = await cors_client.options("/classify", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in preflight.headers["access-control-allow-methods"]
    allowed_headers = preflight.headers["access-control-allow-headers"].lower()
    assert "x-api-key" in allowed_headers and "content-type" in allowed_headers
    simple = await cors_client.post(
        "/classify?model=lenet", json=PIXELS, headers={"Origin": ALLOWED}
    )
    assert simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == ALLOWED
    exposed = simple.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed and "x-instance-id" in exposed


async def test_a_foreign_origin_gets_no_cors_headers(cors_client):
    preflight = await cors_client.options("/classify", headers={"Origin": FOREIGN, **PREFLIGHT})
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    simple = await cors_client.get("/models", headers={"Origin": FOREIGN})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


def test_cors_settings_are_comma_separated_and_origins_must_be_bare(monkeypatch):
    monkeypatch.setenv("FMNIST_CORS_ORIGINS", f" {ALLOWED}, http://localhost:3000 ,")
    monkeypatch.setenv("FMNIST_CORS_METHODS", "get,post")
    settings = Settings()
    assert settings.cors_origins == [ALLOWED, "http://localhost:3000"]
    assert settings.cors_methods == ["GET", "POST"]
    assert Settings(cors_origins="*").cors_origins == ["*"]
    monkeypatch.delenv("FMNIST_CORS_ORIGINS")
    assert Settings().cors_origins == []
    for wrong in (f"{ALLOWED}/", f"{ALLOWED}/page", "app.example.com"):
        with pytest.raises(ValidationError, match="not an origin"):
            Settings(cors_origins=wrong)


# --- nosniff and the request id -----------------------------------------------------------


def assert_common_headers(response: httpx.Response) -> str:
    assert response.headers["x-content-type-options"] == "nosniff", response.url
    assert response.headers["x-instance-id"] == "test-instance"
    request_id = response.headers["x-request-id"]
    assert GENERATED_ID.fullmatch(request_id), request_id
    return request_id


EVERY_KIND = {
    "json": ("POST", "/classify?model=lenet", {"json": PIXELS}, 200),
    "png": ("POST", "/generate?n=1&seed=1&format=png", {}, 200),
    "page": ("GET", "/", {}, 200),
    "static asset": ("GET", "/static/style.css", {}, 200),
    "metrics": ("GET", "/metrics", {}, 200),
    "bad image": (
        "POST",
        "/classify",
        {"content": b"nope", "headers": {"Content-Type": "image/png"}},
        400,
    ),
    "bad parameter": ("POST", "/classify?top_k=99", {"json": PIXELS}, 422),
    "unknown model": ("GET", "/models/resnet", {}, 404),
    "no route": ("GET", "/no/such/route", {}, 404),
    "wrong method": ("DELETE", "/models", {}, 405),
}


@pytest.mark.parametrize("kind", EVERY_KIND)
async def test_every_response_has_nosniff_and_a_request_id(client, kind):
    method, url, kwargs, status = EVERY_KIND[kind]
    response = await client.request(method, url, **kwargs)
    assert response.status_code == status, response.text
    assert_common_headers(response)


async def test_each_request_gets_its_own_id(client):
    ids = {assert_common_headers(await client.get("/healthz")) for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("sent", ["abc-123", "trace:9f/ab_CD.ef", "x" * 128])
async def test_a_sane_client_request_id_is_echoed(client, sent):
    response = await client.get("/healthz", headers={"X-Request-Id": sent})
    assert response.headers["x-request-id"] == sent
    failed = await client.get("/models/resnet", headers={"X-Request-Id": sent})
    assert failed.status_code == 404 and failed.headers["x-request-id"] == sent


@pytest.mark.parametrize(
    "sent",
    ["x" * 129, "two words", "tab\there", "caf\xe9".encode("latin-1"), ""],
    ids=["too long", "space", "control character", "not ascii", "empty"],
)
async def test_an_unacceptable_client_request_id_is_replaced(client, sent):
    response = await client.get("/healthz", headers={"X-Request-Id": sent})
    assert response.status_code == 200
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize("sent", [None, "client-chosen-id-42"])
async def test_an_unexpected_error_names_its_request_id_in_answer_and_log(caplog, sent):
    async with serving(make_settings(models=["lenet"])) as client:
        batcher = client.app.state.runtime.models["lenet"].batchers["classify"]

        def broken(inputs):
            raise RuntimeError("simulated device failure")

        batcher.fn = broken
        # The service's loggers do not propagate to the root logger, where caplog listens.
        errors_log = logging.getLogger("service.errors")
        errors_log.addHandler(caplog.handler)
        try:
            headers = {"X-Request-Id": sent} if sent else {}
            response = await client.post("/classify?model=lenet", json=PIXELS, headers=headers)
        finally:
            errors_log.removeHandler(caplog.handler)
    assert response.status_code == 500
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-instance-id"] == "test-instance"
    request_id = response.headers["x-request-id"]
    assert request_id == sent if sent else GENERATED_ID.fullmatch(request_id)
    body = response.json()
    assert body["error"]["code"] == "internal_error"
    assert request_id in body["error"]["message"]
    logged = [r for r in caplog.records if r.name == "service.errors"]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert request_id in logged[0].getMessage()
    assert logged[0].exc_info is not None


def test_json_log_lines_carry_the_request_id():
    record = logging.LogRecord("service.x", logging.INFO, __file__, 1, "hello", None, None)
    formatter = JSONFormatter()
    outside = contextvars.Context()  # no request being served
    assert "request_id" not in json.loads(outside.run(formatter.format, record))

    def during_a_request() -> str:
        REQUEST_ID.set("id-7")
        return formatter.format(record)

    assert json.loads(outside.run(during_a_request))["request_id"] == "id-7"
