"""Plugins through the bindings: check, install (replicated to the Standby), objects of the
plugin's type validated by the plugin, removal refused while such objects exist. The example
plugins are built from source by scripts/build-plugins (see the ``example_plugins`` fixture)."""

from __future__ import annotations

import pytest

import mgha
from conftest import changes, host


def community(gateways, encryption="aes-256"):
    return {"op": "put", "type": "vpn.community", "name": "corp",
            "fields": {"gateways": gateways, "encryption": encryption}}  # fmt: skip


def test_plugin_objects_are_validated_replicated_and_guard_removal(cluster, example_plugins):
    wasm = (example_plugins / "vpn_community.wasm").read_bytes()
    info = mgha.plugin_check(wasm)
    assert (info["name"], info["type_names"], info["merge"]) == ("vpn", ["vpn.community"], ["vpn.community"])
    c = cluster(2)
    a, b = c["a"].engine, c["b"].engine
    assert a.plugin_check(wasm)["hash"] == info["hash"]
    a.plugin_install(wasm, author="admin")
    with pytest.raises(mgha.ValidationError, match="nothing to publish"):
        a.plugin_install(wasm)
    a.publish(changes(host("gw1", "10.0.0.1"), host("gw2", "10.0.0.2")))
    with pytest.raises(mgha.ValidationError, match="at least two distinct gateways"):
        a.publish(changes(community(["gw1"])))
    seq = a.publish(changes(community(["gw1", "gw2"])))
    assert c.wait_synced() == seq
    assert [p["name"] for p in b.plugin_list()] == ["vpn"]
    assert "error" not in b.plugin_list()[0], "the standby runs the plugin too"
    assert len(b.get("vpn.community", "corp")["fields"]["gateways"]) == 2
    with pytest.raises(mgha.ReadOnly):
        b.plugin_remove("vpn")
    with pytest.raises(mgha.ValidationError, match="corp"):
        a.plugin_remove("vpn")
    a.publish(changes({"op": "delete", "type": "vpn.community", "name": "corp"}))
    a.plugin_remove("vpn")
    with pytest.raises(mgha.NotFound, match="vpn"):
        a.plugin_remove("vpn")
    c.wait_synced()
    assert b.plugin_list() == []


def test_a_module_that_is_not_a_plugin_is_refused_naming_the_check():
    with pytest.raises(mgha.ValidationError, match="check") as refused:
        mgha.plugin_check(b"\0asm\x01\0\0\0 and then nonsense")
    assert refused.value.code_name == "MGHA_VALIDATION"
