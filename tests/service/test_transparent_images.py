"""Garments cut out onto a transparent background, as product photos often are. Flattened onto
white, a light cut-out became a blank image after inversion and was classified like an empty
input; it now goes onto black, a dark one onto white, and both reach the model as a light
garment on a dark background."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service import imaging
from tests.service.support import png

pytestmark = pytest.mark.anyio

LIMIT = 10_000_000


# The first test image of these classes (trouser, dress, sandal, sneaker, bag, ankle boot):
# fixed picks that both models classify correctly as they are and as `opaque_cut_out`s.
OPAQUE_CLASSES = (1, 3, 5, 7, 8, 9)


def rgba_png(grey: np.ndarray, alpha: np.ndarray, scale: int) -> bytes:
    rgba = np.empty((*grey.shape, 4), np.uint8)
    rgba[..., :3] = grey[..., None]
    rgba[..., 3] = alpha
    return png(rgba.repeat(scale, axis=0).repeat(scale, axis=1))


def soft_cut_out(garment: np.ndarray, light: bool, scale: int = 1) -> bytes:
    """A Fashion-MNIST image (light on black) as a white (or black) garment whose opacity is
    its brightness: transparent background, soft edges, the shading in the alpha channel."""
    return rgba_png(np.full_like(garment, 255 if light else 0), garment, scale)


def opaque_cut_out(garment: np.ndarray, light: bool, scale: int = 1) -> bytes:
    """A Fashion-MNIST image as an opaque garment, lightened (128-255) or darkened (0-127),
    on a transparent background. The hidden colour of the transparent pixels is white, as
    image editors often leave it, so only the alpha channel tells what is background."""
    visible = garment > 0
    shade = 128 + garment // 2 if light else (255 - garment) // 2
    return rgba_png(np.where(visible, shade, 255).astype(np.uint8), visible * 255, scale)


def as_files(images: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]


LIGHT_AND_DARK = pytest.mark.parametrize("light", [True, False], ids=["light", "dark"])


@LIGHT_AND_DARK
def test_a_soft_cut_out_reaches_the_model_as_the_garment(samples, light):
    images, _ = samples
    for garment in images:
        decoded = imaging.decode(soft_cut_out(garment, light), "auto", LIMIT)
        assert decoded.max() > 0.5, "the garment vanished"
        assert np.array_equal(imaging.to_uint8(decoded), garment)


@LIGHT_AND_DARK
def test_an_opaque_cut_out_is_a_light_garment_on_black(test_split, light):
    images, labels = test_split
    garment = images[int(np.flatnonzero(labels == 7)[0])]
    decoded = imaging.decode(opaque_cut_out(garment, light), "auto", LIMIT)
    visible = garment > 0
    assert not decoded[~visible].any(), "the background is not black"
    assert decoded[visible].min() >= 127 / 255, "the garment is not light"
    shade = (128 + garment // 2) if light else 255 - (255 - garment) // 2
    assert np.array_equal(imaging.to_uint8(decoded)[visible], shade[visible])


async def classes(client, files) -> list[int]:
    response = await client.post("/classify", files=files)
    assert response.status_code == 200, response.text
    return [prediction["class_id"] for prediction in response.json()["predictions"]]


@LIGHT_AND_DARK
@pytest.mark.parametrize("scale", [1, 3])
async def test_cut_outs_are_classified_as_their_garment(client, samples, test_split, light, scale):
    images, labels = samples
    assert await classes(client, as_files([png(i) for i in images])) == labels.tolist()
    soft = [soft_cut_out(image, light, scale) for image in images]
    assert await classes(client, as_files(soft)) == labels.tolist()

    everything, all_labels = test_split
    picks = [int(np.flatnonzero(all_labels == c)[0]) for c in OPAQUE_CLASSES]
    assert await classes(client, as_files([png(everything[i]) for i in picks])) == list(
        OPAQUE_CLASSES
    )
    opaque = [opaque_cut_out(everything[i], light, scale) for i in picks]
    assert await classes(client, as_files(opaque)) == list(OPAQUE_CLASSES)


def test_a_semi_transparent_light_cut_out_goes_onto_black():
    """Soft edges: the visible pixels' opacity weights their brightness."""
    garment = np.zeros((28, 28), np.uint8)
    garment[6:22, 9:19] = 230
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = 230
    rgba[..., 3] = np.where(garment > 0, 200, 0)  # 78% opaque garment, transparent elsewhere
    decoded = imaging.decode(png(rgba), "auto", LIMIT)
    assert decoded[0, 0] == 0.0
    assert decoded[14, 14] == pytest.approx(230 * 200 / 255 / 255, abs=1 / 255)


def test_an_opaque_border_keeps_flattening_onto_white():
    """An image with a background of its own: its transparent holes go onto white, as always,
    even when the picture is light (a mostly light picture is then inverted as a whole)."""
    rgba = np.full((28, 28, 4), 255, np.uint8)
    rgba[..., :3] = 200  # light grey opaque background
    rgba[10:18, 10:18, 3] = 0  # a transparent hole
    rgba[5:8, 5:8, :3] = 20  # a dark mark
    decoded = imaging.decode(png(rgba), "false", LIMIT)
    flattened = Image.alpha_composite(
        Image.new("RGBA", (28, 28), (255, 255, 255, 255)), Image.fromarray(rgba)
    ).convert("L")
    assert np.array_equal(decoded, np.asarray(flattened) / np.float32(255))
    assert decoded[12, 12] == 1.0


def test_a_fully_transparent_image_stays_blank():
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = 255
    assert imaging.decode(png(rgba), "auto", LIMIT).max() == 0.0
