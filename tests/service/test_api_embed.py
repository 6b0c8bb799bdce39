"""POST /embed: vectors, their dimension and map coordinates; the map as PNG."""

from __future__ import annotations

import numpy as np
import pytest

from ml.pca_map import project
from tests.service.support import STYLES, decode_png, image_request, with_accept

pytestmark = pytest.mark.anyio

DIMENSIONS = {
    ("mynet", "penultimate"): 128,
    ("mynet", "logits"): 10,
    ("lenet", "penultimate"): 84,
    ("lenet", "logits"): 10,
}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("model", "layer"), [*DIMENSIONS, ("vae", "latent")])
async def test_json_vectors_and_coordinates(client, samples, style, model, layer):
    images = samples[0][:1] if style == "raw" else samples[0]
    response = await client.post(
        f"/embed?model={model}&layer={layer}", **image_request(images, style)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    loaded = client.app.state.runtime.models[model]
    expected_dim = DIMENSIONS.get((model, layer), loaded.latent_dim)
    assert (body["model"], body["layer"], body["dimension"]) == (model, layer, expected_dim)
    pca_map = loaded.card["embedding_maps"][layer]
    assert body["explained_variance_ratio"] == pca_map["explained_variance_ratio"]
    assert len(body["embeddings"]) == len(images)
    for embedding in body["embeddings"]:
        vector = np.array(embedding["vector"])
        assert vector.shape == (expected_dim,)
        expected = project(vector[None], pca_map)[0]
        assert embedding["coordinates"] == pytest.approx(expected.tolist(), abs=1e-4)


async def test_default_layer_is_the_first(client, samples):
    for model, layer in (("mynet", "penultimate"), ("vae", "latent")):
        response = await client.post(f"/embed?model={model}", **image_request(samples[0], "pixels"))
        assert response.json()["layer"] == layer


async def test_images_of_one_class_land_near_each_other(client, test_split):
    """Two trousers are closer on the map than a trouser and a sneaker."""
    images, labels = test_split
    trousers = images[np.flatnonzero(labels == 1)[:2]]
    sneaker = images[np.flatnonzero(labels == 7)[:1]]
    response = await client.post(
        "/embed", **image_request(np.concatenate([trousers, sneaker]), "multipart")
    )
    a, b, c = (np.array(e["coordinates"]) for e in response.json()["embeddings"])
    assert np.linalg.norm(a - b) < np.linalg.norm(a - c)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("model", ["mynet", "vae"])
async def test_png_map(client, samples, style, model):
    images = samples[0][:1] if style == "raw" else samples[0]
    response = await client.post(
        f"/embed?model={model}", **with_accept(image_request(images, style), "image/png")
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert decode_png(response.content).size == (800, 650)
