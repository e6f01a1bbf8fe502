"""Checksums and atomic writes: the data-safety layer shared by the store, the build and the Hub code.

The manifest is ``manifest.sha256`` at the root of a release: one ``<sha256>  <relative path>`` line per
file (the format of ``sha256sum``), sorted by path, so ``sha256sum -c manifest.sha256`` works too. The
dataset card (``README.md``) is documentation, not data: it is not in the manifest (a card edited on the Hub
never breaks reading), and a card line in an older manifest is ignored by every check.

Every checksum check (local releases, the Hub cache, build markers) is :func:`verify_file` or its boolean
twin :func:`file_matches`: one comparison rule, one error (:class:`zoo.errors.ChecksumMismatchError`). Every
release file is opened through :func:`release_file` (a regular file inside the release after resolving links)
and :func:`open_regular` (never blocks on a FIFO or device): anything else is refused by name.

Written files get the mode the umask allows (0644 under umask 022), like any tool that writes data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from . import cache, faults
from .errors import ChecksumMismatchError, CorruptFileError, UnsafeFileError
from .layout import CARD_PATH, MANIFEST_PATH, is_private  # the card is never in the manifest, never checked

_CHUNK = 1 << 20
_MAX_MANIFEST = 1 << 30  # a manifest line per file: far more than any release needs
_umask_lock = threading.Lock()


def _kind(mode: int) -> str | None:
    """None for a regular file, else what the path is instead (the refusal's words)."""
    if stat.S_ISREG(mode):
        return None
    return ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")


def open_regular(path: str | os.PathLike):
    """``open(path, "rb")`` of a regular file only: a FIFO, device or folder is refused
    (:class:`UnsafeFileError` naming it) before a read could block or never end."""
    kind = _kind(os.stat(path).st_mode)
    if kind:
        raise UnsafeFileError(path, f"{kind}, not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # never blocks, even if swapped for a FIFO
    try:
        kind = _kind(os.fstat(fd).st_mode)
        if kind:
            raise UnsafeFileError(path, f"{kind}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def release_file(root: str | os.PathLike, rel: str, where: str = "") -> Path:
    """``root / rel`` if it is a regular file inside ``root`` after resolving links; otherwise
    :class:`UnsafeFileError` naming it (a link out of the release, a FIFO, a device, a folder), or
    FileNotFoundError. Every release file the package opens passes here first."""
    check_rel_path(rel, where)
    p = Path(root) / rel
    real, base = os.path.realpath(p), os.path.realpath(root)
    if os.path.commonpath([real, base]) != base:
        raise UnsafeFileError(p, f"a link to {real}, outside the release folder {root}")
    kind = _kind(os.stat(real).st_mode)  # FileNotFoundError for a missing file or a dangling link
    if kind:
        raise UnsafeFileError(p, f"{kind}, not a regular file")
    return p


def sha256_bytes(data: bytes) -> str:
    """The sha256 of bytes already read (hex): a small file read once, checked and parsed from the same bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a regular file (hex), reading no further than the size it had when opened. To check a
    file against a digest use :func:`verify_file` / :func:`file_matches`."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        left = os.fstat(f.fileno()).st_size
        while left > 0 and (chunk := f.read(min(_CHUNK, left))):
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def current_umask() -> int:
    """The process umask (read from /proc where possible; otherwise set and restored under a lock)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new data file gets: 0666 less the umask (``mkstemp`` alone gives 0600)."""
    return 0o666 & ~current_umask()


def make_temp(path: Path) -> Path:
    """An empty temp file beside ``path`` (``.tmp-<name>.*``) with the mode the umask allows."""
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    return Path(tmp)


def _cut_in_half(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.truncate(tmp, tmp.stat().st_size // 2)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    A crash leaves only a ``.tmp-*`` file that no reader mistakes for the real one. The file gets the mode
    the umask allows. Fault points (tests, :mod:`zoo.faults`): ``write-partial``, ``write-rename``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp(path)
    try:
        yield tmp
        faults.fault_point("write-partial", before_kill=lambda: _cut_in_half(tmp))
        with open(tmp, "rb+") as f:
            os.fchmod(f.fileno(), file_mode())  # the writer may have replaced the temp file (safetensors does)
            os.fsync(f.fileno())
        faults.fault_point("write-rename")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def cache_entry_path(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path`, for readers' disposable copies in the user cache (:mod:`zoo.cache`): no fsync
    and no fault points, so reading a zoo never runs the crash tests' hooks (a lost entry is rebuilt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def check_rel_path(rel: str, where: str = "") -> str:
    """``rel`` if it is a plain relative path inside a release (no ``..``, not absolute, no backslash)."""
    parts = rel.split("/")
    if (not rel or rel.startswith("/") or "\\" in rel or ":" in parts[0] or any(p in ("", ".", "..") for p in parts)
            or "\0" in rel):
        raise CorruptFileError(where or "a release file list", f"path {rel!r}",
                               "not a relative path inside the release (a crafted or damaged file)")
    return rel


def parse_manifest(text: str, where: str = MANIFEST_PATH) -> dict[str, str]:
    """``{relative path: sha256}`` from manifest text; a malformed line or an unsafe path (absolute, ``..``)
    raises :class:`CorruptFileError` naming ``where``."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, rel = line.partition("  ")
        digest, rel = digest.strip().lower(), rel.strip()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise CorruptFileError(where, f"line {n}", "expected '<sha256>  <relative path>'")
        out[check_rel_path(rel, f"{where} line {n}")] = digest
    return out


def data_entries(manifest: dict[str, str]) -> dict[str, str]:
    """The entries every reader checks: all but the dataset card (older manifests list it)."""
    return {rel: d for rel, d in manifest.items() if rel != CARD_PATH}


def manifest_key(folder: str | os.PathLike) -> str | None:
    """The cache key of the release in ``folder`` (:func:`zoo.cache.release_key` of its manifest), or None."""
    try:
        return cache.release_key(manifest_bytes(folder))
    except OSError:
        return None


def manifest_bytes(folder: str | os.PathLike) -> bytes:
    """The manifest file of ``folder`` as bytes (a regular file inside it: :func:`release_file`)."""
    with open_regular(release_file(folder, MANIFEST_PATH)) as f:
        data = f.read(_MAX_MANIFEST + 1)
    if len(data) > _MAX_MANIFEST:
        raise CorruptFileError(Path(folder) / MANIFEST_PATH, "size", "over 1 GiB: not a manifest")
    return data


def format_manifest(entries: dict[str, str]) -> str:
    return "".join(f"{entries[rel]}  {rel}\n" for rel in sorted(entries))


def read_manifest(folder: str | os.PathLike) -> dict[str, str]:
    path = Path(folder) / MANIFEST_PATH
    try:
        text = manifest_bytes(folder).decode()
    except UnicodeDecodeError:
        raise CorruptFileError(path, "encoding", "not a text file") from None
    return parse_manifest(text, str(path))


def write_manifest(folder: str | os.PathLike, files: list[str] | None = None) -> dict[str, str]:
    """Hash ``files`` (relative paths; default: every file of the release but the card) and write the
    manifest; the hashes are remembered as verified stamps of the new manifest (in the user cache)."""
    folder = Path(folder)
    if files is None:
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*")
                 if not p.is_dir() and p.name != MANIFEST_PATH and not is_private(p.relative_to(folder).as_posix())]
    files = [f for f in files if f != CARD_PATH]
    for rel in files:
        release_file(folder, rel)
    stamps = VerifiedStamps(folder)
    entries = {}
    for rel in files:
        entries[rel] = stamps.hash(rel, folder / rel)
    text = format_manifest(entries)
    atomic_write_text(folder / MANIFEST_PATH, text)
    stamps.key = cache.release_key(text)
    stamps.save()
    return entries


#: the next step a checksum error names
REFETCH_HINT = "the file is corrupt or truncated; re-download or rebuild it"


def _named_by_digest(path: Path, digest: str) -> bool:
    """True if ``path`` is a link to a file named ``digest``: a huggingface_hub cache blob (LFS files are
    stored under their sha256 and checked against it when downloaded), so its content is not hashed again."""
    try:
        return path.is_symlink() and path.resolve().name == digest and path.resolve().is_file()
    except OSError:
        return False


def _mismatch(path: str | os.PathLike, expected: str, stamps: VerifiedStamps | None, rel: str | None,
              reuse_stamp: bool, trust_blob_name: bool) -> str | None:
    """None if ``path`` holds ``expected``, else its actual sha256: the one checksum rule of the package.

    Known without reading the file: a Hub blob named ``expected`` (``trust_blob_name``), or a file whose
    :class:`VerifiedStamps` entry still matches (``reuse_stamp``). Otherwise the file is hashed, and the hash
    remembered in ``stamps`` (under ``rel``) if given."""
    if trust_blob_name and _named_by_digest(Path(path), expected):
        return None
    if stamps is not None and reuse_stamp and stamps.known(rel, path, expected):
        return None
    actual = stamps.hash(rel, path) if stamps is not None else sha256_file(path)
    return None if actual == expected else actual


def file_matches(path: str | os.PathLike, expected: str, *, stamps: VerifiedStamps | None = None,
                 rel: str | None = None, reuse_stamp: bool = False, trust_blob_name: bool = False) -> bool:
    """True if the sha256 of ``path`` is ``expected`` (same rule and options as :func:`verify_file`)."""
    return _mismatch(path, expected, stamps, rel, reuse_stamp, trust_blob_name) is None


def verify_file(path: str | os.PathLike, expected: str, hint: str = REFETCH_HINT, *, what: str | None = None,
                stamps: VerifiedStamps | None = None, rel: str | None = None, reuse_stamp: bool = False,
                trust_blob_name: bool = False) -> None:
    """Raise :class:`ChecksumMismatchError` (``what``, default the path; expected and actual sha256; ``hint``,
    the next step) unless the sha256 of ``path`` is ``expected``.

    ``stamps`` (with ``rel``, the file's path in its release): the hash is remembered; with ``reuse_stamp``, a
    file unchanged since it was last verified is not hashed again. ``trust_blob_name``: a huggingface_hub cache
    entry whose blob is named ``expected`` is not hashed again. Every checksum check of the package is this one.
    """
    actual = _mismatch(path, expected, stamps, rel, reuse_stamp, trust_blob_name)
    if actual is not None:
        raise ChecksumMismatchError(what or path, expected, actual, hint)


def verify_folder(folder: str | os.PathLike, files: list[str] | None = None) -> list[str]:
    """Check files of a release against its manifest; return the checked paths, raise on the first mismatch."""
    folder = Path(folder)
    manifest = data_entries(read_manifest(folder))
    for rel in files if files is not None else sorted(manifest):
        p = folder / rel
        if not p.exists() and not p.is_symlink():
            raise FileNotFoundError(f"{p} is listed in the manifest but missing")
        verify_file(release_file(folder, rel), manifest[rel])
    return list(files if files is not None else manifest)


def _file_stamp(path: str | os.PathLike) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class VerifiedStamps:
    """Files of a release folder whose sha256 is known, remembered across processes in the user cache
    (``<zoo.cache.release_cache_dir(key)>/verified-<folder key>.json``, keyed by the release's manifest and
    the folder's path; never inside the release).

    An entry is ``rel -> [sha256, size, mtime_ns, ctime_ns, inode]`` of the file when it was hashed (the stat
    taken before and after hashing must agree). A file whose stat still matches is not hashed again: any write,
    copy or replacement changes its mtime/ctime/inode. Silent on-disk corruption that keeps the stat (bit rot)
    is not caught this way; ``verify="full"`` (zoo.api) or :func:`verify_folder` re-hash everything.
    ``key`` None (no manifest yet), or an unwritable cache: the stamps are kept in memory only.
    """

    def __init__(self, folder: str | os.PathLike, key: str | None = None):
        self.folder = Path(folder)
        self.key = key
        self._data: dict | None = None
        self._new: dict[str, list] = {}

    @property
    def path(self) -> Path | None:
        if self.key is None:
            return None
        return cache.release_cache_dir(self.key) / f"verified-{cache.folder_key(self.folder)}.json"

    def _load(self) -> dict:
        if self.path is None:
            return {}
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
        if not self._new or self.path is None:
            return
        data = {**self._load(), **self._new}  # merge with what other processes recorded meanwhile
        with contextlib.suppress(OSError), cache_entry_path(self.path) as tmp:
            tmp.write_text(json.dumps(data, separators=(",", ":")))
        self._data, self._new = data, {}
