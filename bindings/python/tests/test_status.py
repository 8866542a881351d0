"""Sync statuses as they happen, seen through events (engines) and status polling (daemons):
a Standby cut off is *unreachable* and catches up once back; an old Active that comes back
with revisions on top of the new Active's head steps down and its branch is kept, a
*collision*; role changes are reported on both sides."""

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

    # a and b apart (their one link cut): b falls behind, unreachable, and catches up once back.
    c.partition("a", "b")
    c.wait_for(lambda: not b.status()["peers"][0]["connected"], 10, "b to lose a")
    a.publish(changes(host("h1", "10.0.0.1")))
    gone = on_a.wait_for(peer_is("b", "unreachable"), what="a to see b unreachable")
    assert gone.data["head_seq"] == 0
    c.heal()
    on_a.wait_for(lambda e: peer_is("b", "synchronized")(e) and e.seq == 1, what="b to catch up")
    c.wait_synced()

    # Forced changeover while apart, and a publishes alone. Together again (one link carries
    # both ways), a meets b's higher epoch and steps down, and b keeps a's revision as a branch:
    # a collision.
    c.partition("a", "b")
    c.force_changeover("b")
    on_b.wait_for(lambda e: e.kind == EventKind.ROLE_CHANGED and e.data["role"] == "active", what="b active")
    a.publish(changes(host("h2", "10.0.0.2")))
    c.heal()
    stepped = on_a.wait_for(
        lambda e: e.kind == EventKind.ROLE_CHANGED and e.data["role"] == "standby", what="a to step down"
    )
    assert stepped.data["previous_role"] == "active"
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
    c.partition("a", "b")
    c.wait_for(lambda: not c["b"].status()["peers"][0]["connected"], 10, "b to lose a")
    c["a"].publish(changes(host("h1", "10.0.0.1")))
    c.wait_for_peer_status("a", "b", "unreachable")
    c.heal()
    c.wait_for_peer_status("a", "b", "synchronized")
    assert c.wait_synced() == 1
