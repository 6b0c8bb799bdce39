"""Answers an app can act on, over HTTP: calibrated probabilities by default, the plain softmax
on request, and an out-of-distribution score and flag in every classification, with refusal of
flagged images when the caller asks for it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ml
from ml.calibration import softmax
from service.schemas import ClassifyResponse, EmbedResponse
from tests.service.support import (
    CHECKPOINT_DIR,
    assert_error,
    decode_png,
    image_request,
    make_settings,
    serving,
)

pytestmark = pytest.mark.anyio


def not_garments() -> np.ndarray:
    """Uniform noise, a blank mid-grey image and a photo-like gradient: never garments."""
    rng = np.random.default_rng(0)
    gradient = np.add.outer(np.arange(28), np.arange(28)) * (255 / 54)
    return np.stack([rng.integers(0, 256, (28, 28)), np.full((28, 28), 128), gradient]).astype(
        np.uint8
    )


@pytest.mark.parametrize("model", ["mynet", "lenet"])
async def test_probabilities_are_calibrated_unless_asked(client, samples, model):
    images, labels = samples
    card = ml.read_card(model, CHECKPOINT_DIR)
    answers = {}
    for calibrated in ("true", "false"):
        response = await client.post(
            f"/classify?model={model}&calibrated={calibrated}", **image_request(images, "pixels")
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert ClassifyResponse.model_validate(body).model_dump() == body
        assert body["calibrated"] is (calibrated == "true")
        answers[calibrated] = np.array([p["probabilities"] for p in body["predictions"]])
    calibrated, plain = answers["true"], answers["false"]
    assert (calibrated.argmax(1) == plain.argmax(1)).all()
    assert (calibrated.argmax(1) == labels).all()
    # The calibrated probabilities are the plain ones at the card's temperature.
    logits = np.log(plain)
    expected = softmax(logits, card["calibration"]["temperature"])
    assert np.abs(calibrated - expected).max() < 1e-4
    assert np.abs(calibrated - plain).max() > 1e-3


@pytest.mark.parametrize("model", ["mynet", "lenet"])
async def test_garments_pass_and_other_images_are_flagged(client, samples, model):
    garments, _ = samples
    images = np.concatenate([garments, not_garments()])
    response = await client.post(f"/classify?model={model}", **image_request(images, "pixels"))
    assert response.status_code == 200, response.text
    body = response.json()
    threshold = ml.read_card(model, CHECKPOINT_DIR)["ood"]["thresholds"]["0.05"]
    assert body["ood_threshold"] == pytest.approx(threshold)
    assert body["ood_flag_rate"] == 0.05
    flags = [p["out_of_distribution"] for p in body["predictions"]]
    scores = [p["ood_score"] for p in body["predictions"]]
    assert flags == [False] * len(garments) + [True] * 3
    assert flags == [score > threshold for score in scores]


async def test_refuse_names_the_flagged_images(client, samples):
    garments, _ = samples
    images = np.concatenate([garments[:1], not_garments()[:1], garments[1:2]])
    response = await client.post("/classify?ood=refuse", **image_request(images, "multipart"))
    assert_error(response, 422, "out_of_distribution")
    message = response.json()["error"]["message"]
    assert message.startswith("image 2 of 3 unlike the training data")
    accepted = await client.post("/classify?ood=refuse", **image_request(garments, "multipart"))
    assert accepted.status_code == 200, accepted.text
    assert not any(p["out_of_distribution"] for p in accepted.json()["predictions"])


async def test_a_bad_ood_or_calibrated_value_is_a_422(client, samples):
    for query in ("ood=drop", "calibrated=maybe"):
        response = await client.post(f"/classify?{query}", **image_request(samples[0], "pixels"))
        assert_error(response, 422, "invalid_parameter")


async def test_the_png_chart_marks_flagged_images(client, samples):
    images = np.concatenate([samples[0][:1], not_garments()[:1]])
    response = await client.post("/classify?format=png", **image_request(images, "multipart"))
    assert response.status_code == 200, response.text
    # The title of the flagged row is red; a garment's chart has no red at all.
    assert red_pixels(response.content) > 50
    alone = await client.post("/classify?format=png", **image_request(images[:1], "multipart"))
    assert red_pixels(alone.content) == 0


def red_pixels(chart: bytes) -> int:
    pixels = np.asarray(decode_png(chart).convert("RGB")).astype(int)
    return int(((pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).sum())


@pytest.mark.parametrize(("model", "layer"), [("mynet", "penultimate"), ("lenet", "logits")])
async def test_embed_places_carry_the_flag(client, samples, model, layer):
    images = np.concatenate([samples[0][:1], not_garments()[:1]])
    response = await client.post(
        f"/embed?model={model}&layer={layer}", **image_request(images, "pixels")
    )
    assert response.status_code == 200, response.text
    body = EmbedResponse.model_validate(response.json())
    assert [e.out_of_distribution for e in body.embeddings] == [False, True]
    classified = await client.post(f"/classify?model={model}", **image_request(images, "pixels"))
    scores = [p["ood_score"] for p in classified.json()["predictions"]]
    assert [e.ood_score for e in body.embeddings] == pytest.approx(scores, rel=1e-5)


async def test_the_autoencoder_has_no_flag(client, samples):
    response = await client.post("/embed?model=vae", **image_request(samples[0][:1], "pixels"))
    (embedding,) = response.json()["embeddings"]
    assert embedding["ood_score"] is None and embedding["out_of_distribution"] is None


async def test_models_say_how_they_are_calibrated(client):
    card = ml.read_card("mynet", CHECKPOINT_DIR)
    trust = (await client.get("/models/mynet")).json()["trust"]
    assert trust["temperature"] == card["calibration"]["temperature"]
    assert trust["test_ece"] == card["calibration"]["metrics"]["test"]["calibrated"]["ece"]
    assert trust["ood_threshold"] == pytest.approx(card["ood"]["thresholds"]["0.05"])
    assert (await client.get("/models/vae")).json()["trust"] is None


async def test_the_operating_point_is_a_setting(samples):
    card = ml.read_card("mynet", CHECKPOINT_DIR)
    async with serving(make_settings(models=["mynet"], ood_flag_rate="0.01")) as strict:
        response = await strict.post("/classify", **image_request(samples[0], "pixels"))
        body = response.json()
        assert body["ood_flag_rate"] == 0.01
        assert body["ood_threshold"] == pytest.approx(card["ood"]["thresholds"]["0.01"])
        assert body["ood_threshold"] > card["ood"]["thresholds"]["0.05"]


async def test_a_card_without_trust_records_is_refused_at_start(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for path in CHECKPOINT_DIR.glob("mynet.*"):
        (folder / path.name).write_bytes(path.read_bytes())
    card = json.loads((folder / "mynet.json").read_text())
    del card["calibration"], card["ood"]
    (folder / "mynet.json").write_text(json.dumps(card))
    app_settings = make_settings(models=["mynet"], checkpoint_dir=folder)
    with pytest.raises(Exception, match="fmnist-calibrate --model mynet"):
        async with serving(app_settings):
            pass


async def test_tampered_ood_statistics_are_refused_at_start(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for path in CHECKPOINT_DIR.glob("mynet.*"):
        (folder / path.name).write_bytes(path.read_bytes())
    statistics = folder / "mynet.ood.npz"
    data = statistics.read_bytes()
    statistics.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(Exception, match="OOD statistics.*sha256|sha256.*refusing"):
        async with serving(make_settings(models=["mynet"], checkpoint_dir=folder)):
            pass
