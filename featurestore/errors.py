"""Every error a user of this package can meet, each one line.

`UserError` is defined at the bottom of the dependency chain (`manifests`), so every package
raises the same class and the CLI catches it once (exit 2, no traceback). The others here are
its kinds, or the internal signals the build turns into one:

- `SettingsError`: settings that cannot go together (it is also a ValueError, so that a document
  check reports it with the field it came from).
- `StoreFormatError`: a store whose metadata is damaged or crafted (attributes, commit records,
  consolidated metadata, array metadata, the manifest copy); it names the store and the field.
- `StorageError`: the store cannot be written (permissions, a full disk, a vanished folder).
- `AudioError`: why one clip cannot be used; recorded beside the clip, never raised to the user.
"""

from __future__ import annotations

from manifests.errors import UserError

__all__ = ["AudioError", "NotReadable", "SettingsError", "StorageError", "StoreFormatError", "UserError"]


class SettingsError(UserError, ValueError):
    """Settings that pass their own bounds but cannot go together."""


class StoreFormatError(UserError):
    """A store's metadata is not what this package writes: refused before anything is read from it."""


class StorageError(Exception):
    """The store cannot be written: every shard would fail the same way, so the build stops."""


class AudioError(Exception):
    """Why a clip cannot be used, in one line; the store records it as the clip's error."""

    def __init__(self, reason: str):
        super().__init__(" ".join(str(reason).split()))

    @property
    def reason(self) -> str:
        return self.args[0]


class NotReadable(AudioError):
    """The file could not be read by this process: not found, permission denied, an I/O error.
    That may be the file's fault or the reading machine's (a missing mount, another uid, a stale
    network handle): a build records it as the clip's failure only once its own process cannot
    read the file either, and retries such recorded failures when it can."""

    _PREFIXES = ("file not found", "permission denied", "cannot open: ")

    @classmethod
    def describes(cls, reason: str) -> bool:
        """Whether a recorded failure reason is of this kind (a symlink loop is the file's own)."""
        return reason.startswith(cls._PREFIXES) and "symlink loop" not in reason
