"""Run by scripts/check-wheel from a temp dir outside the checkout, in a fresh venv holding only
the wheel that scripts/build-wheel made (and pytest), with no ``MGHA_*`` variable set: the
fixtures arrive through the package's ``pytest11`` entry point (there is no conftest.py), and
the library and the ``mgha`` binary are the wheel's own copies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mgha
from mgha.nodes import find_binary

PACKAGE = Path(mgha.__file__).resolve().parent
WEB = {"changes": [{"op": "put", "type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}}]}


def test_the_wheel_brings_its_library_and_binary():
    assert not [k for k in os.environ if k.startswith("MGHA_")]
    assert mgha.version() == mgha.__version__
    assert mgha.library_path().parent == PACKAGE
    binary = find_binary()
    assert binary.parent == PACKAGE / "bin" and os.access(binary, os.X_OK)
    out = subprocess.run([sys.executable, "-m", "mgha", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"mgha {mgha.__version__}"


def test_engines_publish_on_the_active_and_read_on_the_standby(cluster, tmp_path_factory):
    c = cluster(2)
    assert tmp_path_factory.getbasetemp() in c.dir.parents, "the cluster lives under pytest's basetemp"
    seq = c["a"].publish(WEB)
    assert c.wait_synced() == seq
    assert c["b"].role() == "standby"
    assert c["b"].get("host", "web1")["fields"]["ipv4-address"] == "10.0.0.1"


def test_daemons_publish_on_the_active_and_read_on_the_standby(cluster):
    c = cluster(2, "daemons")
    seq = c["a"].publish(WEB)
    assert c.wait_synced() == seq
    assert [o["name"] for o in c["b"].list("host")] == ["web1"]


def test_the_session_cluster_is_shared(session_cluster):
    assert [n.name for n in session_cluster] == ["a", "b"]
    assert session_cluster.active().name == "a"
