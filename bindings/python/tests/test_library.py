"""The binding layer itself: the committed cffi declarations match include/mgha.h, the library
is found where documented (and a missing one is reported with every path tried), and configs
become TOML."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mgha
from conftest import REPO
from mgha._cdef import CDEF
from mgha._header import cdef_from_header, render_module
from mgha._toml import dumps


def test_committed_cdef_matches_the_header():
    header = (REPO / "include" / "mgha.h").read_text(encoding="utf-8")
    assert cdef_from_header(header) == CDEF, (
        "mgha/_cdef.py is stale; regenerate it with\n"
        "    python3 bindings/python/mgha/_header.py include/mgha.h bindings/python/mgha/_cdef.py"
    )
    committed = (Path(mgha.__file__).parent / "_cdef.py").read_text(encoding="utf-8")
    assert committed == render_module(CDEF)


def test_every_export_of_the_header_is_callable():
    lib = mgha._lib.lib()
    names = set(re.findall(r"\b(mgha_\w+)\(", CDEF))
    assert len(names) > 40
    for name in names:
        assert callable(getattr(lib, name)), name
    assert mgha.version() == "0.1.0"
    assert mgha.library_path().is_file()


def test_a_missing_library_lists_every_path_tried(tmp_path):
    code = (
        "import mgha\ntry:\n    mgha.version()\n"
        "except mgha.LibraryNotFound as e:\n    print(e)\n    raise SystemExit(3)\n"
    )
    env = {**os.environ, "MGHA_LIBRARY": str(tmp_path / "libmgha.so")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 3, out.stderr
    assert str(tmp_path / "libmgha.so") in out.stdout and "no such file" in out.stdout


def test_configs_become_toml():
    text = dumps({"data_dir": Path("/tmp/a b"), "name": 'q"uote', "sync_standbys": 1, "x": True, "skip": None})
    assert text == 'data_dir = "/tmp/a b"\nname = "q\\"uote"\nsync_standbys = 1\nx = true\n'
    members = dumps({"quorum_members": ["a=127.0.0.1:1", "b=127.0.0.1:2"]})
    assert members == 'quorum_members = [\n    "a=127.0.0.1:1",\n    "b=127.0.0.1:2",\n]\n'


def test_non_bmp_characters_in_a_config_round_trip(tmp_path):
    """A data directory whose path holds an emoji (outside the Basic Multilingual Plane) and a
    quote: the node is created there and reopened from the same config."""
    data_dir = tmp_path / "node \U0001F512 \"a\""
    config = {"data_dir": data_dir, "name": "a", "listen": "127.0.0.1:0"}
    with mgha.Engine.init(config) as engine:
        assert engine.status()["node"]["name"] == "a"
    assert (data_dir / "mgha.redb").exists()
    with mgha.Engine.open({"data_dir": data_dir}) as engine:
        assert engine.status()["node"]["name"] == "a"
