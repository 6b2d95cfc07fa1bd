"""The error hierarchy of everything outside `tapeline.proto` (which has its own root)."""


class TapelineError(Exception):
    """Base of Tapeline's own errors."""


class ConfigError(TapelineError):
    """A configuration file that cannot be used; names the file, the key and the reason."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {reason}")


class StorageError(TapelineError):
    """The object store, the index or the journal could not do what was asked."""


class IntegrityError(StorageError):
    """Stored bytes or the audit chain do not match what was recorded about them."""


class AccessDenied(TapelineError):  # noqa: N818  # reads better at raise sites than AccessDeniedError
    """The acting account may not do this (roles of DESIGN §7), or did not authenticate."""


class NotFound(TapelineError):  # noqa: N818  # mirrors HTTP 404 wording
    """No record, object or account with that id or name."""


class DiskFull(StorageError):  # noqa: N818  # an operational condition, not a bug
    """A storage folder is below its free-space floor: new work is refused, nothing is deleted."""


class PublishError(TapelineError):
    """The event publisher could not deliver to the broker."""


class CaptureError(TapelineError):
    """A capture path could not open or read its source."""
