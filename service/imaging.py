"""Image in, model input out: any picture Pillow reads becomes one 28x28 float array in [0, 1],
a light garment on a dark background like Fashion-MNIST. And PNG encoding for responses.

The steps: open (header only) and refuse oversized images before any pixel is decoded; decode
the first frame and apply EXIF rotation; flatten transparency onto a background the garment
stands out from (white, or black for a light cut-out); convert to grayscale (16-bit kept at
full precision); invert when the border is light (`invert=auto`) or when told to; scale the
longest side to 28 keeping the aspect ratio; centre it on the background value.
An image that is already 28x28 is not resampled, so dataset images round-trip exactly.
"""

from __future__ import annotations

import base64
import io
import struct
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

from ml.fashion_mnist import IMAGE_SIZE
from service.errors import ImageTooLarge, InvalidImage, InvalidPixels

InvertMode = Literal["auto", "true", "false"]
# The image formats the service decodes. Pillow would otherwise try every plugin it has on each
# upload, which costs time on every request and exposes rarely used decoders to hostile input.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
# Pillow inflates a PNG's text chunks while reading the header, up to 64 MB by default: a 66 KB
# file of zTXt chunks cost a quarter of a second to open. The service reads no metadata, so an
# image with more than 1 MiB of text is refused instead.
PngImagePlugin.MAX_TEXT_MEMORY = 2**20
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_STRIP_OFFSETS, _TIFF_TILE_OFFSETS = 256, 257, 273, 324


def decode(data: bytes, invert: InvertMode, max_pixels: int, what: str = "image") -> np.ndarray:
    """An encoded image file -> 28x28 float32 in [0, 1]. `what` names it in error messages."""
    return to_model_input(open_image(data, max_pixels, what), invert, what)


def open_image(data: bytes, max_pixels: int, what: str = "image") -> Image.Image:
    """Read the header only, refusing unreadable, empty and oversized images."""
    if not data:
        raise InvalidImage(f"{what}: empty file")
    _refuse_tiff_with_too_many_strips(data, what)
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{what}: {exc}") from None
    except Exception:  # Pillow's decoders raise many types on hostile input
        raise InvalidImage(f"{what}: not an image Pillow can read") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{what}: {width}x{height} is {width * height} pixels; the limit is {max_pixels}"
        )
    if width == 0 or height == 0:
        raise InvalidImage(f"{what}: image has no pixels")
    return image


def _refuse_tiff_with_too_many_strips(data: bytes, what: str) -> None:
    """A TIFF lists where each strip (or tile) of pixels starts, and Pillow reads that list and
    decodes strip by strip: 600,000 strips in a 4.8 MB file of a 64x64 image took seven seconds.
    No honest image has more strips than rows, nor more tiles than 16x16 blocks; this reads the
    counts from the first directory (the frame that is decoded) before Pillow does."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None:
        return
    try:
        magic = struct.unpack_from(order + "H", data, 2)[0]
        if magic == 42:  # classic TIFF
            (at,) = struct.unpack_from(order + "I", data, 4)
            (entries,) = struct.unpack_from(order + "H", data, at)
            layout, start, size = order + "HHI4s", at + 2, 12
        elif magic == 43:  # BigTIFF
            (at,) = struct.unpack_from(order + "Q", data, 8)
            (entries,) = struct.unpack_from(order + "Q", data, at)
            layout, start, size = order + "HHQ8s", at + 8, 20
        else:
            return
        fields = {}
        for index in range(min(entries, 4096)):
            tag, kind, count, value = struct.unpack_from(layout, data, start + index * size)
            fields[tag] = (kind, count, value)
    except struct.error:
        return  # truncated: Pillow refuses it
    width, height = (_tiff_number(fields.get(tag), order) for tag in (_TIFF_WIDTH, _TIFF_HEIGHT))
    strips = max(
        fields.get(tag, (0, 0, b""))[1] for tag in (_TIFF_STRIP_OFFSETS, _TIFF_TILE_OFFSETS)
    )
    most = height + width * height // 256 + 1
    if strips > most:
        raise InvalidImage(f"{what}: a {width}x{height} TIFF with {strips} strips or tiles")


def _tiff_number(field: tuple[int, int, bytes] | None, order: str) -> int:
    """A SHORT or LONG tag value stored in the directory entry itself; 0 when absent."""
    if field is None:
        return 0
    kind, _, value = field
    return struct.unpack_from(order + ("H" if kind == 3 else "I"), value)[0]


def to_model_input(image: Image.Image, invert: InvertMode, what: str = "image") -> np.ndarray:
    """Decode an opened image's pixels -> 28x28 float32 in [0, 1]."""
    try:
        image.load()  # decodes the first frame
        if image.format != "PNG" or "exif" in image.info:  # a PNG orients only by an eXIf chunk
            ImageOps.exif_transpose(image, in_place=True)
    except Exception:
        raise InvalidImage(f"{what}: truncated or corrupt {image.format or ''} image") from None
    try:
        gray = _grayscale(image)
    except (ValueError, OSError):  # e.g. "conversion from LAB to RGB not supported"
        raise InvalidImage(f"{what}: {image.mode} images cannot be read as grayscale") from None
    if not np.isfinite(gray).all():  # float images can hold NaN or infinity
        raise InvalidImage(f"{what}: has pixels that are not finite numbers")
    return prepare(gray, invert)


def from_pixels(pixels: object, invert: InvertMode, what: str = "pixels") -> np.ndarray:
    """A 28x28 nested list of ints 0-255 (whole floats such as 73.0 count as ints) or floats 0-1
    -> 28x28 float32 in [0, 1]."""
    try:
        array = np.asarray(pixels)
    except ValueError:  # ragged nesting
        raise InvalidPixels(f"{what}: must be a 28x28 array of numbers") from None
    if array.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise InvalidPixels(f"{what}: shape is {list(array.shape)}, expected [28, 28]")
    whole = array.dtype.kind == "f" and np.isfinite(array).all() and array.max() > 1
    if whole and (array == np.round(array)).all():
        # 73.0 is the integer 73 to JSON, and what tolist() of a float array writes
        array = array.astype(np.int64)
    if array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise InvalidPixels(f"{what}: integer pixels must be in 0-255")
        gray = array.astype(np.float32) / 255.0
    elif array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise InvalidPixels(f"{what}: float pixels must be in 0-1 (or send integers 0-255)")
        gray = array.astype(np.float32)
    else:
        raise InvalidPixels(f"{what}: pixels must be numbers")
    return prepare(gray, invert)


def prepare(gray: np.ndarray, invert: InvertMode) -> np.ndarray:
    """Grayscale float H x W in [0, 1] -> inverted as asked, fitted into 28x28."""
    background = _median(_border(gray))
    if invert == "true" or (invert == "auto" and background > 0.5):
        gray, background = 1.0 - gray, 1.0 - background
    height, width = gray.shape
    if (height, width) == (IMAGE_SIZE, IMAGE_SIZE):
        return gray.astype(np.float32)
    scale = IMAGE_SIZE / max(height, width)
    new_height, new_width = max(1, round(height * scale)), max(1, round(width * scale))
    resized = Image.fromarray(gray.astype(np.float32)).resize(
        (new_width, new_height), Image.Resampling.LANCZOS
    )
    canvas = np.full((IMAGE_SIZE, IMAGE_SIZE), background, dtype=np.float32)
    top, left = (IMAGE_SIZE - new_height) // 2, (IMAGE_SIZE - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = np.asarray(resized)
    return np.clip(canvas, 0.0, 1.0)


def _border(array: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of a 2-D array, as one 1-D array."""
    return np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])


def _median(values: np.ndarray) -> float:
    """np.median without its overhead, which dominates for the ~100 values of a border."""
    low, high = (len(values) - 1) // 2, len(values) // 2  # the same index when the count is odd
    ordered = np.partition(values, [low, high])
    return (float(ordered[low]) + float(ordered[high])) / 2


def _grayscale(image: Image.Image) -> np.ndarray:
    """Float H x W in [0, 1]; transparency is flattened first (`_flatten`)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image, dtype=np.float32) / 65535.0
    if image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float32)
        if not np.isfinite(array).all():
            return array  # refused by the caller; scaling it would only warn
        peak = array.max()
        scale = 1.0 if image.mode == "F" and peak <= 1 else 65535.0 if peak > 255 else 255.0
        return np.clip(array / scale, 0.0, 1.0)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        image = _flatten(image)
    if image.mode != "L":
        image = image.convert("L")
    return np.asarray(image, dtype=np.float32) / 255.0


def _flatten(image: Image.Image) -> Image.Image:
    """An image with transparency -> opaque RGBA, composited onto a background that the
    garment stands out from.

    An image whose border is mostly opaque has a background of its own, and goes onto white as
    it always has. One whose border is mostly transparent is a cut-out: everything visible is
    the garment, and it goes onto black when its visible pixels (weighted by their opacity) are
    light on average, onto white when they are dark. Onto white alone, a light garment on a
    transparent background became a blank image; now either kind ends up, after `invert=auto`,
    a light garment on a dark background like Fashion-MNIST."""
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32)
    background = (255, 255, 255, 255)
    if _median(_border(alpha)) < 127.5 and alpha.any():
        gray = np.asarray(rgba.convert("L"), dtype=np.float32)  # RGB luma; alpha ignored
        if float((alpha * gray).sum() / alpha.sum()) > 127.5:
            background = (0, 0, 0, 255)
    return Image.alpha_composite(Image.new("RGBA", rgba.size, background), rgba)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (any shape) -> uint8 0-255, rounded."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """A uint8 H x W (grayscale) or H x W x 3 (RGB) array as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_base64(pixels: np.ndarray) -> str:
    return base64.b64encode(png_bytes(pixels)).decode("ascii")


def upscale(pixels: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement of a 2-D array by an integer factor."""
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)
