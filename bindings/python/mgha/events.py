"""Engine events delivered to Python callables.

The library calls C callbacks on each engine's own event thread (``mgha-events``). Running
Python callbacks there would be fragile: a callback that calls back into the engine, or waits
for another Python thread that is itself calling the engine, could stall every later event and
``close``. So each :class:`~mgha.Engine` has one :class:`EventPump`:

- one C subscription whose callback (a ``cffi`` callback kept alive by the pump) only copies the
  event into a bounded queue and returns at once; it never blocks: when the queue is full the
  event is dropped and counted in :attr:`EventPump.dropped`;
- one Python dispatcher thread (``mgha-py-events-<name>``) that takes events from the queue, in
  order, and calls every subscribed callable with an :class:`Event`.

A callback therefore runs on the dispatcher thread, never on the engine's thread, and may call
anything on any engine, including :meth:`~mgha.Engine.status`, publishes, changeovers and even
``close`` of its own engine. An exception it raises is logged (logger ``mgha``) and does not
stop the dispatcher. Callbacks run one at a time; a slow callback delays later events (they
queue up), never the engine.
"""

from __future__ import annotations

import enum
import json
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from ._lib import check, ffi, lib

log = logging.getLogger("mgha")

#: Events waiting for the dispatcher; beyond this the C callback drops them (and counts).
EVENTS_QUEUED_MAX = 10_000


class EventKind(enum.IntEnum):
    """``mgha_event_kind``."""

    REVISION_APPLIED = 1
    ROLE_CHANGED = 2
    SYNC_STATUS_CHANGED = 3
    COLLISION = 4


@dataclass(frozen=True)
class Event:
    """One event: its kind, a revision number (what it counts depends on the kind) and the
    details (docs/c-api.md lists the keys per kind)."""

    kind: EventKind
    seq: int
    data: Dict[str, Any]

    @property
    def name(self) -> str:
        return self.kind.name


Callback = Callable[[Event], Any]


class Subscription:
    """A subscribed callable. ``unsubscribe()`` (or leaving the ``with`` block) stops delivery:
    no call starts after it returns."""

    def __init__(self, pump: "EventPump", callback: Callback) -> None:
        self._pump = pump
        self.callback = callback

    @property
    def active(self) -> bool:
        return self._pump.has(self)

    def unsubscribe(self) -> None:
        self._pump.remove(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unsubscribe()


_STOP = object()


class EventPump:
    """The C subscription and the Python dispatcher thread of one engine."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._subs: List[Subscription] = []
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=EVENTS_QUEUED_MAX)
        self._thread: Optional[threading.Thread] = None
        self._c_callback: Any = None
        self.dropped = 0

    def _on_event(self, _user_data: Any, event: Any) -> None:
        # On the engine's event thread: copy and hand over, never block, never raise.
        try:
            self._queue.put_nowait((int(event.kind), int(event.seq), ffi.string(event.json)))
        except queue.Full:
            self.dropped += 1
        except BaseException:  # noqa: BLE001 - nothing may unwind into the library
            self.dropped += 1

    def _start(self, engine_ptr: Any) -> None:
        """Subscribes in C and starts the dispatcher; called with the lock held, once."""
        self._c_callback = ffi.callback("mgha_event_callback", self._on_event)
        out = ffi.new("uint64_t *")
        check(lib().mgha_engine_subscribe(engine_ptr, self._c_callback, ffi.NULL, out))
        self._thread = threading.Thread(target=self._dispatch, name=f"mgha-py-events-{self._name}", daemon=True)
        self._thread.start()

    def add(self, engine_ptr: Any, callback: Callback) -> Subscription:
        if not callable(callback):
            raise TypeError("callback must be callable")
        sub = Subscription(self, callback)
        with self._lock:
            if self._thread is None:
                self._start(engine_ptr)
            self._subs.append(sub)
        return sub

    def has(self, sub: Subscription) -> bool:
        with self._lock:
            return sub in self._subs

    def remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def _dispatch(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            kind, seq, text = item
            try:
                event = Event(EventKind(kind), seq, json.loads(text))
            except (ValueError, TypeError):
                log.exception("mgha: malformed event %r", item)
                continue
            with self._lock:
                subs = list(self._subs)
            for sub in subs:
                if not self.has(sub):
                    continue  # an earlier callback unsubscribed it
                try:
                    sub.callback(event)
                except Exception:  # noqa: BLE001 - one callback's failure is its own
                    log.exception("mgha: event callback %r failed", sub.callback)

    def stop(self) -> None:
        """After the engine closed (no C callback can run any more): the dispatcher delivers
        what is still queued, then ends. Waits for that (at most 30 s) unless called from a
        callback, on the dispatcher itself."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            if thread is not threading.current_thread():
                thread.join(timeout=30)
        with self._lock:
            self._subs.clear()
