"""Two peers of scripts/bench_serve.py, written as a user who wants speed would write them, and
run by uvicorn's own command with two workers:

    BENCH_GRAPH=checkpoints/mynet.onnx python -m uvicorn bench_peers:naive_onnx --factory \
        --app-dir scripts --workers 2 --port 8000

- `naive_onnx`: FastAPI with the shipped ONNX graph run inline in the async handler, one
  single-threaded session per worker, a PIL decode, no batching. (With ONNX Runtime's default,
  a thread per core in each worker, the two workers' threads spun against each other:
  about 800 req/s at 64 connections instead of about 2,500.);
- `trivial`: the same upload read and answered with a constant: what the HTTP stack itself
  costs, the ceiling of any server built on it.

Both take what the service takes for the benchmark's bodies: multipart `file` fields or JSON
`{"images": [base64 PNG, ...]}`. Only FastAPI, ONNX Runtime, numpy and Pillow are imported.
"""

from __future__ import annotations

import base64
import io
import os

import numpy as np
import onnxruntime
from fastapi import FastAPI, Request
from PIL import Image

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CONSTANT = {"predictions": [{"label": "Trouser", "class_id": 1, "confidence": 0.99}]}


async def uploaded_files(request: Request) -> list[bytes]:
    """The image files of a multipart or JSON body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        return [await upload.read() for upload in form.getlist("file")]
    return [base64.b64decode(encoded) for encoded in (await request.json())["images"]]


def naive_onnx() -> FastAPI:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        os.environ["BENCH_GRAPH"], options, providers=["CPUExecutionProvider"]
    )
    app = FastAPI()

    @app.post("/classify")
    async def classify(request: Request) -> dict:
        files = await uploaded_files(request)
        images = [Image.open(io.BytesIO(f)).convert("L").resize((28, 28)) for f in files]
        batch = np.stack([np.asarray(image, np.float32) / 255 for image in images])[:, None]
        (probabilities,) = session.run(["probabilities"], {"images": batch})
        return {
            "predictions": [
                {"label": CLASS_NAMES[c], "class_id": int(c), "confidence": float(p[c])}
                for p, c in zip(probabilities, probabilities.argmax(axis=1), strict=True)
            ]
        }

    return app


def trivial() -> FastAPI:
    app = FastAPI()

    @app.post("/classify")
    async def classify(request: Request) -> dict:
        await uploaded_files(request)
        return CONSTANT

    return app
