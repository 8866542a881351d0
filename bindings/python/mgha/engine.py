"""The engine: one mgha node in this process, through libmgha's C ABI (docs/c-api.md).

An :class:`Engine` is made by :meth:`Engine.init` (a new cluster's Primary), :meth:`Engine.join`
(a Secondary, with a one-time key) or :meth:`Engine.open` (an existing node), and closed by
:meth:`Engine.close` or by leaving its ``with`` block. Objects cross as dicts (``{"type",
"name", "uid", "fields"}``); every failure raises the :mod:`mgha.errors` class of its status.

A node holds one or more domains (docs/c-api.md, "Domains"): :meth:`Engine.domain` gives an
:class:`Engine` on one of them, whose methods act on that domain (reads, writes, revisions,
roles, status, events) while those about the node (members, join keys, peer address, the
domain calls) act on the node. Closing it closes only that handle.

Every method may be called from any thread; the C call releases the GIL, so a blocking call
(a planned changeover, a synchronous publish) does not stop other Python threads.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import weakref
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ._lib import bytes_out, c_text, check, ffi, json_out, lib, string_out, u64_out
from ._toml import config_text
from .errors import Error, InvalidArgument
from .events import Callback, EventPump, Subscription

#: A configuration: a mapping of the keys of docs/c-api.md, or TOML text.
Config = Union[Mapping[str, Any], str]
#: A changeset: a mapping (``{"message"?, "changes": [...]}``) or its JSON text.
Changeset = Union[Mapping[str, Any], str]

#: The author of writes that name none.
DEFAULT_AUTHOR = "python"

#: The ways :meth:`Engine.resolve_collision` takes.
RESOLVE_WAYS = ("keep-active", "keep-branch", "merge", "merge-prefer-active", "merge-prefer-branch")

_live: "weakref.WeakSet[Engine]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # An engine's threads must not call into an interpreter that is shutting down.
    for engine in list(_live):
        engine.close()


class Session:
    """An admin session: stage puts and deletes, then publish them as one revision.

    As a context manager (``with engine.session("alice", "web tier") as s:``) it publishes on a
    normal exit (when something was staged), discards when the block raises, and frees the
    session either way. :attr:`seq` is the revision it published.
    """

    def __init__(self, engine: "Engine", author: str, message: str = "") -> None:
        out = ffi.new("mgha_session **")
        check(lib().mgha_session_begin(engine._handle(), c_text(author, "author"), out))
        self._ptr = out[0]
        self.message = message
        self.staged = 0
        self.seq: Optional[int] = None

    def _handle(self) -> Any:
        if self._ptr is None:
            raise InvalidArgument(4, "this session was freed")
        return self._ptr

    def put(self, obj: Mapping[str, Any]) -> None:
        """Stages a put of ``{"type", "name", "uid"?, "fields"}`` and locks the object."""
        check(lib().mgha_session_put_json(self._handle(), c_text(json.dumps(obj), "object")))
        self.staged += 1

    def put_msgpack(self, obj: bytes) -> None:
        """As :meth:`put`, with the object as a MessagePack map (what
        :meth:`Engine.get_msgpack` returns is accepted as is)."""
        check(lib().mgha_session_put_msgpack(self._handle(), ffi.from_buffer(obj), len(obj)))
        self.staged += 1

    def delete(self, type_name: str, name_or_uid: str) -> None:
        """Stages a delete, by uid or by name."""
        check(lib().mgha_session_delete(self._handle(), c_text(type_name, "type"), c_text(name_or_uid, "name")))
        self.staged += 1

    def publish(self, message: Optional[str] = None) -> int:
        """Publishes the staged changes; returns the revision number."""
        text = self.message if message is None else message
        self.seq = u64_out(lib().mgha_session_publish, self._handle(), c_text(text, "message"))
        return self.seq

    def discard(self) -> None:
        """Drops the staged changes and releases their locks."""
        check(lib().mgha_session_discard(self._handle()))

    def free(self) -> None:
        """Frees the session (discarding it if still open). Idempotent."""
        if self._ptr is not None:
            lib().mgha_session_free(self._ptr)
            self._ptr = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if exc_type is None and self.seq is None and self.staged:
                self.publish()
        finally:
            self.free()

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # noqa: BLE001 - at interpreter exit the library may be gone
            pass


class Engine:
    """An open node, or one domain of it. Use the class methods to make one, and
    :meth:`domain` for a handle on a domain."""

    def __init__(self, ptr: Any, domain: Optional[str] = None) -> None:
        self._ptr = ptr
        self._close_lock = threading.Lock()
        self._name: Optional[str] = None
        #: ``None`` for the node's own handle; the domain's name for a handle from :meth:`domain`.
        self._domain = domain
        _live.add(self)
        try:
            label = self.name
        except Error:
            label = "?"
        self._events = EventPump(label)

    # -- making and closing ------------------------------------------------------------------

    @classmethod
    def init(cls, config: Config) -> "Engine":
        """Creates a cluster: a Primary, Active, in the config's ``data_dir``."""
        out = ffi.new("mgha_engine **")
        check(lib().mgha_engine_init(c_text(config_text(config), "config"), out))
        return cls(out[0])

    @classmethod
    def join(cls, config: Config, peer: str, key: str) -> "Engine":
        """Joins the cluster of the node at ``peer`` (``HOST:PORT``) with a one-time key."""
        out = ffi.new("mgha_engine **")
        text = c_text(config_text(config), "config")
        check(lib().mgha_engine_join(text, c_text(peer, "peer"), c_text(key, "key"), out))
        return cls(out[0])

    @classmethod
    def open(cls, config: Config) -> "Engine":
        """Opens the existing node in the config's ``data_dir``."""
        out = ffi.new("mgha_engine **")
        check(lib().mgha_engine_open(c_text(config_text(config), "config"), out))
        return cls(out[0])

    @classmethod
    def open_path(cls, path: Union[str, "os.PathLike[str]"]) -> "Engine":
        """Opens a node from a config file."""
        out = ffi.new("mgha_engine **")
        check(lib().mgha_engine_open_path(c_text(path, "path"), out))
        return cls(out[0])

    def _handle(self) -> Any:
        ptr = self._ptr
        if ptr is None:
            raise InvalidArgument(4, "this engine is closed")
        return ptr

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def close(self) -> None:
        """Stops the engine and closes its store; event callbacks end. Idempotent. On a handle
        from :meth:`domain`, closes only that handle: the node goes on."""
        with self._close_lock:
            ptr, self._ptr = self._ptr, None
            if ptr is None:
                return
            try:
                check(lib().mgha_engine_close(ptr))
            finally:
                self._events.stop()
                _live.discard(self)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        domain = f" domain {self._domain}" if self._domain is not None else ""
        return f"<mgha.Engine {self._name or '?'}{domain}{' closed' if self.closed else ''}>"

    # -- identity ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The node's name."""
        if self._name is None:
            self._name = str(self.status()["node"]["name"])
        return self._name

    @property
    def peer_addr(self) -> str:
        """The address the engine listens on for peers."""
        return string_out(lib().mgha_engine_peer_addr, self._handle())

    def join_key(self, ttl_s: float = 3600) -> str:
        """A one-time join key valid for ``ttl_s`` seconds (only on the Primary)."""
        return string_out(lib().mgha_engine_join_key, self._handle(), max(1, int(ttl_s * 1000)))

    def status(self) -> Dict[str, Any]:
        """``node``, ``head``, ``floor``, ``objects``, ``sessions``, ``active``, ``peers``."""
        return json_out(lib().mgha_engine_status_json, self._handle())

    def members(self) -> List[Dict[str, Any]]:
        """The current members this node knows, itself included, sorted by name: ``name``,
        ``node_id``, ``listen``, ``designation``."""
        return list(json_out(lib().mgha_engine_members_json, self._handle())["members"])

    def remove_member(self, name: str) -> None:
        """Removes the member ``name`` (on the Active only; never the Active itself): every
        node refuses its certificate from then on, and its name is free for a new join."""
        check(lib().mgha_engine_member_remove(self._handle(), c_text(name, "name")))

    # -- domains -----------------------------------------------------------------------------

    @property
    def domain_name(self) -> str:
        """The domain this handle acts on: ``"global"`` for the node's own handle."""
        return self._domain if self._domain is not None else "global"

    def domain(self, name: str) -> "Engine":
        """A handle on the domain ``name`` of this node (``"global"``: the node's own), with
        the same methods, acting on that domain; close it (or leave its ``with`` block) when
        done, which leaves the node open. :class:`~mgha.NotFound` for an unknown domain or one
        this server holds no replica of; once the domain is deleted, its handle's calls raise
        :class:`~mgha.NotFound`, and once the node is closed :class:`~mgha.InvalidArgument`."""
        out = ffi.new("mgha_engine **")
        check(lib().mgha_engine_domain(self._handle(), c_text(name, "name"), out))
        return Engine(out[0], domain=name)

    def domains(self) -> List[Dict[str, Any]]:
        """Every domain of the cluster, the global one first, as this server sees it: ``name``,
        ``id``, ``global``, ``replicas``, ``here``, ``retain_revisions`` when the domain has a
        number of its own and, for a replica held here, ``role``,
        ``epoch``, ``active``, ``head_seq``, ``objects``, ``peers``."""
        return list(json_out(lib().mgha_engine_domains_json, self._handle())["domains"])

    def create_domain(
        self,
        name: str,
        replicas: Optional[int] = None,
        on: Optional[Sequence[str]] = None,
        retain_revisions: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Creates a domain (on the global domain's Active): on the servers ``on`` names (the
        first Active), or on ``replicas`` servers (default 2) that hold the fewest; keeping its
        newest ``retain_revisions`` revisions (default: each server's ``retain_revisions``).
        Returns it as :meth:`domains` shows it. :class:`~mgha.Conflict` when the name is taken."""
        request: Dict[str, Any] = {"name": name}
        if replicas is not None:
            request["replicas"] = replicas
        if on is not None:
            request["on"] = list(on)
        if retain_revisions is not None:
            request["retain_revisions"] = retain_revisions
        text = c_text(json.dumps(request), "request")
        return json_out(lib().mgha_engine_domain_create, self._handle(), text)

    def delete_domain(self, name: str, force: bool = False) -> Dict[str, Any]:
        """Deletes the domain ``name`` (on the global domain's Active); refused
        (:class:`~mgha.Conflict`) while it holds objects unless ``force``, which writes a
        verified backup first (``backup``: its path). Every replica's store is archived."""
        return json_out(lib().mgha_engine_domain_delete, self._handle(), c_text(name, "name"), 1 if force else 0)

    def set_domain_retention(self, name: str, retain_revisions: Optional[int]) -> Dict[str, Any]:
        """Sets how many of its newest revisions the domain ``name`` keeps (``None``: each
        server's ``retain_revisions`` again); an Active keeping fewer than before purges the
        older history at once. Returns the domain as :meth:`domains` shows it."""
        if retain_revisions is not None and retain_revisions < 1:
            raise ValueError("retain_revisions must be at least 1, or None")
        return json_out(
            lib().mgha_engine_domain_set_retention, self._handle(), c_text(name, "name"), retain_revisions or 0
        )

    def move_domain(self, name: str, from_: str, to: str) -> Dict[str, Any]:
        """Moves the domain ``name``'s replica from server ``from_`` to server ``to`` (not its
        Active: change that over first). Returns the domain as :meth:`domains` shows it."""
        return json_out(
            lib().mgha_engine_domain_move,
            self._handle(),
            c_text(name, "name"),
            c_text(from_, "from_"),
            c_text(to, "to"),
        )

    def rebalance(self) -> List[Dict[str, Any]]:
        """Spreads the domains' Actives over the healthy servers by planned changeovers; returns
        each planned move (``domain``, ``from``, ``to``) with its new ``epoch`` or its ``error``."""
        return list(json_out(lib().mgha_engine_rebalance_json, self._handle())["moves"])

    # -- writes ------------------------------------------------------------------------------

    def session(self, author: str = DEFAULT_AUTHOR, message: str = "") -> Session:
        """An admin session; see :class:`Session`."""
        return Session(self, author, message)

    def publish(self, changeset: Changeset, author: str = DEFAULT_AUTHOR) -> int:
        """Publishes a changeset (docs/changeset.md) as one revision; returns its number."""
        text = changeset if isinstance(changeset, str) else json.dumps(changeset)
        publish = lib().mgha_engine_publish_json
        return u64_out(publish, self._handle(), c_text(author, "author"), c_text(text, "changeset"))

    def revert(self, to: int, author: str = DEFAULT_AUTHOR) -> int:
        """Publishes a revision that restores the state after revision ``to``."""
        return u64_out(lib().mgha_engine_revert, self._handle(), c_text(author, "author"), to)

    # -- reads -------------------------------------------------------------------------------

    def get(self, type_name: str, key: str) -> Dict[str, Any]:
        """One object by uid or name."""
        return json_out(lib().mgha_engine_get_json, self._handle(), c_text(type_name, "type"), c_text(key, "key"))

    def get_msgpack(self, type_name: str, key: str) -> bytes:
        """One object in its canonical MessagePack encoding."""
        return bytes_out(lib().mgha_engine_get_msgpack, self._handle(), c_text(type_name, "type"), c_text(key, "key"))

    def list(self, type_name: Optional[str] = None, limit: int = 0) -> List[Dict[str, Any]]:
        """Objects of one type (or all), by name; ``limit`` 0 is the library's cap."""
        t = ffi.NULL if type_name is None else c_text(type_name, "type")
        return json_out(lib().mgha_engine_list_json, self._handle(), t, limit)

    def revisions(self, limit: int = 0) -> List[Dict[str, Any]]:
        """Revision headers, newest first."""
        return json_out(lib().mgha_engine_revisions_json, self._handle(), limit)

    def revision(self, seq: int) -> Dict[str, Any]:
        """One revision with its changes."""
        return json_out(lib().mgha_engine_revision_json, self._handle(), seq)

    def diff(self, from_seq: int, to_seq: int) -> Dict[str, Any]:
        """Field-level differences between two revisions (0 is the empty state)."""
        return json_out(lib().mgha_engine_diff_json, self._handle(), from_seq, to_seq)

    def check(self) -> Dict[str, Any]:
        """A full integrity check of the store."""
        return json_out(lib().mgha_engine_check_json, self._handle())

    # -- the archive: stores a full sync replaced, browsed read-only ---------------------------

    def archives(self) -> List[Dict[str, Any]]:
        """The archived stores and backups of this engine's data directory, oldest first: each
        with ``name``, ``reason`` (``diverged``, ``damaged`` or ``backup``), ``archived_ms``,
        ``bytes``, ``head``, ``floor``, ``revisions`` and ``damage``."""
        return json_out(lib().mgha_engine_archive_list_json, self._handle())["archives"]

    def archive_revisions(self, name: str, before: int = 0, limit: int = 0) -> List[Dict[str, Any]]:
        """Revision headers of the archive ``name``, newest first, below ``before`` (0: from its
        head)."""
        return json_out(
            lib().mgha_engine_archive_revisions_json, self._handle(), c_text(name, "name"), before, limit
        )["revisions"]

    def archive_revision(self, name: str, seq: int) -> Dict[str, Any]:
        """One revision of the archive ``name``, with its changes."""
        return json_out(lib().mgha_engine_archive_revision_json, self._handle(), c_text(name, "name"), seq)

    def archive_diff(self, name: str, from_seq: int, to_seq: int) -> Dict[str, Any]:
        """Field-level differences between two revisions of the archive ``name``."""
        return json_out(lib().mgha_engine_archive_diff_json, self._handle(), c_text(name, "name"), from_seq, to_seq)

    def backup(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes a verified online backup to ``path``, which must not exist."""
        check(lib().mgha_engine_backup(self._handle(), c_text(path, "path")))

    # -- roles and collisions ----------------------------------------------------------------

    def changeover(self, target: str) -> None:
        """A planned changeover to the member ``target``; blocks until done or refused
        (:class:`~mgha.Conflict`)."""
        check(lib().mgha_engine_changeover(self._handle(), c_text(target, "target")))

    def force_changeover(self) -> int:
        """Makes this Standby the Active now; returns the new epoch."""
        return u64_out(lib().mgha_engine_changeover_force, self._handle())

    def promote(self) -> None:
        """Makes this Secondary the Primary (the Primary is lost for good)."""
        check(lib().mgha_engine_promote(self._handle()))

    def collisions(self) -> List[Dict[str, Any]]:
        """Every collision branch kept here, resolved ones included."""
        return json_out(lib().mgha_engine_collisions_json, self._handle())

    def collision_diff(self, branch_id: int) -> Dict[str, Any]:
        """What the branch and the Active each changed since the fork, and the conflicts."""
        return json_out(lib().mgha_engine_collision_diff_json, self._handle(), branch_id)

    def resolve_collision(
        self,
        branch_id: int,
        how: str,
        resolutions: Optional[Mapping[str, Any]] = None,
        author: str = DEFAULT_AUTHOR,
    ) -> Optional[int]:
        """Resolves a branch ``how`` (one of :data:`RESOLVE_WAYS`), a merge's conflicts settled
        by the preferred side and/or a resolution file (docs/roles.md). Returns the revision
        published, or ``None`` when nothing was."""
        text = ffi.NULL if resolutions is None else c_text(json.dumps(resolutions), "resolutions")
        seq = u64_out(
            lib().mgha_engine_collision_resolve,
            self._handle(),
            branch_id,
            c_text(how, "how"),
            text,
            c_text(author, "author"),
        )
        return seq or None

    # -- plugins -----------------------------------------------------------------------------

    def plugin_check(self, wasm: bytes) -> Dict[str, Any]:
        """As :func:`mgha.plugin_check`."""
        return plugin_check(wasm)

    def plugin_install(self, wasm: bytes, author: str = DEFAULT_AUTHOR) -> int:
        """Installs or upgrades a plugin as one revision; returns its number."""
        buf = ffi.from_buffer(wasm)
        return u64_out(lib().mgha_engine_plugin_install, self._handle(), c_text(author, "author"), buf, len(wasm))

    def plugin_list(self) -> List[Dict[str, Any]]:
        """Every installed plugin with what it declares."""
        return json_out(lib().mgha_engine_plugin_list_json, self._handle())

    def plugin_remove(self, name: str, author: str = DEFAULT_AUTHOR) -> int:
        """Removes a plugin as one revision; returns its number."""
        return u64_out(lib().mgha_engine_plugin_remove, self._handle(), c_text(author, "author"), c_text(name, "name"))

    # -- events ------------------------------------------------------------------------------

    def subscribe(self, callback: Callback) -> Subscription:
        """Calls ``callback(event)`` for every event from now on, on this engine's Python
        dispatcher thread (see :mod:`mgha.events`), until unsubscribed or closed."""
        return self._events.add(self._handle(), callback)


def plugin_check(wasm: bytes) -> Dict[str, Any]:
    """Checks a WebAssembly plugin module as install would; returns what it declares."""
    buf = ffi.from_buffer(wasm)
    return json_out(lib().mgha_plugin_check, buf, len(wasm))


def verify_backup(path: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """Checks a backup file end to end; returns its summary."""
    return json_out(lib().mgha_backup_verify, c_text(path, "path"))


def restore_backup(path: Union[str, "os.PathLike[str]"], config: Config) -> None:
    """Verifies a backup and restores it into the config's ``data_dir`` (a new node without
    certificates, which runs without peers when opened)."""
    check(lib().mgha_backup_restore(c_text(path, "path"), c_text(config_text(config), "config")))


def version() -> str:
    """The library's version."""
    return ffi.string(lib().mgha_version()).decode()
