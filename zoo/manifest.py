"""Checksums and atomic writes: the data-safety layer shared by the store, the build and the Hub code.

The manifest is ``manifest.sha256`` at the root of a release: one ``<sha256>  <relative path>`` line per
file (the format of ``sha256sum``), sorted by path, so ``sha256sum -c manifest.sha256`` works too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ChecksumMismatchError

MANIFEST_NAME = "manifest.sha256"
STAMPS_PATH = ".cache/verified.json"  # see VerifiedStamps; hidden, so never in a manifest or an upload
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    A crash leaves only a ``.tmp-*`` file that no reader mistakes for the real one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def parse_manifest(text: str) -> dict[str, str]:
    """``{relative path: sha256}`` from manifest text."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, rel = line.partition("  ")
        out[rel.strip()] = digest.strip()
    return out


def format_manifest(entries: dict[str, str]) -> str:
    return "".join(f"{entries[rel]}  {rel}\n" for rel in sorted(entries))


def read_manifest(folder: str | os.PathLike) -> dict[str, str]:
    return parse_manifest((Path(folder) / MANIFEST_NAME).read_text())


def write_manifest(folder: str | os.PathLike, files: list[str] | None = None) -> dict[str, str]:
    """Hash ``files`` (relative paths; default: every file of the release) and write the manifest."""
    folder = Path(folder)
    if files is None:
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*")
                 if p.is_file() and p.name != MANIFEST_NAME and not _is_private(p.relative_to(folder))]
    stamps = VerifiedStamps(folder)
    entries = {}
    for rel in files:
        entries[rel] = stamps.hash(rel, folder / rel)
    atomic_write_text(folder / MANIFEST_NAME, format_manifest(entries))
    stamps.save()
    return entries


def _is_private(rel: Path) -> bool:
    """Build state, temp files and caches are not part of a release."""
    return any(part.startswith(".") for part in rel.parts)


def verify_file(path: str | os.PathLike, expected: str, hint: str = "") -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumMismatchError(path, expected, actual, hint)


def verify_folder(folder: str | os.PathLike, files: list[str] | None = None) -> list[str]:
    """Check files of a release against its manifest; return the checked paths, raise on the first mismatch."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for rel in files if files is not None else sorted(manifest):
        p = folder / rel
        if not p.exists():
            raise FileNotFoundError(f"{p} is listed in the manifest but missing")
        verify_file(p, manifest[rel], hint="the file is corrupt or truncated; re-download or rebuild it")
    return list(files if files is not None else manifest)


def _file_stamp(path: str | os.PathLike) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class VerifiedStamps:
    """Files of a release folder whose sha256 is known, remembered across processes in ``.cache/verified.json``.

    An entry is ``rel -> [sha256, size, mtime_ns, ctime_ns, inode]`` of the file when it was hashed (the stat
    taken before and after hashing must agree). A file whose stat still matches is not hashed again: any write,
    copy or replacement changes its mtime/ctime/inode. Silent on-disk corruption that keeps the stat (bit rot)
    is not caught this way; ``verify="full"`` (zoo.api) or :func:`verify_folder` re-hash everything.
    An unwritable folder just keeps the stamps in memory.
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / STAMPS_PATH
        self._data: dict | None = None
        self._new: dict[str, list] = {}

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def known(self, rel: str, path: str | os.PathLike, digest: str) -> bool:
        """True if ``path`` was hashed to ``digest`` and has not changed since."""
        if self._data is None:
            self._data = self._load()
        rec = self._new.get(rel) or self._data.get(rel)
        try:
            return isinstance(rec, list) and rec[0] == digest and rec[1:] == _file_stamp(path)
        except OSError:
            return False

    def hash(self, rel: str, path: str | os.PathLike) -> str:
        """sha256 of ``path``, remembered (call :meth:`save`) if the file did not change while being hashed."""
        before = _file_stamp(path)
        digest = sha256_file(path)
        if _file_stamp(path) == before:
            self._new[rel] = [digest, *before]
        return digest

    def save(self) -> None:
        if not self._new:
            return
        data = {**self._load(), **self._new}  # merge with what other processes recorded meanwhile
        with contextlib.suppress(OSError):
            atomic_write_text(self.path, json.dumps(data, separators=(",", ":")))
        self._data, self._new = data, {}
