"""`multipart/form-data` bodies read straight into memory, part by part as the body streams in.

Starlette's form parser is built for uploads of any size: every file part gets a spooled
temporary file and an `UploadFile`, and every chunk is written to it through an await. Here the
upload limit (`BodyLimits`) already bounds the whole body, so the parts are plain bytes, and
the parse costs a third of what `request.form()` does, which matters when the request is one
small image. The byte-level parsing is python-multipart's, as in Starlette.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import InvalidImage, TooManyImages

# A part without a filename is still a file when its Content-Type says so: RFC 7578 makes the
# filename optional, and some clients leave it out.
FILE_MEDIA_TYPES = (b"image/", b"application/octet-stream")


@dataclass
class Part:
    name: str
    is_file: bool  # a filename in its Content-Disposition, or an image / octet-stream type
    data: bytearray = field(default_factory=bytearray)


class _Collector:
    """python-multipart's callbacks, collecting the parts; refuses too many as they arrive."""

    def __init__(self, max_files: int, max_parts: int) -> None:
        self.max_files, self.max_parts = max_files, max_parts
        self.parts: list[Part] = []
        self.files = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._content_type = b""

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._content_type = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        name = self._header_name.lower()
        if name == b"content-disposition":
            self._disposition = bytes(self._header_value)
        elif name == b"content-type":
            self._content_type = bytes(self._header_value).strip().lower()
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise InvalidImage('malformed multipart body: a part has no Content-Disposition "name"')
        is_file = b"filename" in options or self._content_type.startswith(FILE_MEDIA_TYPES)
        self.files += is_file
        if self.files > self.max_files:
            raise TooManyImages(f"more than {self.max_files} images in one request")
        if len(self.parts) >= self.max_parts:
            raise InvalidImage(f"malformed multipart body: more than {self.max_parts} parts")
        self.parts.append(Part(options[b"name"].decode("utf-8", "replace"), is_file))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].data += data[start:end]


async def read_parts(request: Request, max_files: int, max_parts: int) -> list[Part]:
    """Every part of the body, in order; at most `max_files` files and `max_parts` parts."""
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidImage("malformed multipart body: the content type has no boundary")
    collector = _Collector(max_files, max_parts)
    callbacks = {
        name: getattr(collector, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
        )
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidImage(f"malformed multipart body: {exc}") from None
    return collector.parts
