"""Automatic failover of embedded engines, one ``mgha.Engine`` per process: three processes
(``failover_node.py``), ``failover = "quorum"`` among the three data nodes, ``sync_standbys =
1``. A publisher keeps publishing through whichever process takes publishes while the Active's
process is SIGKILLed; a Standby process takes over, the killed process started again rejoins as
a Standby, and no acknowledged publish is lost."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

NODE = Path(__file__).resolve().parent / "failover_node.py"
HEARTBEAT_MS = 100
FAILOVER_AFTER_MS = 1000
#: Ten times what a takeover should take (failover_after_ms plus a second): a loaded machine.
TAKEOVER_DEADLINE_S = 10 * (FAILOVER_AFTER_MS + 1000) / 1000
SETTLE_DEADLINE_S = 60
FAILOVERS = 3


class Refused(Exception):
    """An ``{"error": ...}`` answer, or a process that is gone."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Node:
    """One process holding one engine; ``kill`` is SIGKILL, ``start`` opens the node again."""

    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name, self.config, self.log = name, config, log
        self.proc: Optional[subprocess.Popen] = None
        self.lock = threading.Lock()

    def spawn(self, *args: str) -> None:
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, str(NODE), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True, bufsize=1)
        first = proc.stdout.readline() if proc.stdout else ""
        assert first.strip() == '{"ready": true}', f"{self.name} {args} did not start: {first}\n{self.log.read_text()}"
        with self.lock:
            self.proc = proc

    def start(self) -> None:
        self.spawn("run", str(self.config))

    def ask(self, line: str) -> Any:
        with self.lock:
            proc = self.proc
            if proc is None or proc.stdin is None or proc.stdout is None:
                raise Refused("gone")
            try:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
                answer = proc.stdout.readline()
            except (BrokenPipeError, OSError, ValueError):
                raise Refused("gone") from None
        if not answer:
            raise Refused("gone")
        reply = json.loads(answer)
        if "error" in reply:
            raise Refused(reply["error"], reply.get("message", ""))
        return reply["ok"]

    def status(self) -> Optional[Dict[str, Any]]:
        try:
            return self.ask("status")
        except Refused:
            return None

    def kill(self) -> None:
        proc = self.proc
        if proc is not None:
            # The signal first, without the lock a command in flight holds until the process dies.
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        with self.lock:
            self.proc = None


def free_ports(n: int) -> List[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def nodes(tmp_path):
    """Three data nodes a (Primary), b, c with quorum failover; killed at the end."""
    names = ["a", "b", "c"]
    ports = free_ports(2 * len(names))
    members = [f"{n}=127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names)]
    made: List[Node] = []
    for i, name in enumerate(names):
        config = {
            "data_dir": str(tmp_path / name), "name": name, "listen": f"127.0.0.1:{ports[2 * i]}",
            "heartbeat_ms": HEARTBEAT_MS, "peer_timeout_ms": 1000, "failover_after_ms": FAILOVER_AFTER_MS,
            "sync_standbys": 1, "sync_timeout_ms": 3000,
            "failover": "quorum", "quorum_listen": f"127.0.0.1:{ports[2 * i + 1]}", "quorum_members": members,
        }
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        made.append(Node(name, path, tmp_path / f"{name}.log"))
    try:
        a = made[0]
        a.spawn("init", str(a.config))
        peer = a.ask("peer")
        for n in made[1:]:
            n.spawn("join", str(n.config), peer, a.ask("join-key"))
        yield made
    finally:
        for n in made:
            n.kill()


def settle(nodes: List[Node]) -> int:
    """Waits for one Active holding the lease with every other node its synchronized Standby,
    merging the collision branch a killed Active may leave (a publish no Standby acknowledged,
    so never acknowledged to the publisher). Returns the Active's index."""
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while True:
        statuses = [n.status() for n in nodes]
        roles = [s["node"]["role"] if s else None for s in statuses]
        if roles.count("active") == 1 and roles.count("standby") == len(nodes) - 1:
            i = roles.index("active")
            s = statuses[i]
            assert s is not None
            peers = {p["name"]: p for p in s["peers"]}
            if any(p["status"] == "collision" for p in peers.values()):
                for branch in nodes[i].ask("collisions"):
                    if branch["status"] == "open":
                        nodes[i].ask(f"merge {branch['id']}")
            elif (s.get("failover") or {}).get("lease_left_ms") and all(
                    n.name in peers and peers[n.name]["status"] == "synchronized" and peers[n.name]["connected"]
                    and peers[n.name]["head"] == s["head"] for n in nodes if n is not nodes[i]):
                return i
        assert time.monotonic() < deadline, f"no settled cluster: {roles}"
        time.sleep(0.05)


class Publisher(threading.Thread):
    """Publishes a new host without pause through whichever process takes it."""

    def __init__(self, nodes: List[Node]) -> None:
        super().__init__(name="publisher", daemon=True)
        self.nodes, self.stop = nodes, threading.Event()
        self.acks: List[Tuple[str, int, float]] = []

    def run(self) -> None:
        at, n = 0, 0
        while not self.stop.is_set():
            n += 1
            try:
                self.nodes[at].ask(f"publish p-{n}")
                self.acks.append((f"p-{n}", at, time.monotonic()))
            except Refused:  # read-only, too few standbys, or gone: the next process
                at = (at + 1) % len(self.nodes)
                time.sleep(0.005)

    def acked_since(self, since: float, by) -> bool:
        return any(t > since and by(node) for _, node, t in list(self.acks))


def wait(what: str, deadline_s: float, check) -> None:
    until = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < until, f"timed out after {deadline_s}s waiting for {what}"
        time.sleep(0.02)


def test_sigkill_of_the_active_process_fails_over_without_losing_a_publish(nodes):
    settle(nodes)
    publisher = Publisher(nodes)
    publisher.start()
    takeovers = []
    try:
        for _ in range(FAILOVERS):
            active = settle(nodes)
            before = time.monotonic()
            wait("a publish before the kill", TAKEOVER_DEADLINE_S,
                 lambda: publisher.acked_since(before, lambda n: n == active))
            nodes[active].kill()
            killed = time.monotonic()
            wait("a Standby process to take publishes", TAKEOVER_DEADLINE_S,
                 lambda: publisher.acked_since(killed, lambda n: n != active))
            takeovers.append(time.monotonic() - killed)
            nodes[active].start()
        final = settle(nodes)
    finally:
        publisher.stop.set()
        publisher.join()
    names = [name for name, _, _ in publisher.acks]
    missing = []
    for name in names:
        try:
            nodes[final].ask(f"get {name}")
        except Refused:
            missing.append(name)
    assert not missing, f"acknowledged but lost: {missing}"
    heads = [n.status()["head"] for n in nodes]  # type: ignore[index]
    assert all(h == heads[0] for h in heads), heads
    roles = [n.status()["node"]["role"] for n in nodes]  # type: ignore[index]
    assert sorted(roles) == ["active", "standby", "standby"], roles
    print(f"{FAILOVERS} SIGKILL failovers, {len(names)} acknowledged publishes, none lost; "
          f"takeover (kill to a publish on another process) max {max(takeovers):.2f}s")
