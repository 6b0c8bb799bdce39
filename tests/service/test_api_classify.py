"""POST /classify: every input style x both formats, content checked; accuracy on real images."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import service.imaging
from ml import CLASS_NAMES
from service.schemas import ClassifyResponse
from tests.service.support import (
    CHECKPOINT_DIR,
    STYLES,
    decode_png,
    image_request,
    png,
    with_accept,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("model", ["mynet", "lenet"])
async def test_json_gives_labels_and_probabilities(client, samples, style, model):
    images, labels = samples
    images, labels = (images[:1], labels[:1]) if style == "raw" else (images, labels)
    response = await client.post(f"/classify?model={model}&top_k=3", **image_request(images, style))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    # The route writes its JSON itself: it must still be exactly the documented schema.
    assert ClassifyResponse.model_validate(body).model_dump() == body
    assert body["model"] == model
    assert body["class_names"] == list(CLASS_NAMES)
    assert len(body["predictions"]) == len(images)
    for prediction, label in zip(body["predictions"], labels, strict=True):
        assert prediction["class_id"] == label
        assert prediction["label"] == CLASS_NAMES[label]
        assert len(prediction["probabilities"]) == 10
        assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert prediction["confidence"] == max(prediction["probabilities"])
        assert [s["class_id"] for s in prediction["top_k"]][0] == label
        assert len(prediction["top_k"]) == 3
        probabilities = [s["probability"] for s in prediction["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True)


@pytest.mark.parametrize("style", STYLES)
async def test_png_chart_has_one_row_per_image(client, samples, style):
    images = samples[0][:1] if style == "raw" else samples[0][:2]
    response = await client.post(
        "/classify", **with_accept(image_request(images, style), "image/png")
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    chart = decode_png(response.content)
    width, height = chart.size
    assert width == 750
    assert height == round(100 * (1.9 * len(images) + 0.2))


async def test_format_query_overrides_accept(client, samples):
    kwargs = image_request(samples[0][:1], "multipart")
    as_png = await client.post(
        "/classify?format=png", headers={"Accept": "application/json"}, **kwargs
    )
    assert as_png.headers["content-type"] == "image/png"
    as_json = await client.post("/classify?format=json", headers={"Accept": "image/png"}, **kwargs)
    assert as_json.headers["content-type"] == "application/json"
    weighted = await client.post(
        "/classify", headers={"Accept": "application/json;q=0.5, image/png"}, **kwargs
    )
    assert weighted.headers["content-type"] == "image/png"


async def test_any_image_format_and_size_is_accepted(client, samples):
    """A large, light-background RGB JPEG of a trouser still comes back as a trouser."""
    trouser = samples[0][1]
    large = np.kron(255 - trouser, np.ones((12, 12), np.uint8))  # dark garment on white, 336px
    rgb = np.stack([large] * 3, axis=-1)
    response = await client.post(
        "/classify",
        files={"file": ("trouser.jpg", png(rgb, format="JPEG", quality=95), "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "Trouser"


@pytest.mark.real_data
@pytest.mark.parametrize("model", ["mynet", "lenet"])
async def test_accuracy_on_real_test_images_matches_the_card(client, test_split, model):
    """Real test PNGs through the whole HTTP path, on the default backend (ONNX Runtime on
    CPU), score what training measured in PyTorch, within 0.05 points."""
    images, labels = test_split
    card = json.loads((CHECKPOINT_DIR / f"{model}.json").read_text())
    count = card["metrics"]["test"]["count"]
    images, labels = images[:count], labels[:count]
    predicted = []
    for start in range(0, count, 250):
        response = await client.post(
            f"/classify?model={model}", **image_request(images[start : start + 250], "multipart")
        )
        assert response.status_code == 200, response.text
        predicted += [p["class_id"] for p in response.json()["predictions"]]
    accuracy = float(np.mean(np.array(predicted) == labels))
    assert accuracy == pytest.approx(card["metrics"]["test"]["accuracy"], abs=0.0005)


def spy_on_decoding(monkeypatch) -> list[tuple[str, str]]:
    """(what, the thread's name) for each image opened (its header read) and decoded."""
    threads: list[tuple[str, str]] = []
    for name in ("open_image", "to_model_input"):
        real = getattr(service.imaging, name)

        def spy(*args, real=real, name=name, **kwargs):
            threads.append((name, threading.current_thread().name))
            return real(*args, **kwargs)

        monkeypatch.setattr(service.imaging, name, spy)
    return threads


def garment() -> np.ndarray:
    image = np.zeros((28, 28), np.uint8)
    image[7:21, 9:19] = 220
    return image


@pytest.mark.parametrize("style", ["multipart", "base64", "raw"])
async def test_small_plain_pngs_are_decoded_on_the_event_loop(client, monkeypatch, style):
    """A hand-off to a decoding thread costs more than decoding a 28 x 28 PNG."""
    threads = spy_on_decoding(monkeypatch)
    count = 1 if style == "raw" else 3
    response = await client.post(
        "/classify?model=lenet", **image_request(np.stack([garment()] * count), style)
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == count
    assert {thread for _, thread in threads} == {threading.main_thread().name}
    assert len(threads) == 2 * count


def noisy_garment() -> np.ndarray:
    """160 x 160 of grain that no PNG compresses under 16 KB, on a garment's shape."""
    grain = np.random.default_rng(0).integers(0, 40, (160, 160), dtype=np.uint8)
    return np.kron(garment(), np.ones((6, 6), np.uint8))[:160, :160] | grain


def jpeg(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "JPEG")
    return out.getvalue()


def png_with_compressed_text(image: np.ndarray) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * 100, zip=True)  # a zTXt chunk
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG", pnginfo=info)
    return out.getvalue()


@pytest.mark.parametrize(
    ("upload", "opened_on_the_loop"),
    [
        pytest.param(
            lambda: png(np.kron(garment(), np.ones((6, 6), np.uint8))), True, id="168x168 PNG"
        ),
        pytest.param(lambda: png(noisy_garment()), False, id="file over 16 KB"),
        pytest.param(lambda: png_with_compressed_text(garment()), False, id="PNG with zTXt"),
        pytest.param(lambda: jpeg(garment()), False, id="JPEG"),
    ],
)
async def test_other_images_are_decoded_in_the_decoding_threads(
    client, monkeypatch, upload, opened_on_the_loop
):
    """Hardening, item 1: uploads declaring few pixels were opened and decoded on the event
    loop, so a small but costly file stalled every other request. Only small plain PNGs are
    now: the header of a small plain PNG is read on the loop, and its pixels decoded there only
    when it declares few; larger files, compressed ancillary chunks (a 1 KB zTXt bomb took 3 ms
    to open) and every other format go to the threads whole."""
    threads = spy_on_decoding(monkeypatch)
    response = await client.post(
        "/classify?model=lenet", content=upload(), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200, response.text
    (opened, decoded) = threads
    assert opened[0] == "open_image" and decoded[0] == "to_model_input"
    assert decoded[1].startswith("decode"), threads
    assert (opened[1] == threading.main_thread().name) is opened_on_the_loop, threads
