"""Test clusters for pytest: N nodes on free loopback ports in a temp dir, each behind a fault
proxy, as in-process engines (through the C ABI) or as real ``mgha`` daemons.

::

    pytest_plugins = ["mgha.testing"]          # in conftest.py: the fixtures below

    def test_failover(cluster):
        c = cluster(2)                         # a: Primary, Active; b: Standby; synced
        c["a"].publish({"changes": [...]})
        c.wait_synced()
        c.kill("a")
        c.force_changeover("b")
        ...

A :class:`Cluster` (made by :func:`cluster`, or by the ``cluster`` fixture) starts its nodes,
waits until they are synchronized, and tears everything down in :meth:`Cluster.close`, which
the fixture runs even when the test fails: engines closed, daemons killed, proxies stopped, the
temp dir removed (kept when ``MGHA_KEEP`` is set, for a post-mortem; its path is printed).
Daemons also die with the test process (Linux ``PR_SET_PDEATHSIG``).

Partitions go through the proxies; see :mod:`mgha.proxy` for what a cut can and cannot
separate.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import string
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar, Union

import pytest

from .engine import Engine
from .errors import NotFound
from .events import Event
from .nodes import FAST_TIMERS, DaemonNode, EngineNode, Node, die_with_parent, find_binary
from .proxy import ProxyHub

T = TypeVar("T")
NodeRef = Union[Node, str, int]

#: Default wait for the cluster to converge.
SYNC_TIMEOUT_S = 30.0
#: How often waits poll.
POLL_S = 0.02
#: The environment variable that keeps the temp dirs of clusters.
KEEP_ENV = "MGHA_KEEP"
#: The name of the arbiter witness of a two-node quorum cluster.
WITNESS = "witness"
#: The failover timeout of a test cluster with automatic failover, unless the test gives one:
#: ten of the fast heartbeats (docs/failover.md asks for at least three).
FAILOVER_AFTER_MS = 1000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int) -> List[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (all bound at once, then released), below the
    kernel's ephemeral range: a port ``bind(0)`` hands out is also the source port of the next
    outgoing connection of any process, which could take it before the node listens on it."""
    socks: List[socket.socket] = []
    low, high = 10000, _ephemeral_low()
    candidates = list(range(low, high)) if high - low >= 1000 else []
    random.shuffle(candidates)
    try:
        for port in candidates:
            if len(socks) == n:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        while len(socks) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(check: Callable[[], Optional[T]], timeout: float, what: str) -> T:
    """Polls ``check`` until it returns something truthy and returns it; a check that raises
    :class:`mgha.Error` counts as not yet. Raises :class:`TimeoutError` naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - a node may be restarting
            last = e
        if time.monotonic() > deadline:
            cause = f" (last: {last})" if last else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{cause}")
        time.sleep(POLL_S)


class Cluster:
    """Nodes ``a``, ``b``, ... of one cluster; ``a`` created it. Index by name or position."""

    def __init__(self, mode: str, root: Path, keep: bool) -> None:
        self.mode = mode
        self.dir = root
        self.keep = keep
        self.nodes: List[Node] = []
        self.hub = ProxyHub()
        #: ``"quorum"`` or ``"etcd"`` with automatic failover, else None (set by :func:`cluster`).
        self.failover: Optional[str] = None
        #: The ``mgha witness`` process of a two-node quorum cluster (the third vote), or None.
        self.witness: Optional[subprocess.Popen] = None
        self._closed = False

    def __getitem__(self, ref: NodeRef) -> Node:
        return self.node(ref)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def node(self, ref: NodeRef) -> Node:
        if isinstance(ref, Node):
            return ref
        if isinstance(ref, int):
            return self.nodes[ref]
        for n in self.nodes:
            if n.name == ref:
                return n
        # The library's class, as an engine asked about an unknown member answers: a test that
        # catches mgha.Error sees harness misuse too.
        raise NotFound(6, f"no node {ref!r} in this cluster ({', '.join(n.name for n in self.nodes)})")

    def running(self) -> List[Node]:
        return [n for n in self.nodes if n.running]

    def active(self) -> Node:
        """The one running node whose role is active."""
        actives = [n for n in self.running() if n.role() == "active"]
        if len(actives) != 1:
            raise AssertionError(f"expected one active node, found {[n.name for n in actives]}")
        return actives[0]

    # -- waiting and checking ------------------------------------------------------------------

    def _synced(self) -> Optional[Tuple[int]]:
        nodes = self.running()
        statuses = {n.name: n.status() for n in nodes}
        heads = {(s["head"]["seq"], s["head"]["state_hash"]) for s in statuses.values()}
        actives = [name for name, s in statuses.items() if s["node"]["role"] == "active"]
        if len(heads) != 1 or len(actives) != 1:
            return None
        # With automatic failover the Active takes publishes only while it holds the arbiter's
        # lease, which it claims a moment after the peers synchronized (and the status shows
        # no failover section until the node's failover driver runs).
        if self.failover is not None and not (statuses[actives[0]].get("failover") or {}).get("lease_left_ms"):
            return None
        peers = {p["name"]: p for p in statuses[actives[0]]["peers"]}
        for n in nodes:
            p = peers.get(n.name)
            if n.name != actives[0] and (p is None or p["status"] != "synchronized" or not p["connected"]):
                return None
        return (int(next(iter(heads))[0]),)

    def wait_synced(self, timeout: float = SYNC_TIMEOUT_S) -> int:
        """Waits until every running node has the same head and state hash, one of them is
        active and it sees every other running node connected and synchronized, and, with
        automatic failover, the Active holds the arbiter's lease. Returns the head revision."""
        try:
            return wait_for(self._synced, timeout, "the cluster to synchronize")[0]
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.describe()}") from None

    def wait_for(self, check: Callable[[], Optional[T]], timeout: float = SYNC_TIMEOUT_S, what: str = "it") -> T:
        """:func:`wait_for`, with the cluster's state in the timeout message."""
        try:
            return wait_for(check, timeout, what)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.describe()}") from None

    def wait_for_peer_status(self, node: NodeRef, peer: NodeRef, status: str, timeout: float = SYNC_TIMEOUT_S) -> None:
        """Polls until ``node`` sees ``peer`` with sync status ``status``."""
        n, p = self.node(node), self.node(peer)
        self.wait_for(lambda: n.peer_status(p.name) == status, timeout, f"{n.name} to see {p.name} {status}")

    def wait_for_collision(
        self, node: NodeRef, peer: Optional[NodeRef] = None, timeout: float = SYNC_TIMEOUT_S
    ) -> Dict[str, Any]:
        """Waits until ``node`` lists an open collision branch (published by ``peer``, when
        given) and returns it. The ``collision`` peer status and event come first: the
        branch is stored a moment later, so a test that saw them still waits here before
        ``collisions()``, ``collision_diff`` or ``resolve_collision``."""
        n = self.node(node)
        who = None if peer is None else self.node(peer).name

        def branch() -> Optional[Dict[str, Any]]:
            for b in n.collisions():
                if b["status"] == "open" and (who is None or b["node"] == who):
                    return b
            return None

        from_whom = "" if who is None else f" from {who}"
        return self.wait_for(branch, timeout, f"{n.name} to list a collision branch{from_whom}")

    def heads(self) -> Dict[str, Tuple[int, str]]:
        """(revision, state hash) of every running node."""
        return {n.name: n.head() for n in self.running()}

    def assert_converged(self) -> None:
        """Every running node has the same head revision and state hash."""
        heads = self.heads()
        if len(set(heads.values())) != 1:
            raise AssertionError(f"nodes diverge:\n{self.describe()}")

    def describe(self) -> str:
        """One line per node: role, epoch, head, and how it sees its peers."""
        lines = []
        for n in self.nodes:
            if not n.running:
                lines.append(f"  {n.name}: down")
                continue
            try:
                s = n.status()
            except Exception as e:  # noqa: BLE001 - describing, not asserting
                lines.append(f"  {n.name}: status failed: {e}")
                continue
            peers = ", ".join(
                f"{p['name']} {p['status']}{'' if p['connected'] else ' (not connected)'}" for p in s["peers"]
            )
            lines.append(
                f"  {n.name}: {s['node']['role']} epoch {s['node']['epoch']} head {s['head']['seq']} "
                f"{s['head']['state_hash'][:12]}; peers: {peers}"
            )
        return "\n".join(lines)

    # -- roles and faults -----------------------------------------------------------------------

    def changeover(self, to: NodeRef) -> None:
        """A planned changeover from the current Active to ``to``; returns once ``to`` is
        Active (the call blocks until the engine finished it). A name that is no node here is
        passed to the Active as given, so its refusal is the engine's (or daemon's) own."""
        if isinstance(to, str) and to not in {n.name for n in self.nodes}:
            self.active().changeover(to)
        target = self.node(to)
        self.active().changeover(target.name)
        self.wait_for(lambda: target.role() == "active", 10, f"{target.name} to be active")

    def force_changeover(self, node: NodeRef) -> int:
        """Makes the Standby ``node`` Active at once; returns the new epoch."""
        return self.node(node).force_changeover()

    def kill(self, node: NodeRef) -> None:
        """Stops ``node`` abruptly: SIGKILL for a daemon, close for an engine."""
        self.node(node).kill()

    def start(self, node: NodeRef) -> None:
        """Starts ``node`` again on its data directory and ports."""
        self.node(node).start()

    def cut(self, node: NodeRef) -> None:
        """Nothing reaches ``node`` from its peers (its proxy aborts and refuses connections)."""
        self.node(node).proxy.cut()

    def partition(self, a: NodeRef, b: NodeRef) -> None:
        """Separates ``a`` and ``b``: both are cut (see :mod:`mgha.proxy`)."""
        self.cut(a)
        self.cut(b)

    def heal(self, *nodes: NodeRef) -> None:
        """Lets traffic reach the given nodes again (all nodes when none is given)."""
        for n in [self.node(r) for r in nodes] or self.nodes:
            n.proxy.restore()

    # -- teardown -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stops every node and proxy and removes the temp dir. Idempotent; every step runs
        even when one fails (the first failure is raised at the end)."""
        if self._closed:
            return
        self._closed = True
        errors: List[BaseException] = []
        for n in self.nodes:
            try:
                n.kill()
            except Exception as e:  # noqa: BLE001 - go on tearing down
                errors.append(e)
        if self.witness is not None and self.witness.poll() is None:
            self.witness.kill()
            self.witness.wait()
        try:
            self.hub.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        if self.keep:
            print(f"mgha.testing: kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            raise errors[0]


def _failover_keys(failover: Optional[str], names: List[str], root: Path, config: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The config keys of automatic failover for each node, filled in around the test's own:
    quorum mode gets one free arbiter port per node (``quorum_listen``) and the voter list
    (``quorum_members``); etcd mode a key prefix of its own (``etcd_prefix``) so that clusters
    sharing one etcd never meet; both a short ``failover_after_ms``."""
    if failover is None:
        return [{} for _ in names]
    if failover not in ("quorum", "etcd"):
        raise ValueError(f"failover must be 'quorum' or 'etcd', not {failover!r}")
    shared: Dict[str, Any] = {"failover": failover, "failover_after_ms": FAILOVER_AFTER_MS}
    if failover == "etcd":
        if not config.get("etcd_endpoints"):
            raise ValueError("failover='etcd' needs etcd_endpoints=[...] (an etcd the test runs)")
        shared["etcd_prefix"] = f"/mgha-test/{root.name}"
        return [dict(shared) for _ in names]
    # Two data nodes cannot decide alone: a witness (started by :func:`_start_witness`) is
    # the third voter, on the last port.
    ports = free_ports(len(names) + (1 if len(names) == 2 else 0))
    voters = names + [WITNESS] if len(names) == 2 else names
    members = [f"{name}=127.0.0.1:{port}" for name, port in zip(voters, ports)]
    return [{**shared, "quorum_listen": f"127.0.0.1:{port}", "quorum_members": members} for port in ports[: len(names)]]


def _start_witness(c: Cluster, keys: Dict[str, Any]) -> None:
    """Starts ``mgha witness`` for a two-node quorum cluster: it enrolls with a join key from
    the Primary and listens on the voters' last address. Killed by :meth:`Cluster.close`;
    logs to ``<dir>/witness.log``."""
    address = next(m.split("=", 1)[1] for m in keys["quorum_members"] if m.startswith(f"{WITNESS}="))
    primary = c.nodes[0]
    args = [
        str(find_binary()), "witness", "--data-dir", str(c.dir / WITNESS), "--listen", address,
        "--members", ",".join(keys["quorum_members"]),
        "--join", f"127.0.0.1:{primary.peer_port}", "--key", primary.join_key(),
        "--heartbeat-ms", str(keys.get("heartbeat_ms", FAST_TIMERS["heartbeat_ms"])),
        "--failover-after-ms", str(keys["failover_after_ms"]),
    ]  # fmt: skip
    with open(c.dir / f"{WITNESS}.log", "ab") as log:
        c.witness = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )


def cluster(
    n: int = 3,
    mode: str = "engines",
    *,
    wait: bool = True,
    root: Optional[Path] = None,
    failover: Optional[str] = None,
    **config: Any,
) -> Cluster:
    """Starts a cluster of ``n`` nodes named ``a``, ``b``, ...: ``a`` creates it (Primary,
    Active), the others join through it. ``mode`` is ``"engines"`` (in this process, through
    the C ABI) or ``"daemons"`` (``mgha`` child processes: see :func:`mgha.nodes.find_binary`).
    ``config`` adds engine config keys (docs/c-api.md) or, for daemons, ``mgha.toml`` keys
    (docs/config.md), e.g. ``sync_standbys=1``. ``failover="quorum"`` (with two nodes, plus
    an ``mgha witness`` process as the third vote) or ``"etcd"`` (with
    ``etcd_endpoints=[...]``) turns on automatic failover, with the per-node keys filled in
    (:func:`_failover_keys`); a key the test gives wins. The cluster's
    temp dir is made under ``root`` (the system's temp dir when None). Waits until
    synchronized unless ``wait=False``. Everything made is torn down if a step fails."""
    if mode not in ("engines", "daemons"):
        raise ValueError(f"mode must be 'engines' or 'daemons', not {mode!r}")
    if not 1 <= n <= len(string.ascii_lowercase):
        raise ValueError(f"a test cluster has 1 to 26 nodes, not {n}")
    keep = bool(os.environ.get(KEEP_ENV))
    path = Path(tempfile.mkdtemp(prefix="mgha-test-", dir=root))
    c = Cluster(mode, path, keep)
    c.failover = failover
    try:
        binary = find_binary() if mode == "daemons" else None
        names = list(string.ascii_lowercase[:n])
        per_node = _failover_keys(failover, names, path, config)
        ports = free_ports(3 * n)
        for i, name in enumerate(names):
            proxy = c.hub.proxy(ports[3 * i + 1], ports[3 * i])
            node_config = {**per_node[i], **config}
            node: Node
            if binary is not None:
                node = DaemonNode(
                    name, path, ports[3 * i], proxy, node_config, binary=binary, admin_port=ports[3 * i + 2]
                )
            else:
                node = EngineNode(name, path, ports[3 * i], proxy, node_config)
            c.nodes.append(node)
            if i == 0:
                node.create_primary()
            else:
                node.create_secondary(c.nodes[0].address, c.nodes[0].join_key())
        if failover == "quorum" and n == 2:
            _start_witness(c, {**FAST_TIMERS, **per_node[0], **config})
        if wait:
            c.wait_synced()
        return c
    except BaseException:
        c.close()
        raise


class EventLog:
    """Records the events of an engine (through :meth:`mgha.Engine.subscribe`) and waits for
    one: ``log.wait_for(lambda e: e.kind == EventKind.COLLISION)``."""

    def __init__(self, engine: Engine) -> None:
        self.events: List[Event] = []
        self._changed = threading.Condition()
        self.subscription = engine.subscribe(self._record)

    def _record(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(
        self, match: Callable[[Event], bool], timeout: float = SYNC_TIMEOUT_S, what: str = "an event"
    ) -> Event:
        """The first recorded event that matches (waiting for it if none has yet)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for e in self.events:
                    if match(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = ", ".join(f"{e.kind.name} {e.data}" for e in self.events[-10:])
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; last events: {seen}")
                self._changed.wait(left)

    def close(self) -> None:
        self.subscription.unsubscribe()


def _close_all(made: List[Cluster]) -> None:
    """Closes every cluster, each even when another fails; raises the first failure."""
    errors = []
    for c in made:
        try:
            c.close()
        except Exception as e:  # noqa: BLE001 - close the others too
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture(name="cluster")
def cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    """A factory: ``cluster(n=3, mode="engines", failover=None, **config)`` starts a
    :class:`Cluster` in a directory of pytest's (``--basetemp`` is honoured); every cluster it
    made is torn down after the test, passed or failed."""
    made: List[Cluster] = []

    def make(n: int = 3, mode: str = "engines", **config: Any) -> Cluster:
        config.setdefault("root", tmp_path_factory.mktemp("mgha"))
        c = cluster(n, mode, **config)
        made.append(c)
        return c

    yield make
    _close_all(made)


@pytest.fixture(scope="session")
def session_cluster_options() -> Dict[str, Any]:
    """The arguments of :func:`session_cluster`'s cluster: two engines. Override this fixture
    in a conftest.py for others, e.g. ``{"n": 3, "mode": "daemons", "sync_standbys": 1}``."""
    return {"n": 2, "mode": "engines"}


@pytest.fixture(scope="session")
def session_cluster(
    tmp_path_factory: pytest.TempPathFactory, session_cluster_options: Dict[str, Any]
) -> Iterator[Cluster]:
    """One :class:`Cluster` shared by every test of the session (started on first use, torn
    down at the end), for suites of read-mostly tests that need not pay a cluster each. Tests
    see each other's publishes and faults: one that cuts, kills or changes over should
    restore the cluster (``heal``, ``start``, ``wait_synced``) before it ends."""
    options = {"root": tmp_path_factory.mktemp("mgha-session"), **session_cluster_options}
    c = cluster(**options)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def tmp_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One Primary engine in a temp dir of pytest's (no proxy), closed after the test."""
    path = tmp_path_factory.mktemp("mgha-engine")
    try:
        with Engine.init({"data_dir": str(path / "node"), "name": "solo", "listen": "127.0.0.1:0"}) as engine:
            yield engine
    finally:
        shutil.rmtree(path, ignore_errors=True)
