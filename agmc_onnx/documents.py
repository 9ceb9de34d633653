"""JSON documents a person writes or edits (pruning plans, preprocessing metadata), parsed in one place:
each way they can be malformed becomes one line of the caller's error type."""

from __future__ import annotations

import json

from agmc_onnx.errors import AgmcError

__all__ = ["json_object"]


def json_object(text: str, error: type[AgmcError], invalid: str, not_object: str) -> dict:
    """``text`` parsed as a JSON object; otherwise ``error("<invalid>: <parser message>")`` or
    ``error("<not_object>, got <type>")``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{invalid}: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{not_object}, got {type(data).__name__}")
    return data
