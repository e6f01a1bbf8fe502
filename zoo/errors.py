"""Exceptions raised by the zoo package.

Each class also derives from the closest built-in exception, so callers can catch either the specific
zoo error (``except NotCachedError``) or the generic one (``except FileNotFoundError``).
"""

from __future__ import annotations

from collections.abc import Iterable


class ZooError(Exception):
    """Base class of every error raised on purpose by the zoo package."""


class InvalidChoiceError(ZooError, ValueError):
    """A value that is not one of the valid choices (an unknown mechanism, an off-grid delay, ...)."""

    def __init__(self, name: str, value, choices: Iterable | None = None, hint: str = ""):
        self.name, self.value = name, value
        self.choices = list(choices) if choices is not None else None
        msg = f"invalid {name}: {value!r}"
        if self.choices is not None:
            shown = ", ".join(repr(c) for c in self.choices[:40])
            more = f", ... ({len(self.choices)} in all)" if len(self.choices) > 40 else ""
            msg += f"; valid choices: {shown}{more}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class SourceNotFoundError(ZooError, FileNotFoundError):
    """A zoo source (local folder or Hub repo) that does not exist or is not a zoo release."""


class NotCachedError(ZooError, FileNotFoundError):
    """Offline mode was requested but a needed file is not in the local cache."""


class ChecksumMismatchError(ZooError, OSError):
    """A file whose sha256 differs from the one recorded in the manifest (corrupt or truncated)."""

    def __init__(self, path, expected: str, actual: str, hint: str = ""):
        self.path, self.expected, self.actual = str(path), expected, actual
        msg = f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}"
        super().__init__(msg + (f". {hint}" if hint else ""))


class CorruptFileError(ZooError, ValueError):
    """A release file that is malformed or crafted (a bad safetensors header, a truncated parquet file, ...):
    the message names the file and the bad field."""

    def __init__(self, path, field: str, problem: str, hint: str = ""):
        self.path, self.field, self.problem = str(path), field, problem
        hint = hint or "The file is damaged or was not written by rnn-stm-zoo: re-download or rebuild it"
        super().__init__(f"{path}: bad {field}: {problem}. {hint}")


class UnsafeFileError(ZooError, OSError):
    """A release path that is not a regular file inside the release (a link out of it, a FIFO, a device, a
    folder): refused by name before it is opened."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: refused: {problem}. A release holds only regular files inside its folder; "
                         "replace it with the real file (re-download or rebuild the release)")


class ReleaseFolderError(ZooError, OSError):
    """A folder that cannot be used as asked: not a release or build of this package, unwritable, full."""


class UnverifiedReleaseError(ZooError, FileNotFoundError):
    """A release folder without a manifest (or a file missing from it): its files cannot be checked."""


class MissingShardsError(ZooError, RuntimeError):
    """Packaging was asked for a complete zoo but some build shards are not finished."""

    def __init__(self, missing: list[str], hint: str = ""):
        self.missing = list(missing)
        shown = ", ".join(self.missing[:20]) + (" ..." if len(self.missing) > 20 else "")
        super().__init__(f"{len(self.missing)} shard(s) not finished: {shown}. {hint}".strip())


class EmptyZooError(ZooError, ValueError):
    """A zoo selection with nothing to show: no network left by the filters, or no outcome label."""


class TokenMissingError(ZooError, PermissionError):
    """No Hugging Face token was found for an operation that needs one."""


class BuildLockedError(ZooError, RuntimeError):
    """Another worker holds the claim on a shard."""


def check_choice(name: str, value, choices: Iterable, hint: str = ""):
    """Return ``value`` if it is one of ``choices``; otherwise raise :class:`InvalidChoiceError`."""
    choices = list(choices)
    if value not in choices:
        raise InvalidChoiceError(name, value, choices, hint)
    return value
