"""The exceptions the library raises; `cli` maps each to an exit code (CONTRACT §5)."""

from __future__ import annotations


class StorageCalcError(Exception):
    """storage-calc failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class ConfigError(StorageCalcError):
    """The configuration is invalid (exit 2)."""


class NotFound(StorageCalcError):
    """No such customer, space, asset or policy (exit 1)."""


class DatabaseError(StorageCalcError):
    """The database could not be reached or refused a statement (exit 1)."""


class ConnectionLost(DatabaseError):
    """The database connection broke or could not be opened; the job tries again on a new one
    before it gives up (exit 1)."""


class LockLost(DatabaseError):
    """The session holding a customer's lock ended before the customer was written."""


class ListingError(StorageCalcError):
    """An S3 listing failed after retries (exit 1)."""


class Interrupted(StorageCalcError):
    """The run was asked to stop (SIGTERM or SIGINT); the customer in progress was rolled back."""


class InventoryError(StorageCalcError):
    """An S3 Inventory report is missing, incomplete, stale or malformed (exit 1)."""
