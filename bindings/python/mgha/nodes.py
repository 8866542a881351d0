"""The nodes of a test cluster (:mod:`mgha.testing`): an in-process :class:`EngineNode` (an
:class:`mgha.Engine` through the C ABI) or a :class:`DaemonNode` (a real ``mgha run`` child
process, driven through its admin HTTP API). Both answer the same methods, with the same dicts
and the same :mod:`mgha.errors` exceptions, so a test runs unchanged in either mode.

Every node listens for peers on a fixed loopback port (so that it is found again after a
restart) and *advertises* the address of its fault proxy (:mod:`mgha.proxy`), so that all peer
traffic to it goes through the proxy.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from .engine import DEFAULT_AUTHOR, Engine
from .errors import Error, InvalidArgument, Unavailable, error_for_api
from .proxy import Proxy

#: Timers that make a test cluster react in tenths of seconds rather than seconds.
FAST_TIMERS: Dict[str, int] = {"heartbeat_ms": 100, "peer_timeout_ms": 2000}
#: How long a daemon may take to answer its admin API after it started.
DAEMON_START_TIMEOUT_S = 30.0
#: How long one admin API request may take unless told otherwise (a planned changeover blocks
#: for a few seconds); ``DaemonNode.timeout_s`` or ``with node.timeout(s):`` set another.
API_TIMEOUT_S = 30.0
#: The most objects one ``GET /v1/objects`` returns, and the engine's ``list`` (core's
#: ``LIST_OBJECTS_MAX``).
LIST_OBJECTS_MAX = 100_000
#: The environment variable naming the ``mgha`` binary.
BIN_ENV = "MGHA_BIN"


class Node:
    """What every node offers. ``name`` is its member name; ``address`` what peers dial."""

    def __init__(self, name: str, root: Path, peer_port: int, proxy: Proxy, config: Mapping[str, Any]) -> None:
        self.name = name
        self.dir = root / name
        self.peer_port = peer_port
        self.proxy = proxy
        self.config = dict(config)
        self.running = False

    @property
    def address(self) -> str:
        return self.proxy.address

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}{'' if self.running else ' (down)'}>"

    def head(self) -> Tuple[int, str]:
        """(revision, state hash) of the head."""
        head = self.status()["head"]
        return int(head["seq"]), str(head["state_hash"])

    def role(self) -> str:
        """``active`` or ``standby``."""
        return str(self.status()["node"]["role"])

    def peer_status(self, peer: str) -> Optional[str]:
        """How this node sees ``peer`` (``synchronized``, ``lagging``, ...), or None."""
        for p in self.status()["peers"]:
            if p["name"] == peer:
                return str(p["status"])
        return None

    # What each kind of node implements: making it, running it, and the calls tests make.
    def create_primary(self) -> None:
        raise NotImplementedError

    def create_secondary(self, peer: str, key: str) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def join_key(self, ttl_s: float = 600) -> str:
        raise NotImplementedError

    def members(self) -> List[Dict[str, Any]]:
        """The current members this node knows, sorted by name."""
        raise NotImplementedError

    def remove_member(self, name: str) -> None:
        """Removes the member ``name`` from the cluster (on the Active)."""
        raise NotImplementedError

    def status(self) -> Dict[str, Any]:
        raise NotImplementedError

    def publish(self, changeset: Mapping[str, Any], author: str = DEFAULT_AUTHOR) -> int:
        raise NotImplementedError

    def get(self, type_name: str, key: str) -> Dict[str, Any]:
        raise NotImplementedError

    def list(self, type_name: Optional[str] = None, limit: int = 0) -> List[Dict[str, Any]]:
        """Objects of one type (or all) in (type, name) order; ``limit`` 0 means all: a daemon
        node pages through the admin API, an engine node answers up to the library's cap of
        100,000."""
        raise NotImplementedError

    def changeover(self, target: str) -> None:
        raise NotImplementedError

    def force_changeover(self) -> int:
        raise NotImplementedError

    def collisions(self) -> List[Dict[str, Any]]:
        raise NotImplementedError

    def collision_diff(self, branch_id: int) -> Dict[str, Any]:
        raise NotImplementedError

    def resolve_collision(
        self, branch_id: int, how: str, resolutions: Optional[Mapping[str, Any]] = None
    ) -> Optional[int]:
        raise NotImplementedError

    def archives(self) -> List[Dict[str, Any]]:
        """The stores a full sync replaced on this node (a diverged history's backup, a damaged
        store set aside), oldest first: ``name``, ``reason``, ``head``, ``revisions``, ..."""
        raise NotImplementedError

    def archive_revisions(self, name: str, before: int = 0, limit: int = 0) -> List[Dict[str, Any]]:
        """Revision headers of the archive ``name``, newest first, below ``before`` (0: its head)."""
        raise NotImplementedError

    def archive_revision(self, name: str, seq: int) -> Dict[str, Any]:
        raise NotImplementedError

    def archive_diff(self, name: str, from_seq: int, to_seq: int) -> Dict[str, Any]:
        raise NotImplementedError


class EngineNode(Node):
    """A node in this process. :attr:`engine` is the :class:`mgha.Engine` itself, for anything
    the common methods do not cover (sessions, events, backups, plugins). ``kill`` closes it:
    peers see the connections close, and the store is as a crash would leave it (every publish
    is durable when it returns)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._engine: Optional[Engine] = None

    def _config(self) -> Dict[str, Any]:
        base = {
            "data_dir": str(self.dir),
            "name": self.name,
            "listen": f"127.0.0.1:{self.peer_port}",
            "advertise": self.address,
        }
        return {**base, **FAST_TIMERS, **self.config}

    @property
    def engine(self) -> Engine:
        if self._engine is None or self._engine.closed:
            raise InvalidArgument(4, f"node {self.name} is not running")
        return self._engine

    def create_primary(self) -> None:
        self._engine = Engine.init(self._config())
        self.running = True

    def create_secondary(self, peer: str, key: str) -> None:
        self._engine = Engine.join(self._config(), peer, key)
        self.running = True

    def start(self) -> None:
        if not self.running:
            self._engine = Engine.open(self._config())
            self.running = True

    def kill(self) -> None:
        self.running = False
        if self._engine is not None:
            self._engine.close()

    def close(self) -> None:
        self.kill()

    def join_key(self, ttl_s: float = 600) -> str:
        return self.engine.join_key(ttl_s)

    def members(self) -> List[Dict[str, Any]]:
        return self.engine.members()

    def remove_member(self, name: str) -> None:
        self.engine.remove_member(name)

    def status(self) -> Dict[str, Any]:
        return self.engine.status()

    def publish(self, changeset: Mapping[str, Any], author: str = DEFAULT_AUTHOR) -> int:
        return self.engine.publish(changeset, author)

    def get(self, type_name: str, key: str) -> Dict[str, Any]:
        return self.engine.get(type_name, key)

    def list(self, type_name: Optional[str] = None, limit: int = 0) -> List[Dict[str, Any]]:
        return self.engine.list(type_name, limit)

    def changeover(self, target: str) -> None:
        self.engine.changeover(target)

    def force_changeover(self) -> int:
        return self.engine.force_changeover()

    def collisions(self) -> List[Dict[str, Any]]:
        return self.engine.collisions()

    def collision_diff(self, branch_id: int) -> Dict[str, Any]:
        return self.engine.collision_diff(branch_id)

    def resolve_collision(
        self, branch_id: int, how: str, resolutions: Optional[Mapping[str, Any]] = None
    ) -> Optional[int]:
        return self.engine.resolve_collision(branch_id, how, resolutions)

    def archives(self) -> List[Dict[str, Any]]:
        return self.engine.archives()

    def archive_revisions(self, name: str, before: int = 0, limit: int = 0) -> List[Dict[str, Any]]:
        return self.engine.archive_revisions(name, before, limit)

    def archive_revision(self, name: str, seq: int) -> Dict[str, Any]:
        return self.engine.archive_revision(name, seq)

    def archive_diff(self, name: str, from_seq: int, to_seq: int) -> Dict[str, Any]:
        return self.engine.archive_diff(name, from_seq, to_seq)


def packaged_binary() -> Path:
    """Where a wheel built by ``scripts/build-wheel`` puts the ``mgha`` binary."""
    return Path(__file__).resolve().parent / "bin" / "mgha"


def find_binary() -> Path:
    """The ``mgha`` binary: the copy inside the installed package (a wheel ships one), else
    ``$MGHA_BIN``, else the workspace's ``target/debug/mgha``, else ``mgha`` on ``PATH``."""
    packaged = packaged_binary()
    if packaged.is_file():
        return packaged
    env = os.environ.get(BIN_ENV)
    if env:
        if not Path(env).is_file():
            raise FileNotFoundError(f"{BIN_ENV}={env}: no such file")
        return Path(env)
    workspace = Path(__file__).resolve().parent.parent.parent.parent
    tried = [packaged, workspace / "target" / "debug" / "mgha"]
    for path in tried:
        if path.is_file():
            return path
    found = shutil.which("mgha")
    if found:
        return Path(found)
    raise FileNotFoundError(
        f"the mgha binary was not found (install a wheel built by scripts/build-wheel, build it with "
        f"`cargo build -p mgha`, or set {BIN_ENV}); tried {', '.join(map(str, tried))} and PATH"
    )


# Loaded up front: the child of a fork must not import (another thread may hold the import lock).
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: have the kernel SIGKILL the daemon when the thread that
    started it (the test's) dies, however the test process ends."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class DaemonNode(Node):
    """A real daemon: ``mgha init``/``join`` make it, ``mgha run`` runs it as a child process
    (logging to ``DIR/daemon.log``), and its admin API answers. ``kill`` is SIGKILL."""

    def __init__(self, *args: Any, binary: Path, admin_port: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.binary = binary
        self.admin_port = admin_port
        self.process: Optional[subprocess.Popen] = None
        self.log_path = self.dir.parent / f"{self.name}.log"
        #: How long each admin API request and CLI call may take before it raises
        #: :class:`mgha.Unavailable`.
        self.timeout_s = API_TIMEOUT_S
        #: Objects per admin API request when :meth:`list` pages (the API's most).
        self.list_page_size = LIST_OBJECTS_MAX

    @contextlib.contextmanager
    def timeout(self, seconds: float) -> Iterator["DaemonNode"]:
        """Within the block, every call on this node may take at most ``seconds``::

            with node.timeout(2):
                node.status()          # mgha.Unavailable after 2 s if the daemon hangs
        """
        before, self.timeout_s = self.timeout_s, seconds
        try:
            yield self
        finally:
            self.timeout_s = before

    def _cli(self, *args: str) -> str:
        try:
            result = subprocess.run(
                [str(self.binary), *args], capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(f"mgha {args[0]} did not finish within {self.timeout_s:g} s") from None
        if result.returncode != 0:
            raise Error(-1, f"mgha {args[0]} failed (exit {result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def _addresses(self) -> List[str]:
        return ["--admin", f"127.0.0.1:{self.admin_port}", "--listen", f"127.0.0.1:{self.peer_port}",
                "--advertise", self.address]  # fmt: skip

    def _write_config(self) -> None:
        """Sets the test's keys in ``mgha.toml``, replacing the ones init or join wrote."""
        path = self.dir / "mgha.toml"
        keys = {**FAST_TIMERS, **self.config}
        lines = [ln for ln in path.read_text().splitlines() if ln.split("=")[0].strip() not in keys]
        lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
        path.write_text("\n".join(lines) + "\n")

    def create_primary(self) -> None:
        self._cli("init", "--data-dir", str(self.dir), "--name", self.name, *self._addresses())
        self._write_config()
        self.start()

    def create_secondary(self, peer: str, key: str) -> None:
        self._cli("join", "--data-dir", str(self.dir), "--name", self.name, "--peer", peer, "--key", key,
                  *self._addresses())  # fmt: skip
        self._write_config()
        self.start()

    def start(self) -> None:
        if self.running:
            return
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [str(self.binary), "run", "--data-dir", str(self.dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        self.running = True
        deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                self.running = False
                raise Error(-1, f"daemon {self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.status()
                return
            except (OSError, Error):  # Unavailable until it listens
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(f"daemon {self.name} did not answer in time:\n{self.log_tail()}")
                time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends ``sig`` (SIGKILL unless told) and waits for the process to end."""
        self.running = False
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self.kill()

    def request(
        self, method: str, path: str, body: Any = None, author: Optional[str] = None, timeout_s: Optional[float] = None
    ) -> Any:
        """One admin API call; an error body raises its :mod:`mgha.errors` class, a daemon that
        does not answer (refused, reset, closed mid-answer, or silent past ``timeout_s``, by
        default :attr:`timeout_s`) raises :class:`mgha.Unavailable`."""
        token = (self.dir / "admin.token").read_text().strip()
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if author is not None:
            req.add_header("X-Mgha-Author", author)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read()
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                detail = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                raise Error(-1, f"{method} {path}: HTTP {e.code}: {text[:200]!r}") from None
            raise error_for_api(detail["code"], detail["message"]) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            # URLError wraps a refused or timed-out connect; a reset, a timeout while reading
            # and a connection closed before the answer (RemoteDisconnected) arrive bare.
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            raise Unavailable(f"{method} {path}: daemon {self.name} did not answer: {reason!r}") from e
        return json.loads(text) if text else None

    def join_key(self, ttl_s: float = 600) -> str:
        return str(self.request("POST", "/v1/join-keys", {"expires_ms": int(ttl_s * 1000)})["key"])

    def members(self) -> List[Dict[str, Any]]:
        return list(self.request("GET", "/v1/members")["members"])

    def remove_member(self, name: str) -> None:
        self.request("DELETE", "/v1/members/" + urllib.parse.quote(name, safe=""))

    def status(self) -> Dict[str, Any]:
        return self.request("GET", "/v1/status")

    def publish(self, changeset: Mapping[str, Any], author: str = DEFAULT_AUTHOR) -> int:
        return int(self.request("POST", "/v1/publish", changeset, author=author)["seq"])

    def get(self, type_name: str, key: str) -> Dict[str, Any]:
        q = urllib.parse.quote
        return self.request("GET", f"/v1/objects/{q(type_name, safe='')}/{q(key, safe='')}")

    def list(self, type_name: Optional[str] = None, limit: int = 0) -> List[Dict[str, Any]]:
        # The API answers 1,000 objects unless asked for more, and at most 100,000 at once:
        # page through it, each page starting after the last object of the one before.
        if limit < 0:
            raise InvalidArgument(4, f"limit must be 0 (all) or more, not {limit}")
        objects: List[Dict[str, Any]] = []
        after: Optional[Tuple[str, str]] = None
        while True:
            want = self.list_page_size if limit == 0 else min(self.list_page_size, limit - len(objects))
            params: Dict[str, Any] = {"limit": want}
            if type_name is not None:
                params["type"] = type_name
            if after is not None:
                params["after_type"], params["after_name"] = after
            page = list(self.request("GET", "/v1/objects?" + urllib.parse.urlencode(params))["objects"])
            objects.extend(page)
            if len(page) < want or (limit and len(objects) >= limit):
                return objects
            after = (str(page[-1]["type"]), str(page[-1]["name"]))

    def changeover(self, target: str) -> None:
        self.request("POST", "/v1/changeover", {"to": target})

    def force_changeover(self) -> int:
        return int(self.request("POST", "/v1/changeover", {"force": True})["epoch"])

    def collisions(self) -> List[Dict[str, Any]]:
        return list(self.request("GET", "/v1/collisions")["collisions"])

    def collision_diff(self, branch_id: int) -> Dict[str, Any]:
        return self.request("GET", f"/v1/collisions/{branch_id}/diff")

    def resolve_collision(
        self, branch_id: int, how: str, resolutions: Optional[Mapping[str, Any]] = None
    ) -> Optional[int]:
        if how in ("keep-active", "keep-branch"):
            body: Dict[str, Any] = {"keep": how.split("-")[1]}
        elif how.startswith("merge"):
            merge: Dict[str, Any] = {}
            if how.startswith("merge-prefer-"):
                merge["prefer"] = how[len("merge-prefer-") :]
            if resolutions is not None:
                merge["resolutions"] = resolutions
            body = {"merge": merge}
        else:
            raise InvalidArgument(4, f"how: '{how}' is not a way to resolve a collision")
        revision = self.request("POST", f"/v1/collisions/{branch_id}/resolve", body)["revision"]
        return None if revision is None else int(revision["seq"])

    def archives(self) -> List[Dict[str, Any]]:
        return list(self.request("GET", "/v1/archive")["archives"])

    def archive_revisions(self, name: str, before: int = 0, limit: int = 0) -> List[Dict[str, Any]]:
        query = {k: v for k, v in (("before", before), ("limit", limit)) if v}
        path = f"/v1/archive/{urllib.parse.quote(name, safe='')}/revisions"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return list(self.request("GET", path)["revisions"])

    def archive_revision(self, name: str, seq: int) -> Dict[str, Any]:
        return self.request("GET", f"/v1/archive/{urllib.parse.quote(name, safe='')}/revisions/{seq}")

    def archive_diff(self, name: str, from_seq: int, to_seq: int) -> Dict[str, Any]:
        query = urllib.parse.urlencode({"from": from_seq, "to": to_seq})
        return self.request("GET", f"/v1/archive/{urllib.parse.quote(name, safe='')}/diff?{query}")
