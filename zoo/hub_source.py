"""The Hub source behind ``load_zoo("ORG/NAME@rev")``: a release on the Hub, read lazily and verified.

:class:`HubSource` fetches the small files (manifest, ``zoo.json``, metadata table) when it opens, and the
weight and curve shards only when asked (:meth:`HubSource.local_paths`), each checked against the release
manifest (:func:`zoo.manifest.verify_file`). Everything lands in the usual huggingface_hub cache, pinned to one
commit, so a later run with ``HF_HUB_OFFLINE=1`` reads the same files without any request.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from huggingface_hub import hf_hub_download, snapshot_download, try_to_load_from_cache

from .errors import ChecksumMismatchError, InvalidChoiceError, NotCachedError, SourceNotFoundError, ZooError
from .hub_env import (
    LIBRARY_NAME,
    REPO_TYPE,
    find_token,
    hub_cache_dir,
    hub_endpoint,
    hub_errors,
    is_offline,
    parse_repo_id,
    repo_label,
)
from .layout import CARD_PATH, INFO_PATH, MANIFEST_PATH, METADATA_PATH
from .manifest import data_entries, parse_manifest, release_file, verify_file
from .sources import Source

# snapshots (layout.SNAPSHOTS_DIR) are fetched only when asked: pull(snapshots=True), net.snapshots()
OPEN_FILES = (INFO_PATH, METADATA_PATH)  # fetched and verified when a HubSource opens
_DOWNLOAD_WORKERS = 8


class _CommitFiles:
    """The files of one commit of a Hub dataset in the huggingface_hub cache: looked up, downloaded (pinned to
    the commit), checked against a manifest and, when bad, evicted."""

    def __init__(self, repo_id: str, revision: str | None, cache_dir: Path, endpoint: str, token: str | None):
        self.repo_id, self.revision, self.cache_dir, self.endpoint = repo_id, revision, cache_dir, endpoint
        self.token_arg = token
        self.commit = ""
        self.root = Path()

    def _options(self, revision: str) -> dict:
        """The keyword arguments of every download (the token read now: a login during a session counts)."""
        return dict(repo_type=REPO_TYPE, revision=revision, cache_dir=self.cache_dir, endpoint=self.endpoint,
                    token=find_token(self.token_arg) or False, library_name=LIBRARY_NAME)

    def pin(self, offline: bool, label: str) -> None:
        """Resolve the revision (default ``main``) to one commit (:attr:`commit`, snapshot folder :attr:`root`):
        online by fetching its manifest, offline from the cache alone."""
        rev = self.revision or "main"
        if offline:
            p = try_to_load_from_cache(self.repo_id, MANIFEST_PATH, cache_dir=self.cache_dir, revision=rev,
                                       repo_type=REPO_TYPE)
            if not isinstance(p, str):
                raise NotCachedError(
                    f"Hub dataset {label} is not in the local Hugging Face cache ({self.cache_dir}) and offline "
                    f"mode is on (HF_HUB_OFFLINE or local_files_only): run `zoo pull {label}` once online, "
                    "or unset HF_HUB_OFFLINE")
        else:
            with hub_errors(self.repo_id, self.revision, self.endpoint, MANIFEST_PATH):
                p = hf_hub_download(self.repo_id, MANIFEST_PATH, **self._options(rev))
        path = Path(p)
        if path.parent.parent.name != "snapshots" or not re.fullmatch(r"[0-9a-f]{40}", path.parent.name):
            raise ZooError(f"unexpected huggingface_hub cache layout for {label}: {path}")
        self.commit, self.root = path.parent.name, path.parent

    def cached(self, rel: str) -> Path | None:
        """The cached copy of ``rel`` at the commit, or None (no request)."""
        p = try_to_load_from_cache(self.repo_id, rel, cache_dir=self.cache_dir, revision=self.commit,
                                   repo_type=REPO_TYPE)
        return Path(p) if isinstance(p, str) else None

    def download_one(self, rel: str) -> Path:
        """Download one file of the commit (no listing request)."""
        return Path(hf_hub_download(self.repo_id, rel, **self._options(self.commit)))

    def download(self, rels: list[str], label: str) -> dict[str, Path]:
        """Download ``rels`` with huggingface_hub's own parallel download (``snapshot_download`` of exactly
        these files, pinned to the commit; its progress bars unless HF_HUB_DISABLE_PROGRESS_BARS)."""
        with hub_errors(self.repo_id, self.revision, self.endpoint, rels[0] if len(rels) == 1 else None):
            if len(rels) == 1:
                return {rels[0]: self.download_one(rels[0])}
            root = Path(snapshot_download(self.repo_id, allow_patterns=[glob.escape(r) for r in rels],
                                          max_workers=_DOWNLOAD_WORKERS, **self._options(self.commit)))
        missing = [r for r in rels if not (root / r).is_file()]
        if missing:
            raise SourceNotFoundError(f"{len(missing)} file(s) of the manifest are not in Hub dataset {label} "
                                      f"(commit {self.commit[:12]}): {', '.join(missing[:10])}")
        return {r: root / r for r in rels}

    def check(self, paths: dict[str, Path], manifest: dict[str, str]) -> dict[str, ChecksumMismatchError]:
        """Check ``paths`` against ``manifest`` (a cache blob named by its sha256 is not hashed again); every
        mismatching copy is evicted: returns their errors by path."""
        bad: dict[str, ChecksumMismatchError] = {}
        for rel, p in paths.items():
            # a regular file inside the cache: the snapshot's link goes to the repo's blob, which may itself link
            # to huggingface_hub's cache-wide store of Xet files (<cache>/blobs/)
            in_cache = Path(os.path.relpath(os.path.abspath(p), self.cache_dir.absolute())).as_posix()
            release_file(self.cache_dir, in_cache)
            try:
                verify_file(p, manifest[rel], what=rel, trust_blob_name=True)
            except ChecksumMismatchError as e:
                self.evict(p)
                bad[rel] = e
        return bad

    def evict(self, path: Path) -> None:
        """Remove a bad file from the cache: the snapshot entry and every link and blob it leads to there."""
        cache = self.cache_dir.resolve()
        while True:
            target = path.parent / os.readlink(path) if path.is_symlink() else None
            path.unlink(missing_ok=True)
            if target is None or cache not in Path(os.path.abspath(target)).resolve().parents:
                return
            path = Path(os.path.abspath(target))


class HubSource(Source):
    """A release on the Hub, read through the huggingface_hub cache (:class:`zoo.sources.Source`, like a folder).

    ``local_files_only=None`` honours ``HF_HUB_OFFLINE``. Online, the revision (default ``main``) is resolved
    to one commit (``.commit``) when the source opens and every file is then downloaded pinned to it; offline,
    the cache alone is read and no request is made.
    """

    kind = "hub"

    def __init__(self, repo_id: str, revision: str | None = None, *, cache_dir: str | os.PathLike | None = None,
                 local_files_only: bool | None = None, token: str | None = None, endpoint: str | None = None):
        rid, rev = parse_repo_id(repo_id)
        if revision is not None and rev is not None and revision != rev:
            raise InvalidChoiceError("revision", revision, hint=f"{repo_id!r} already names revision {rev!r}")
        self.repo_id = rid
        self.revision = revision or rev
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
        self.offline = is_offline() if local_files_only is None else bool(local_files_only)
        self.endpoint = (endpoint or hub_endpoint()).rstrip("/")
        self._files = _CommitFiles(rid, self.revision, self.cache_dir, self.endpoint, token)
        self._verified: set[str] = set()
        self._info: dict | None = None
        self._metadata = None
        self._files.pin(self.offline, self.label)
        self.commit, self.root = self._files.commit, self._files.root
        where = f"{MANIFEST_PATH} of Hub dataset {self.label} (commit {self.commit[:12]})"
        self._manifest = data_entries(parse_manifest((self.root / MANIFEST_PATH).read_text(), where))
        self.local_paths(list(OPEN_FILES))

    # -- the Source interface -------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return repo_label(self.repo_id, self.revision)

    @property
    def description(self) -> str:
        where = "local Hugging Face cache, offline" if self.offline else self.endpoint
        return f"Hub dataset {self.label} (commit {self.commit[:12]}, {where})"

    def __repr__(self) -> str:
        return f"HubSource({self.repo_id!r}, revision={self.revision!r}, commit={self.commit[:12]!r})"

    @property
    def manifest(self) -> dict[str, str]:
        return self._manifest

    def read_info(self) -> dict:
        from .store import read_json

        if self._info is None:
            self._info = read_json(self.local_path(INFO_PATH))
        return json.loads(json.dumps(self._info))

    def read_metadata(self):
        from .metadata import check_metadata
        from .store import read_table

        if self._metadata is None:
            self._metadata = check_metadata(read_table(self.local_path(METADATA_PATH)),
                                            f"{self.label}/{METADATA_PATH}")
        return self._metadata.copy()

    def local_paths(self, rel_paths: Iterable[str]) -> dict[str, Path]:
        """Local paths of release files, downloading only those not cached yet, each checked against the
        manifest (a mismatching copy is removed from the cache and ChecksumMismatchError raised)."""
        rels = list(dict.fromkeys(rel_paths))
        unknown = [r for r in rels if r not in self._manifest and r != MANIFEST_PATH]
        if unknown:
            shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise SourceNotFoundError(f"not files of the release {self.label} (not in its manifest): {shown}")
        paths = {r: p for r in rels if (p := self._files.cached(r)) is not None}
        missing = [r for r in rels if r not in paths]
        if missing:
            if self.offline:
                raise _not_cached(self.label, self.commit, self.cache_dir, missing)
            paths.update(self._files.download(missing, self.label))
        todo = {r: paths[r] for r in rels if r != MANIFEST_PATH and r not in self._verified}
        bad = self._files.check(todo, self._manifest)
        self._verified.update(r for r in todo if r not in bad)
        if bad:
            raise _mismatch(self.label, self.commit, list(bad.values()))
        return {r: paths[r] for r in rels}

    def card_path(self) -> Path | None:
        """The dataset card (README.md) of the commit, or None if it has none or it cannot be fetched. It is
        not in the data manifest and never checked: an edited card (a typo fix on the Hub) breaks nothing."""
        p = self._files.cached(CARD_PATH)
        if p is not None or self.offline:
            return p
        with contextlib.suppress(Exception):
            return self._files.download_one(CARD_PATH)
        return None


def _not_cached(label: str, commit: str, cache_dir: Path, missing: list[str]) -> NotCachedError:
    shown = ", ".join(missing[:10]) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
    err = NotCachedError(
        f"{len(missing)} file(s) of Hub dataset {label} (commit {commit[:12]}) are not in the local "
        f"Hugging Face cache ({cache_dir}) and offline mode is on: {shown}. Fetch them once online with "
        f"`zoo pull {label}` (with the same filters), or run once without HF_HUB_OFFLINE / local_files_only")
    err.missing = list(missing)
    return err


def _mismatch(label: str, commit: str, bad: list[ChecksumMismatchError]) -> ChecksumMismatchError:
    first = bad[0]
    more = f" ({len(bad)} files mismatched: {', '.join(e.path for e in bad)})" if len(bad) > 1 else ""
    return ChecksumMismatchError(
        first.path, first.expected, first.actual,
        f"the copy of {first.path} from Hub dataset {label} (commit {commit[:12]}) does not match the "
        f"release manifest and was removed from the cache{more}. Retry to download it again; if it fails "
        "again the file on the Hub is corrupt: report it to the release maintainers")
