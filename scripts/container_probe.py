"""Check a ready service from outside, as its users do: scripts/container_check.sh runs this
against the container it started, once /readyz answers.

    python scripts/container_probe.py http://127.0.0.1:18080 [--images 200]

1. classifies the first --images images of the real Fashion-MNIST test set, each as its own PNG
   upload, and requires MyNet's accuracy on them to be within three standard errors of the
   test accuracy its card records;
2. calls every operation the service's OpenAPI document lists once, and fails when one is not
   covered here, so a new endpoint cannot go unchecked;
3. with --grpc HOST:PORT, classifies the first 16 of those images over the v2 protocol's gRPC
   service (tritonclient.grpc) and requires the labels /classify gave them.

Exit status 0 when all hold; the figures go to stdout.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from ml.cards import read_card
from ml.data import load_split, locate

REPO = Path(__file__).resolve().parents[1]
MODEL = "mynet"


class ProbeError(RuntimeError):
    """The service did not answer as it should."""


class UnexpectedAnswer(ProbeError):
    """An answer with the right status and type but the wrong content."""


def require(condition: bool, answer: object) -> None:
    """An explicit check rather than `assert`, which `python -O` would skip."""
    if not condition:
        raise UnexpectedAnswer(str(answer)[:300])


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def expect(response: httpx.Response, content_type: str = "application/json") -> httpx.Response:
    request = f"{response.request.method} {response.request.url.path}"
    if response.status_code != 200:
        raise ProbeError(f"{request}: {response.status_code} {response.text[:300]}")
    if not response.headers.get("content-type", "").startswith(content_type):
        raise ProbeError(f"{request}: content-type {response.headers.get('content-type')}")
    return response


def check_accuracy(client: httpx.Client, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """MyNet's accuracy on `images` over /classify, one upload each; the predicted classes."""

    def classify(pixels: np.ndarray) -> int:
        response = client.post(
            "/classify",
            params={"model": MODEL, "invert": "false"},
            files={"file": ("image.png", png(pixels), "image/png")},
        )
        return expect(response).json()["predictions"][0]["class_id"]

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        predicted = np.array(list(pool.map(classify, images)))
    elapsed = time.monotonic() - start
    accuracy = float((predicted == labels).mean())
    card = read_card(MODEL, REPO / "checkpoints")["metrics"]["test"]["accuracy"]
    floor = card - 3 * math.sqrt(card * (1 - card) / len(labels))
    print(
        f"classify: {len(labels)} test images in {elapsed:.1f} s, {MODEL} accuracy {accuracy:.2%} "
        f"(card: {card:.2%} on 10,000; required here: at least {floor:.2%})"
    )
    if accuracy < floor:
        raise ProbeError(f"accuracy {accuracy:.2%} is below {floor:.2%}")
    return predicted


def check_grpc(target: str, images: np.ndarray, expected: np.ndarray) -> None:
    """The same images over gRPC: ready, and the same classes as /classify."""
    import tritonclient.grpc as triton  # only when asked: a test dependency
    from tritonclient.utils import InferenceServerException

    try:
        client = triton.InferenceServerClient(target)
        if not client.is_server_ready(client_timeout=10):
            raise ProbeError(f"gRPC {target}: ServerReady is false")
        files = triton.InferInput("image_files", [len(images)], "BYTES")
        files.set_data_from_numpy(np.array([png(pixels) for pixels in images], dtype=object))
        wanted = [triton.InferRequestedOutput("class_id")]
        result = client.infer(MODEL, [files], outputs=wanted, client_timeout=30)
    except InferenceServerException as error:
        raise ProbeError(f"gRPC {target}: {error}") from None
    class_ids = result.as_numpy("class_id")
    require(np.array_equal(class_ids, expected), f"gRPC classes {class_ids} != {expected}")
    print(f"gRPC: {len(images)} images over ModelInfer at {target}, the classes of /classify")


def every_endpoint(sample: bytes, other: bytes) -> dict[tuple[str, str], Callable]:
    """One call per OpenAPI operation, each a function of the client that checks the answer."""
    upload = {"file": ("sample.png", sample, "image/png")}

    def classify(client: httpx.Client) -> None:
        body = expect(client.post("/classify", params={"top_k": 3}, files=upload)).json()
        prediction = body["predictions"][0]
        require(len(prediction["top_k"]) == 3 and body["calibrated"], body)
        require(prediction["out_of_distribution"] is False, body)  # a test garment

    def explain(client: httpx.Client) -> None:
        body = expect(client.post("/explain", files=upload)).json()
        attribution = body["explanations"][0]["attribution"]
        require(len(attribution) == 28 and len(attribution[0]) == 28, body)

    def embed(client: httpx.Client) -> None:
        body = expect(client.post("/embed", params={"model": "vae"}, files=upload)).json()
        require(body["dimension"] == len(body["embeddings"][0]["vector"]), body)

    def reconstruct(client: httpx.Client) -> None:
        expect(client.post("/reconstruct", params={"format": "png"}, files=upload), "image/png")

    def interpolate(client: httpx.Client) -> None:
        files = {
            "start": ("start.png", sample, "image/png"),
            "end": ("end.png", other, "image/png"),
        }
        body = expect(client.post("/interpolate", params={"steps": 4}, files=files)).json()
        require(len(body["frames"]) == 4, body)

    def generate(client: httpx.Client) -> None:
        body = expect(client.post("/generate", params={"n": 2, "seed": 1})).json()
        require(len(body["images"]) == 2, body)

    def models(client: httpx.Client) -> None:
        expect(client.get("/models"))

    def model(client: httpx.Client) -> None:
        body = expect(client.get(f"/models/{MODEL}")).json()
        require(body["name"] == MODEL, body)

    def health(path: str) -> Callable[[httpx.Client], None]:
        return lambda client: expect(client.get(path))

    def metrics(client: httpx.Client) -> None:
        text = expect(client.get("/metrics"), "text/plain").text
        require("fmnist" in text, text)

    # Open Inference Protocol v2: the same model through the protocol's JSON.
    pixels = np.asarray(Image.open(io.BytesIO(sample)), dtype=np.float32) / 255

    def version(client: httpx.Client) -> str:
        return expect(client.get(f"/v2/models/{MODEL}")).json()["versions"][0]

    def infer(versioned: bool) -> Callable[[httpx.Client], None]:
        def call(client: httpx.Client) -> None:
            path = f"/v2/models/{MODEL}" + (f"/versions/{version(client)}" if versioned else "")
            tensor = {"name": "images", "datatype": "FP32", "shape": [1, 28, 28]}
            request = {"inputs": [tensor | {"data": pixels.ravel().tolist()}]}
            body = expect(client.post(f"{path}/infer", json=request)).json()
            names = {output["name"] for output in body["outputs"]}
            require({"probabilities", "label"} <= names, body)

        return call

    def v2_get(versioned: bool, suffix: str = "") -> Callable[[httpx.Client], None]:
        def call(client: httpx.Client) -> None:
            path = f"/v2/models/{MODEL}" + (f"/versions/{version(client)}" if versioned else "")
            expect(client.get(path + suffix))

        return call

    def repository_index(client: httpx.Client) -> None:
        listed = expect(client.post("/v2/repository/index", json={})).json()
        require(MODEL in {entry["name"] for entry in listed}, listed)

    def repository_load(client: httpx.Client) -> None:
        expect(client.post("/v2/repository/models/lenet/load", json={}))

    def repository_unload(client: httpx.Client) -> None:
        """Unload, then load again: the container ends the probe serving every model."""
        expect(client.post("/v2/repository/models/lenet/unload", json={}))
        ready = client.get("/v2/models/lenet/ready")
        require(ready.status_code != 200, f"still ready after unload: {ready.status_code}")
        expect(client.post("/v2/repository/models/lenet/load", json={}))

    return {
        ("POST", "/classify"): classify,
        ("POST", "/explain"): explain,
        ("POST", "/embed"): embed,
        ("POST", "/reconstruct"): reconstruct,
        ("POST", "/interpolate"): interpolate,
        ("POST", "/generate"): generate,
        ("GET", "/models"): models,
        ("GET", "/models/{name}"): model,
        ("GET", "/healthz"): health("/healthz"),
        ("GET", "/readyz"): health("/readyz"),
        ("GET", "/metrics"): metrics,
        ("GET", "/v2"): health("/v2"),
        ("GET", "/v2/health/live"): health("/v2/health/live"),
        ("GET", "/v2/health/ready"): health("/v2/health/ready"),
        ("GET", "/v2/models/{name}"): v2_get(versioned=False),
        ("GET", "/v2/models/{name}/ready"): v2_get(versioned=False, suffix="/ready"),
        ("GET", "/v2/models/{name}/versions/{version}"): v2_get(versioned=True),
        ("GET", "/v2/models/{name}/versions/{version}/ready"): v2_get(True, "/ready"),
        ("POST", "/v2/models/{name}/infer"): infer(versioned=False),
        ("POST", "/v2/models/{name}/versions/{version}/infer"): infer(versioned=True),
        ("POST", "/v2/repository/index"): repository_index,
        ("POST", "/v2/repository/models/{name}/load"): repository_load,
        ("POST", "/v2/repository/models/{name}/unload"): repository_unload,
    }


def check_every_endpoint(client: httpx.Client, sample: bytes, other: bytes) -> None:
    document = expect(client.get("/openapi.json")).json()
    pages = ("/", "/docs", "/redoc")  # outside the OpenAPI document
    for page in pages:
        expect(client.get(page), "text/html")
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    calls = every_endpoint(sample, other)
    missing = sorted(operations - calls.keys())
    if missing:
        raise ProbeError(f"operations with no call in {Path(__file__).name}: {missing}")
    for (method, path), call in sorted(calls.items()):
        if (method, path) not in operations:
            raise ProbeError(f"{method} {path} is not in the service's OpenAPI document")
        try:
            call(client)
        except UnexpectedAnswer as error:
            raise ProbeError(f"{method} {path}: unexpected answer {error}") from None
    print(
        f"endpoints: all {len(operations)} operations answered, and /openapi.json, "
        + ", ".join(pages)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the service's base URL")
    parser.add_argument("--images", type=int, default=200, help="test images to classify")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="the service's gRPC address")
    args = parser.parse_args(argv)
    test = load_split(locate(), "test")
    images, labels = np.asarray(test.images[: args.images]), np.asarray(test.labels[: args.images])
    with httpx.Client(base_url=args.url, timeout=30) as client:
        try:
            predicted = check_accuracy(client, images, labels)
            check_every_endpoint(client, png(images[0]), png(images[1]))
            if args.grpc:
                check_grpc(args.grpc, images[:16], predicted[:16])
        except ProbeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
