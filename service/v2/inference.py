"""Running a v2 inference request, and describing a v2 model, on the loaded models' batchers."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

import ml
from service.decoding import Decoder
from service.errors import TooManyImages
from service.imaging import InvertMode
from service.inputs import decode_image_files
from service.settings import Settings
from service.v2.catalog import (
    DERIVED,
    IMAGE_OUTPUTS,
    IMAGE_SHAPE,
    TensorSpec,
    View,
    datatype,
    derive,
)
from service.v2.tensors import InferRequest, InvalidTensor, Output, Tensor

INVERT_MODES = ("auto", "true", "false")
_output_specs: dict[tuple[str, str], dict[str, TensorSpec]] = {}


async def output_specs(view: View) -> dict[str, TensorSpec]:
    """The output tensors of `view`, learnt once per version from one all-zero input."""
    key = (view.name, view.version)
    if key not in _output_specs:
        op = next(reversed(view.operations))  # the widest: every graph output
        values = dict(
            zip(view.operations[op], await view.loaded.run(op, _zeros(view)), strict=True)
        )
        _output_specs[key] = {
            name: view.output_spec(name, values.get(name, np.empty(0)))
            for name in view.output_names
        }
    return _output_specs[key]


async def metadata(view: View) -> dict[str, Any]:
    card = view.loaded.card
    return {
        "name": view.name,
        "versions": [view.version],
        "platform": view.loaded.engine.backend,
        "inputs": [spec.metadata() for spec in view.inputs()],
        "outputs": [spec.metadata() for spec in (await output_specs(view)).values()],
        "parameters": {
            "model": view.loaded.name,
            "sha256": card["weights"]["sha256"],
            "trained_at": view.loaded.trained_at,
            "device": view.loaded.device,
            **_trust_parameters(view),
        },
    }


def _trust_parameters(view: View) -> dict[str, Any]:
    trust = view.loaded.engine.trust
    if trust is None:
        return {}
    return {
        "temperature": trust.temperature,
        "ood_threshold": trust.threshold,
        "ood_flag_rate": float(trust.flag_rate),
    }


async def infer(
    view: View, request: InferRequest, settings: Settings, decoder: Decoder
) -> list[Output]:
    """The outputs `request` asks for (every output when it names none), in its order."""
    names = tuple(request.outputs) or view.output_names
    unknown = [name for name in names if name not in view.output_names]
    if unknown:
        raise InvalidTensor(
            f"model {view.name!r} has no output {unknown[0]!r}; "
            f"its outputs: {', '.join(view.output_names)}"
        )
    batch = await _read_batch(view, request, settings, decoder)
    op = view.operation_for(names)
    values = dict(zip(view.operations[op], await view.loaded.run(op, batch), strict=True))
    binary = request.binary_by_default
    return [
        Output(
            name,
            datatype(name),
            _value(name, values),
            binary if request.outputs.get(name) is None else bool(request.outputs[name]),
        )
        for name in names
    ]


def _value(name: str, values: dict[str, np.ndarray]) -> np.ndarray:
    if name in DERIVED:
        return derive(name, values[DERIVED[name][0]])
    value = values[name]
    if name in IMAGE_OUTPUTS:
        return value.reshape(len(value), *IMAGE_SHAPE)
    return value


async def _read_batch(
    view: View, request: InferRequest, settings: Settings, decoder: Decoder
) -> np.ndarray:
    """The one input tensor of the request, checked and laid out as the operations take it."""
    accepted = {spec.name: spec for spec in view.inputs()}
    if len(request.inputs) != 1 or request.inputs[0].name not in accepted:
        names = [tensor.name for tensor in request.inputs]
        raise InvalidTensor(
            f"model {view.name!r} takes exactly one input, one of: {', '.join(accepted)}; "
            f"got {names}"
        )
    tensor = request.inputs[0]
    spec = accepted[tensor.name]
    if tensor.datatype != spec.datatype:
        raise InvalidTensor(f"input {tensor.name!r} must be {spec.datatype}, not {tensor.datatype}")
    if tensor.name == "image_files":
        return await decode_image_files(_files(tensor), _invert(request), settings, decoder)
    count = tensor.shape[0] if tensor.shape else 0
    if count > settings.max_images_per_request:
        raise TooManyImages(
            f"{count} items in one request; the limit is {settings.max_images_per_request}"
        )
    return _pixels(tensor, count) if tensor.name == "images" else _latent(tensor, spec)


def _pixels(tensor: Tensor, count: int) -> np.ndarray:
    if tensor.shape[1:] not in (IMAGE_SHAPE, IMAGE_SHAPE[1:]) or count == 0:
        raise InvalidTensor(
            f"input 'images' has shape {list(tensor.shape)}; expected [N, 1, 28, 28] or "
            "[N, 28, 28] with N >= 1"
        )
    pixels = tensor.data.reshape(count, ml.IMAGE_SIZE, ml.IMAGE_SIZE)
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
        raise InvalidTensor("input 'images' must hold pixels in [0, 1] (light garment on dark)")
    return pixels


def _latent(tensor: Tensor, spec: TensorSpec) -> np.ndarray:
    if len(tensor.shape) != 2 or tensor.shape[0] == 0 or tensor.shape[1] != spec.shape[1]:
        raise InvalidTensor(
            f"input {tensor.name!r} has shape {list(tensor.shape)}; expected [N, {spec.shape[1]}]"
        )
    if not np.isfinite(tensor.data).all():
        raise InvalidTensor(f"input {tensor.name!r} must be finite")
    return tensor.data


def _files(tensor: Tensor) -> list[bytes]:
    if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
        raise InvalidTensor(
            f"input 'image_files' has shape {list(tensor.shape)}; expected [N] or [N, 1]"
        )
    files = list(tensor.data.reshape(-1))
    if tensor.binary:
        return files
    try:  # JSON carries strings: image files in it are base64
        return [base64.b64decode(text, validate=True) for text in files]
    except (binascii.Error, ValueError):
        raise InvalidTensor("input 'image_files' in JSON must hold base64 strings") from None


def _invert(request: InferRequest) -> InvertMode:
    invert = str(request.parameters.get("invert", "auto")).lower()
    if invert not in INVERT_MODES:
        raise InvalidTensor(f"parameter invert must be one of {', '.join(INVERT_MODES)}")
    return invert  # type: ignore[return-value]


def _zeros(view: View) -> np.ndarray:
    if view.takes == "latent":
        return np.zeros((1, view.loaded.latent_dim or 0), dtype=np.float32)
    return np.zeros((1, ml.IMAGE_SIZE, ml.IMAGE_SIZE), dtype=np.float32)
