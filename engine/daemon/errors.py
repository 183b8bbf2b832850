"""The one place where errors become HTTP statuses (like moby's errdefs -> httpstatus).

Engine errors carry their status (engine/errors.py); libcontainer's own errors and a few
Python built-ins are mapped here so that no backend has to know about HTTP.
"""

from __future__ import annotations

import json

from engine.errors import (
    Conflict,
    Forbidden,
    InvalidParameter,
    NotFound,
    NotModified,
    SkiffError,
    SystemError_,
    Unavailable,
)
from engine.libcontainer import errors as lc

__all__ = [
    "Conflict", "Forbidden", "InvalidParameter", "MethodNotAllowed", "NotFound", "NotModified",
    "SkiffError", "SystemError_", "Unavailable", "to_status",
]


class MethodNotAllowed(SkiffError):
    status = 405


_LIBCONTAINER: list[tuple[type[BaseException], int]] = [
    (lc.ConfigError, 400),
    (lc.ContainerNotFound, 404),
    (lc.ContainerExists, 409),
    (lc.StateError, 409),
    (lc.SystemError_, 500),
    (lc.LibcontainerError, 500),
]

_BUILTIN: list[tuple[type[BaseException], int]] = [
    (json.JSONDecodeError, 400),
    (FileNotFoundError, 404),
    (PermissionError, 403),
    (TimeoutError, 503),
    (ValueError, 400),
    (NotImplementedError, 501),
]


def to_status(e: BaseException) -> tuple[int, str]:
    """-> (HTTP status, message) for any exception a handler lets through."""
    if isinstance(e, SkiffError):
        return int(getattr(e, "status", 500)), _msg(e)
    for cls, status in _LIBCONTAINER + _BUILTIN:
        if isinstance(e, cls):
            return status, _msg(e)
    return 500, _msg(e)


def _msg(e: BaseException) -> str:
    return str(e) or type(e).__name__
