"""Domains of one node through the Python API: each domain's handle has its own objects,
revisions, status and events; closing a domain's handle leaves the node running; an unknown
domain is NotFound; a domain that holds objects is deleted only by force."""

from __future__ import annotations

import os

import pytest

from conftest import changes, host
from mgha import Conflict, EventKind, InvalidArgument, NotFound
from mgha.testing import EventLog


def test_two_domains_of_one_node_keep_their_objects_and_revisions_apart(tmp_engine):
    node = tmp_engine
    red = node.create_domain("red")
    assert red["here"] and red["replicas"] == ["solo"]
    blue = node.create_domain("blue", on=["solo"])
    assert blue["role"] == "active"
    with pytest.raises(Conflict):
        node.create_domain("red")
    assert [d["name"] for d in node.domains()] == ["global", "blue", "red"]

    with node.domain("red") as r, node.domain("blue") as b:
        assert r.domain_name == "red" and node.domain_name == "global"
        log = EventLog(b)
        assert r.publish(changes(host("web1", "10.0.1.1"))) == 1
        assert b.publish(changes(host("web1", "10.0.2.1"))) == 1
        assert b.publish(changes(host("web2", "10.0.2.2"))) == 2
        assert r.get("host", "web1")["fields"]["ipv4-address"] == "10.0.1.1"
        assert b.get("host", "web1")["fields"]["ipv4-address"] == "10.0.2.1"
        with pytest.raises(NotFound):
            r.get("host", "web2")
        with pytest.raises(NotFound):
            node.get("host", "web1")
        assert [rev["seq"] for rev in b.revisions()] == [2, 1]
        assert r.status()["domain"] == "red" and r.status()["head"]["seq"] == 1
        assert b.status()["domain"] == "blue" and node.status()["domain"] == "global"
        assert log.wait_for(lambda e: e.kind == EventKind.REVISION_APPLIED and e.seq == 2, what="blue's head")
        # What concerns the node acts on the node from any handle.
        assert [m["name"] for m in b.members()] == ["solo"]
        assert b.peer_addr == node.peer_addr
        listed = {d["name"]: d for d in node.domains()}
        assert listed["red"]["objects"] == 1 and listed["blue"]["head_seq"] == 2

    # Closing the domains' handles left the node and its domains as they were.
    assert r.closed and not node.closed
    node.publish(changes(host("gw", "10.0.0.1")))
    with node.domain("blue") as again:
        assert again.get("host", "web2")["fields"]["ipv4-address"] == "10.0.2.2"

    with pytest.raises(NotFound):
        node.domain("green")
    # One server holds every Active already: nothing to spread, and no other server to move to.
    assert node.rebalance() == []
    with pytest.raises(NotFound):
        node.move_domain("red", "solo", "nowhere")


def test_a_domain_that_holds_objects_is_deleted_only_by_force(tmp_engine):
    node = tmp_engine
    node.create_domain("lab")
    lab = node.domain("lab")
    lab.publish(changes(host("web1", "10.0.1.1")))
    with pytest.raises(Conflict):
        node.delete_domain("lab")
    with pytest.raises(InvalidArgument):
        node.delete_domain("global", force=True)
    deleted = node.delete_domain("lab", force=True)
    assert os.path.isfile(deleted["backup"]), deleted
    with pytest.raises(NotFound):
        lab.get("host", "web1")
    with pytest.raises(NotFound):
        node.domain("lab")
    lab.close()
    assert [d["name"] for d in node.domains()] == ["global"]


def test_domain_handles_fail_cleanly_once_the_node_is_closed(tmp_engine):
    node = tmp_engine
    node.create_domain("lab")
    lab = node.domain("lab")
    node.close()
    with pytest.raises(InvalidArgument):
        lab.get("host", "web1")
    lab.close()
    assert lab.closed


def test_a_domain_keeps_the_revisions_it_is_given(tmp_engine):
    node = tmp_engine
    assert node.create_domain("short", retain_revisions=50)["retain_revisions"] == 50
    with node.domain("short") as short:
        for i in range(6):
            short.publish(changes(host(f"h{i}", f"10.0.3.{i}")))
        assert len(short.revisions()) == 6
        assert node.set_domain_retention("short", 2)["retain_revisions"] == 2
        assert [rev["seq"] for rev in short.revisions()] == [6, 5]
        assert len(short.list("host")) == 6
    assert "retain_revisions" not in node.set_domain_retention("short", None)
    with pytest.raises(InvalidArgument):
        node.set_domain_retention("global", 3)
    with pytest.raises(ValueError):
        node.set_domain_retention("short", 0)
