"""Roles: a planned changeover under a steady stream of publishes loses nothing; a forced
changeover during a partition leaves a collision branch that a merge resolves and every node
converges on; the same failover with real daemons killed with SIGKILL."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest

import mgha
from conftest import changes, group, host


def publisher(c, stop: threading.Event, acked: List[str]) -> threading.Thread:
    """Publishes one host after another on whichever node is Active, recording those that
    were acknowledged; a refusal (handover in progress, read-only) moves on to the next try."""

    def run() -> None:
        i = 0
        while not stop.is_set():
            name = f"load{i}"
            for node in c.running():
                try:
                    node.publish(changes(host(name, f"10.1.{i // 250}.{i % 250}")))
                    acked.append(name)
                    i += 1
                    break
                except (mgha.ReadOnly, mgha.Busy):
                    continue
            time.sleep(0.005)

    t = threading.Thread(target=run, name="publisher", daemon=True)
    t.start()
    return t


def test_planned_changeovers_under_load_lose_no_acknowledged_publish(cluster):
    c = cluster(3)
    stop, acked = threading.Event(), []
    load = publisher(c, stop, acked)
    try:
        for target in ["b", "c", "a"]:
            time.sleep(0.2)
            before = c[target].status()["node"]["epoch"]
            c.changeover(target)
            assert c.active().name == target
            assert c[target].status()["node"]["epoch"] > before
    finally:
        stop.set()
        load.join(10)
    c.wait_synced()
    c.assert_converged()
    assert len(acked) > 20, "the load kept publishing through the changeovers"
    for node in c:
        names = {o["name"] for o in node.list("host")}
        assert set(acked) <= names, f"{node.name} lost {sorted(set(acked) - names)[:5]}"


def test_a_refused_changeover_changes_nothing(cluster):
    c = cluster(2)
    with pytest.raises(mgha.Conflict, match="nobody"):
        c["a"].changeover("nobody")
    with pytest.raises(mgha.Conflict, match="already the active"):
        c["a"].force_changeover()
    assert c.active().name == "a"


@pytest.mark.parametrize(
    "how, web_members, mode",
    [("merge-prefer-active", 3, "engines"), ("keep-branch", 2, "engines"), ("merge-prefer-active", 3, "daemons")],
)
def test_forced_changeover_during_a_partition_keeps_the_old_actives_branch(cluster, how, web_members, mode):
    c = cluster(2, mode)
    a, b = c["a"], c["b"]
    a.publish(changes(host("h0", "10.0.0.1"), host("h1", "10.0.0.2"), host("h2", "10.0.0.3"), group("web", ["h0"])))
    c.wait_synced()
    c.partition("a", "b")
    epoch = c.force_changeover("b")
    assert b.role() == "active" and b.status()["node"]["epoch"] == epoch
    b.publish(changes(group("web", ["h0", "h1"])))
    # The old Active, cut off, still publishes: these revisions must not be lost.
    a.publish(changes(host("cut", "10.9.9.9")))
    a.publish(changes(group("web", ["h0", "h2"])))
    branch_head = a.head()[0]
    c.heal()
    branches = c.wait_for(lambda: b.collisions(), what="b to keep a's branch")
    c.wait_for(lambda: a.role() == "standby", 10, "a to step down")
    branch = branches[0]
    assert (branch["node"], branch["status"], branch["revisions"]) == ("a", "open", 2)
    assert branch["head"]["seq"] == branch_head
    diff = b.collision_diff(branch["id"])
    assert {d["name"] for d in diff["branch_changes"]} == {"cut", "web"}
    assert diff["conflicts"] == [], "members merge as a set"
    seq = b.resolve_collision(branch["id"], how)
    assert seq is not None
    assert c.wait_synced() >= seq
    c.assert_converged()
    # The full sync that replaced a's diverged store kept it in a's archive, browsable through
    # the library: its head is the branch's, and its revisions are the branch's as published.
    kept = a.archives()
    assert [(k["reason"], k["head"]["seq"]) for k in kept] == [("diverged", branch_head)], kept
    name = kept[0]["name"]
    assert [r["seq"] for r in a.archive_revisions(name, limit=2)] == [branch_head, branch_head - 1]
    assert a.archive_revision(name, branch_head - 1)["changes"][0]["after"]["name"] == "cut"
    diff = a.archive_diff(name, branch_head - 2, branch_head)
    assert {d["name"] for d in diff["objects"]} == {"cut", "web"}
    with pytest.raises(mgha.NotFound):
        a.archive_revision("no-such.mghabak", 1)
    for node in (a, b):
        assert node.get("host", "cut")["fields"]["ipv4-address"] == "10.9.9.9"
        assert len(node.get("group", "web")["fields"]["members"]) == web_members
    assert b.collisions()[0]["status"] == "resolved"
    with pytest.raises(mgha.InvalidArgument, match="already resolved"):
        b.resolve_collision(branch["id"], how)


def test_daemon_failover_after_sigkill(cluster):
    c = cluster(2, "daemons")
    c["a"].publish(changes(host("web1", "10.0.0.1")))
    c.wait_synced()
    c.kill("a")
    c.force_changeover("b")
    seq = c["b"].publish(changes(host("web2", "10.0.0.2")))
    c.start("a")
    assert c.wait_synced() == seq, "a came back, stepped down and caught up"
    assert c["a"].role() == "standby"
    assert c["a"].get("host", "web2")["name"] == "web2"
    with pytest.raises(mgha.ReadOnly, match="'b'"):
        c["a"].publish(changes(host("web3", "10.0.0.3")))
