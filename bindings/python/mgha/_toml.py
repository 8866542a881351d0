"""A configuration mapping as the TOML text the C ABI takes (docs/c-api.md, "Engine
configuration"). Only what a config holds: a flat table of strings, paths, integers and
booleans. TOML basic strings accept JSON's escapes, so strings are written with ``json.dumps``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

from .errors import InvalidArgument

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (str, os.PathLike)):
        return json.dumps(os.fspath(value))
    raise InvalidArgument(4, f"config: key '{key}': a {type(value).__name__} cannot be written as a config value")


def dumps(config: Mapping[str, Any]) -> str:
    """TOML text for a flat mapping; keys whose value is ``None`` are left out."""
    lines = []
    for key, value in config.items():
        if not _BARE_KEY.match(key):
            raise InvalidArgument(4, f"config: {key!r} is not a valid key")
        if value is not None:
            lines.append(f"{key} = {_value(key, value)}")
    return "\n".join(lines) + "\n"


def config_text(config: Any) -> str:
    """A config given as a mapping or as TOML text, as TOML text."""
    if isinstance(config, str):
        return config
    if isinstance(config, Mapping):
        return dumps(config)
    raise TypeError(f"config must be a mapping or TOML text, not {type(config).__name__}")
