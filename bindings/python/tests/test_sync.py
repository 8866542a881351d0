"""Synchronization: a publish on the Active reaches both Standbys, sessions publish or discard
as a whole, the Standbys refuse writes naming the Active, and a member removed on the Active
leaves every node's member list; in engines and daemons alike."""

from __future__ import annotations

import time

import pytest

import mgha
from conftest import changes, group, host


@pytest.mark.parametrize("mode", ["engines", "daemons"])
def test_a_publish_reaches_two_standbys(cluster, mode):
    c = cluster(3, mode)
    a, b, standby = c["a"], c["b"], c["c"]
    assert [n.role() for n in c] == ["active", "standby", "standby"]
    seq = a.publish(changes(host("web1", "10.0.0.1"), host("web2", "10.0.0.2"), group("web", ["web1", "web2"])))
    assert c.wait_synced() == seq
    c.assert_converged()
    for node in (b, standby):
        members = node.get("group", "web")["fields"]["members"]
        assert len(members) == 2, "references are stored as uids"
        assert {o["name"] for o in node.list("host")} == {"web1", "web2"}
    with pytest.raises(mgha.ReadOnly, match="'a'") as refused:
        b.publish(changes(host("web3", "10.0.0.3")))
    assert refused.value.code == 8 and refused.value.code_name == "MGHA_READ_ONLY"


def test_sessions_publish_on_success_and_discard_on_error(cluster):
    c = cluster(2)
    a = c["a"].engine
    with a.session("alice", "web tier") as s:
        s.put({"type": "host", "name": "web1", "fields": {"ipv4-address": "10.0.0.1"}})
        s.put({"type": "group", "name": "web", "fields": {"members": ["web1"]}})
    assert s.seq == 1
    with pytest.raises(RuntimeError):
        with a.session("bob") as s2:
            s2.delete("group", "web")
            raise RuntimeError("changed my mind")
    assert s2.seq is None
    assert a.get("group", "web")["fields"]["members"], "the delete was discarded"
    copy = a.get_msgpack("host", "web1")
    with pytest.raises(mgha.ValidationError, match="nothing to publish"):
        with a.session("dave") as same:
            same.put_msgpack(copy)  # the object as it is, in its canonical encoding
    with a.session("carol") as s3:
        s3.delete("group", "web")
    assert c.wait_synced() == s3.seq == 2
    with pytest.raises(mgha.NotFound):
        c["b"].get("group", "web")
    revisions = c["b"].engine.revisions()
    assert [(r["seq"], r["author"]) for r in revisions] == [(2, "carol"), (1, "alice")]
    assert revisions[1]["message"] == "web tier"
    # A Standby refuses a session when it is opened, naming the Active, not at its publish.
    with pytest.raises(mgha.ReadOnly, match="'a'"):
        c["b"].engine.session("mallory")
    assert c["b"].status()["sessions"] == 0


@pytest.mark.parametrize("mode", ["engines", "daemons"])
def test_a_member_removed_on_the_active_leaves_every_list(cluster, mode):
    c = cluster(3, mode)
    a, b = c["a"], c["b"]
    a.publish(changes(host("web1", "10.0.0.1")))
    c.wait_synced()
    assert [m["name"] for m in a.members()] == ["a", "b", "c"]
    with pytest.raises(mgha.Conflict, match="is the active"):
        a.remove_member("a")
    with pytest.raises(mgha.NotFound):
        a.remove_member("nobody")
    with pytest.raises(mgha.ReadOnly, match="'a'"):
        b.remove_member("c")
    c["c"].kill()
    a.remove_member("c")
    assert [m["name"] for m in a.members()] == ["a", "b"]
    deadline = time.monotonic() + 30
    while [m["name"] for m in b.members()] != ["a", "b"]:
        assert time.monotonic() < deadline, b.members()
        time.sleep(0.05)
    assert b.members() == a.members()
    assert {p["name"] for p in a.status()["peers"]} == {"b"}
