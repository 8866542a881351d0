"""Sync statuses as they happen, seen through events (engines) and status polling (daemons):
a Standby that cannot follow is *lagging* once the Active publishes; an old Active that comes
back with revisions on top of the new Active's head is *advanced*, then a *collision* once its
branch is kept; role changes are reported on both sides."""

from __future__ import annotations

import pytest

from conftest import changes, host
from mgha import EventKind
from mgha.testing import EventLog


def peer_is(name: str, status: str):
    def match(e) -> bool:
        return e.kind == EventKind.SYNC_STATUS_CHANGED and e.data["name"] == name and e.data["status"] == status

    return match


def test_lagging_advanced_and_collision_are_reported_as_they_happen(cluster):
    c = cluster(2)
    a, b = c["a"], c["b"]
    on_a, on_b = EventLog(a.engine), EventLog(b.engine)

    # b cannot reach a (its follow session ends) but a still probes b: b falls behind.
    c.cut("a")
    c.wait_for(lambda: not b.status()["peers"][0]["connected"], 10, "b to lose a")
    a.publish(changes(host("h1", "10.0.0.1")))
    lagging = on_a.wait_for(peer_is("b", "lagging"), what="a to see b lagging")
    assert lagging.data["head_seq"] == 0
    c.heal()
    on_a.wait_for(lambda e: peer_is("b", "synchronized")(e) and e.seq == 1, what="b to catch up")
    c.wait_synced()

    # Forced changeover while apart; then only b may reach a: b sees a ahead of it on its own
    # history (advanced), a meets b's epoch and steps down, but cannot follow b yet.
    c.partition("a", "b")
    c.force_changeover("b")
    on_b.wait_for(lambda e: e.kind == EventKind.ROLE_CHANGED and e.data["role"] == "active", what="b active")
    a.publish(changes(host("h2", "10.0.0.2")))
    c.heal("a")
    advanced = on_b.wait_for(peer_is("a", "advanced"), what="b to see a advanced")
    assert advanced.seq == 2, "a's head as b knows it"
    stepped = on_a.wait_for(
        lambda e: e.kind == EventKind.ROLE_CHANGED and e.data["role"] == "standby", what="a to step down"
    )
    assert stepped.data["previous_role"] == "active"
    assert b.peer_status("a") == "advanced"

    # Once a can follow b, b keeps a's revision as a branch: a collision.
    c.heal()
    collision = on_b.wait_for(lambda e: e.kind == EventKind.COLLISION, what="the collision")
    assert collision.data["name"] == "a"
    assert len(b.collisions()) == 1
    assert b.peer_status("a") == "collision"
    b.resolve_collision(b.collisions()[0]["id"], "keep-active")
    c.wait_synced()
    on_a.close()
    on_b.close()


@pytest.mark.parametrize("mode", ["daemons"])
def test_daemons_report_lagging_then_synchronized(cluster, mode):
    c = cluster(2, mode)
    c.cut("a")
    c.wait_for(lambda: not c["b"].status()["peers"][0]["connected"], 10, "b to lose a")
    c["a"].publish(changes(host("h1", "10.0.0.1")))
    c.wait_for_peer_status("a", "b", "lagging")
    c.heal()
    c.wait_for_peer_status("a", "b", "synchronized")
    assert c.wait_synced() == 1
