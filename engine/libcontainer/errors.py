"""libcontainer's errors. It imports nothing from the rest of the engine; the daemon maps these."""

from __future__ import annotations


class LibcontainerError(Exception):
    """Base class of every error libcontainer raises."""


class ConfigError(LibcontainerError, ValueError):
    """An invalid config.json value, found before anything is created."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"invalid {field} {value!r}: {reason}")


class ContainerNotFound(LibcontainerError, LookupError):
    def __init__(self, cid: str) -> None:
        self.id = cid
        super().__init__(f"container {cid!r} does not exist")


class ContainerExists(LibcontainerError):
    def __init__(self, cid: str) -> None:
        self.id = cid
        super().__init__(f"container {cid!r} already exists")


class StateError(LibcontainerError):
    """An operation that the container's current status does not allow."""


class SystemError_(LibcontainerError, OSError):
    """A kernel call failed while creating or running a container (names the step)."""
