"""A configuration mapping as the TOML text the C ABI takes (docs/config.md: the one
configuration of a node, the same keys as the daemon's ``mgha.toml``). The text is written by
tomli-w, a kept TOML writer, so any string (a path with an emoji, quotes, newlines) round-trips.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping

import tomli_w

from .errors import InvalidArgument


def _value(key: str, value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_value(key, v) for v in value]
    if isinstance(value, (bool, int, str)):
        return value
    raise InvalidArgument(4, f"config: key '{key}': a {type(value).__name__} cannot be written as a config value")


def dumps(config: Mapping[str, Any]) -> str:
    """TOML text for a flat mapping; keys whose value is ``None`` are left out."""
    table: Dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(4, f"config: {key!r} is not a valid key")
        if value is not None:
            table[key] = _value(key, value)
    return tomli_w.dumps(table)


def config_text(config: Any) -> str:
    """A config given as a mapping or as TOML text, as TOML text."""
    if isinstance(config, str):
        return config
    if isinstance(config, Mapping):
        return dumps(config)
    raise TypeError(f"config must be a mapping or TOML text, not {type(config).__name__}")
