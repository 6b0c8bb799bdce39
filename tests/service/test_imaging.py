"""Image decoding and preprocessing: modes, formats, orientation, fitting, inversion, limits."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from service import imaging
from service.errors import ImageTooLarge, InvalidImage, InvalidPixels
from tests.service.support import png

LIMIT = 10_000_000


def garment(height: int = 28, width: int = 28) -> np.ndarray:
    """A light rectangle on a dark background, uint8."""
    image = np.zeros((height, width), np.uint8)
    image[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = 220
    return image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_28x28_dataset_image_is_taken_exactly():
    pixels = np.random.default_rng(0).integers(0, 60, (28, 28), dtype=np.uint8)  # dark, noisy
    result = imaging.decode(png(pixels), "auto", LIMIT)
    assert result.dtype == np.float32
    assert np.array_equal(result, pixels / np.float32(255))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"])
def test_every_common_format(fmt):
    original = garment(56, 56)
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    result = imaging.decode(encode(Image.fromarray(original), fmt, **options), "auto", LIMIT)
    assert result.shape == (28, 28)
    expected = np.asarray(Image.fromarray(original).resize((28, 28))) / 255
    assert np.abs(result - expected).mean() < 0.03


def test_palette_image():
    image = Image.fromarray(garment()).convert("P")
    assert np.allclose(imaging.decode(encode(image, "PNG"), "auto", LIMIT), garment() / 255)


def test_transparency_is_flattened_onto_white_then_inverted():
    """A black garment drawn on a transparent canvas is a light garment on dark."""
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = (garment() > 0) * 255  # opaque black garment, transparent elsewhere
    result = imaging.decode(png(rgba), "auto", LIMIT)
    assert np.allclose(result, (garment() > 0).astype(np.float32))


def test_grayscale_with_alpha():
    la = Image.fromarray(np.stack([255 - garment(), np.full((28, 28), 255, np.uint8)], -1), "LA")
    assert np.allclose(imaging.decode(encode(la, "PNG"), "auto", LIMIT), garment() / 255)


def test_sixteen_bit_keeps_precision():
    deep = garment().astype(np.uint16) * 257 + 100  # 16-bit values, not multiples of 256
    image = Image.fromarray(deep)
    assert image.mode.startswith("I;16")
    result = imaging.decode(encode(image, "PNG"), "false", LIMIT)
    assert np.allclose(result, deep / 65535, atol=1e-6)


def test_exif_rotation_is_applied():
    tall = garment(40, 20)  # portrait garment
    image = Image.fromarray(np.ascontiguousarray(np.rot90(tall)))  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation: rotate 90 degrees clockwise to display
    data = encode(image, "JPEG", exif=exif, quality=95)
    rotated = imaging.decode(data, "false", LIMIT)
    upright = imaging.decode(png(tall), "false", LIMIT)
    assert np.abs(rotated - upright).mean() < 0.03


def test_aspect_ratio_is_kept_and_centred():
    wide = np.full((10, 40), 200, np.uint8)  # a light bar on nothing: all garment
    wide[0, :] = wide[-1, :] = 0  # dark border so that it is not inverted
    wide[:, 0] = wide[:, -1] = 0
    result = imaging.decode(png(wide), "auto", LIMIT)
    rows_with_content = np.flatnonzero(result.max(axis=1) > 0.3)
    assert 5 <= len(rows_with_content) <= 8  # 10 rows scaled by 28/40
    assert abs(rows_with_content.mean() - 13.5) <= 1  # vertically centred
    assert (result.max(axis=0) > 0.3).sum() >= 25  # the full width used


@pytest.mark.parametrize(
    ("invert", "light_background", "inverted"),
    [("auto", True, True), ("auto", False, False), ("true", False, True), ("false", True, False)],
)
def test_inversion(invert, light_background, inverted):
    image = 255 - garment() if light_background else garment()
    result = imaging.decode(png(image), invert, LIMIT)
    expected = (255 - image if inverted else image) / 255
    assert np.allclose(result, expected)


def test_pixel_arrays():
    ints = garment().tolist()
    floats = (garment() / 255).tolist()
    assert np.allclose(imaging.from_pixels(ints, "auto"), garment() / 255)
    assert np.allclose(imaging.from_pixels(floats, "auto"), garment() / 255)
    assert np.allclose(imaging.from_pixels(ints, "true"), 1 - garment() / 255)


@pytest.mark.parametrize(
    "pixels",
    [
        [[0] * 28] * 27,
        [[0] * 28] * 28 + [[0] * 2],
        [[256] * 28] * 28,
        [[-0.5] * 28] * 28,
        [[float("nan")] * 28] * 28,
        [[True] * 28] * 28,
        "text",
    ],
)
def test_bad_pixel_arrays(pixels):
    with pytest.raises(InvalidPixels):
        imaging.from_pixels(pixels, "auto")


@pytest.mark.parametrize("data", [b"", b"not an image", png(garment())[:50]])
def test_undecodable(data):
    with pytest.raises(InvalidImage):
        imaging.decode(data, "auto", LIMIT)


def test_size_limit_is_checked_before_decoding(monkeypatch):
    data = png(garment(200, 200))
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    with pytest.raises(ImageTooLarge):
        imaging.decode(data, "auto", max_pixels=200 * 200 - 1)
    assert decoded == []


def test_png_helpers_round_trip():
    pixels = garment()
    assert np.array_equal(imaging.to_uint8(pixels / 255), pixels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(imaging.png_bytes(pixels)))), pixels)
    assert imaging.upscale(pixels, 3).shape == (84, 84)
    assert imaging.upscale(pixels, 3)[3 * 10 + 2, 3 * 14 + 1] == pixels[10, 14]


@pytest.mark.parametrize("fmt", ["TGA", "ICO", "PCX"])
def test_formats_outside_the_accepted_list_are_refused(fmt):
    """Pillow reads these, but the service decodes only `imaging.FORMATS`."""
    assert fmt not in imaging.FORMATS
    with pytest.raises(InvalidImage):
        imaging.decode(png(np.zeros((28, 28), np.uint8), format=fmt), "auto", 4096 * 4096)


def test_exif_rotation_of_a_png_is_applied():
    """PNGs skip the EXIF look-up unless they carry an eXIf chunk; then it is honoured."""
    image = Image.new("L", (20, 10), 0)
    image.paste(255, (0, 0, 10, 10))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif.tobytes())
    upright = imaging.decode(buffer.getvalue(), "false", 4096 * 4096)
    assert upright[:14].mean() > upright[14:].mean()  # the white half is now on top
