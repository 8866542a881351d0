"""Exceptions: one class per status code of the C ABI (docs/c-api.md, "Errors").

Every failed call raises a subclass of :class:`Error` carrying the status ``code`` (an int, as
in ``mgha.h``), its ``code_name`` (``"MGHA_READ_ONLY"``) and the library's ``message``, so a
test can catch exactly what it expects::

    with pytest.raises(mgha.ReadOnly, match="'a'"):
        standby.publish(changeset)

Errors from a daemon's admin API (``mgha.testing`` in daemon mode) arrive as the same classes:
their JSON ``code`` (``"read-only"``) names the same engine error codes. A daemon that does not
answer at all raises :class:`Unavailable`.
"""

from __future__ import annotations

from typing import Dict, Optional, Type


class Error(Exception):
    """A call into libmgha (or a daemon's admin API) failed."""

    #: The status code this class stands for (``None`` on the base class).
    code_value: Optional[int] = None

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.code_name = CODE_NAMES.get(code, "MGHA_UNKNOWN")
        self.message = message

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"


class NullArgument(Error):
    """A required pointer was NULL (only reachable through the raw ``mgha._lib`` layer)."""

    code_value = 1


class InvalidUtf8(Error):
    """A string argument was not UTF-8."""

    code_value = 2


class Panic(Error):
    """The library hit an internal error (a bug); the engine stays usable."""

    code_value = 3


class InvalidArgument(Error):
    """Malformed JSON, TOML or MessagePack; an unknown config key; a malformed join key; a
    closed engine; a spent session; a resolution that does not fit."""

    code_value = 4


class ValidationError(Error):
    """A change breaks a schema, reference or plugin rule; nothing was published."""

    code_value = 5


class NotFound(Error):
    """No such object, revision, collision branch, plugin, subscription or file."""

    code_value = 6


class Conflict(Error):
    """An object is locked by another session, or a changeover was refused."""

    code_value = 7


class ReadOnly(Error):
    """A write on a Standby: a publish, opening a session, resolving a collision; the message
    names the Active when it is known."""

    code_value = 8


class TooLarge(Error):
    """An input over a named limit: an object over 1 MiB, a changeset or session over 100,000
    changes, a session's staged objects over 32 MiB (docs/changeset.md)."""

    code_value = 9


class Corrupt(Error):
    """Stored data or a backup file failed a check."""

    code_value = 10


class IoError(Error):
    """An operating-system or storage error (``MGHA_IO``), a peer port already in use among
    them."""

    code_value = 11


class Busy(Error):
    """A limit on concurrent use, a data directory in use, a changeover in progress, a call
    not allowed on the thread it was made on, or a handle used in a process forked after it was
    made."""

    code_value = 12


class PeerError(Error):
    """A peer refused or did not answer (a join), or too few standbys acknowledged a
    synchronous publish."""

    code_value = 13


class Unavailable(Error):
    """A daemon did not answer (``mgha.testing`` in daemon mode): the connection was refused,
    reset or closed mid-answer, or the call outlived its timeout. Not a status of the C ABI
    (``code`` is -1): an engine in this process is never unavailable, it is closed
    (:class:`InvalidArgument`). A killed or hung daemon raises this, so a test catches
    :class:`Error` alike in both modes."""

    def __init__(self, message: str) -> None:
        super().__init__(-1, message)
        self.code_name = "UNAVAILABLE"


#: ``mgha_status`` values and their names, as ``mgha_status_name`` returns them (a test checks
#: both against the library).
CODE_NAMES: Dict[int, str] = {
    0: "MGHA_OK",
    1: "MGHA_NULL_ARGUMENT",
    2: "MGHA_INVALID_UTF8",
    3: "MGHA_PANIC",
    4: "MGHA_INVALID_ARGUMENT",
    5: "MGHA_VALIDATION",
    6: "MGHA_NOT_FOUND",
    7: "MGHA_CONFLICT",
    8: "MGHA_READ_ONLY",
    9: "MGHA_TOO_LARGE",
    10: "MGHA_CORRUPT",
    11: "MGHA_IO",
    12: "MGHA_BUSY",
    13: "MGHA_PEER",
}

#: The class of each status code.
CLASSES: Dict[int, Type[Error]] = {
    cls.code_value: cls
    for cls in (
        NullArgument,
        InvalidUtf8,
        Panic,
        InvalidArgument,
        ValidationError,
        NotFound,
        Conflict,
        ReadOnly,
        TooLarge,
        Corrupt,
        IoError,
        Busy,
        PeerError,
    )
    if cls.code_value is not None
}

#: The admin API's error codes (``{"error": {"code": "read-only", ...}}``) and their statuses.
API_CODES: Dict[str, int] = {
    "invalid-argument": 4,
    "validation": 5,
    "not-found": 6,
    "conflict": 7,
    "read-only": 8,
    "too-large": 9,
    "corrupt": 10,
    "io": 11,
    "busy": 12,
    "peer": 13,
}


def error_for(code: int, message: str) -> Error:
    """The exception for a status code and message."""
    return CLASSES.get(code, Error)(code, message)


def error_for_api(api_code: str, message: str) -> Error:
    """The exception for an admin API error body's code; an unknown code gives a plain
    :class:`Error` whose message keeps the code."""
    if api_code in API_CODES:
        return error_for(API_CODES[api_code], message)
    return Error(-1, f"{api_code}: {message}")
