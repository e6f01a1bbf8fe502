"""Releases on the Hugging Face Hub: ``zoo push``, ``zoo pull`` and the Hub source behind ``load_zoo("ORG/NAME@rev")``.

A release on the Hub is a dataset repository holding the files of a local release folder (docs/format.md).
Reading is lazy: :class:`HubSource` fetches the small files (manifest, ``zoo.json``, metadata table) when it
opens, and the weight and curve shards only when asked (:meth:`HubSource.local_paths`), each checked against
the release manifest. Everything lands in the usual huggingface_hub cache, pinned to one commit, so a later
run with ``HF_HUB_OFFLINE=1`` reads the same files without any request.

The Hub settings (``HF_ENDPOINT``, ``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``) are read from
the environment at call time, not when huggingface_hub was imported, and passed to it explicitly.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import huggingface_hub
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    constants,
    hf_hub_download,
    snapshot_download,
    try_to_load_from_cache,
)

from .errors import (
    ChecksumMismatchError,
    InvalidChoiceError,
    NotCachedError,
    SourceNotFoundError,
    TokenMissingError,
    ZooError,
)
from .layout import (
    CARD_PATH,
    DIAGNOSTICS_PATH,
    INFO_PATH,
    MANIFEST_PATH,
    METADATA_PATH,
    SHARD_DIRS,
    SNAPSHOTS_DIR,
    is_private_part,
    is_shard,
    snapshots_table_path,
)
from .manifest import (
    atomic_path,
    atomic_write_text,
    data_entries,
    parse_manifest,
    read_manifest,
    sha256_file,
    verify_folder,
    write_manifest,
)

try:  # huggingface_hub >= 0.24
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
except ImportError:  # pragma: no cover - older huggingface_hub
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

__all__ = [
    "REPO_TYPE", "INFO_PATH", "METADATA_PATH", "SHARD_DIRS", "HubSource", "parse_repo_id",
    "looks_like_repo_id", "release_files", "push", "pull", "files_for_networks", "select_networks",
    "hub_endpoint", "hub_cache_dir", "is_offline", "find_token",
]

REPO_TYPE = "dataset"
# snapshots (layout.SNAPSHOTS_DIR) are fetched only when asked: pull(snapshots=True), net.snapshots()
OPEN_FILES = (INFO_PATH, METADATA_PATH)  # fetched and verified when a HubSource opens
_DOWNLOAD_WORKERS = 8
_PREUPLOAD_BATCH = 256  # files per preupload_lfs_files call of a push
_KEEP_ON_HUB = {".gitattributes"}  # files of the Hub repo a push never deletes
_LIBRARY = "rnn-stm-zoo"

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_RE = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?:@(?P<rev>[^\s@]+))?$")
_HF_PREFIXES = ("hf://datasets/", "datasets/")


# -- repo ids ----------------------------------------------------------------------------------------------
def parse_repo_id(text: str) -> tuple[str, str | None]:
    """``"ORG/NAME"`` -> ``("ORG/NAME", None)``; ``"ORG/NAME@REV"`` -> ``("ORG/NAME", "REV")``.

    REV is a tag, a branch or a commit sha. An ``hf://datasets/`` prefix is accepted.
    """
    raw = str(text).strip()
    for prefix in _HF_PREFIXES:
        if raw.startswith(prefix):
            raw = raw[len(prefix):]
            break
    m = _REPO_RE.match(raw)
    if not m or "--" in m["repo"] or ".." in m["repo"]:
        raise InvalidChoiceError(
            "Hub repo id", text,
            hint="expected ORG/NAME or ORG/NAME@REVISION (REVISION: a tag such as v1.0, a branch or a commit sha)")
    return m["repo"], m["rev"]


def looks_like_repo_id(text: str) -> bool:
    """True if ``text`` reads as a Hub repo id (``ORG/NAME[@REV]``) rather than a local path.

    An existing local path wins, and so does anything that starts like a path (``/``, ``.``, ``~``).
    """
    text = str(text).strip()
    if not text or text.startswith(("/", ".", "~", "\\")) or os.path.exists(text):
        return False
    try:
        parse_repo_id(text)
    except InvalidChoiceError:
        return False
    return True


def _label(repo_id: str, revision: str | None) -> str:
    return f"{repo_id}@{revision}" if revision else repo_id


# -- settings read at call time ----------------------------------------------------------------------------
def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) as set now, or as huggingface_hub saw it at import."""
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return _truthy(env) or bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _hf_home() -> str:
    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                           "huggingface")
    return os.path.expandvars(os.path.expanduser(os.environ.get("HF_HOME") or default))


def hub_cache_dir() -> Path:
    """The huggingface_hub cache folder (``HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    p = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(_hf_home(), "hub")
    return Path(os.path.expandvars(os.path.expanduser(p)))


def find_token(token: str | None = None) -> str | None:
    """``token``, else huggingface_hub's usual places: ``HF_TOKEN``, then the token file of ``hf auth login``."""
    if token:
        return token
    token_path = os.path.expandvars(os.path.expanduser(
        os.environ.get("HF_TOKEN_PATH") or os.path.join(_hf_home(), "token")))
    if os.path.abspath(token_path) == os.path.abspath(constants.HF_TOKEN_PATH):
        return huggingface_hub.get_token()  # same places it knows, plus OIDC, refreshed logins, Colab secrets
    env = (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or "").strip()
    if env:
        return env
    with contextlib.suppress(OSError):
        return Path(token_path).read_text().strip() or None
    return None


# -- errors ------------------------------------------------------------------------------------------------
_NET_MODULES = {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


@contextlib.contextmanager
def _hub_errors(repo_id: str, revision: str | None, endpoint: str, filename: str | None = None,
                pushing: bool = False) -> Iterator[None]:
    """Turn huggingface_hub and network exceptions into short :class:`ZooError` subclasses."""
    label = _label(repo_id, revision)
    what = f"{filename} of {label}" if filename else label
    try:
        yield
    except GatedRepoError as e:
        raise SourceNotFoundError(f"Hub dataset {repo_id} is gated: accept its terms on the Hub, then log in "
                                  "(`hf auth login` or HF_TOKEN)") from e
    except RepositoryNotFoundError as e:
        if pushing:
            raise TokenMissingError(f"the Hub at {endpoint} refused access to {repo_id}: the token needs write "
                                    "access to it (`hf auth login` or HF_TOKEN)") from e
        raise SourceNotFoundError(
            f"Hub dataset {label} not found at {endpoint}: check the name and the revision (a private dataset "
            "also needs a token: `hf auth login` or HF_TOKEN)") from e
    except RevisionNotFoundError as e:
        raise SourceNotFoundError(f"revision {revision!r} not found in Hub dataset {repo_id}") from e
    except OfflineModeIsEnabled as e:
        raise NotCachedError(f"cannot fetch {what}: HF_HUB_OFFLINE was set when huggingface_hub was imported. "
                             f"Run `zoo pull {label}` in an online session first") from e
    except LocalEntryNotFoundError as e:  # online, but no answer from the Hub and nothing cached
        raise NotCachedError(f"could not download {what} from {endpoint} and it is not in the local cache: "
                             "check the connection (and HF_ENDPOINT), then retry") from e
    except EntryNotFoundError as e:
        raise SourceNotFoundError(f"{filename or 'a file'} not found in Hub dataset {label}"
                                  + (": not a zoo release?" if filename == MANIFEST_PATH else "")) from e
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise TokenMissingError(f"the Hub at {endpoint} refused the request for {label} (HTTP {status}): "
                                    "log in with `hf auth login` or set HF_TOKEN (write access to push)") from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"Hub request for {what} failed: {first}") from e
    except Exception as e:
        if type(e).__module__.split(".")[0] in _NET_MODULES or isinstance(e, (ConnectionError, TimeoutError)):
            raise ZooError(f"could not reach the Hub at {endpoint} for {what}: {e}") from e
        raise


# -- release contents --------------------------------------------------------------------------------------
def release_files(folder: str | os.PathLike) -> list[str]:
    """The files of the release in ``folder`` that get uploaded, sorted: everything but hidden paths
    (``.build/``, ``.tmp-*``, ``.cache/``) and ``__pycache__``."""
    folder = Path(folder)
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not is_private_part(d)]
        rel_dir = Path(dirpath).relative_to(folder)
        for name in filenames:
            if not is_private_part(name) and os.path.isfile(os.path.join(dirpath, name)):
                out.append((rel_dir / name).as_posix())
    return sorted(out)


def select_networks(metadata, net_ids: Iterable[str]):
    """The rows of ``metadata`` for ``net_ids`` (in release order); unknown ids raise InvalidChoiceError."""
    ids = list(dict.fromkeys(str(i) for i in net_ids))
    known = set(metadata["net_id"])
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InvalidChoiceError("net_id", unknown[0] if len(unknown) == 1 else unknown[:10],
                                 hint=f"{len(unknown)} id(s) are not networks of this release")
    return metadata[metadata["net_id"].isin(ids)]


def files_for_networks(metadata, net_ids: Iterable[str] | None = None, snapshots: bool = False) -> list[str]:
    """The weight and curve shards (relative paths, sorted) that hold ``net_ids`` (all networks if None); with
    ``snapshots``, also their snapshot shards and tables."""
    rows = metadata if net_ids is None else select_networks(metadata, net_ids)
    files: set[str] = set()
    for col in ("weights_file", "curves_file"):
        if col in rows:
            files.update(f for f in rows[col].dropna().unique() if f)
    if snapshots and "snapshots_file" in rows:
        files.update(g for f in rows["snapshots_file"].dropna().unique() if f for g in (f, snapshots_table_path(f)))
    return sorted(files)


# -- reading a release on the Hub --------------------------------------------------------------------------
class HubSource:
    """A release on the Hub, read through the huggingface_hub cache; same protocol as a local release folder.

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
        self._token_arg = token
        self._verified: set[str] = set()
        self._info: dict | None = None
        self._metadata = None
        self.commit, self.root = self._resolve()
        where = f"{MANIFEST_PATH} of Hub dataset {self.label} (commit {self.commit[:12]})"
        self._manifest = data_entries(parse_manifest((self.root / MANIFEST_PATH).read_text(), where))
        self.local_paths(list(OPEN_FILES))

    # -- protocol -------------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return _label(self.repo_id, self.revision)

    @property
    def description(self) -> str:
        where = "local Hugging Face cache, offline" if self.offline else self.endpoint
        return f"Hub dataset {self.label} (commit {self.commit[:12]}, {where})"

    def __repr__(self) -> str:
        return f"HubSource({self.repo_id!r}, revision={self.revision!r}, commit={self.commit[:12]!r})"

    def read_manifest(self) -> dict[str, str]:
        return dict(self._manifest)

    def read_info(self) -> dict:
        from .store import read_json

        if self._info is None:
            self._info = read_json(self.local_path(INFO_PATH))
        return json.loads(json.dumps(self._info))

    def read_metadata(self):
        from .store import read_table

        if self._metadata is None:
            self._metadata = read_table(self.local_path(METADATA_PATH))
        return self._metadata.copy()

    def local_path(self, rel: str) -> Path:
        return self.local_paths([rel])[rel]

    def local_paths(self, rel_paths: Iterable[str]) -> dict[str, Path]:
        """Local paths of release files, downloading only those not cached yet, each checked against the
        manifest (a mismatching copy is removed from the cache and ChecksumMismatchError raised)."""
        rels = list(dict.fromkeys(rel_paths))
        unknown = [r for r in rels if r not in self._manifest and r != MANIFEST_PATH]
        if unknown:
            shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise SourceNotFoundError(f"not files of the release {self.label} (not in its manifest): {shown}")
        paths: dict[str, Path] = {}
        missing = []
        for rel in rels:
            p = self._cached(rel)
            if p is None:
                missing.append(rel)
            else:
                paths[rel] = p
        if missing:
            if self.offline:
                raise self._not_cached(missing)
            paths.update(self._download(missing))
        self._verify({r: paths[r] for r in rels if r != MANIFEST_PATH and r not in self._verified})
        return {r: paths[r] for r in rels}

    # -- internals ------------------------------------------------------------------------------------
    def _token(self):
        return find_token(self._token_arg) or False

    def _resolve(self) -> tuple[str, Path]:
        rev = self.revision or "main"
        if self.offline:
            p = try_to_load_from_cache(self.repo_id, MANIFEST_PATH, cache_dir=self.cache_dir, revision=rev,
                                       repo_type=REPO_TYPE)
            if not isinstance(p, str):
                raise NotCachedError(
                    f"Hub dataset {self.label} is not in the local Hugging Face cache ({self.cache_dir}) and offline "
                    f"mode is on (HF_HUB_OFFLINE or local_files_only): run `zoo pull {self.label}` once online, "
                    "or unset HF_HUB_OFFLINE")
        else:
            with _hub_errors(self.repo_id, self.revision, self.endpoint, MANIFEST_PATH):
                p = hf_hub_download(self.repo_id, MANIFEST_PATH, repo_type=REPO_TYPE, revision=rev,
                                    cache_dir=self.cache_dir, endpoint=self.endpoint, token=self._token(),
                                    library_name=_LIBRARY)
        path = Path(p)
        commit = path.parent.name
        if path.parent.parent.name != "snapshots" or not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise ZooError(f"unexpected huggingface_hub cache layout for {self.label}: {path}")
        return commit, path.parent

    def _cached(self, rel: str) -> Path | None:
        p = try_to_load_from_cache(self.repo_id, rel, cache_dir=self.cache_dir, revision=self.commit,
                                   repo_type=REPO_TYPE)
        return Path(p) if isinstance(p, str) else None

    def _not_cached(self, missing: list[str]) -> NotCachedError:
        shown = ", ".join(missing[:10]) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
        err = NotCachedError(
            f"{len(missing)} file(s) of Hub dataset {self.label} (commit {self.commit[:12]}) are not in the local "
            f"Hugging Face cache ({self.cache_dir}) and offline mode is on: {shown}. Fetch them once online with "
            f"`zoo pull {self.label}` (with the same filters), or run "
            "once without HF_HUB_OFFLINE / local_files_only")
        err.missing = list(missing)
        return err

    def _download(self, rels: list[str]) -> dict[str, Path]:
        """Download ``rels`` with huggingface_hub's own parallel download (``snapshot_download`` of exactly
        these files, pinned to the commit; its progress bars unless HF_HUB_DISABLE_PROGRESS_BARS)."""
        with _hub_errors(self.repo_id, self.revision, self.endpoint, rels[0] if len(rels) == 1 else None):
            if len(rels) == 1:  # one file: no listing request
                p = hf_hub_download(self.repo_id, rels[0], repo_type=REPO_TYPE, revision=self.commit,
                                    cache_dir=self.cache_dir, endpoint=self.endpoint, token=self._token(),
                                    library_name=_LIBRARY)
                return {rels[0]: Path(p)}
            root = Path(snapshot_download(self.repo_id, repo_type=REPO_TYPE, revision=self.commit,
                                          cache_dir=self.cache_dir, endpoint=self.endpoint, token=self._token(),
                                          library_name=_LIBRARY, allow_patterns=[glob.escape(r) for r in rels],
                                          max_workers=_DOWNLOAD_WORKERS))
        missing = [r for r in rels if not (root / r).is_file()]
        if missing:
            raise SourceNotFoundError(f"{len(missing)} file(s) of the manifest are not in Hub dataset {self.label} "
                                      f"(commit {self.commit[:12]}): {', '.join(missing[:10])}")
        return {r: root / r for r in rels}

    @staticmethod
    def _blob_named(p: Path, digest: str) -> bool:
        """True if ``p`` is a cache entry whose blob is named by ``digest`` (an LFS file, stored under its
        sha256): its content was already checked against that name, so it is not hashed again."""
        try:
            return p.is_symlink() and p.resolve().name == digest and p.resolve().is_file()
        except OSError:
            return False

    def _verify(self, paths: dict[str, Path]) -> None:
        bad = []
        for rel, p in paths.items():
            if self._blob_named(p, self._manifest[rel]):
                self._verified.add(rel)
                continue
            actual = sha256_file(p)
            if actual == self._manifest[rel]:
                self._verified.add(rel)
            else:
                self._evict(p)
                bad.append((rel, actual))
        if bad:
            rel, actual = bad[0]
            more = f" ({len(bad)} files mismatched: {', '.join(r for r, _ in bad)})" if len(bad) > 1 else ""
            raise ChecksumMismatchError(
                rel, self._manifest[rel], actual,
                f"the copy of {rel} from Hub dataset {self.label} (commit {self.commit[:12]}) does not match the "
                f"release manifest and was removed from the cache{more}. Retry to download it again; if it fails "
                "again the file on the Hub is corrupt: report it to the release maintainers")

    def card_path(self) -> Path | None:
        """The dataset card (README.md) of the commit, or None if it has none or it cannot be fetched. It is
        not in the data manifest and never checked: an edited card (a typo fix on the Hub) breaks nothing."""
        p = self._cached(CARD_PATH)
        if p is not None or self.offline:
            return p
        with contextlib.suppress(Exception):
            return Path(hf_hub_download(self.repo_id, CARD_PATH, repo_type=REPO_TYPE, revision=self.commit,
                                        cache_dir=self.cache_dir, endpoint=self.endpoint, token=self._token(),
                                        library_name=_LIBRARY))
        return None

    def _evict(self, path: Path) -> None:
        """Remove a bad file from the cache: the snapshot entry and the blob it points to."""
        blob = path.resolve() if path.is_symlink() else None
        path.unlink(missing_ok=True)
        cache = self.cache_dir.resolve()
        if blob is not None and blob.is_file() and cache in blob.parents:
            blob.unlink(missing_ok=True)


# -- pull --------------------------------------------------------------------------------------------------
def pull(repo_id: str, *, revision: str | None = None, out: str | os.PathLike | None = None,
         net_ids: Iterable[str] | None = None, cache_dir: str | os.PathLike | None = None,
         token: str | None = None, local_files_only: bool | None = None, snapshots: bool = False) -> Path:
    """Fetch a release (or the part holding ``net_ids``) from the Hub into the cache.

    Downloads the small files and only the weight and curve shards of the selected networks (all if None);
    stored snapshots (``snapshots/``) only with ``snapshots``.
    With ``out``, materialises a local release folder there (metadata restricted to the selected networks,
    its own manifest, ``zoo.json`` with ``partial`` and the source repo/commit) and returns it; otherwise
    returns the cache snapshot folder.
    """
    src = HubSource(repo_id, revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    manifest = src.read_manifest()
    core = [r for r in manifest if not is_shard(r)]
    meta = src.read_metadata()
    if net_ids is None:
        shards = [r for r in manifest if is_shard(r) and (snapshots or not r.startswith(SNAPSHOTS_DIR))]
        selected = None
    else:
        selected = list(select_networks(meta, net_ids)["net_id"])
        shards = files_for_networks(meta, selected, snapshots=snapshots)
    paths = src.local_paths(core + shards)
    card = src.card_path()  # documentation: fetched for the reader, never checked
    if out is None:
        return src.root
    return _materialise(src, paths, selected, len(meta), Path(out), card)


def _filter_table(src_path: Path, dest: Path, net_ids: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(src_path)
    if "net_id" in table.column_names:
        ids = pc.cast(table["net_id"], pa.string())
        table = table.filter(pc.is_in(ids, value_set=pa.array(net_ids, type=pa.string())))
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp)


def _materialise(src: HubSource, paths: dict[str, Path], selected: list[str] | None, n_total: int,
                 out: Path, card: Path | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    old = read_manifest(out) if (out / MANIFEST_PATH).is_file() else {}
    partial = selected is not None and len(selected) < n_total
    info = src.read_info()
    for rel, p in paths.items():
        dest = out / rel
        if rel == INFO_PATH:
            continue
        if partial and rel in (METADATA_PATH, DIAGNOSTICS_PATH):
            _filter_table(p, dest, selected)
            continue
        with atomic_path(dest) as tmp:
            shutil.copyfile(p, tmp)
    if card is not None:
        with atomic_path(out / CARD_PATH) as tmp:
            shutil.copyfile(card, tmp)
    info["partial"] = bool(info.get("partial")) or partial
    info["source"] = {"repo": src.repo_id, "revision": src.revision, "commit": src.commit,
                      "networks_selected": len(selected) if selected is not None else n_total,
                      "networks_total": n_total}
    atomic_write_text(out / INFO_PATH, json.dumps(info, indent=2) + "\n")
    files = sorted(paths)
    for rel in set(old) - set(files) - {CARD_PATH}:  # left over from an earlier pull into the same folder
        (out / rel).unlink(missing_ok=True)
    write_manifest(out, files)
    return out


# -- push --------------------------------------------------------------------------------------------------
def _check_release(folder: Path) -> list[str]:
    if not (folder / MANIFEST_PATH).is_file():
        raise SourceNotFoundError(f"{folder} is not a zoo release: it has no {MANIFEST_PATH} (package it first)")
    try:
        verify_folder(folder)
    except FileNotFoundError as e:
        raise SourceNotFoundError(str(e)) from e
    files = release_files(folder)
    extra = sorted(set(files) - set(read_manifest(folder)) - {MANIFEST_PATH, CARD_PATH})
    if extra:
        shown = ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else "")
        raise ZooError(f"{len(extra)} file(s) in {folder} are not in its manifest: {shown}. Remove them or "
                       "rewrite the manifest (zoo.manifest.write_manifest) before pushing")
    return files


def push(folder: str | os.PathLike, repo_id: str, *, revision: str | None = None, private: bool = False,
         dry_run: bool = False, token: str | None = None, large: bool | None = None,
         commit_message: str | None = None) -> list[str]:
    """Upload the release in ``folder`` to the Hub dataset ``repo_id`` as ONE commit; tag it ``revision``.

    The manifest is verified first. The large files are uploaded ahead of the commit
    (``HfApi.preupload_lfs_files``, in batches, parallel), then a single ``create_commit`` adds every file of
    the release and deletes the files of an older release that this one lacks, so a reader of the branch sees
    either the old release or the new one, never half of each. The card's load snippet names the real repo id
    and revision. ``dry_run`` returns the files that would be uploaded and makes no request. ``large`` is
    accepted for compatibility (every push is one commit). Returns the uploaded paths.
    """
    from .card import card_for_repo

    folder = Path(folder)
    rid, rev = parse_repo_id(repo_id)
    if revision is not None and rev is not None and revision != rev:
        raise InvalidChoiceError("revision", revision, hint=f"{repo_id!r} already names revision {rev!r}")
    revision = revision or rev
    files = _check_release(folder)
    if dry_run:
        return files
    tok = find_token(token)
    if not tok:
        raise TokenMissingError("pushing needs a Hugging Face token with write access: log in with "
                                "`hf auth login`, or set HF_TOKEN, or pass token=")
    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint, token=tok, library_name=_LIBRARY)
    message = commit_message or (f"zoo release {revision}" if revision else "zoo release")
    adds = []
    for rel in files:
        if rel == CARD_PATH:
            text = card_for_repo((folder / rel).read_text(), rid, revision)
            adds.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=text.encode()))
        else:
            adds.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)))
    with _hub_errors(rid, revision, endpoint, pushing=True):
        api.create_repo(rid, repo_type=REPO_TYPE, private=private, exist_ok=True)
        if revision:
            tags = {t.name for t in api.list_repo_refs(rid, repo_type=REPO_TYPE).tags}
            if revision in tags:
                raise ZooError(f"tag {revision!r} already exists in Hub dataset {rid}: release tags are not moved; "
                               "choose a new one")
        present = api.list_repo_files(rid, repo_type=REPO_TYPE)
        stale = sorted(set(present) - set(files) - _KEEP_ON_HUB)
        big = [a for a in adds if not isinstance(a.path_or_fileobj, bytes)]
        for i in range(0, len(big), _PREUPLOAD_BATCH):  # content first (LFS), nothing visible yet
            api.preupload_lfs_files(rid, additions=big[i:i + _PREUPLOAD_BATCH], repo_type=REPO_TYPE)
        ops = [*adds, *(CommitOperationDelete(path_in_repo=r) for r in stale)]
        info = api.create_commit(rid, operations=ops, commit_message=message, repo_type=REPO_TYPE,
                                 commit_description=f"{len(adds)} files; {len(stale)} files of an older release "
                                 "removed" if stale else f"{len(adds)} files")
        commit = getattr(info, "oid", None)
        if revision:
            api.create_tag(rid, repo_type=REPO_TYPE, tag=revision, revision=commit, tag_message=message)
    return files
