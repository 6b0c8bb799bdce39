"""Inputs that once answered 500 or nonsense, and probe styles that were refused: each is now a
clear answer (the numbers are the items of the hardening issue they come from)."""

from __future__ import annotations

import base64
import io
import logging

import numpy as np
import pytest
from PIL import Image

from tests.service.support import make_settings, png, post_scope, serving

pytestmark = pytest.mark.anyio


def tiff(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_answer_head(client, path):
    """14: load balancers probe with HEAD."""
    response = await client.head(path)
    assert response.status_code == 200 and response.content == b""


async def test_deeply_nested_json_is_a_400(client):
    """5: 100,000 levels of nesting raised RecursionError (500)."""
    body = b"[" * 100_000 + b"]" * 100_000
    response = await client.post(
        "/classify", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.json()["error"]["message"]
    assert (await client.get("/healthz")).status_code == 200


async def test_base64_with_line_breaks_is_accepted(client, samples):
    """16: what the `base64` tool writes by default (76-column lines) must decode."""
    encoded = base64.encodebytes(png(samples[0][1])).decode()  # wrapped at 76 columns
    assert "\n" in encoded.strip()
    response = await client.post("/classify", json={"images": [encoded]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "Trouser"


async def test_a_lab_image_is_a_400(client):
    """6: a LAB-mode TIFF answered 500 (`conversion from LAB to RGB not supported`)."""
    lab = Image.new("LAB", (28, 28), (50, 0, 0))
    response = await client.post(
        "/classify", content=tiff(lab), headers={"Content-Type": "image/tiff"}
    )
    assert response.status_code == 400, response.text
    assert "LAB" in response.json()["error"]["message"]


async def test_a_float_image_with_nan_is_a_400(client):
    """7: one NaN pixel in a float TIFF answered 200 with null probabilities."""
    pixels = np.full((28, 28), 0.5, dtype=np.float32)
    pixels[3, 4] = np.nan
    response = await client.post(
        "/classify",
        content=tiff(Image.fromarray(pixels, mode="F")),
        headers={"Content-Type": "image/tiff"},
    )
    assert response.status_code == 400, response.text
    assert "not finite" in response.json()["error"]["message"]


async def test_whole_number_floats_are_read_as_0_to_255(client, samples):
    """Found by fuzzing: `73.0` is the integer 73 to JSON Schema, and it is what `tolist()` of
    a float array writes, but pixels written so were refused as floats above 1."""
    image = samples[0][1]
    as_ints = await client.post("/classify", json={"pixels": [image.tolist()]})
    as_floats = await client.post("/classify", json={"pixels": [image.astype(np.float64).tolist()]})
    assert as_floats.status_code == 200, as_floats.text
    assert as_floats.json()["predictions"] == as_ints.json()["predictions"]
    fractions = await client.post("/classify", json={"pixels": [(image + 0.5).tolist()]})
    assert fractions.status_code == 400  # 0-255 with fractions is neither form


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json;q=0.1, */*", "image/png"),  # the specific range decides JSON's q
        ("image/*;q=0.2, application/json;q=0.5", "application/json"),
        ("image/png;q=0, */*", "application/json"),
        ("*/*", "application/json"),  # a tie goes to JSON
        ("text/html, image/png;q=0.9", "image/png"),
    ],
)
async def test_accept_picks_by_the_most_specific_range(client, samples, accept, expected):
    """15: `application/json;q=0.1, */*` used to answer JSON."""
    kwargs = {"content": png(samples[0][0]), "headers": {"Content-Type": "image/png"}}
    kwargs["headers"]["Accept"] = accept
    response = await client.post("/classify", **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(expected)


async def test_refusing_both_json_and_png_is_a_406(client, samples):
    """15: `application/json;q=0` used to answer JSON anyway."""
    headers = {"Content-Type": "image/png", "Accept": "application/json;q=0"}
    response = await client.post("/classify", content=png(samples[0][0]), headers=headers)
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "not_acceptable"


async def test_a_non_ascii_api_key_matches():
    """16: the header was read as latin-1 and compared as UTF-8, so such a key never matched."""
    key = "schlüssel-ключ"
    async with serving(make_settings(models=["lenet"], api_key=key)) as keyed:
        right = await keyed.get("/models", headers={"X-API-Key": key.encode()})
        assert right.status_code == 200, right.text
        wrong = await keyed.get("/models", headers={"X-API-Key": "schlüssel".encode()})
        assert wrong.status_code == 401


async def test_a_client_leaving_mid_upload_is_no_server_error(client, caplog):
    """9: a client that disconnected mid-upload was logged as an ERROR with a traceback and
    counted as status 500 in the request metrics."""
    app = client.app
    scope = post_scope("/classify", b"", b"image/png", length=100_000)
    arrivals = iter(
        [
            {"type": "http.request", "body": b"\x89PNG" + b"\0" * 100, "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent = []

    async def receive():
        return next(arrivals)

    async def send(message):
        sent.append(message)

    with caplog.at_level(logging.INFO, logger="service"):
        await app(scope, receive, send)
    assert sent[0]["status"] == 499
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    metrics = (await client.get("/metrics")).text
    assert 'route="/classify",status="499"' in metrics.replace(", ", ",")
    assert 'route="/classify",status="500"' not in metrics.replace(", ", ",")
