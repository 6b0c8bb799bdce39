"""Model cards and the files they vouch for, without PyTorch.

A checkpoint is `<name>.json` (the card) beside the files it names: the weights
(`<name>.safetensors`) and the exported ONNX graphs, each with its sha256. The card records how the
model was made and how good it is. Anything that loads one of those files goes through
`read_verified`, which hashes the very bytes it returns, so what was checked is what is used.
Every card read is validated (`ml.card_schema`): whatever is wrong with it is a CheckpointError.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ml.card_schema import validate_card


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match its card."""


def card_path(name: str, checkpoint_dir: str | os.PathLike) -> Path:
    return Path(checkpoint_dir) / f"{name}.json"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path) -> dict[str, str]:
    """How a card names a file it vouches for: its name (beside the card) and its sha256."""
    return {"file": path.name, "sha256": sha256_of(path.read_bytes())}


def read_card(name: str, checkpoint_dir: str | os.PathLike = "checkpoints") -> dict[str, Any]:
    """The card of model `name`, validated against the schema and the registry."""
    path = card_path(name, checkpoint_dir)
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no card for {name!r}: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read card {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"card {path} is not valid JSON: {exc}") from exc
    try:
        return validate_card(card, name)
    except ValidationError as exc:
        raise CheckpointError(f"card {path} is invalid: {_describe(exc)}") from None


def _describe(error: ValidationError) -> str:
    """pydantic's errors as one line: `where: what` for each."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'card'}: {e['msg'].removeprefix('Value error, ')}"
        for e in error.errors(include_url=False)
    )


def read_verified(entry: dict[str, Any], checkpoint_dir: str | os.PathLike, what: str) -> bytes:
    """The bytes of the file that a card `entry` (`{"file", "sha256"}`) names, after checking
    them against the recorded hash; `what` names the file in errors (e.g. "mynet's weights")."""
    try:
        path = Path(checkpoint_dir) / Path(entry["file"]).name
        expected = entry["sha256"]
    except (KeyError, TypeError):
        raise CheckpointError(f"the card does not record a file and sha256 for {what}") from None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no file for {what}: {path} does not exist") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {what} from {path}: {exc}") from exc
    actual = sha256_of(data)
    if actual != expected:
        raise CheckpointError(
            f"{path} has sha256 {actual}, but its card records {expected}: "
            "the file was changed or belongs to another card; refusing to load it"
        )
    return data
