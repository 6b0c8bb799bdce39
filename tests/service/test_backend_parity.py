"""The two backends agree on the whole real test set: ONNX Runtime (the default on CPU) runs the
exported graphs, torch the trained weights, and every operation's outputs must match."""

from __future__ import annotations

import numpy as np
import pytest

import ml
from ml.calibration import ece
from service.backends import Engine, load_engine
from tests.live_service import CHECKPOINT_DIR

CHUNK = 500


def both_engines(name: str) -> dict[str, Engine]:
    card = ml.read_card(name, CHECKPOINT_DIR)
    return {
        backend: load_engine(backend, name, card, CHECKPOINT_DIR, "cpu", threads=2)
        for backend in ("onnxruntime", "torch")
    }


def run_all(engine: Engine, op: str, inputs: np.ndarray) -> tuple[np.ndarray, ...]:
    fn = engine.operations()[op]
    parts = [fn(inputs[start : start + CHUNK]) for start in range(0, len(inputs), CHUNK)]
    return tuple(np.concatenate(outputs) for outputs in zip(*parts, strict=True))


@pytest.fixture(scope="module")
def test_images(test_split) -> np.ndarray:
    return (test_split[0] / 255).astype(np.float32)


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["lenet", "mynet"])
def test_classifiers_agree(name, test_images, test_split):
    engines = both_engines(name)
    onnx_outputs, torch_outputs = (run_all(engines[b], "classify", test_images) for b in engines)
    (onnx, onnx_raw, onnx_score, onnx_flag) = onnx_outputs
    (torch, torch_raw, torch_score, torch_flag) = torch_outputs
    same_class = np.mean(onnx.argmax(1) == torch.argmax(1))
    assert same_class >= 0.9995, f"{name}: classes agree on {same_class:.4%} of images"
    assert np.abs(onnx - torch).max() <= 1e-4
    assert np.abs(onnx_raw - torch_raw).max() <= 1e-4
    # The OOD score is a distance in ~100 dimensions: float32 rounding of the features moves it
    # by a relative 1e-4 at most, and a flag only for images within that of the threshold.
    assert np.abs(onnx_score - torch_score).max() <= 1e-3 * max(1.0, np.abs(torch_score).max())
    assert np.mean(onnx_flag == torch_flag) >= 0.9995
    # And the card's accuracy and calibration, from the exported graph alone.
    card = ml.read_card(name, CHECKPOINT_DIR)
    labels = test_split[1]
    accuracy = np.mean(onnx.argmax(1) == labels)
    assert accuracy == pytest.approx(card["metrics"]["test"]["accuracy"], abs=5e-4)
    recorded = card["calibration"]["metrics"]["test"]
    assert ece(onnx, labels) == pytest.approx(recorded["calibrated"]["ece"], abs=1e-3)
    assert ece(onnx_raw, labels) == pytest.approx(recorded["uncalibrated"]["ece"], abs=1e-3)
    assert np.mean(onnx_flag) == pytest.approx(card["ood"]["flagged"]["test"]["0.05"], abs=1e-3)
    for layer in ("penultimate", "logits"):
        (a, *_), (b, *_) = (
            run_all(engines[x], f"embed:{layer}", test_images[:CHUNK]) for x in engines
        )
        assert np.abs(a - b).max() <= 1e-3 * max(1.0, np.abs(b).max())


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize("name", ["lenet", "mynet"])
def test_probabilities_are_the_logits_at_the_cards_temperature(name, backend):
    """Calibration is applied on both backends: the probabilities are the softmax of the logits
    divided by the card's temperature, the same prediction as the plain softmax but surer or
    less sure; the plain softmax is there too."""
    engine = both_engines(name)[backend]
    images = np.random.default_rng(0).random((16, 28, 28), dtype=np.float32)
    probabilities, logits, raw = (engine.operations()["forward"](images)[i] for i in (0, 2, 1))
    temperature = ml.read_card(name, CHECKPOINT_DIR)["calibration"]["temperature"]
    assert temperature != pytest.approx(1.0, abs=0.05)
    scaled = np.exp(logits / temperature - (logits / temperature).max(1, keepdims=True))
    assert np.abs(probabilities - scaled / scaled.sum(1, keepdims=True)).max() <= 1e-5
    plain = np.exp(logits - logits.max(1, keepdims=True))
    assert np.abs(raw - plain / plain.sum(1, keepdims=True)).max() <= 1e-5
    assert (probabilities.argmax(1) == raw.argmax(1)).all()
    assert np.abs(probabilities - raw).max() > 1e-3


@pytest.mark.real_data
def test_vae_agrees(test_images):
    engines = both_engines("vae")
    onnx, torch = (run_all(engines[b], "reconstruct", test_images) for b in engines)
    (onnx_images, onnx_bce, onnx_kl), (torch_images, torch_bce, torch_kl) = onnx, torch
    assert onnx_images.shape == (len(test_images), 28, 28)
    assert np.abs(onnx_images - torch_images).max() <= 1e-4
    assert np.abs((onnx_bce + onnx_kl) - (torch_bce + torch_kl)).max() <= 0.01
    assert np.isfinite(onnx_bce).all() and (onnx_kl >= 0).all()
    (onnx_means,), (torch_means,) = (
        run_all(engines[b], "embed:latent", test_images) for b in engines
    )
    assert np.abs(onnx_means - torch_means).max() <= 1e-4
    (onnx_decoded,), (torch_decoded,) = (
        run_all(engines[b], "decode", torch_means[:CHUNK]) for b in engines
    )
    assert np.abs(onnx_decoded - torch_decoded).max() <= 1e-4


def test_a_black_image_has_a_finite_bce():
    """The exported BCE must not overflow where the decoder's sigmoid saturates."""
    for engine in both_engines("vae").values():
        _, bce, kl = engine.operations()["reconstruct"](np.zeros((1, 28, 28), np.float32))
        assert np.isfinite(bce).all() and 0 < bce[0] < 50 and kl[0] > 0
