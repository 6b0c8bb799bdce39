"""Python client for the model service: `Client` (blocking) and `AsyncClient` (asyncio).

    from fmnist_client import Client

    with Client("http://127.0.0.1:8000") as client:
        result = client.classify(["examples/shirt.png", "examples/bag.png"], top_k=3)
        print([p.label for p in result.predictions])
        grid = client.generate_png(n=16, seed=1)  # PNG file bytes

Images are given as file paths, encoded image files (bytes), PIL images or numpy arrays (these
two need the `images` extra: Pillow and numpy): one of them, or a list. A 2-D array is one
grayscale image, H x W x 3 (or 4) one colour image and N x H x W a batch of N grayscale images;
arrays are uint8 0-255 or floats 0-1 (rounded to 8 bits). Everything is uploaded as multipart
files; PIL images and arrays are first encoded as lossless PNG, so any size works and the service
prepares them like any other upload.

JSON answers come back as the service's own response models (`fmnist_client.schemas`); the
`*_png` methods return the service's PNG rendering as file bytes. A parameter left as None
takes the service's default. Every failure (an error answer, a timeout, no connection) raises
`ServiceError`. A 503 (overloaded or still starting) is retried `retries` times, after the
number of seconds in its `Retry-After` header (1 s without one, at most 30 s).
"""

from __future__ import annotations

import inspect
import io
import mimetypes
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Self,
    TypeAlias,
    TypedDict,
    TypeVar,
    Unpack,
    overload,
)
from urllib.parse import quote

import anyio
import httpx
from pydantic import ValidationError

from fmnist_client.schemas import (
    ClassifyResponse,
    EmbedResponse,
    ErrorResponse,
    GenerateResponse,
    Health,
    InterpolateResponse,
    ModelInfo,
    ModelList,
    Readiness,
    ReconstructResponse,
)

__all__ = ["AsyncClient", "Client", "ImageInput", "Images", "Options", "ServiceError"]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_RETRY_WAIT_S = 1
MAX_RETRY_WAIT_S = 30

if TYPE_CHECKING:  # Pillow and numpy are optional (the `images` extra)
    import numpy as np
    from PIL import Image

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes | Image.Image | np.ndarray"
Images: TypeAlias = "ImageInput | Sequence[ImageInput]"
Invert = Literal["auto", "true", "false"]
Method = Literal["linear", "slerp"]
Ood = Literal["flag", "refuse"]
AuthScheme = Literal["bearer", "x-api-key"]

P = ParamSpec("P")
T = TypeVar("T")
_File = tuple[str, tuple[str, bytes, str]]  # (field, (file name, content, content type))


class ServiceError(Exception):
    """A request that did not succeed.

    `status` is the HTTP status, or None when no answer came. `code` is the service's error
    code (`invalid_image`, `unknown_model`, `invalid_parameter`, `overloaded`, ...), or
    `connection_error` / `timeout` when no answer came, or `http_<status>` for an answer not
    in the service's error shape (e.g. from a proxy in front of it).
    """

    def __init__(self, status: int | None, code: str, message: str) -> None:
        where = "" if status is None else f" (HTTP {status})"
        super().__init__(f"{code}{where}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Options(TypedDict, total=False):
    """Keyword options of both clients."""

    api_key: str | None  # default: $FMNIST_API_KEY
    auth_scheme: AuthScheme  # how the key is sent: `Authorization: Bearer` or `X-API-Key`
    timeout: float  # seconds, for connecting and for each read
    retries: int  # extra attempts after a 503


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One request and how to read its successful answer (input files are already read)."""

    method: Literal["GET", "POST"]
    path: str
    parse: Callable[[bytes], T]
    params: dict[str, str | int] = field(default_factory=dict)
    files: list[_File] | None = None


class _endpoint(Generic[P, T]):
    """Turns a request builder, written once, into a method of both clients.

    On a `Client` the method sends the built `_Call` and returns the parsed result; on an
    `AsyncClient` it returns an awaitable of it. Each client supplies `_send(call)`.
    """

    def __init__(self, build: Callable[Concatenate[Any, P], _Call[T]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        # What help() shows: the builder's parameters, less `self`.
        parameters = list(inspect.signature(build).parameters.values())[1:]
        self._signature = inspect.Signature(parameters)

    @overload
    def __get__(self, client: None, owner: type) -> Self: ...
    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, client: Any, owner: type) -> Any:
        if client is None:
            return self

        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return client._send(self._build(client, *args, **kwargs))

        method.__name__ = self._build.__name__
        method.__doc__ = self._build.__doc__
        method.__signature__ = self._signature  # type: ignore[attr-defined]
        return method


class _Endpoints:
    """What both clients share: configuration, one request builder per endpoint, retry
    timing and response parsing. Subclasses only move the bytes."""

    def __init__(self, url: str | None, **options: Unpack[Options]) -> None:
        self.url = (url or os.environ.get("FMNIST_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = options.get("timeout", 30.0)
        self.retries = options.get("retries", 2)
        api_key = options.get("api_key") or os.environ.get("FMNIST_API_KEY")
        self._headers: dict[str, str] = {}
        if api_key and options.get("auth_scheme", "bearer") == "bearer":
            self._headers["Authorization"] = f"Bearer {api_key}"
        elif api_key:
            self._headers["X-API-Key"] = api_key

    def _http_options(self) -> dict[str, Any]:
        return {"base_url": self.url, "headers": self._headers, "timeout": self.timeout}

    @_endpoint
    def classify(
        self,
        images: Images,
        *,
        model: str | None = None,
        top_k: int | None = None,
        calibrated: bool | None = None,
        ood: Ood | None = None,
        invert: Invert | None = None,
    ) -> _Call[ClassifyResponse]:
        """Class probabilities for each image (`model`: mynet or lenet), calibrated unless
        `calibrated=False`, each with its out-of-distribution score and flag; `ood="refuse"`
        raises `ServiceError` (422, `out_of_distribution`) naming the flagged images instead."""
        parse = ClassifyResponse.model_validate_json
        params = {"model": model, "top_k": top_k, "calibrated": calibrated, "ood": ood}
        return _upload("/classify", images, parse, invert=invert, **params)

    @_endpoint
    def classify_png(
        self,
        images: Images,
        *,
        model: str | None = None,
        calibrated: bool | None = None,
        invert: Invert | None = None,
    ) -> _Call[bytes]:
        """A PNG: each input beside a bar chart of its class probabilities."""
        return _upload(
            "/classify",
            images,
            bytes,
            format="png",
            model=model,
            calibrated=calibrated,
            invert=invert,
        )

    @_endpoint
    def embed(
        self,
        images: Images,
        *,
        model: str | None = None,
        layer: str | None = None,
        invert: Invert | None = None,
    ) -> _Call[EmbedResponse]:
        """Feature vectors and their place on the training-set PCA map (`model`: mynet, lenet
        or vae; `layer`: penultimate or logits for the classifiers)."""
        parse = EmbedResponse.model_validate_json
        return _upload("/embed", images, parse, model=model, layer=layer, invert=invert)

    @_endpoint
    def embed_png(
        self,
        images: Images,
        *,
        model: str | None = None,
        layer: str | None = None,
        invert: Invert | None = None,
    ) -> _Call[bytes]:
        """A PNG: the training-set PCA map with the inputs placed on it."""
        return _upload(
            "/embed", images, bytes, format="png", model=model, layer=layer, invert=invert
        )

    @_endpoint
    def reconstruct(
        self, images: Images, *, invert: Invert | None = None
    ) -> _Call[ReconstructResponse]:
        """The VAE's reconstruction of each image and its error."""
        parse = ReconstructResponse.model_validate_json
        return _upload("/reconstruct", images, parse, invert=invert)

    @_endpoint
    def reconstruct_png(
        self, images: Images, *, scale: int | None = None, invert: Invert | None = None
    ) -> _Call[bytes]:
        """A PNG: the inputs above their reconstructions, enlarged `scale` times."""
        return _upload("/reconstruct", images, bytes, format="png", scale=scale, invert=invert)

    @_endpoint
    def interpolate(
        self,
        start: ImageInput,
        end: ImageInput,
        *,
        steps: int | None = None,
        method: Method | None = None,
        invert: Invert | None = None,
    ) -> _Call[InterpolateResponse]:
        """`steps` frames decoded along the VAE latent path from `start` to `end`."""
        parse = InterpolateResponse.model_validate_json
        params = _params(steps=steps, method=method, invert=invert)
        return _Call("POST", "/interpolate", parse, params, _pair(start, end))

    @_endpoint
    def interpolate_png(
        self,
        start: ImageInput,
        end: ImageInput,
        *,
        steps: int | None = None,
        method: Method | None = None,
        scale: int | None = None,
        invert: Invert | None = None,
    ) -> _Call[bytes]:
        """A PNG: the frames from `start` to `end` as one strip."""
        params = _params(format="png", steps=steps, method=method, scale=scale, invert=invert)
        return _Call("POST", "/interpolate", bytes, params, _pair(start, end))

    @_endpoint
    def generate(self, *, n: int | None = None, seed: int | None = None) -> _Call[GenerateResponse]:
        """`n` new images sampled from the VAE; the same `seed` gives the same images."""
        return _Call(
            "POST", "/generate", GenerateResponse.model_validate_json, _params(n=n, seed=seed)
        )

    @_endpoint
    def generate_png(
        self, *, n: int | None = None, seed: int | None = None, scale: int | None = None
    ) -> _Call[bytes]:
        """A PNG: `n` new images sampled from the VAE, as a grid."""
        return _Call("POST", "/generate", bytes, _params(format="png", n=n, seed=seed, scale=scale))

    @_endpoint
    def models(self) -> _Call[list[ModelInfo]]:
        """The loaded models."""
        return _Call("GET", "/models", lambda body: ModelList.model_validate_json(body).models)

    @_endpoint
    def model(self, name: str) -> _Call[ModelInfo]:
        """One loaded model; `not_found` when it is not loaded."""
        return _Call("GET", f"/models/{quote(name, safe='')}", ModelInfo.model_validate_json)

    @_endpoint
    def health(self) -> _Call[Health]:
        """Liveness: the process answers (never needs the API key)."""
        return _Call("GET", "/healthz", Health.model_validate_json)

    @_endpoint
    def ready(self) -> _Call[Readiness]:
        """Readiness: every model loaded and warmed; `not_ready` (503) otherwise."""
        return _Call("GET", "/readyz", Readiness.model_validate_json)

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying after `attempt` (0 = the first), or None to stop."""
        if response.status_code != 503 or attempt >= self.retries:
            return None
        try:
            delay = int(response.headers.get("Retry-After", DEFAULT_RETRY_WAIT_S))
        except ValueError:  # an HTTP date, which the service never sends
            delay = DEFAULT_RETRY_WAIT_S
        return min(max(delay, 0), MAX_RETRY_WAIT_S)

    def _no_answer(self, exc: httpx.TransportError) -> ServiceError:
        if isinstance(exc, httpx.TimeoutException):
            return ServiceError(
                None, "timeout", f"no answer from {self.url} within {self.timeout} s"
            )
        return ServiceError(None, "connection_error", f"cannot reach {self.url}: {exc}")


class Client(_Endpoints):
    """Blocking client; use it as a context manager or call `close()`."""

    def __init__(
        self,
        url: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Unpack[Options],
    ) -> None:
        """`url` defaults to $FMNIST_URL, then http://127.0.0.1:8000; `transport` replaces
        the network (e.g. `httpx.MockTransport`)."""
        super().__init__(url, **options)
        self._http = httpx.Client(transport=transport, **self._http_options())

    def _send(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, files=call.files
                )
            except httpx.TransportError as exc:
                raise self._no_answer(exc) from exc
            delay = self._retry_delay(response, attempt)
            if delay is None:
                return _result(call, response)
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_Endpoints):
    """Asynchronous client; use it as an async context manager or await `aclose()`."""

    def __init__(
        self,
        url: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Unpack[Options],
    ) -> None:
        """As `Client`."""
        super().__init__(url, **options)
        self._http = httpx.AsyncClient(transport=transport, **self._http_options())

    async def _send(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, files=call.files
                )
            except httpx.TransportError as exc:
                raise self._no_answer(exc) from exc
            delay = self._retry_delay(response, attempt)
            if delay is None:
                return _result(call, response)
            await anyio.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _result(call: _Call[T], response: httpx.Response) -> T:
    if not response.is_success:
        try:
            error = ErrorResponse.model_validate_json(response.content).error
        except ValidationError:
            text = response.text.strip()[:200] or response.reason_phrase
            raise ServiceError(response.status_code, f"http_{response.status_code}", text) from None
        raise ServiceError(response.status_code, error.code, error.message)
    try:
        return call.parse(response.content)
    except ValidationError as exc:
        raise ServiceError(response.status_code, "invalid_response", str(exc)) from None


def _params(**values: str | int | None) -> dict[str, str | int]:
    """Query parameters, leaving out the ones left to the service's default."""
    return {name: value for name, value in values.items() if value is not None}


def _upload(
    path: str, images: Images, parse: Callable[[bytes], T], **params: str | int | None
) -> _Call[T]:
    files = [("file", _file(image, i)) for i, image in enumerate(_image_list(images))]
    return _Call("POST", path, parse, _params(**params), files)


def _pair(start: ImageInput, end: ImageInput) -> list[_File]:
    return [("start", _file(start, 0)), ("end", _file(end, 1))]


def _image_list(images: Images) -> list[ImageInput]:
    if isinstance(images, str | bytes | os.PathLike) or _is_pil(images):
        return [images]
    if _is_array(images):
        return list(images) if images.ndim == 3 and images.shape[-1] not in (3, 4) else [images]
    return list(images)


def _is_pil(value: object) -> bool:
    """A PIL image, told without importing Pillow (which is optional)."""
    return any(cls.__module__.startswith("PIL.") for cls in type(value).__mro__)


def _is_array(value: object) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


def _file(image: ImageInput, index: int) -> tuple[str, bytes, str]:
    """One image as a multipart file: (file name, content, content type)."""
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return path.name, path.read_bytes(), content_type
    if isinstance(image, bytes):
        return f"image-{index}", image, "application/octet-stream"
    if _is_array(image):
        from PIL import Image  # present wherever numpy arrays are sent: the `images` extra

        image = Image.fromarray(_uint8(image))
    if _is_pil(image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return f"image-{index}.png", buffer.getvalue(), "image/png"
    raise TypeError(f"not an image: {type(image).__name__}; see fmnist_client.ImageInput")


def _uint8(array: np.ndarray) -> np.ndarray:
    import numpy as np

    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise ValueError(f"an image array is H x W or H x W x 3/4, not {list(array.shape)}")
    if array.dtype.kind == "f":
        if not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
            raise ValueError("float pixels must be in [0, 1]")
        return np.round(array * 255).astype(np.uint8)
    if array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise ValueError("integer pixels must be in 0-255")
        return array.astype(np.uint8)
    raise ValueError(f"pixels must be numbers, not {array.dtype}")
