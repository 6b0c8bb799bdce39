"""Untrusted JSON request bodies parsed into an object, with every failure a 400."""

from __future__ import annotations

import json
from typing import Any

from service.errors import InvalidJSON


def json_object(body: bytes | str, what: str) -> dict[str, Any]:
    """`body` parsed as a JSON object; `what` names it in errors (e.g. "the request body")."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidJSON(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:  # e.g. [[[[...]]]] nested deeper than the parser's stack
        raise InvalidJSON(f"{what} is nested too deeply to be a request") from None
    if not isinstance(document, dict):
        raise InvalidJSON(f"{what} must be a JSON object")
    return document
