"""mgha: Python bindings of libmgha, the Management High Availability engine, over its C ABI
(cffi in ABI mode: the real exports, no compiled extension), made for writing tests of HA
deployments.

- :class:`Engine`: one node in this process (init, join, open; publish, read, diff, revert,
  changeover, collisions, plugins, backups, events), and ``engine.domain(name)`` for an
  :class:`Engine` on one of its domains (create, delete, move, rebalance them on the node).
- :mod:`mgha.errors`: one exception class per status code, all under :class:`Error`.
- :mod:`mgha.testing`: clusters of engines or daemons on loopback for pytest, with a fault proxy.

The library is found in the package (a wheel ships it), then through ``MGHA_LIBRARY``, then in
the workspace's ``target/`` (see :mod:`mgha._lib`); it is loaded on first use.
"""

from ._lib import LIBRARY_ENV, LibraryNotFound, library_path
from .engine import (
    DEFAULT_AUTHOR,
    RESOLVE_WAYS,
    Engine,
    Session,
    plugin_check,
    restore_backup,
    verify_backup,
    version,
)
from .errors import (
    Busy,
    Conflict,
    Corrupt,
    Error,
    InvalidArgument,
    InvalidUtf8,
    IoError,
    NotFound,
    NullArgument,
    Panic,
    PeerError,
    ReadOnly,
    TooLarge,
    Unavailable,
    ValidationError,
)
from .events import Event, EventKind, Subscription

__all__ = [
    "LIBRARY_ENV",
    "LibraryNotFound",
    "library_path",
    "DEFAULT_AUTHOR",
    "RESOLVE_WAYS",
    "Engine",
    "Session",
    "plugin_check",
    "restore_backup",
    "verify_backup",
    "version",
    "Error",
    "NullArgument",
    "InvalidUtf8",
    "Panic",
    "InvalidArgument",
    "ValidationError",
    "NotFound",
    "Conflict",
    "ReadOnly",
    "TooLarge",
    "Corrupt",
    "IoError",
    "Busy",
    "PeerError",
    "Unavailable",
    "Event",
    "EventKind",
    "Subscription",
]

__version__ = "0.1.0"
