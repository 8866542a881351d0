"""Loading libmgha with cffi in ABI mode, and the helpers every call goes through.

The declarations come from ``mgha/_cdef.py``, generated from ``include/mgha.h`` (see
``mgha/_header.py``). The library is found, on first use (so that ``import mgha`` never fails
for want of it), in this order:

1. the copy inside the installed package (``mgha/libmgha.so``), which a wheel built by
   ``scripts/build-wheel`` ships: an installed wheel uses its own library, whatever the
   environment says;
2. the file named by the environment variable ``MGHA_LIBRARY`` (when set, nothing after it is
   looked at: a test run that names a library must not silently use another);
3. the workspace's build output, relative to this package's source:
   ``target/debug/libmgha.so``, then ``target/release/libmgha.so``.

When none loads, :class:`LibraryNotFound` (an :class:`ImportError`) lists every path tried and
why each failed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

from cffi import FFI

from ._cdef import CDEF
from .errors import InvalidArgument, error_for

#: The environment variable that names the library file.
LIBRARY_ENV = "MGHA_LIBRARY"

ffi = FFI()
ffi.cdef(CDEF)


class LibraryNotFound(ImportError):
    """libmgha could not be loaded; ``tried`` holds (path, reason) for every candidate."""

    def __init__(self, tried: List[Tuple[str, str]]) -> None:
        self.tried = tried
        lines = "\n".join(f"  {path}: {reason}" for path, reason in tried)
        super().__init__(
            "libmgha was not found. Install a wheel built by scripts/build-wheel, or build it "
            f"with `cargo build -p mgha-ffi` and set {LIBRARY_ENV} to its path. Tried:\n{lines}"
        )


def library_file_name() -> str:
    """The platform's file name of the shared library."""
    if sys.platform == "darwin":
        return "libmgha.dylib"
    if sys.platform == "win32":
        return "mgha.dll"
    return "libmgha.so"


def candidates() -> List[Path]:
    """Where the library is looked for, in order."""
    here = Path(__file__).resolve().parent
    name = library_file_name()
    packaged = here / name
    if packaged.is_file():
        return [packaged]
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return [packaged, Path(env)]
    workspace = here.parent.parent.parent  # bindings/python/mgha -> the repository root
    return [packaged, workspace / "target" / "debug" / name, workspace / "target" / "release" / name]


_lock = threading.Lock()
_loaded: Optional[Tuple[Any, Path]] = None


def _load() -> Tuple[Any, Path]:
    tried: List[Tuple[str, str]] = []
    for path in candidates():
        if not path.is_file():
            tried.append((str(path), "no such file"))
            continue
        try:
            return ffi.dlopen(str(path)), path
        except OSError as e:
            tried.append((str(path), f"cannot load: {e}"))
    raise LibraryNotFound(tried)


def lib() -> Any:
    """The loaded library (loaded on first call)."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _load()
    return _loaded[0]


def library_path() -> Path:
    """The file the library was loaded from."""
    lib()
    assert _loaded is not None
    return _loaded[1]


def last_error_message() -> str:
    """The calling thread's last error message."""
    return ffi.string(lib().mgha_last_error_message()).decode("utf-8", "replace")


def check(status: int) -> None:
    """Raises the exception for a failed status; reads the message on this thread, right after
    the call, as the C API requires."""
    if status != 0:
        raise error_for(int(status), last_error_message())


def c_text(value: Any, what: str) -> bytes:
    """A Python string (or path) as a NUL-terminated UTF-8 argument. A NUL inside would silently
    cut the text short on the C side, so it is refused here."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    if "\0" in text:
        raise InvalidArgument(4, f"{what} contains a NUL character")
    return text.encode("utf-8")


def take_string(ptr: Any) -> str:
    """Copies a string the library returned, then frees it."""
    try:
        return ffi.string(ptr).decode("utf-8")
    finally:
        lib().mgha_string_free(ptr)


def string_out(fn: Callable[..., int], *args: Any) -> str:
    """Calls ``fn(*args, char **out)`` and returns the string it produced."""
    out = ffi.new("char **")
    check(fn(*args, out))
    return take_string(out[0])


def json_out(fn: Callable[..., int], *args: Any) -> Any:
    """As :func:`string_out`, parsed as JSON."""
    return json.loads(string_out(fn, *args))


def u64_out(fn: Callable[..., int], *args: Any) -> int:
    """Calls ``fn(*args, uint64_t *out)`` and returns the number."""
    out = ffi.new("uint64_t *")
    check(fn(*args, out))
    return int(out[0])


def bytes_out(fn: Callable[..., int], *args: Any) -> bytes:
    """Calls ``fn(*args, uint8_t **out, size_t *out_len)`` and returns the bytes, freed."""
    out = ffi.new("uint8_t **")
    out_len = ffi.new("size_t *")
    check(fn(*args, out, out_len))
    try:
        return bytes(ffi.buffer(out[0], out_len[0]))
    finally:
        lib().mgha_bytes_free(out[0], out_len[0])
