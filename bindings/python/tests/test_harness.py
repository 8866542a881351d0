"""The test harness itself, as a user of ``mgha.testing`` relies on it: engines and daemons
answer alike (a listing past the admin API's default page of 1,000, paged, a daemon that is killed or
hangs raising ``mgha.Unavailable`` within the timeout the test set), misuse raises the
library's classes, a collision branch is waited for, a cluster with automatic failover is made
with per-node arbiter keys and fails over by itself, and clusters live under pytest's
basetemp."""

from __future__ import annotations

import signal

import pytest

import mgha
from conftest import changes, host

#: Past the admin API's default page (1,000 objects).
MANY = 1200


@pytest.mark.parametrize("mode", ["engines", "daemons"])
def test_list_returns_every_object_in_both_modes(cluster, mode):
    c = cluster(1, mode)
    a = c["a"]
    a.publish(changes(*[host(f"h{i:04}", f"10.2.{i // 250}.{i % 250}") for i in range(MANY)]))
    assert [o["name"] for o in a.list("host")] == [f"h{i:04}" for i in range(MANY)]
    assert len(a.list()) >= MANY
    assert len(a.list("host", limit=10)) == 10


def test_a_daemon_node_pages_through_the_admin_api(cluster):
    c = cluster(1, "daemons")
    a = c["a"]
    a.publish(changes(*[host(f"h{i:04}", f"10.2.{i // 250}.{i % 250}") for i in range(MANY)]))
    a.list_page_size = 500
    assert [o["name"] for o in a.list("host")] == [f"h{i:04}" for i in range(MANY)]
    assert [o["name"] for o in a.list("host", limit=700)] == [f"h{i:04}" for i in range(700)]
    page = a.request("GET", "/v1/objects?type=host&limit=2&after_type=host&after_name=h0499")["objects"]
    assert [o["name"] for o in page] == ["h0500", "h0501"]
    with pytest.raises(mgha.InvalidArgument, match="after_name"):
        a.request("GET", "/v1/objects?after_type=host")


def test_a_killed_daemon_is_unavailable(cluster):
    c = cluster(1, "daemons")
    a = c["a"]
    a.kill()
    with pytest.raises(mgha.Unavailable) as raised:
        a.status()
    assert isinstance(raised.value, mgha.Error) and raised.value.code == -1


def test_a_hung_daemon_is_unavailable_after_the_timeout_the_test_set(cluster):
    c = cluster(1, "daemons")
    a = c["a"]
    a.process.send_signal(signal.SIGSTOP)
    try:
        with a.timeout(1):
            with pytest.raises(mgha.Unavailable, match="did not answer"):
                a.status()
    finally:
        a.process.send_signal(signal.SIGCONT)
    assert a.timeout_s == 30
    assert a.role() == "active"


def test_misuse_of_the_harness_raises_the_library_s_classes(cluster):
    c = cluster(2)
    with pytest.raises(mgha.NotFound, match="'zz'"):
        c["zz"]
    # The engine's own refusal of a changeover to an unknown member, as against a deployment.
    with pytest.raises(mgha.Conflict, match="no member named 'zz'"):
        c.changeover("zz")
    assert c.active().name == "a"


def test_wait_for_collision_returns_the_open_branch(cluster):
    c = cluster(2)
    a, b = c["a"], c["b"]
    c.partition(a, b)
    c.force_changeover(b)
    a.publish(changes(host("web1", "10.0.0.1")))
    c.heal()
    branch = c.wait_for_collision(b, peer=a)
    assert branch["node"] == "a" and branch["status"] == "open" and branch["revisions"] == 1
    b.resolve_collision(branch["id"], "keep-active")
    c.wait_synced()


def taken(c, changeset) -> str:
    """The running node that took ``changeset`` (whichever the arbiter made Active), or ""
    while none does."""
    for n in c.running():
        try:
            n.publish(changeset)
            return n.name
        except (mgha.ReadOnly, mgha.Busy):
            continue
    return ""


def test_a_quorum_cluster_fails_over_by_itself(cluster):
    c = cluster(3, failover="quorum")
    keys = [n.config for n in c]
    assert len({k["quorum_listen"] for k in keys}) == 3
    assert all(k["quorum_members"] == keys[0]["quorum_members"] for k in keys)
    # Under load the arbiter may already have moved the Active: ask the cluster, not "a".
    old = c.active()
    old.publish(changes(host("web1", "10.0.0.1")))
    c.wait_synced()
    c.kill(old)
    new = c.wait_for(lambda: taken(c, changes(host("web2", "10.0.0.2"))), what="a Standby to take publishes")
    assert new != old.name
    c.wait_synced()
    assert c[new].get("host", "web1")["fields"]["ipv4-address"] == "10.0.0.1"


def test_two_engines_and_a_witness_fail_over_by_themselves(cluster):
    c = cluster(2, failover="quorum")
    assert c.witness is not None and c.witness.poll() is None
    assert any(m.startswith("witness=") for m in c["a"].config["quorum_members"])
    old = c.active()
    old.publish(changes(host("web1", "10.0.0.1")))
    c.wait_synced()
    c.kill(old)
    new = c.wait_for(lambda: taken(c, changes(host("web2", "10.0.0.2"))), what="the Standby to take publishes")
    assert new != old.name
    assert c[new].get("host", "web1")["fields"]["ipv4-address"] == "10.0.0.1"


def test_clusters_live_under_pytest_s_basetemp(cluster, tmp_path_factory):
    c = cluster(1)
    assert tmp_path_factory.getbasetemp() in c.dir.parents
