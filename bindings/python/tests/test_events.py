"""Event callbacks: fired on the engine's thread, delivered to Python callables on a dispatcher
thread, so a callback may call back into the engine (status, publish, even close) without
deadlock; a failing callback does not stop delivery; unsubscribe stops it."""

from __future__ import annotations

import threading

import mgha
from conftest import changes, host
from mgha import EventKind
from mgha.testing import wait_for


def test_a_callback_that_calls_back_into_the_engine_does_not_deadlock(cluster):
    c = cluster(2)
    a, b = c["a"].engine, c["b"].engine
    seen = []
    threads = set()

    def on_event(event: mgha.Event) -> None:
        threads.add(threading.current_thread().name)
        if event.kind == EventKind.REVISION_APPLIED:
            # Reads and writes from inside a callback, on both engines.
            seen.append((event.seq, b.status()["head"]["seq"], len(a.list("host"))))

    def broken(event: mgha.Event) -> None:
        raise RuntimeError("a broken callback")

    with b.subscribe(broken), b.subscribe(on_event) as sub:
        for i in range(5):
            a.publish(changes(host(f"h{i}", f"10.0.0.{i}")))
        wait_for(lambda: seen and seen[-1][0] == 5, 20, "b to report revision 5")
        assert sub.active
    assert not sub.active
    assert all(head >= seq for seq, head, _ in seen), "status inside the callback sees the new head"
    assert threads == {f"mgha-py-events-{b.name}"}, "callbacks run on the dispatcher, not the engine's thread"
    count = len(seen)
    a.publish(changes(host("after", "10.0.1.1")))
    c.wait_synced()
    assert len(seen) == count, "no call after unsubscribe"


def test_a_callback_may_publish_and_close_its_own_engine(tmp_path):
    engine = mgha.Engine.init({"data_dir": str(tmp_path / "n"), "name": "n", "listen": "127.0.0.1:0"})
    done = threading.Event()
    published = []

    def on_event(event: mgha.Event) -> None:
        if event.kind != EventKind.REVISION_APPLIED:
            return
        if event.seq == 1:
            published.append(engine.publish(changes(host("from-callback", "10.0.0.9"))))
        elif event.seq == 2:
            engine.close()
            done.set()

    engine.subscribe(on_event)
    engine.publish(changes(host("first", "10.0.0.1")))
    assert done.wait(20), "the callback published, saw its own revision, and closed the engine"
    assert published == [2]
    assert engine.closed
