"""ONNX Runtime splits a large batch into parts run side by side (`FMNIST_BATCH_PARTS`): every
operation must give exactly the outputs of the whole batch, in order."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import ml
from service.backends import load_engine
from tests.live_service import CHECKPOINT_DIR

# 31 images: one part (a part has at least 16); 32: two; 50 and 64: three, of unequal sizes.
BATCH_SIZES = (31, 32, 50, 64)


@pytest.mark.parametrize("name", ["mynet", "vae"])
def test_a_batch_split_into_parts_gives_the_outputs_of_the_whole_batch(name):
    card = ml.read_card(name, CHECKPOINT_DIR)
    threads_before = set(threading.enumerate())
    whole, split = (
        load_engine("onnxruntime", name, card, CHECKPOINT_DIR, "cpu", threads=1, batch_parts=p)
        for p in (1, 3)
    )
    rng = np.random.default_rng(0)
    images = rng.random((max(BATCH_SIZES), 28, 28), dtype=np.float32)
    latent_dim = card.get("hyper_parameters", {}).get("latent_dim", 0)
    latents = rng.standard_normal((max(BATCH_SIZES), latent_dim), dtype=np.float32)
    for op, run_split in split.operations().items():
        inputs = latents if op == "decode" else images
        for count in BATCH_SIZES:
            expected = whole.operations()[op](inputs[:count])
            got = run_split(inputs[:count])
            assert len(got) == len(expected)
            for part, full in zip(got, expected, strict=True):
                assert part.shape == full.shape, (op, count)
                np.testing.assert_allclose(
                    part, full, rtol=1e-5, atol=1e-6, err_msg=f"{op} {count}"
                )
    started = set(threading.enumerate()) - threads_before
    helpers = [t for t in started if t.name.startswith(f"infer-{name}-part")]
    assert len(helpers) == 2  # the parts beyond the first ran in this engine's helper threads
