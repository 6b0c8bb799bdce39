"""Reading the images of a request, in any of the accepted styles, into one N x 28 x 28 array.

Accepted: `multipart/form-data` file fields; a raw body with an `image/*` (or octet-stream)
content type; `application/json` with base64 image files or pixel arrays. Parsing JSON and
decoding images run in the decoder's threads (`service.decoding`), except where the work is
small and bounded: a JSON body of at most `INLINE_BYTES` is parsed, and PNG files of at most
`INLINE_BYTES` in all, declaring at most `INLINE_PIXELS` in their headers (read before any pixel
is decoded) and holding no compressed ancillary chunk, are decoded on the event loop, where a
hand-off to a thread would cost more than the work: a 28 x 28 PNG decodes in about 50 us. Only
while the decoder is idle, though: under load, one hand-off carries many requests' decodes, and
decoding them all on the loop instead cost 11% of the throughput at 64 connections. What
else a PNG could inflate is bounded by its declared pixels; a 1 KB PNG with a compressed text
chunk took 3 ms to open, so such files, every other format and every larger image still go to
the threads.

Limits, each refused with 413 before the work it would cost: the body size (enforced while it
streams in, by `service.middleware.BodyLimits`); images per request; pixels per image and per
request, from the image headers, before any pixel is decoded; and the values a JSON body may
hold, counted before it is parsed.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal, NoReturn

import numpy as np
from fastapi import Request
from PIL import Image

from service import imaging, multipart
from service.decoding import Decoder
from service.errors import (
    ImageTooLarge,
    InvalidImage,
    InvalidJSON,
    NoImages,
    TooManyImages,
    UnsupportedMediaType,
)
from service.imaging import InvertMode
from service.jsonbody import json_object
from service.settings import Settings

# A JSON body's separators per image it may carry: a 28x28 pixel array has 28 * 27 + 27 commas,
# and a few more separate the keys. Counting them is cheap; parsing 10 MiB of numbers is not.
JSON_COMMAS_PER_IMAGE = 28 * 28 + 16
INLINE_BYTES = 16 * 1024
INLINE_PIXELS = 4 * 64 * 64
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COMPRESSED_PNG_CHUNKS = (b"zTXt", b"iTXt", b"iCCP")  # what PNG inflates besides the pixels

HOW_TO_SEND = (
    "send multipart `file` fields, a raw image body with an image/* content type, "
    'or JSON {"images": [base64, ...]} / {"pixels": [28x28 array, ...]}'
)
HOW_TO_SEND_PAIR = (
    "send two images: multipart fields `start` and `end`, "
    'or JSON {"start": ..., "end": ...} with base64 strings or 28x28 pixel arrays'
)


@dataclass(frozen=True)
class _Item:
    """One image as received, not yet decoded; `what` names it in error messages."""

    what: str
    kind: Literal["file", "base64", "pixels"]
    value: object


async def read_images(
    request: Request, invert: InvertMode, settings: Settings, decoder: Decoder
) -> np.ndarray:
    """All images of the request (1 to max_images_per_request of them), as N x 28 x 28."""
    media = _media_type(request)
    if media == "multipart/form-data":
        items = await _multipart_items(request, settings, names=None)
    elif media == "application/json":
        return await _decode_json(await request.body(), invert, settings, decoder, None)
    elif media.startswith("image/") or media == "application/octet-stream":
        body = await request.body()
        if not body:
            raise NoImages(f"empty body; {HOW_TO_SEND}")
        items = [_Item("image", "file", body)]
    else:
        await _reject_media_type(request, media, HOW_TO_SEND)
    return await _decode(items, invert, settings, decoder)


async def read_pair(
    request: Request, invert: InvertMode, settings: Settings, decoder: Decoder
) -> np.ndarray:
    """The `start` and `end` images of the request, as 2 x 28 x 28."""
    media = _media_type(request)
    names = ("start", "end")
    if media == "multipart/form-data":
        items = await _multipart_items(request, settings, names)
        return await _decode(items, invert, settings, decoder)
    if media == "application/json":
        return await _decode_json(await request.body(), invert, settings, decoder, names)
    await _reject_media_type(request, media, HOW_TO_SEND_PAIR)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _reject_media_type(request: Request, media: str, how: str) -> NoReturn:
    if not media and not await request.body():
        raise NoImages(f"empty body; {how}")
    raise UnsupportedMediaType(f"unsupported content type {media or '(none)'!r}; {how}")


async def decode_image_files(
    files: list[bytes], invert: InvertMode, settings: Settings, decoder: Decoder
) -> np.ndarray:
    """Encoded image files (as other protocols carry them) -> N x 28 x 28, with the limits and
    the decoding of uploads."""
    if not files:
        raise NoImages(f"no images; {HOW_TO_SEND}")
    _check_count(len(files), settings)
    items = [_Item(f"image {i + 1}", "file", data) for i, data in enumerate(files)]
    return await _decode(items, invert, settings, decoder)


async def _multipart_items(
    request: Request, settings: Settings, names: tuple[str, ...] | None
) -> list[_Item]:
    """File fields: every `file` field, or exactly one field per name in `names`."""
    limit = settings.max_images_per_request
    parts = await multipart.read_parts(request, max_files=limit, max_parts=limit + 16)
    if names is None:
        chosen = [part for part in parts if part.name == "file"]
        if not chosen:
            raise NoImages(f"no `file` fields in the multipart body; {HOW_TO_SEND}")
        labelled = [(f"file {i + 1}", part) for i, part in enumerate(chosen)]
    else:
        by_name = {part.name: part for part in parts}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise NoImages(f"missing field(s) {', '.join(missing)}; {HOW_TO_SEND_PAIR}")
        labelled = [(name, by_name[name]) for name in names]
    _check_count(len(labelled), settings)
    for what, part in labelled:
        if not part.is_file:
            raise InvalidImage(f"{what}: expected a file upload, got a text field")
    return [_Item(what, "file", bytes(part.data)) for what, part in labelled]


async def _decode(
    items: list[_Item], invert: InvertMode, settings: Settings, decoder: Decoder
) -> np.ndarray:
    """The items' images as N x 28 x 28: on the event loop when they are small plain PNGs or
    pixel arrays and the decoder has nothing else to do, else in a decoder thread."""
    sizes = (len(item.value) for item in items if isinstance(item.value, str | bytes))
    if not decoder.idle or sum(sizes) > INLINE_BYTES:
        return await decoder.run(_decode_items, items, invert, settings)
    items = [_Item(i.what, "file", _base64(i)) if i.kind == "base64" else i for i in items]
    if not all(_plain_png(item.value) for item in items if item.kind == "file"):
        return await decoder.run(_decode_items, items, invert, settings)
    opened = _open_all(items, invert, settings)
    declared = sum(value.width * value.height for value in opened if isinstance(value, Image.Image))
    if declared > INLINE_PIXELS:
        return await decoder.run(_to_model_input, opened, items, invert)
    return _to_model_input(opened, items, invert)


def _plain_png(data: object) -> bool:
    """A PNG file that holds no compressed ancillary chunk."""
    return (
        isinstance(data, bytes)
        and data.startswith(PNG_SIGNATURE)
        and not any(kind in data for kind in COMPRESSED_PNG_CHUNKS)
    )


def _decode_items(items: list[_Item], invert: InvertMode, settings: Settings) -> np.ndarray:
    return _to_model_input(_open_all(items, invert, settings), items, invert)


def _open_all(
    items: list[_Item], invert: InvertMode, settings: Settings
) -> list[Image.Image | np.ndarray]:
    """Every image's header (pixel arrays are taken whole), so that the request's pixel budget
    is checked before any pixel is decoded."""
    opened: list[Image.Image | np.ndarray] = []
    pixels = 0
    for item in items:
        if item.kind == "pixels":
            opened.append(imaging.from_pixels(item.value, invert, item.what))
            continue
        data = item.value if item.kind == "file" else _base64(item)
        assert isinstance(data, bytes)
        image = imaging.open_image(data, settings.max_image_pixels, item.what)
        pixels += image.width * image.height
        if pixels > settings.max_request_pixels:
            raise ImageTooLarge(
                f"the images of this request have more than {settings.max_request_pixels} "
                "pixels in all; send fewer or smaller images per request"
            )
        opened.append(image)
    return opened


def _to_model_input(
    opened: list[Image.Image | np.ndarray], items: list[_Item], invert: InvertMode
) -> np.ndarray:
    """The pixels of images whose headers `_open_all` read."""
    return np.stack(
        [
            value if isinstance(value, np.ndarray) else imaging.to_model_input(value, invert, what)
            for value, what in zip(opened, (item.what for item in items), strict=True)
        ]
    )


async def _decode_json(
    body: bytes,
    invert: InvertMode,
    settings: Settings,
    decoder: Decoder,
    names: tuple[str, ...] | None,
) -> np.ndarray:
    """A JSON body's images: parsed on the event loop when the body is small."""
    if not decoder.idle or len(body) > INLINE_BYTES:
        return await decoder.run(_parse_and_decode_json, body, invert, settings, names)
    return await _decode(_json_items(body, settings, names), invert, settings, decoder)


def _parse_and_decode_json(
    body: bytes, invert: InvertMode, settings: Settings, names: tuple[str, ...] | None
) -> np.ndarray:
    return _decode_items(_json_items(body, settings, names), invert, settings)


def _json_items(body: bytes, settings: Settings, names: tuple[str, ...] | None) -> list[_Item]:
    if not body:
        raise NoImages(f"empty body; {HOW_TO_SEND}")
    most = settings.max_images_per_request * JSON_COMMAS_PER_IMAGE
    if body.count(b",") > most:
        raise TooManyImages(
            f"the JSON body holds more values than {settings.max_images_per_request} 28x28 "
            "pixel arrays, the most a request may carry; send fewer images per request"
        )
    document = json_object(body, "body")
    return _named_json_items(document, names) if names else _listed_json_items(document, settings)


def _listed_json_items(document: dict, settings: Settings) -> list[_Item]:
    keys = [key for key in ("images", "pixels") if key in document]
    if len(keys) != 1:
        raise InvalidJSON(f'JSON body needs exactly one of "images" or "pixels"; {HOW_TO_SEND}')
    key = keys[0]
    values = document[key]
    if key == "pixels" and _is_rows(values):
        values = [values]  # one bare 28x28 array rather than a list of them
    if not isinstance(values, list):
        raise InvalidJSON(f'"{key}" must be a list')
    if not values:
        raise NoImages(f'"{key}" is empty')
    _check_count(len(values), settings)
    if key == "images":
        return [_Item(f"image {i + 1}", "base64", value) for i, value in enumerate(values)]
    return [_Item(f"pixels {i + 1}", "pixels", value) for i, value in enumerate(values)]


def _is_rows(value: object) -> bool:
    """A list of lists of numbers, i.e. one image's rows (not a list of images)."""
    return (
        isinstance(value, list)
        and bool(value)
        and isinstance(value[0], list)
        and bool(value[0])
        and not isinstance(value[0][0], list)
    )


def _named_json_items(document: dict, names: tuple[str, ...]) -> list[_Item]:
    missing = [name for name in names if name not in document]
    if missing:
        raise NoImages(f"missing key(s) {', '.join(missing)}; {HOW_TO_SEND_PAIR}")
    return [
        _Item(name, "base64" if isinstance(document[name], str) else "pixels", document[name])
        for name in names
    ]


def _check_count(count: int, settings: Settings) -> None:
    if count > settings.max_images_per_request:
        raise TooManyImages(
            f"{count} images in one request; the limit is {settings.max_images_per_request}"
        )


def _base64(item: _Item) -> bytes:
    if not isinstance(item.value, str):
        raise InvalidImage(f"{item.what}: expected a base64 string")
    text = item.value
    if text.startswith("data:") and "," in text:  # a data URL
        text = text.split(",", 1)[1]
    try:
        # Line breaks are allowed: the `base64` tool wraps its output at 76 columns.
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage(f"{item.what}: not valid base64") from None
