"""Fuzzing the live service with schemathesis, from its own OpenAPI document.

A real `uvicorn service.app:app` process is driven over HTTP, every operation of /openapi.json in
turn: the documented examples, schemathesis' coverage cases (boundaries, missing and wrong
values) and generated requests, both schema-valid (positive) and schema-violating (negative).
Every response is checked: no 5xx, a documented status and content type, a body that matches
the documented schema, valid requests accepted and invalid ones refused.

Generated requests are deterministic (a fixed seed, derandomized, no example database), so a
failure reproduces on every run. The image fields get real image files: a schema cannot say
"a decodable PNG", so for positive cases `IMAGE_MEDIA_TYPES` and the base64 `byte` format are
given strategies that make valid images of every accepted format (random bytes are tried by the
property tests of `test_untrusted_bytes.py`).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from PIL import Image
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import RejectedPositiveData

import ml
from service import schemas
from service.app import create_app
from service.schemas import BAG_PNG_B64, IMAGE_MEDIA_TYPES, TROUSER_PIXELS, TROUSER_PNG_B64
from service.settings import Settings
from tests.live_service import LiveService, running_service
from tests.service.support import make_settings

# Fixed for CI; set FUZZ_SEED (and FUZZ_MAX_EXAMPLES) to explore further by hand.
SEED = int(os.environ.get("FUZZ_SEED", "20261202"))
# Generated cases per operation, on top of its examples and coverage cases.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))
MIN_REQUESTS = 1000

# Pillow format and the modes written in it, per accepted media type.
WRITERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "image/png": ("PNG", ("L", "LA", "RGB", "RGBA", "P", "1", "I;16")),
    "image/jpeg": ("JPEG", ("L", "RGB", "CMYK")),
    "image/gif": ("GIF", ("L", "P")),
    "image/bmp": ("BMP", ("L", "RGB", "P", "1")),
    "image/tiff": ("TIFF", ("L", "RGB", "RGBA", "1", "I;16", "F")),
    "image/webp": ("WEBP", ("RGB", "RGBA")),
    "image/x-portable-anymap": ("PPM", ("L", "RGB", "1")),
}
assert set(WRITERS) == set(IMAGE_MEDIA_TYPES)


@st.composite
def image_files(draw: st.DrawFn, media_types: tuple[str, ...] = IMAGE_MEDIA_TYPES) -> bytes:
    """A small image file of one of `media_types`, any accepted mode, random pixels."""
    image_format, modes = WRITERS[draw(st.sampled_from(media_types))]
    mode = draw(st.sampled_from(modes))
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=image_format)
    return buffer.getvalue()


# Positive data only: schemathesis leaves binary fields out of its negative cases.
for media_type in IMAGE_MEDIA_TYPES:
    schemathesis.openapi.media_type(media_type, image_files((media_type,)))
schemathesis.openapi.media_type("image/*", image_files())
schemathesis.openapi.media_type("application/octet-stream", image_files())
schemathesis.openapi.format("byte", image_files().map(lambda data: base64.b64encode(data).decode()))


CONFIG: dict[str, Any] = {
    "seed": SEED,
    # Generating images and 28x28 pixel arrays is slow on a busy machine; that is no failure.
    "suppress-health-check": ["too_slow"],
    "generation": {
        "mode": "all",
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
        "no-shrink": True,
    },
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
    # Every check is on; `not_a_server_error` keeps its default (no 5xx at all).
    "checks": {
        # 413 is how the service refuses more images than a request may hold (maxItems).
        "negative_data_rejection": {
            "expected-statuses": ["400", "401", "403", "404", "405", "406", "413", "415", "422"]
        },
        # No 5xx for a valid request either (schemathesis' default allows it here).
        "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "404", "409", "429"]},
    },
}

# What JSON Schema cannot say, answered with a documented 4xx that a schema-valid request may get:
REFUSALS_OF_VALID_DATA = {
    # a layer the chosen model does not have (model=vae&layer=logits)
    "POST /embed": {422},
    # a PNG chart of more images than it can show (format=png with over 32 images)
    "POST /classify": {422},
    # the same for a PNG of explanations
    "POST /explain": {422},
    # v2 tensors whose name, shape, datatype and data do not fit the model or each other
    "POST /v2/models/{name}/infer": {400},
    "POST /v2/models/{name}/versions/{version}/infer": {400},
}

# The document the fuzzing follows is the app's own, built here at collection (pytest 9.2 breaks
# schemathesis' fixture-loaded schemas); the first test checks the live server serves the same.
DOCUMENT = create_app(make_settings(instance_id="fuzz")).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(CONFIG))


# Every request sent, as "METHOD /path -> status", for the count check at the end.
SENT: list[str] = []


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    log = tmp_path_factory.mktemp("fuzz") / "uvicorn.log"
    with running_service(log, {"FMNIST_INSTANCE_ID": "fuzz"}, "--no-access-log") as service:
        yield service
    assert "Traceback" not in service.output(), service.output()


def test_the_server_serves_the_fuzzed_document(live):
    assert httpx.get(f"{live.url}/openapi.json").json() == DOCUMENT


def test_the_schemas_constants_are_the_services():
    """service/schemas.py imports nothing of the service (the client ships it): its copies."""
    assert schemas.IMAGE_SIZE == ml.IMAGE_SIZE
    assert Settings.model_fields["max_images_per_request"].default == schemas.MAX_IMAGES


def test_the_example_images_are_what_the_schemas_say(live):
    def decoded(text: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))

    bag = np.zeros((28, 28), np.uint8)
    bag[10:25, 4:24] = bag[4:10, 9:19] = 200
    bag[6:10, 11:17] = 0
    assert np.array_equal(decoded(TROUSER_PNG_B64), np.uint8(TROUSER_PIXELS))
    assert np.array_equal(decoded(BAG_PNG_B64), bag)
    answer = httpx.post(
        f"{live.url}/classify", json={"images": [TROUSER_PNG_B64, BAG_PNG_B64]}, timeout=30
    )
    assert [p["label"] for p in answer.json()["predictions"]] == ["Trouser", "Bag"]


def test_every_example_matches_its_schema():
    """Request and response examples, and the examples of schemas and parameters, are valid
    instances of what they illustrate (no "..." in a list of numbers)."""
    checked = 0
    for schema, example, where in _documented_examples(DOCUMENT):
        # `#/components/...` references resolve against the schema's root: give it the document's.
        root = {**schema, "components": DOCUMENT["components"]}
        errors = list(Draft202012Validator(root).iter_errors(example))
        assert not errors, f"{where}: {errors[0].message}"
        checked += 1
    assert checked >= 30


def _documented_examples(document: dict[str, Any]) -> Iterator[tuple[Any, Any, str]]:
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            yield schema, example, f"components/{name}"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                for example in parameter["schema"].get("examples", []):
                    yield parameter["schema"], example, f"{where} {parameter['name']}"
            contents = [("request", operation.get("requestBody", {}).get("content", {}))]
            contents += [
                (status, response.get("content", {}))
                for status, response in operation["responses"].items()
            ]
            for part, content in contents:
                for media_type, entry in content.items():
                    for example in _examples(entry):
                        yield entry.get("schema", {}), example, f"{where} {part} {media_type}"


def test_every_documented_example_is_accepted(live):
    """Each example request body of /openapi.json, sent as documented (path parameters from
    their examples, the version of a versioned path from the model's metadata), gets a 2xx."""
    document = httpx.get(f"{live.url}/openapi.json").json()
    sent = set()
    with httpx.Client(base_url=live.url, timeout=30) as client:
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                for media_type, content in (
                    operation.get("requestBody", {}).get("content", {}).items()
                ):
                    for value in _examples(content):
                        url = _fill_path(client, path, operation)
                        response = client.request(method, url, json=value)
                        assert 200 <= response.status_code < 300, (
                            f"{method.upper()} {url} ({media_type}): {response.text[:300]}"
                        )
                        sent.add(f"{method.upper()} {path}")
    _serve_every_model(live)  # the unload example took one away
    assert {
        "POST /classify",
        "POST /explain",
        "POST /embed",
        "POST /reconstruct",
        "POST /interpolate",
        "POST /v2/models/{name}/infer",
        "POST /v2/models/{name}/versions/{version}/infer",
    } <= sent


def _examples(content: dict[str, Any]) -> list[Any]:
    values = [entry["value"] for entry in content.get("examples", {}).values()]
    return values + ([content["example"]] if "example" in content else [])


def _fill_path(client: httpx.Client, path: str, operation: dict[str, Any]) -> str:
    values = {
        parameter["name"]: parameter["schema"]["examples"][0]
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path" and "examples" in parameter["schema"]
    }
    if "{version}" in path:
        values["version"] = client.get(f"/v2/models/{values['name']}").json()["versions"][0]
    return path.format(**values)


@schema.exclude(path_regex="^/v2/repository/models/").parametrize()
def test_fuzz(case: schemathesis.Case, live: LiveService) -> None:
    """Every operation but the repository's load and unload (which change what is served)."""
    call_and_validate(case, live.url)


@schema.include(path_regex="^/v2/repository/models/").parametrize()
def test_fuzz_repository(case: schemathesis.Case, live: LiveService) -> None:
    """Loading and unloading: last, since an unload takes a model away from the rest."""
    call_and_validate(case, live.url)


def call_and_validate(case: schemathesis.Case, base_url: str) -> None:
    transport = {"base_url": base_url, "timeout": 120}
    response = case.call(**transport)
    SENT.append(f"{case.method} {case.formatted_path} -> {response.status_code}")
    try:
        case.validate_response(response, transport_kwargs=transport)
    except FailureGroup as failures:
        if not all(_tolerated(case, response, failure) for failure in failures.exceptions):
            raise


def _tolerated(case: schemathesis.Case, response: Any, failure: Exception) -> bool:
    if not isinstance(failure, RejectedPositiveData):
        return False
    refusals = REFUSALS_OF_VALID_DATA.get(case.operation.label, set())
    return response.status_code in refusals


def test_fuzzing_sent_enough_requests(live):
    if not SENT:
        pytest.skip("the fuzz tests did not run in this session")
    print(f"{len(SENT)} requests")  # shown by pytest -rP
    assert len(SENT) >= MIN_REQUESTS, f"{len(SENT)} requests"
    _serve_every_model(live)


def _serve_every_model(live: LiveService) -> None:
    """Load every model again (a load of a served model swaps in the same checkpoint)."""
    for name in ("lenet", "mynet", "vae"):
        response = httpx.post(f"{live.url}/v2/repository/models/{name}/load", timeout=120)
        assert response.status_code == 200, response.text
