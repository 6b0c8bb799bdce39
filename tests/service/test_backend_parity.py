"""The two backends agree on the whole real test set: ONNX Runtime (the default on CPU) runs the
exported graphs, torch the trained weights, and every operation's outputs must match."""

from __future__ import annotations

import numpy as np
import pytest

import ml
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
    (onnx,), (torch,) = (run_all(engines[b], "classify", test_images) for b in engines)
    same_class = np.mean(onnx.argmax(1) == torch.argmax(1))
    assert same_class >= 0.9995, f"{name}: classes agree on {same_class:.4%} of images"
    assert np.abs(onnx - torch).max() <= 1e-4
    # And the card's accuracy, to the image, from the exported graph alone.
    card = ml.read_card(name, CHECKPOINT_DIR)
    accuracy = np.mean(onnx.argmax(1) == test_split[1])
    assert accuracy == pytest.approx(card["metrics"]["test"]["accuracy"], abs=5e-4)
    for layer in ("penultimate", "logits"):
        (a,), (b,) = (run_all(engines[x], f"embed:{layer}", test_images[:CHUNK]) for x in engines)
        assert np.abs(a - b).max() <= 1e-3 * max(1.0, np.abs(b).max())


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
