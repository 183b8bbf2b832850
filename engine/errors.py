"""The engine's error hierarchy; engine/daemon/errors.py maps each class to one HTTP status."""

from __future__ import annotations


class SkiffError(Exception):
    status = 500


class InvalidParameter(SkiffError):  # 400
    status = 400


class NotFound(SkiffError):  # 404
    status = 404


class Conflict(SkiffError):  # 409
    status = 409


class NotModified(SkiffError):  # 304
    status = 304


class Unavailable(SkiffError):  # 503
    status = 503


class Forbidden(SkiffError):  # 403
    status = 403


class SystemError_(SkiffError):  # 500
    status = 500
