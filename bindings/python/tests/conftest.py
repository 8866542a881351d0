"""Shared by the suite: the fixtures of ``mgha.testing`` and small changeset builders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List

import pytest

pytest_plugins = ["mgha.testing"]

REPO = Path(__file__).resolve().parents[3]
#: Where scripts/test tells the tests to find the compiled example plugins.
PLUGINS_ENV = "MGHA_EXAMPLE_PLUGINS_DIR"


def host(name: str, ip: str) -> Dict[str, Any]:
    return {"op": "put", "type": "host", "name": name, "fields": {"ipv4-address": ip}}


def group(name: str, members: List[str]) -> Dict[str, Any]:
    return {"op": "put", "type": "group", "name": name, "fields": {"members": members}}


def changes(*items: Dict[str, Any], message: str = "") -> Dict[str, Any]:
    return {"message": message, "changes": list(items)}


@pytest.fixture(scope="session")
def example_plugins() -> Path:
    """The directory of the example plugins that scripts/build-plugins compiles:
    ``$MGHA_EXAMPLE_PLUGINS_DIR``, or where that script puts them. Fails (never skips) when
    they are missing."""
    default = REPO / "plugins" / "target" / "wasm32-unknown-unknown" / "release"
    path = Path(os.environ.get(PLUGINS_ENV) or default)
    if not (path / "vpn_community.wasm").is_file():
        pytest.fail(
            f"the example plugins are not built in {path}: run scripts/build-plugins (scripts/test does) "
            f"and set {PLUGINS_ENV} to the directory it prints"
        )
    return path
