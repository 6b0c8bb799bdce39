"""The VAE's endpoints: /reconstruct, /interpolate and /generate, in JSON and PNG."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from service.plots import GAP
from tests.service.support import STYLES, b64png, decode_png, image_request, png, with_accept

pytestmark = pytest.mark.anyio


def grid_size(columns: int, rows: int, scale: int) -> tuple[int, int]:
    """(width, height) of a grid of 28x28 cells enlarged `scale` times, GAP pixels apart."""
    side = 28 * scale
    return columns * side + (columns + 1) * GAP, rows * side + (rows + 1) * GAP


@pytest.mark.parametrize("style", STYLES)
async def test_reconstruct_json(client, samples, style):
    images = samples[0][:1] if style == "raw" else samples[0]
    response = await client.post("/reconstruct", **image_request(images, style))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "vae"
    assert len(body["reconstructions"]) == len(images)
    for original, item in zip(images, body["reconstructions"], strict=True):
        pixels = np.array(item["pixels"])
        assert pixels.shape == (28, 28)
        assert pixels.min() >= 0 and pixels.max() <= 255
        assert np.array_equal(b64png(item["png"]), pixels)
        mse = float(np.mean((pixels / 255 - original / 255) ** 2))
        assert item["mse"] == pytest.approx(mse, abs=2e-3)  # pixels are rounded to 0-255
        assert item["bce"] > 0 and item["kl"] >= 0


async def test_reconstruction_resembles_its_input(client, samples):
    """Each reconstruction is closer to its own input than to the other inputs."""
    images = samples[0]
    response = await client.post("/reconstruct", **image_request(images, "pixels"))
    outputs = np.array([r["pixels"] for r in response.json()["reconstructions"]]) / 255
    distances = ((outputs[:, None] - images[None] / 255) ** 2).mean(axis=(2, 3))
    assert (distances.argmin(axis=1) == np.arange(len(images))).all()


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("scale", [1, 3])
async def test_reconstruct_png_grid(client, samples, style, scale):
    images = samples[0][:1] if style == "raw" else samples[0]
    response = await client.post(
        f"/reconstruct?scale={scale}", **with_accept(image_request(images, style), "image/png")
    )
    assert response.status_code == 200, response.text
    grid = decode_png(response.content)
    assert grid.size == grid_size(len(images), 2, scale)
    # The top-left cell is the first original, enlarged by nearest neighbour.
    cell = np.asarray(grid)[GAP : GAP + 28 * scale : scale, GAP : GAP + 28 * scale : scale]
    assert np.array_equal(cell, images[0])


def pair_request(start: np.ndarray, end: np.ndarray, style: str) -> dict:
    if style == "multipart":
        return {"files": {"start": ("a.png", png(start)), "end": ("b.png", png(end))}}
    if style == "base64":
        return {
            "json": {
                k: base64.b64encode(png(v)).decode() for k, v in (("start", start), ("end", end))
            }
        }
    return {"json": {"start": start.tolist(), "end": end.tolist()}}


@pytest.mark.parametrize("style", ["multipart", "base64", "pixels"])
@pytest.mark.parametrize("method", ["linear", "slerp"])
async def test_interpolate_json(client, samples, style, method):
    start, end = samples[0][1], samples[0][3]
    response = await client.post(
        f"/interpolate?steps=7&method={method}", **pair_request(start, end, style)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["method"], body["steps"]) == ("vae", method, 7)
    assert len(body["frames"]) == len(body["latents"]) == 7
    latents = np.array(body["latents"])
    assert latents.shape == (7, client.app.state.runtime.models["vae"].latent_dim)
    frames = np.array([b64png(f) for f in body["frames"]], dtype=float)
    assert frames.shape == (7, 28, 28)
    # The frames move from the start garment to the end garment.
    to_end = ((frames - end) ** 2).mean(axis=(1, 2))
    assert to_end[-1] < to_end[0]


async def test_interpolate_endpoints_are_the_reconstructions(client, samples):
    start, end = samples[0][0], samples[0][2]
    morph = await client.post("/interpolate?steps=2", **pair_request(start, end, "pixels"))
    rebuilt = await client.post("/reconstruct", **image_request(np.stack([start, end]), "pixels"))
    frames = [b64png(f) for f in morph.json()["frames"]]
    reconstructions = [np.array(r["pixels"]) for r in rebuilt.json()["reconstructions"]]
    for frame, reconstruction in zip(frames, reconstructions, strict=True):
        assert np.abs(frame.astype(int) - reconstruction).max() <= 1


@pytest.mark.parametrize("style", ["multipart", "base64", "pixels"])
async def test_interpolate_png_strip(client, samples, style):
    response = await client.post(
        "/interpolate?steps=5&scale=2&format=png",
        **pair_request(samples[0][0], samples[0][1], style),
    )
    assert response.status_code == 200, response.text
    assert decode_png(response.content).size == grid_size(5, 1, 2)


async def test_generate_is_deterministic_per_seed(client):
    first = await client.post("/generate?n=5&seed=42")
    again = await client.post("/generate?n=5&seed=42")
    other = await client.post("/generate?n=5&seed=43")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["model"], body["seed"], len(body["images"])) == ("vae", 42, 5)
    assert body["images"] == again.json()["images"]
    assert body["images"] != other.json()["images"]
    assert all(b64png(image).shape == (28, 28) for image in body["images"])


async def test_generate_without_seed_returns_the_seed_it_used(client):
    response = await client.post("/generate?n=2")
    seed = response.json()["seed"]
    replay = await client.post(f"/generate?n=2&seed={seed}")
    assert replay.json()["images"] == response.json()["images"]


@pytest.mark.parametrize(("n", "columns", "rows"), [(1, 1, 1), (16, 4, 4), (10, 4, 3)])
async def test_generate_png_grid(client, n, columns, rows):
    response = await client.post(f"/generate?n={n}&seed=1&scale=3", headers={"Accept": "image/png"})
    assert response.status_code == 200, response.text
    assert decode_png(response.content).size == grid_size(columns, rows, 3)
