"""Rewriting a release in place so that every reader sees the old release or the new one, whole.

Packaging, relabelling and ``diagnose --write`` change a few files of a release (the metadata table,
``zoo.json``, the card, ...) and its manifest. They never write over the live files one by one:

1. the new files are written beside their targets under temp names (:class:`Staging`, ``.tmp-*``);
2. the files the new release keeps (the shards) are checked against the old manifest first, so damaged or
   foreign data is never blessed, and files no release step wrote are never adopted (:func:`publish`);
3. a journal (``.zoo-publish.json``, :data:`zoo.layout.PUBLISH_JOURNAL`) lists the staged files, then they are
   renamed into place, the manifest last, under an exclusive ``flock`` of the release folder, and the journal
   is removed.

A reader (:class:`zoo.sources.LocalSource`) reads the manifest under a shared lock of the folder, and on a
checksum mismatch waits for the lock and retries once against the new manifest. A writer killed after the
journal was written leaves a release whose new generation is the journal's files: readers read those (they
write nothing), and the next writer finishes the switch (:func:`finish_pending`). Killed before, it leaves
the old release and ``.tmp-*`` files, which the next writer removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .cache import release_key
from .errors import ReleaseFolderError, UnverifiedReleaseError, ZooError
from .faults import fault_point
from .layout import CARD_PATH, MANIFEST_PATH, PUBLISH_JOURNAL, SHARD_DIRS, STATE_DIR
from .manifest import (
    VerifiedStamps,
    atomic_write_text,
    check_rel_path,
    data_entries,
    format_manifest,
    make_temp,
    open_regular,
    parse_manifest,
    release_file,
    sha256_file,
    verify_file,
)

#: the next step named when a kept file does not match the old manifest
_DAMAGED_HINT = ("the release was changed or damaged since it was packaged, and rewriting its manifest would bless "
                 "that: restore the file (re-download the release, or rebuild it with `zoo build`)")


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """An exclusive (writers) or shared (readers) ``flock`` of a release folder; needs no write permission, and
    a killed holder releases it. A folder that cannot be opened or locked (a filesystem without locks) is
    used unlocked: readers then still retry once on a changed manifest."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _journal(folder: Path) -> dict:
    """The journal of a switch in progress (``staged``: path -> temp file, ``removed``), or ``{}``."""
    try:
        with open_regular(release_file(folder, PUBLISH_JOURNAL)) as f:
            data = json.loads(f.read(1 << 24))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def pending(folder: str | os.PathLike) -> dict[str, Path]:
    """The staged files of a switch that a killed writer left (relative path -> staged file; the manifest's
    too), or ``{}``. Call under :func:`folder_lock`; a damaged journal counts as none."""
    folder = Path(folder)
    try:
        staged = _journal(folder).get("staged", {})
        out = {}
        for rel, tmp in staged.items():
            try:
                p = release_file(folder, check_rel_path(tmp, str(folder / PUBLISH_JOURNAL)))
            except FileNotFoundError:  # already renamed into place
                continue
            out[check_rel_path(rel, str(folder / PUBLISH_JOURNAL))] = p
        return out
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _switch(folder: Path, staged: Mapping[str, Path], removed: Iterable[str] = ()) -> None:
    """Rename the staged files into place, the manifest last, then remove ``removed`` and the journal."""
    for n, rel in enumerate(sorted(staged, key=lambda r: r == MANIFEST_PATH)):
        if n == 1:
            fault_point("publish-rename")
        if staged[rel].exists():
            os.replace(staged[rel], folder / rel)
    for rel in removed:
        (folder / rel).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # make the renames durable before the journal goes
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    (folder / PUBLISH_JOURNAL).unlink(missing_ok=True)


def finish_pending(folder: str | os.PathLike) -> None:
    """Complete a switch that a killed writer left, and remove the temp files of writers killed before their
    switch. Writers call it first, holding the writers' lock (:class:`Staging`)."""
    folder = Path(folder)
    with folder_lock(folder):
        if (folder / PUBLISH_JOURNAL).exists():
            removed = [r for r in _journal(folder).get("removed", []) if isinstance(r, str)]
            _switch(folder, pending(folder), [check_rel_path(r, PUBLISH_JOURNAL) for r in removed])
    for sub in _STAGED_DIRS:
        for tmp in (folder / sub).glob(".tmp-*") if (folder / sub).is_dir() else ():
            with contextlib.suppress(OSError):
                tmp.unlink()


#: the folders where staged files live (a release's core files; shards are never restaged)
_STAGED_DIRS = ("", "metadata", "diagnostics", "images")
_WRITERS_LOCK_DIR = "metadata"


class Staging:
    """The new files of a release, written beside their targets under temp names until :func:`publish`.

    Used as a context manager: one writer at a time (an exclusive ``flock`` of ``metadata/``, which readers
    never take), a switch left by a killed writer finished first, unpublished temp files removed at the end,
    and an operating-system error (read-only folder, another user's release, a full disk) raised as one
    :class:`zoo.errors.ReleaseFolderError` naming the folder and the next step.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.files: dict[str, Path] = {}
        self.removed: set[str] = set()
        self._fd: int | None = None

    def __enter__(self) -> Staging:
        try:
            (self.folder / _WRITERS_LOCK_DIR).mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.folder / _WRITERS_LOCK_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            with contextlib.suppress(OSError):  # a filesystem without locks: one writer at a time is then on us
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            finish_pending(self.folder)
        except OSError as err:
            self.__exit__(type(err), err, None)
            raise
        return self

    def __exit__(self, kind, err, tb) -> None:
        with contextlib.suppress(OSError):
            self.discard()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if isinstance(err, OSError) and not isinstance(err, ZooError) and err.errno is not None:
            where = err.filename or self.folder
            raise ReleaseFolderError(
                f"cannot write the release {self.folder}: {err.strerror or err} ({where}); the release was left as "
                "it was. Check that the folder is yours and writable and that the disk has space, then run the "
                "command again") from None

    def path(self, rel: str) -> Path:
        """A fresh temp file that will become ``rel`` (write it with any writer, atomic ones included)."""
        check_rel_path(rel)
        target = self.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        self.files[rel] = tmp = make_temp(target)
        self.removed.discard(rel)
        return tmp

    def write_text(self, rel: str, text: str) -> None:
        atomic_write_text(self.path(rel), text)

    def remove(self, rel: str) -> None:
        """``rel`` is not part of the new release (deleted at the switch)."""
        if rel in self.files:
            self.files.pop(rel).unlink(missing_ok=True)
        self.removed.add(rel)

    def discard(self) -> None:
        for tmp in self.files.values():
            tmp.unlink(missing_ok=True)
        self.files.clear()


def recover(folder: str | os.PathLike) -> None:
    """Finish a switch a killed writer left and remove killed writers' temp files (under the writers' lock)."""
    if Path(folder, PUBLISH_JOURNAL).exists() or any(Path(folder, d).glob(".tmp-*") for d in _STAGED_DIRS):
        with Staging(folder):
            pass


def old_manifest(folder: str | os.PathLike) -> dict[str, str] | None:
    """The data entries of the release's current manifest (a pending switch's, if a writer was killed), or
    None for a folder without one."""
    folder = Path(folder)
    with folder_lock(folder, shared=True):
        p = pending(folder).get(MANIFEST_PATH)
        if p is None:
            if not (folder / MANIFEST_PATH).exists():
                return None
            p = release_file(folder, MANIFEST_PATH)
        with open_regular(p) as f:
            return data_entries(parse_manifest(f.read().decode(errors="replace"), str(p)))


def publish(staging: Staging, keep: Iterable[str] | Mapping[str, str | None] | None = None) -> dict[str, str]:
    """Switch ``staging``'s files into its release with a new manifest over them and ``keep``; return it.

    ``keep``: the release files that stay as they are, each a regular file inside the folder that matches
    the old manifest (or, as a mapping, the sha256 the caller has just verified it against; in a folder
    without a manifest yet, the files the caller has just written are hashed), else refused
    (:class:`zoo.errors.ChecksumMismatchError` / :class:`zoo.errors.UnverifiedReleaseError` naming it) and
    nothing changes. None: every file of the old manifest not restaged or removed. A file in the folder that
    is in neither is not adopted.
    """
    folder = staging.folder
    old = old_manifest(folder)
    if keep is None:
        keep = [r for r in (old or {}) if r not in staging.files and r not in staging.removed]
    known = dict(keep) if isinstance(keep, Mapping) else dict.fromkeys(keep)
    stamps = VerifiedStamps(folder)
    entries: dict[str, str] = {}
    for rel, digest in sorted(known.items()):
        p = release_file(folder, rel)
        if digest is None and old is None:  # the first manifest: the files the caller has just written
            digest = stamps.hash(rel, p)
        elif digest is None:  # (a given digest was verified by the caller just now)
            if rel not in old:
                raise UnverifiedReleaseError(f"{p} is not in the release's manifest, so it cannot be checked: "
                                             f"{_DAMAGED_HINT}")
            digest = old[rel]
            verify_file(p, digest, hint=_DAMAGED_HINT, stamps=stamps, rel=rel,
                        reuse_stamp=rel.startswith(SHARD_DIRS))
        entries[rel] = digest
    for rel, tmp in staging.files.items():
        if rel != CARD_PATH:
            entries[rel] = sha256_file(tmp)
    text = format_manifest(entries)
    atomic_write_text(staging.path(MANIFEST_PATH), text)
    journal = {"staged": {rel: tmp.relative_to(folder).as_posix() for rel, tmp in staging.files.items()},
               "removed": sorted(staging.removed)}
    with folder_lock(folder):
        atomic_write_text(folder / PUBLISH_JOURNAL, json.dumps(journal))
        fault_point("publish-switch")
        _switch(folder, staging.files, staging.removed)
    staging.files.clear()
    stamps.key = release_key(text)
    stamps.save()
    return entries


def check_output_folder(out: str | os.PathLike, force: bool = False) -> None:
    """Refuse to write a release or a build into ``out`` unless it is new, empty, already a release or a build
    of this package (``manifest.sha256`` or ``.build/``), or ``force``: an existing file, or a folder of other
    files (a user's README.md and data.csv), is never taken over (:class:`zoo.errors.ReleaseFolderError`)."""
    out = Path(out)
    try:
        os.fsencode(out).decode("utf-8")
    except UnicodeDecodeError:
        shown = os.fsencode(out).decode("utf-8", "backslashreplace")
        raise ReleaseFolderError(f"the output folder name {shown} is not valid UTF-8 (the release's files and the "
                                 "Hub need text names); choose another name") from None
    if not out.exists():
        return
    if not out.is_dir():
        raise ReleaseFolderError(f"{out} is an existing file, not a folder; choose a new or empty output folder")
    try:
        names = sorted(p.name for p in out.iterdir())
    except OSError as err:
        raise ReleaseFolderError(f"cannot read the folder {out}: {err.strerror or err}; choose another output "
                                 "folder") from None
    if names and not force and MANIFEST_PATH not in names and STATE_DIR not in names:
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise ReleaseFolderError(f"{out} is not empty and holds no release or build of this package ({shown}): "
                                 "refusing to write into it. Choose a new or empty output folder, or pass --force "
                                 "to write there anyway (files at release paths, such as README.md, are replaced)")
