"""Checksums and atomic writes: the data-safety layer shared by the store, the build and the Hub code.

The manifest is ``manifest.sha256`` at the root of a release: one ``<sha256>  <relative path>`` line per
file (the format of ``sha256sum``), sorted by path, so ``sha256sum -c manifest.sha256`` works too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ChecksumMismatchError

MANIFEST_NAME = "manifest.sha256"
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
    entries = {rel: sha256_file(folder / rel) for rel in files}
    atomic_write_text(folder / MANIFEST_NAME, format_manifest(entries))
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
