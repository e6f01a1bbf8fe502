"""Where a release is read from: the :class:`Source` interface, and :class:`LocalSource` (a release folder).

A source gives the loader (:mod:`zoo.api`) a release's manifest, its small tables and verified local paths of
its files; the loader and everything built on a :class:`zoo.api.Zoo` use only these members. The other
source, a dataset on the Hugging Face Hub, is :class:`zoo.hub_source.HubSource`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import pandas as pd

from . import cache, layout, manifest, publish, store
from .cache import release_cache_dir
from .errors import (
    ChecksumMismatchError,
    CorruptFileError,
    InvalidChoiceError,
    SourceNotFoundError,
    UnverifiedReleaseError,
)
from .layout import INFO_PATH, MANIFEST_PATH, STATE_DIR, is_shard
from .manifest import (
    REFETCH_HINT,
    VerifiedStamps,
    check_rel_path,
    data_entries,
    manifest_bytes,
    open_regular,
    parse_manifest,
    release_file,
    verify_file,
)
from .metadata import check_metadata


class Source(ABC):
    """A zoo release to read: the interface shared by a local folder and a Hub dataset."""

    #: ``"local"`` (files already on disk) or ``"hub"`` (files downloaded when first asked for)
    kind: str = ""
    #: the Hub commit the files come from; None for a local folder
    commit: str | None = None
    #: changes when the source starts reading a newer release (a local folder rewritten meanwhile)
    generation: str | None = None

    @property
    @abstractmethod
    def label(self) -> str:
        """Short name: the folder, or ``ORG/NAME@REV``."""

    @property
    @abstractmethod
    def description(self) -> str:
        """One line for people (``repr`` of a Zoo, ``zoo info``)."""

    @property
    @abstractmethod
    def manifest(self) -> dict[str, str]:
        """The data entries of the manifest, relative path -> sha256 (never the card); do not modify."""

    def read_manifest(self) -> dict[str, str]:
        """A copy of :attr:`manifest`."""
        return dict(self.manifest)

    @abstractmethod
    def read_info(self) -> dict:
        """``zoo.json`` (verified); ``{}`` for a folder without one."""

    @abstractmethod
    def read_metadata(self) -> pd.DataFrame:
        """The metadata table, one row per network (verified)."""

    def read_tables(self) -> tuple[pd.DataFrame, dict]:
        """The metadata table and ``zoo.json``, both of one version of the release."""
        return self.read_metadata(), self.read_info()

    @abstractmethod
    def local_paths(self, rel_paths: Iterable[str]) -> dict[str, Path]:
        """Local paths of release files (relative paths), each checked against the manifest; a Hub source
        downloads those not cached yet, in one batch."""

    def local_path(self, rel: str) -> Path:
        """:meth:`local_paths` of one file."""
        return self.local_paths([rel])[rel]


#: ``verify`` values: True = "auto", False = "none"
VERIFY_MODES = ("auto", "full", "none")


def verify_mode(verify) -> str:
    """``verify`` as one of :data:`VERIFY_MODES` (True = "auto", False = "none")."""
    mode = {True: "auto", False: "none", None: "auto"}.get(verify, verify)
    if mode not in VERIFY_MODES:
        raise InvalidChoiceError("verify", verify, [True, False, *VERIFY_MODES])
    return mode


class LocalSource(Source):
    """A release folder on disk; files are checked against the manifest the first time they are read.

    ``verify``: ``"auto"`` (True, the default): the metadata table (a few MB) is hashed every time it is
    read; a weight or curve shard is hashed on its first read and then remembered (file size,
    mtime, ctime, inode) in the user cache (:class:`zoo.manifest.VerifiedStamps`; a release's own writer
    records its files when it writes the manifest), so later processes skip unchanged shards instead of
    re-hashing gigabytes. ``"full"``: every file is hashed on its first read in this process, stamps ignored.
    ``"none"`` (False): no checks. The whole folder: ``zoo.manifest.verify_folder``. A folder without
    ``manifest.sha256``, or a file the manifest does not list, is refused (:class:`UnverifiedReleaseError`)
    unless ``verify=False``.

    Reading never writes into the release folder: a verified metadata table is read from an uncompressed
    copy, ``<zoo.cache.release_cache_dir(key)>/metadata-<sha256[:16]>.arrow`` (key: the manifest's hash),
    written on the first open (:func:`zoo.store.read_table_cached`); an unwritable cache means no copy.
    """

    kind = "local"

    def __init__(self, folder: str | os.PathLike, verify: bool | str = True):
        self.folder = Path(folder)
        if not (self.folder / layout.METADATA_PATH).exists():
            hint = ""
            if (self.folder / STATE_DIR).exists():
                hint = f"; it holds an unfinished build: run `zoo package {self.folder}`"
            raise SourceNotFoundError(f"{self.folder} is not a zoo release (no {layout.METADATA_PATH}){hint}")
        self.verify = verify_mode(verify)
        self._open()

    def _open(self) -> None:
        """Read the manifest (and a pending switch's files, :mod:`zoo.publish`) while no writer is switching."""
        with publish.folder_lock(self.folder, shared=True):
            self._pending = publish.pending(self.folder)
            manifest = self._pending.get(MANIFEST_PATH) or self.folder / MANIFEST_PATH
            if self.verify != "none" and not manifest.is_file():
                hint = ("This build is unfinished: re-run the same `zoo build` (or `zoo package`) to finish it"
                        if (self.folder / STATE_DIR).is_dir() else
                        "Re-download the release, or write a manifest for a folder you trust "
                        "(zoo.manifest.write_manifest)") + ", or read it unchecked with load_zoo(..., verify=False)"
                raise UnverifiedReleaseError(
                    f"{self.folder} has no {MANIFEST_PATH}, so its files cannot be checked: a changed or damaged "
                    f"file would load silently. {hint}")
            if MANIFEST_PATH in self._pending:  # a killed writer's new manifest (checked by zoo.publish.pending)
                with open_regular(manifest) as f:
                    self._manifest_bytes = f.read()
            else:
                self._manifest_bytes = manifest_bytes(self.folder) if manifest.exists() else b""
        self.key = self.generation = cache.release_key(self._manifest_bytes) if self._manifest_bytes else None
        self._stamps = VerifiedStamps(self.folder, self.key)
        self._checked: set[str] = set()
        self.__dict__.pop("manifest", None)

    @property
    def label(self) -> str:
        return str(self.folder)

    @property
    def description(self) -> str:
        return str(self.folder)

    def __repr__(self) -> str:
        return f"LocalSource({str(self.folder)!r}, verify={self.verify!r})"

    @cached_property
    def manifest(self) -> dict[str, str]:
        if not self._manifest_bytes:
            return {}
        try:
            text = self._manifest_bytes.decode()
        except UnicodeDecodeError:
            raise CorruptFileError(self.folder / MANIFEST_PATH, "encoding", "not a text file") from None
        return data_entries(parse_manifest(text, str(self.folder / MANIFEST_PATH)))

    def read_info(self) -> dict:
        if INFO_PATH not in self.manifest and not (self.folder / INFO_PATH).exists():
            return {}
        path, data, _ = self._verified_bytes(INFO_PATH)
        return store.read_json(path, data)

    def read_metadata(self) -> pd.DataFrame:
        rel = layout.METADATA_PATH
        path, data, digest = self._verified_bytes(rel)
        cache_file = release_cache_dir(self.key) / f"metadata-{digest[:16]}.arrow" if digest and self.key else None
        return check_metadata(store.read_table_cached(path, cache_file, data), self.folder / rel)

    def read_tables(self) -> tuple[pd.DataFrame, dict]:
        # A writer switches in a new version under the folder's exclusive lock (zoo.publish): while this holds the
        # shared one, the two files cannot come from two versions (a retry alone could, with switches between them).
        with publish.folder_lock(self.folder, shared=True):
            return self.read_metadata(), self.read_info()

    def _verified_bytes(self, rel: str, retry: bool = True) -> tuple[Path, bytes, str | None]:
        """A small file's path, its bytes and their sha256 (checked against the manifest unless verify="none";
        None then): read once, so the bytes parsed are the bytes checked even if a writer replaces the file."""
        path = self.local_path(rel) if self.verify == "none" else self._checked_path(rel, check=False)
        with open_regular(path) as f:
            data = f.read(os.fstat(f.fileno()).st_size)
        if self.verify == "none":
            return path, data, None
        actual = manifest.sha256_bytes(data)
        if actual != self.manifest[rel] and retry and self._reopened():  # a writer switched in a new release
            return self._verified_bytes(rel, retry=False)
        if actual != self.manifest[rel]:
            raise ChecksumMismatchError(self.folder / rel, self.manifest[rel], actual, REFETCH_HINT)
        return path, data, actual

    def _reopened(self) -> bool:
        """Read the manifest again (after any switch in progress); True if it changed."""
        before = self._manifest_bytes
        self._stamps.save()
        self._open()
        return self._manifest_bytes != before

    def local_paths(self, rel_paths: Iterable[str]) -> dict[str, Path]:
        rel_paths = list(rel_paths)
        try:
            try:
                return {rel: self._checked_path(rel) for rel in rel_paths}
            except ChecksumMismatchError:
                # a writer may have switched in a new release meanwhile (zoo.publish): wait for it, retry once
                if not self._reopened():
                    raise
                return {rel: self._checked_path(rel) for rel in rel_paths}
        finally:
            self._stamps.save()

    def _checked_path(self, rel: str, check: bool = True) -> Path:
        check_rel_path(rel, f"{self.folder / layout.METADATA_PATH} (a file path in it)")
        staged = self._pending.get(rel)
        p = self.folder / rel
        if not p.exists() and not p.is_symlink() and staged is None:
            raise FileNotFoundError(f"{p} is missing from the release")
        if self.verify != "none" and rel not in self.manifest:
            raise UnverifiedReleaseError(f"{p} is not listed in {self.folder / MANIFEST_PATH}, so it cannot be "
                                         "checked; re-download the release, or pass verify=False to read it unchecked")
        p = staged or release_file(self.folder, rel)  # a regular file inside the release, whatever verify says
        if check and self.verify != "none" and rel not in self._checked:
            # a shard unchanged since it was last verified is not hashed again (verify="auto")
            verify_file(p, self.manifest[rel], what=self.folder / rel, stamps=self._stamps, rel=rel,
                        reuse_stamp=is_shard(rel) and self.verify == "auto")
            self._checked.add(rel)
        return p
