"""Property tests for everything that parses what a client sends: image files, multipart bodies,
JSON bodies and query values. Whatever the input, the answer is a result or one of the service's
client errors (a 4xx `ServiceError`; over HTTP a 4xx with the JSON error body), never another
exception and never a 5xx.

Each property runs a modest, fixed number of examples (`derandomize=True`: the same inputs on
every run, so CI does not flake); `FUZZ` raises them for a longer search by hand.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.requests import Request

from service import imaging, multipart
from service.errors import ServiceError
from service.jsonbody import json_object
from service.schemas import BAG_PNG_B64, TROUSER_PIXELS, TROUSER_PNG_B64
from service.settings import Settings
from tests.service.support import make_settings, serving

SCALE = int(os.environ.get("FUZZ", "1"))
PROPERTY = settings(
    max_examples=60 * SCALE,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_PIXELS = Settings.model_fields["max_image_pixels"].default


def assert_client_error(exc: ServiceError) -> None:
    assert 400 <= exc.status < 500, (type(exc).__name__, exc.status, exc.message)
    assert exc.code and exc.message


# Images -------------------------------------------------------------------------------------


def _image_file(image_format: str, mode: str, width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=image_format)
    return buffer.getvalue()


# Valid files to mutate: every accepted format, in the modes that make its decoders differ.
VALID_FILES = [
    _image_file(image_format, mode, 13 + seed, 9 + 2 * seed, seed)
    for seed, (image_format, mode) in enumerate(
        [
            ("PNG", "L"),
            ("PNG", "RGBA"),
            ("PNG", "P"),
            ("PNG", "I;16"),
            ("JPEG", "RGB"),
            ("JPEG", "L"),
            ("JPEG", "CMYK"),
            ("TIFF", "RGB"),
            ("TIFF", "I;16"),
            ("TIFF", "F"),
            ("TIFF", "1"),
            ("GIF", "P"),
            ("BMP", "RGB"),
            ("WEBP", "RGBA"),
            ("PPM", "L"),
        ]
    )
]


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """A valid image file with a few bytes flipped, inserted, deleted or repeated, or cut short:
    headers that lie about sizes and offsets, chunks with bad checksums, truncated data."""
    data = bytearray(draw(st.sampled_from(VALID_FILES)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        edit = draw(st.sampled_from(["set", "insert", "delete", "repeat", "truncate"]))
        if edit == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif edit == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


def decode_or_refuse(data: bytes) -> None:
    try:
        array = imaging.decode(data, "auto", MAX_PIXELS)
    except ServiceError as exc:
        assert_client_error(exc)
    else:
        assert array.shape == (28, 28) and array.dtype == np.float32
        assert np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1


@PROPERTY
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_decode_or_are_refused(data):
    decode_or_refuse(data)


@PROPERTY
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF89a"]))
def test_a_bare_signature_is_refused(signature):
    with pytest.raises(ServiceError) as caught:
        imaging.decode(signature, "auto", MAX_PIXELS)
    assert_client_error(caught.value)


@PROPERTY
@given(mutated_files())
def test_mutated_image_files_decode_or_are_refused(data):
    decode_or_refuse(data)


@PROPERTY
@given(st.sampled_from(VALID_FILES), st.sampled_from(["auto", "true", "false"]))
def test_the_valid_files_decode(data, invert):
    array = imaging.decode(data, invert, MAX_PIXELS)
    assert array.shape == (28, 28) and np.isfinite(array).all()


# Multipart ----------------------------------------------------------------------------------

BOUNDARY = "p6Vq0fJ3xR8mZ1sT"
NAMES = st.text(string.ascii_letters + string.digits + " -_.", min_size=1, max_size=12)


def _request(content_type: bytes, chunks: list[bytes]) -> Request:
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/classify",
        "headers": [(b"content-type", content_type)],
        "query_string": b"",
    }
    return Request(scope, receive)


def read_parts(body: bytes, cuts: list[int], content_type: bytes | None = None):
    """Parse `body`, arriving in pieces cut at `cuts`; 4 files and 8 parts at most."""
    content_type = content_type or f"multipart/form-data; boundary={BOUNDARY}".encode()
    edges = [0, *sorted({cut % (len(body) + 1) for cut in cuts}), len(body)]
    chunks = [body[a:b] for a, b in zip(edges, edges[1:], strict=False)]
    return asyncio.run(multipart.read_parts(_request(content_type, chunks), 4, 8))


def parse_or_refuse(body: bytes, cuts: list[int], content_type: bytes | None = None) -> None:
    try:
        parts = read_parts(body, cuts, content_type)
    except ServiceError as exc:
        assert_client_error(exc)
    else:
        assert len(parts) <= 8 and sum(part.is_file for part in parts) <= 4
        assert all(isinstance(part.name, str) for part in parts)


part_specs = st.tuples(
    NAMES,
    st.one_of(st.none(), NAMES),  # filename
    st.sampled_from([None, "image/png", "application/octet-stream", "text/plain"]),
    st.binary(max_size=64),
)


def multipart_body(parts: list[tuple[str, str | None, str | None, bytes]]) -> bytes:
    body = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type is not None:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


@PROPERTY
@given(st.lists(part_specs, max_size=6), st.lists(st.integers(0, 2**16), max_size=6))
def test_multipart_bodies_parse_the_same_however_they_arrive(parts, cuts):
    """A well-formed body gives back its parts, whatever the chunks it streams in; more files
    or parts than allowed are refused as too many."""
    body = multipart_body(parts)
    files = sum(
        filename is not None or content_type in ("image/png", "application/octet-stream")
        for _, filename, content_type, _ in parts
    )
    try:
        parsed = read_parts(body, cuts)
    except ServiceError as exc:
        assert_client_error(exc)
        assert files > 4 or len(parts) > 8
    else:
        assert [(p.name, p.is_file, bytes(p.data)) for p in parsed] == [
            (
                name,
                filename is not None or content_type in ("image/png", "application/octet-stream"),
                data,
            )
            for name, filename, content_type, data in parts
        ]


@PROPERTY
@given(
    st.lists(part_specs, max_size=5),
    st.lists(st.tuples(st.integers(0, 2**16), st.binary(max_size=8)), min_size=1, max_size=5),
    st.lists(st.integers(0, 2**16), max_size=4),
)
def test_mutated_multipart_bodies_parse_or_are_refused(parts, edits, cuts):
    body = bytearray(multipart_body(parts))
    for at, replacement in edits:
        at %= len(body) + 1
        body[at : at + len(replacement)] = replacement
    parse_or_refuse(bytes(body), cuts)


@PROPERTY
@given(st.binary(max_size=512), st.lists(st.integers(0, 2**10), max_size=4))
def test_arbitrary_multipart_bodies_parse_or_are_refused(body, cuts):
    parse_or_refuse(body, cuts)


@PROPERTY
@given(st.binary(max_size=80))
def test_arbitrary_multipart_content_types_are_refused_or_read(content_type):
    parse_or_refuse(multipart_body([("file", "a.png", "image/png", b"x")]), [], content_type)


# JSON bodies --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


def parse_json_or_refuse(body: bytes | str) -> dict[str, Any] | None:
    try:
        document = json_object(body, "the body")
    except ServiceError as exc:
        assert_client_error(exc)
        return None
    assert isinstance(document, dict)
    return document


@PROPERTY
@given(st.one_of(st.binary(max_size=256), st.text(max_size=256)))
def test_arbitrary_json_bodies_parse_or_are_refused(body):
    parse_json_or_refuse(body)


@PROPERTY
@given(json_values)
def test_json_documents_round_trip_or_are_refused_when_not_objects(value):
    document = parse_json_or_refuse(json.dumps(value).encode())
    assert document == (value if isinstance(value, dict) else None)


@PROPERTY
@given(st.integers(1, 200_000), st.sampled_from(["[", '{"a":']), st.booleans())
def test_deeply_nested_json_is_refused_or_read(depth, opener, closed):
    closer = {"[": "]", '{"a":': "}"}[opener]
    body = '{"images":' + opener * depth + "1" + (closer * depth if closed else "") + "}"
    parse_json_or_refuse(body)


# Query values, path values and JSON documents, over HTTP to the app -------------------------

TROUSER = {"pixels": [TROUSER_PIXELS]}
IMAGE_BODIES = {"images": {"images": [TROUSER_PNG_B64]}, "pixels": TROUSER}
PAIR = {"start": TROUSER_PNG_B64, "end": BAG_PNG_B64}
# Each operation, the body it is sent, and its query parameters with values it accepts.
OPERATIONS: dict[tuple[str, str], tuple[dict[str, Any] | None, dict[str, list[str]]]] = {
    ("POST", "/classify"): (
        TROUSER,
        {
            "model": ["mynet", "lenet", "vae"],
            "top_k": ["1", "3", "10"],
            "invert": ["auto", "true", "false"],
            "format": ["json", "png"],
        },
    ),
    ("POST", "/explain"): (
        TROUSER,
        {
            "model": ["mynet", "lenet", "vae"],
            "target": ["0", "9"],
            "invert": ["auto", "true", "false"],
            "format": ["json", "png"],
        },
    ),
    ("POST", "/embed"): (
        TROUSER,
        {
            "model": ["mynet", "lenet", "vae"],
            "layer": ["penultimate", "logits", "latent"],
            "invert": ["auto", "true", "false"],
            "format": ["json", "png"],
        },
    ),
    ("POST", "/reconstruct"): (
        TROUSER,
        {"scale": ["1", "4", "16"], "invert": ["auto", "false"], "format": ["json", "png"]},
    ),
    ("POST", "/interpolate"): (
        PAIR,
        {
            "steps": ["2", "10", "64"],
            "method": ["linear", "slerp"],
            "scale": ["1", "2"],
            "format": ["json", "png"],
        },
    ),
    ("POST", "/generate"): (
        None,
        {"n": ["1", "16"], "seed": ["0", "7"], "scale": ["1", "2"], "format": ["json", "png"]},
    ),
    ("GET", "/models"): (None, {}),
    ("GET", "/healthz"): (None, {}),
    ("GET", "/v2"): (None, {}),
}
odd_values = st.one_of(
    st.text(max_size=24),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(str),
    st.sampled_from(["", " ", "0", "-1", "1e309", "nan", "None", "null", "TRUE", "%00", "\x00"]),
)


class BlockingClient:
    """An httpx client of the app (lifespan run, every model loaded), for synchronous tests:
    its calls run on the event loop of a portal thread."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self.portal, self.client = portal, client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.client.request, method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture(scope="module")
def http() -> Iterator[BlockingClient]:
    with start_blocking_portal() as portal:
        context = serving(make_settings())
        client = portal.call(context.__aenter__)
        try:
            yield BlockingClient(portal, client)
        finally:
            portal.call(context.__aexit__, None, None, None)


def assert_answer(response: Any, v2: bool = False) -> None:
    """A result (or a redirect), or a 4xx with the error body (the v2 protocol's own shape on
    /v2)."""
    sent = f"{response.request.method} {response.request.url} -> {response.status_code}"
    assert response.status_code < 500, f"{sent}: {response.text[:500]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        if v2:
            assert isinstance(error, str) and error, f"{sent}: {error}"
        else:
            assert set(error) == {"code", "message"}, f"{sent}: {error}"
            assert all(isinstance(value, str) and value for value in error.values()), sent
    elif response.status_code >= 300:  # Starlette's redirect of a trailing slash: /models/
        assert response.headers["location"], sent
    else:
        media_type = response.headers.get("content-type", "").split(";")[0]
        assert media_type in ("application/json", "image/png"), sent


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, str, dict[str, Any] | None, list[tuple[str, str]]]:
    method, path = draw(st.sampled_from(sorted(OPERATIONS)))
    body, parameters = OPERATIONS[(method, path)]
    names = draw(st.lists(st.sampled_from([*parameters, "x"]) | st.text(max_size=8), max_size=5))
    query = [
        (
            name,
            draw(
                st.sampled_from(parameters[name]) | odd_values if name in parameters else odd_values
            ),
        )
        for name in names
    ]
    return method, path, body, query


@PROPERTY
@given(queries())
def test_any_query_values_get_a_result_or_a_client_error(http, request_parts):
    method, path, body, query = request_parts
    response = http.request(method, path, params=query, json=body)
    assert_answer(response, v2=path.startswith("/v2"))


@PROPERTY
@given(st.sampled_from(["/classify", "/embed", "/reconstruct"]), st.text(max_size=200))
def test_any_raw_query_string_gets_a_result_or_a_client_error(http, path, raw):
    response = http.post(f"{path}?{quote(raw, safe='&=%+;')}", json=TROUSER)
    assert_answer(response)


@PROPERTY
@given(
    st.sampled_from(
        ["/models/{}", "/v2/models/{}", "/v2/models/{}/ready", "/v2/models/{}/versions/{}"]
    ),
    st.text(min_size=1, max_size=30),
)
def test_any_path_values_get_a_result_or_a_client_error(http, template, value):
    path = template.format(*[quote(value, safe="")] * template.count("{}"))
    assert_answer(http.get(path), v2=path.startswith("/v2"))


@PROPERTY
@given(st.sampled_from(["/classify", "/embed", "/reconstruct", "/interpolate"]), json_values)
def test_any_json_document_gets_a_result_or_a_client_error(http, path, document):
    assert_answer(http.post(path, json=document))


@PROPERTY
@given(
    st.sampled_from(["/classify", "/reconstruct"]),
    st.sampled_from(sorted(IMAGE_BODIES)),
    st.recursive(
        st.integers(-300, 300) | st.floats(-2, 300) | st.none() | st.text(max_size=3),
        lambda children: st.lists(children, max_size=30),
        max_leaves=60,
    ),
)
def test_any_pixel_or_image_values_get_a_result_or_a_client_error(http, path, key, values):
    assert_answer(http.post(path, json={key: values}))
